"""Plot samples like the original ``visualize_observation``: S2 RGB, S1 VV/VH, MODIS and DFC maps."""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import matplotlib

if (sys.platform.startswith("linux") and "matplotlib.pyplot" not in sys.modules
        and not os.environ.get("MPLBACKEND")
        and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))):
    matplotlib.use("Agg")  # headless: never try a GUI backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from .bands import S2_BANDS, S2_RGB  # noqa: E402
from .classes import DFC8, ClassScheme  # noqa: E402
from .labels import IGNORE_INDEX, NO_DATA_COLOR, colorize  # noqa: E402

__all__ = ["plot_sample", "plot_batch", "stretch"]


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def stretch(image: np.ndarray, low: float = 2.0, high: float = 98.0, per_channel: bool = False) -> np.ndarray:
    """Percentile-stretch ``(H, W)`` or ``(H, W, C)`` to [0, 1] (NaN -> 0).

    One stretch for all channels by default (keeps the hues of an RGB image).
    """
    image = np.nan_to_num(np.asarray(image, dtype=np.float32))
    axes = (0, 1) if per_channel and image.ndim == 3 else None
    lo = np.percentile(image, low, axis=axes, keepdims=True)
    hi = np.percentile(image, high, axis=axes, keepdims=True)
    return np.clip((image - lo) / np.maximum(hi - lo, 1e-6), 0.0, 1.0)


MapList = Sequence[Tuple[np.ndarray, ClassScheme]]


def _legend_handles(maps: MapList) -> List[Patch]:
    """One entry per class present in any map (per scheme, in class order), then "no data"."""
    present: Dict[ClassScheme, set] = {}
    for array, scheme in maps:
        present.setdefault(scheme, set()).update(np.unique(array).tolist())
    handles: List[Patch] = []
    seen = set()
    nodata = False
    for scheme, values in present.items():
        for c in range(scheme.num_classes):
            if c in values and (scheme.names[c], scheme.colors[c]) not in seen:
                seen.add((scheme.names[c], scheme.colors[c]))
                handles.append(Patch(color=scheme.colors[c], label=scheme.names[c]))
        nodata = nodata or any(v not in range(scheme.num_classes) for v in values)
    if nodata:
        handles.append(Patch(color=NO_DATA_COLOR, label=f"no data ({IGNORE_INDEX})"))
    return handles


def plot_sample(
    sample: Dict[str, Any],
    axes: Optional[Sequence[Any]] = None,
    title: Optional[str] = None,
    prediction: Optional[Any] = None,
    legend: bool = True,
    classes: Optional[ClassScheme] = None,
) -> Figure:
    """Draw one sample (a dataset item: tensors or arrays, no batch dimension).

    Panels: S2 RGB (B04/B03/B02, 2-98 % stretch per channel), S1 VV, S1 VH, MODIS LC, DFC LC (if the
    sample has ``dfc``) and ``prediction`` (an (H,W) or (1,H,W) class map, if given); MODIS LC
    uses the DFC palette, the DFC map and the prediction the colours of ``classes`` (the
    dataset's :class:`~data.classes.ClassScheme`; default the 8 DFC classes), 255 is black.
    ``axes``: as many axes as panels, else a new figure is made. Returns the figure.
    """
    scheme = classes or DFC8
    s2 = _numpy(sample["s2"])
    s1 = _numpy(sample["s1"])
    rgb = stretch(np.moveaxis(s2[[S2_BANDS.index(b) for b in S2_RGB]], 0, -1), per_channel=True)
    panels = [("S2 RGB", rgb, None), ("S1 VV", stretch(s1[0]), "gray"), ("S1 VH", stretch(s1[1]), "gray")]
    maps: List[Tuple[np.ndarray, ClassScheme]] = []
    for key, label, colours in (("lc", "MODIS LC", DFC8), ("dfc", "DFC LC", scheme)):
        if key in sample:
            maps.append((_numpy(sample[key]).reshape(s2.shape[-2:]).astype(np.int64), colours))
            panels.append((label, colorize(maps[-1][0], colours.colors), None))
    if prediction is not None:
        maps.append((_numpy(prediction).reshape(s2.shape[-2:]).astype(np.int64), scheme))
        panels.append(("Prediction", colorize(maps[-1][0], scheme.colors), None))

    if axes is None:
        fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.3), squeeze=False)
        axes = axes[0]
    else:
        axes = list(np.ravel(np.asarray(axes, dtype=object)))
        if len(axes) < len(panels):
            raise ValueError(f"plot_sample needs {len(panels)} axes, got {len(axes)}")
        fig = axes[0].figure
    for ax, (name, image, cmap) in zip(axes, panels):
        ax.imshow(image, cmap=cmap, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    if legend and maps:
        _add_legend(fig, maps)
    return fig


def _add_legend(fig: Figure, maps: MapList) -> None:
    handles = _legend_handles(maps)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=7, frameon=False)
    rows = -(-len(handles) // 5)
    fig.subplots_adjust(bottom=min(0.4, (0.15 + 0.2 * rows) / fig.get_figheight()))


def plot_batch(batch: Dict[str, Any], n: int = 4, title: Optional[str] = None,
               classes: Optional[ClassScheme] = None) -> Figure:
    """Plot the first ``n`` samples of a collated batch, one row each (``classes`` as in
    :func:`plot_sample`)."""
    scheme = classes or DFC8
    count = min(n, len(batch["s2"]))
    columns = 3 + ("lc" in batch) + ("dfc" in batch)
    fig, axes = plt.subplots(count, columns, figsize=(2.4 * columns, 2.5 * count + 0.6), squeeze=False)
    maps = []
    for i in range(count):
        sample = {k: v[i] for k, v in batch.items() if k in ("s1", "s2", "lc", "dfc")}
        plot_sample(sample, axes=axes[i], legend=False, classes=scheme)
        maps.extend((_numpy(sample[k]).astype(np.int64), DFC8 if k == "lc" else scheme)
                    for k in ("lc", "dfc") if k in sample)
    if maps:
        _add_legend(fig, maps)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
