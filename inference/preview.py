"""A PNG preview (with a legend) of a written label map, drawn from a decimated read.

The class names and colours come from the arguments, else from the map's ``CLASS_NAMES`` /
``CLASS_COLORS`` tags (written by :class:`inference.outputs.SceneOutputs`). The legend is also
stored in the PNG as a ``Legend`` text chunk (JSON ``[[value, name, "#rrggbb"], ...]``), so tools
and tests can read it without looking at the pixels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import rasterio
from rasterio.enums import Resampling

from data.labels import IGNORE_INDEX
from inference.classes import class_colors_rgb, default_class_names, rgb_to_hex

__all__ = ["write_preview", "legend_entries", "read_legend"]


def _json_tag(tags, key):
    try:
        return json.loads(tags.get(key, "null"))
    except json.JSONDecodeError:
        return None


def legend_entries(class_names: Sequence[str], colors=None) -> list:
    """``[[value, name, "#rrggbb"], ...]``: the classes, then the no-data value (white in the PNG)."""
    rgb = class_colors_rgb(len(class_names), colors)
    return ([[i, str(n), rgb_to_hex(rgb[i])] for i, n in enumerate(class_names)]
            + [[IGNORE_INDEX, "no data", "#ffffff"]])


def read_legend(png_path) -> list:
    """The legend a preview PNG stores (:func:`legend_entries`)."""
    from PIL import Image

    with Image.open(png_path) as im:
        return json.loads(im.text["Legend"])


def write_preview(map_path, png_path, class_names: Optional[Sequence[str]] = None, colors=None,
                  max_size: int = 2048, title: Optional[str] = None, dpi: int = 100):
    """Write a PNG preview (with legend) of a label GeoTIFF; reads at most ``max_size`` px per side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    with rasterio.open(map_path) as ds:
        scale = max(ds.width / max_size, ds.height / max_size, 1.0)
        shape = (max(1, int(round(ds.height / scale))), max(1, int(round(ds.width / scale))))
        labels = ds.read(1, out_shape=shape, resampling=Resampling.nearest)
        tags = ds.tags()
        crs = ds.crs
    if class_names is None:
        class_names = _json_tag(tags, "CLASS_NAMES")
    if colors is None and class_names is not None:
        tagged = _json_tag(tags, "CLASS_COLORS")
        colors = tagged if isinstance(tagged, list) and len(tagged) == len(class_names) else None
    if class_names is None:
        class_names = default_class_names(int(labels[labels != IGNORE_INDEX].max(initial=0)) + 1)
    C = len(class_names)
    legend = legend_entries(class_names, colors)
    rgb = np.asarray(class_colors_rgb(C, colors), dtype=np.float64) / 255.0
    rgba = np.ones((shape[0], shape[1], 4))
    valid = labels < C
    rgba[valid, :3] = rgb[labels[valid]]
    rgba[~valid] = (1.0, 1.0, 1.0, 0.0)

    h, w = shape
    fig_w = 8.0
    fig_h = max(3.0, fig_w * h / w * 0.8)
    fig = Figure(figsize=(fig_w + 3.0, fig_h), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0.02, 0.04, 0.68, 0.9])
    ax.imshow(rgba, interpolation="nearest", cmap=ListedColormap(rgb))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"{Path(map_path).name} ({crs.to_string() if crs else 'no CRS'})", fontsize=9)
    handles = [Patch(facecolor=rgb[i], edgecolor="k", linewidth=0.3, label=f"{i}: {class_names[i]}") for i in range(C)]
    handles.append(Patch(facecolor="white", edgecolor="k", linewidth=0.3, label=f"{IGNORE_INDEX}: no data"))
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=9, frameon=False)
    Path(png_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, bbox_inches="tight", pad_inches=0.1, metadata={"Legend": json.dumps(legend)})
    return str(png_path)
