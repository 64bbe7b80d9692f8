"""Class names and colours of a predicted map: from the checkpoint, else from :mod:`data.labels`.

A downstream checkpoint written by ``train_evaluation.py`` records the class scheme it was trained
on (``"classes"``, :meth:`data.classes.ClassScheme.to_json`): :func:`checkpoint_classes` takes the
names and colours from there. Older checkpoints have none: a model with
:data:`data.labels.NUM_CLASSES` outputs gets :data:`~data.labels.DFC_CLASSES` and
:data:`~data.labels.DFC_COLORS`; any other number of classes gets ``class_i`` names and a
tab10/tab20 palette.
"""

from __future__ import annotations

from typing import Any, List, Mapping, NamedTuple, Optional

import numpy as np

from data.labels import DFC_CLASSES, DFC_COLORS

__all__ = ["default_class_names", "class_colors_rgb", "rgb_to_hex", "MapClasses", "checkpoint_classes"]


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


def rgb_to_hex(rgb) -> str:
    """``(r, g, b)`` 0-255 -> ``#rrggbb``."""
    return "#" + "".join(f"{int(v):02x}" for v in list(rgb)[:3])


class MapClasses(NamedTuple):
    """What a map's classes are called and drawn with; ``note`` says where they came from."""

    names: List[str]
    colors: List[str]          # #rrggbb, one per model output
    scheme: Optional[str]      # the scheme's name, None without a recorded scheme
    note: str


def checkpoint_classes(ckpt: Mapping[str, Any], num_classes: int, source: str = "the checkpoint") -> MapClasses:
    """Names and colours of a model's ``num_classes`` outputs from a checkpoint's ``"classes"``.

    Outputs beyond the recorded classes (a model built with a larger ``--n_classes``) are
    ``class_K`` ... ; without a recorded scheme, or one with more classes than the model has
    outputs (a warning in ``note``), the defaults of :func:`default_class_names` /
    :func:`class_colors_rgb`.
    """
    from data.classes import ClassScheme

    def defaults(note: str) -> MapClasses:
        return MapClasses(default_class_names(num_classes),
                          [rgb_to_hex(c) for c in class_colors_rgb(num_classes)], None, note)

    recorded = ckpt.get("classes") if isinstance(ckpt, Mapping) else None
    if not recorded:
        return defaults(f"classes: {source} records none; "
                        + ("the 8 DFC classes" if num_classes == len(DFC_CLASSES) else "class_i names"))
    scheme = ClassScheme.from_json(recorded, f"{source} (its 'classes' entry)")
    if scheme.num_classes > num_classes:
        return defaults(f"warning: {source} records {scheme.describe()} but the model has {num_classes} "
                        "outputs; the map uses class_i names")
    return MapClasses(scheme.output_names(num_classes), scheme.output_colors(num_classes), scheme.scheme,
                      f"classes: {scheme.describe()} (from {source})")
