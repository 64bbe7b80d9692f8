"""Class names and colours of a predicted map, from :mod:`data.labels` (the one table).

A model with :data:`data.labels.NUM_CLASSES` outputs gets :data:`~data.labels.DFC_CLASSES` and
:data:`~data.labels.DFC_COLORS`; any other number of classes gets ``class_i`` names and a
tab10/tab20 palette.
"""

from __future__ import annotations

from typing import List

import numpy as np

from data.labels import DFC_CLASSES, DFC_COLORS

__all__ = ["default_class_names", "class_colors_rgb"]


def default_class_names(num_classes: int) -> List[str]:
    """:data:`data.labels.DFC_CLASSES` when it has ``num_classes`` entries, else ``class_0`` ..."""
    if len(DFC_CLASSES) == num_classes:
        return list(DFC_CLASSES)
    return [f"class_{i}" for i in range(num_classes)]


def class_colors_rgb(num_classes: int, colors=None) -> List[tuple]:
    """RGB 0-255 colours per class: ``colors`` (names, hex, 0-1 or 0-255 tuples) or
    ``data.labels.DFC_COLORS`` when it has ``num_classes`` entries, else a tab10/tab20 palette."""
    from matplotlib import colors as mcolors
    if colors is None and len(DFC_COLORS) == num_classes:
        colors = DFC_COLORS
    if colors is None or len(colors) < num_classes:
        import matplotlib
        cmap = matplotlib.colormaps["tab10" if num_classes <= 10 else "tab20"]
        colors = [cmap(i % cmap.N) for i in range(num_classes)]
    out = []
    for c in list(colors)[:num_classes]:
        if isinstance(c, str):
            out.append(tuple(int(round(v * 255)) for v in mcolors.to_rgb(c)))
            continue
        vals = list(c)[:3]
        ints = all(isinstance(v, (int, np.integer)) for v in vals)
        if not ints and max(float(v) for v in vals) <= 1.0:   # matplotlib-style 0-1 floats
            vals = [float(v) * 255 for v in vals]
        out.append(tuple(int(round(float(v))) for v in vals))
    return out

