"""Plot samples like the original ``visualize_observation``: S2 RGB, S1 VV/VH, MODIS and DFC maps."""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, List, Optional, Sequence

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
from .labels import DFC_CLASSES, DFC_COLORS, IGNORE_INDEX, NO_DATA_COLOR, colorize  # noqa: E402

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


def _legend_handles(maps: Sequence[np.ndarray]) -> List[Patch]:
    present = np.unique(np.concatenate([m.ravel() for m in maps])) if maps else []
    handles = [Patch(color=DFC_COLORS[c], label=DFC_CLASSES[c]) for c in range(len(DFC_CLASSES)) if c in present]
    if any(v not in range(len(DFC_CLASSES)) for v in present):
        handles.append(Patch(color=NO_DATA_COLOR, label=f"no data ({IGNORE_INDEX})"))
    return handles


def plot_sample(
    sample: Dict[str, Any],
    axes: Optional[Sequence[Any]] = None,
    title: Optional[str] = None,
    prediction: Optional[Any] = None,
    legend: bool = True,
) -> Figure:
    """Draw one sample (a dataset item: tensors or arrays, no batch dimension).

    Panels: S2 RGB (B04/B03/B02, 2-98 % stretch per channel), S1 VV, S1 VH, MODIS LC, DFC LC (if the
    sample has ``dfc``) and ``prediction`` (an (H,W) or (1,H,W) class map, if given); class
    maps use the DFC palette, 255 is black. ``axes``: as many axes as panels, else a new
    figure is made. Returns the figure.
    """
    s2 = _numpy(sample["s2"])
    s1 = _numpy(sample["s1"])
    rgb = stretch(np.moveaxis(s2[[S2_BANDS.index(b) for b in S2_RGB]], 0, -1), per_channel=True)
    panels = [("S2 RGB", rgb, None), ("S1 VV", stretch(s1[0]), "gray"), ("S1 VH", stretch(s1[1]), "gray")]
    maps = []
    for key, label in (("lc", "MODIS LC"), ("dfc", "DFC LC")):
        if key in sample:
            maps.append(_numpy(sample[key]).reshape(s2.shape[-2:]).astype(np.int64))
            panels.append((label, colorize(maps[-1]), None))
    if prediction is not None:
        maps.append(_numpy(prediction).reshape(s2.shape[-2:]).astype(np.int64))
        panels.append(("Prediction", colorize(maps[-1]), None))

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


def _add_legend(fig: Figure, maps: Sequence[np.ndarray]) -> None:
    handles = _legend_handles(maps)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=7, frameon=False)
    rows = -(-len(handles) // 5)
    fig.subplots_adjust(bottom=min(0.4, (0.15 + 0.2 * rows) / fig.get_figheight()))


def plot_batch(batch: Dict[str, Any], n: int = 4, title: Optional[str] = None) -> Figure:
    """Plot the first ``n`` samples of a collated batch, one row each."""
    count = min(n, len(batch["s2"]))
    columns = 3 + ("lc" in batch) + ("dfc" in batch)
    fig, axes = plt.subplots(count, columns, figsize=(2.4 * columns, 2.5 * count + 0.6), squeeze=False)
    maps = []
    for i in range(count):
        sample = {k: v[i] for k, v in batch.items() if k in ("s1", "s2", "lc", "dfc")}
        plot_sample(sample, axes=axes[i], legend=False)
        maps.extend(_numpy(sample[k]) for k in ("lc", "dfc") if k in sample)
    if maps:
        _add_legend(fig, [m.astype(np.int64) for m in maps])
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
