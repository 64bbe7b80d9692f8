"""Where the finished rows of a prediction go: the label and probability GeoTIFFs, arrays kept
in memory, and the per-class pixel counts and areas (no data and clouds counted apart).

:func:`inference.scene.predict_scene` accumulates the blended model outputs of a strip of the
scene and hands each block of finished rows to :meth:`SceneOutputs.add_rows`; the map is the
arg-max of the weighted mean, ``255`` (:data:`data.labels.IGNORE_INDEX`) where there is no
data or a cloud.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from data.labels import IGNORE_INDEX
from inference.areas import pixel_area_m2
from inference.classes import class_colors_rgb, default_class_names, rgb_to_hex
from inference.sources import Grid
from inference.writer import TiledWriter

__all__ = ["SceneResult", "SceneOutputs", "OutputOptions"]


@dataclass
class SceneResult:
    """What :func:`predict_scene` did; ``labels`` / ``probabilities`` only when kept in memory."""

    mode: str                      # "segmentation" or "classification"
    num_classes: int
    grid: Grid
    class_names: List[str]
    pixel_counts: np.ndarray       # (num_classes,) valid pixels per class
    area_m2: np.ndarray            # (num_classes,) area per class in m²
    nodata_pixels: int
    nodata_area_m2: float
    windows: int
    window: int
    stride: int
    labels: Optional[np.ndarray] = None
    probabilities: Optional[np.ndarray] = None
    outputs: Dict[str, str] = field(default_factory=dict)
    cloud_masked: bool = False     # a cloud mask was applied
    cloud_pixels: int = 0          # data pixels written as no data because the mask flags them
    cloud_area_m2: float = 0.0
    class_colors: List[str] = field(default_factory=list)   # #rrggbb per class



@dataclass
class OutputOptions:
    """What :func:`inference.scene.predict_scene` writes and returns (its output keywords).

    ``out_path``: label GeoTIFF (uint8, nodata 255, colour table, class names as tags);
    ``probabilities_path``: one probability band per class, float32 (NaN = no data) or, with
    ``probabilities_dtype="uint8"``, ``round(255 p)`` capped at 254 with scale 1/255 and nodata 255;
    ``class_names`` / ``colors``: default the DFC classes (``class_i`` for other counts); ``tags``:
    extra GeoTIFF tags; ``keep_in_memory``: also return the label map as an array (default: only
    when ``out_path`` is None); ``return_probabilities``: also return the blended ``(C, H, W)``
    probabilities (small scenes only).
    """

    out_path: object = None
    probabilities_path: object = None
    probabilities_dtype: str = "float32"
    class_names: Optional[Sequence[str]] = None
    colors: object = None
    tags: Optional[Dict[str, str]] = None
    keep_in_memory: Optional[bool] = None
    return_probabilities: bool = False

    def __post_init__(self):
        if self.probabilities_dtype not in ("float32", "uint8"):
            raise ValueError(f"probabilities_dtype must be 'float32' or 'uint8', got {self.probabilities_dtype!r}")
        self.tags = dict(self.tags or {})
        if self.keep_in_memory is None:
            self.keep_in_memory = self.out_path is None


class SceneOutputs:
    """The outputs of one prediction of ``num_classes`` classes on ``grid`` (opened on creation).

    ``max_rows``: the most rows one :meth:`add_rows` call brings. ``blend="logits"``: the
    accumulated values are logits (softmax after the weighted mean).
    """

    def __init__(self, grid: Grid, mode: str, num_classes: int, *, window: int, stride: int, max_rows: int,
                 blend: str = "probabilities", options: Optional[OutputOptions] = None, cloud_masked: bool = False):
        o = options or OutputOptions()
        out_path, probabilities_path, probabilities_dtype = o.out_path, o.probabilities_path, o.probabilities_dtype
        class_names, colors, tags = o.class_names, o.colors, o.tags
        keep_in_memory, return_probabilities = o.keep_in_memory, o.return_probabilities
        C = num_classes
        names = list(class_names) if class_names is not None else default_class_names(C)
        if len(names) != C:
            raise ValueError(f"{len(names)} class names for a model with {C} outputs")
        rgb = class_colors_rgb(C, colors)
        self.result = SceneResult(mode=mode, num_classes=C, grid=grid, class_names=names,
                                  pixel_counts=np.zeros(C, np.int64), area_m2=np.zeros(C, np.float64),
                                  nodata_pixels=0, nodata_area_m2=0.0, windows=0, window=window, stride=stride,
                                  cloud_masked=cloud_masked, class_colors=[rgb_to_hex(c) for c in rgb])
        self.grid, self.blend, self.probabilities_dtype = grid, blend, probabilities_dtype
        self.keep_in_memory, self.return_probabilities = keep_in_memory, return_probabilities
        self.mem_labels: List[np.ndarray] = []
        self.mem_probs: List[np.ndarray] = []
        self.label_writer = self.prob_writer = None
        t = {"CLASS_NAMES": json.dumps(names), "CLASS_COLORS": json.dumps(self.result.class_colors),
             "NODATA_VALUE": str(IGNORE_INDEX),
             "PREDICTION_MODE": mode, "WINDOW": str(window), "STRIDE": str(stride), **(tags or {})}
        t.update({f"CLASS_{i}": n for i, n in enumerate(names)})
        if out_path is not None:
            cmap = {i: (*rgb[i], 255) for i in range(C)}
            cmap.update({i: (0, 0, 0, 0) for i in range(C, 256)})
            self.label_writer = TiledWriter(out_path, grid, 1, "uint8", IGNORE_INDEX, 2, max_rows, tags=t,
                                            descriptions=["land cover class"], colormap=cmap)
            self.result.outputs["map"] = str(out_path)
        if probabilities_path is not None:
            quantised = probabilities_dtype == "uint8"
            prob_tags = {k: v for k, v in t.items() if k != "NODATA_VALUE"}
            if quantised:
                prob_tags.update(PROBABILITY_SCALE="1/255", NODATA_VALUE=str(IGNORE_INDEX))
            try:
                self.prob_writer = TiledWriter(probabilities_path, grid, C, probabilities_dtype,
                                               IGNORE_INDEX if quantised else float("nan"), 2 if quantised else 3,
                                               max_rows, tags=prob_tags, descriptions=[f"P({n})" for n in names],
                                               scales=[1.0 / 255.0] * C if quantised else None)
            except Exception:
                self.close()
                raise
            self.result.outputs["probabilities"] = str(probabilities_path)

    def add_rows(self, top: int, acc: np.ndarray, wsum: np.ndarray, valid: np.ndarray,
                 cloudy: Optional[np.ndarray] = None):
        """Scene rows ``[top, top + n)`` from the accumulated ``(C, n, W)`` values, their weights,
        validity and (optionally) cloud flags."""
        r, C = self.result, self.result.num_classes
        n = acc.shape[1]
        lab = acc.argmax(axis=0).astype(np.uint8)   # weights > 0: argmax of the weighted mean
        v = valid
        lab[~v] = IGNORE_INDEX
        pa = pixel_area_m2(self.grid.transform, self.grid.crs, top, n)
        per_row = np.stack([np.bincount(lab[i], minlength=256) for i in range(n)])  # (n, 256)
        r.nodata_pixels += int(per_row[:, IGNORE_INDEX].sum())
        r.nodata_area_m2 += float((per_row[:, IGNORE_INDEX] * pa).sum())
        if cloudy is not None:   # cloudy data pixels: out of the class counts, counted apart
            cl = cloudy & v
            cl_rows = cl.sum(axis=1)
            if cl_rows.any():
                for i in np.flatnonzero(cl_rows):
                    per_row[i, :] -= np.bincount(lab[i][cl[i]], minlength=256)
                r.cloud_pixels += int(cl_rows.sum())
                r.cloud_area_m2 += float((cl_rows * pa).sum())
                lab[cl] = IGNORE_INDEX
                v = v & ~cl
        r.pixel_counts += per_row[:, :C].sum(0)
        r.area_m2 += (per_row[:, :C] * pa[:, None]).sum(0)
        if self.label_writer is not None:
            self.label_writer.add(lab[None])
        if self.keep_in_memory:
            self.mem_labels.append(lab)
        if self.prob_writer is not None or self.return_probabilities:
            probs = acc / wsum[None]
            if self.blend == "logits":
                probs = torch.softmax(torch.from_numpy(probs), dim=0).numpy()
            probs[:, ~v] = np.nan
            if self.prob_writer is not None:
                if self.probabilities_dtype == "uint8":
                    q = np.minimum(np.rint(np.nan_to_num(probs, nan=0.0) * 255.0), 254).astype(np.uint8)
                    q[:, ~v] = IGNORE_INDEX
                    self.prob_writer.add(q)
                else:
                    self.prob_writer.add(probs)
            if self.return_probabilities:
                self.mem_probs.append(probs.copy())

    def close(self):
        for w in (self.label_writer, self.prob_writer):
            if w is not None:
                w.close()

    def finish(self, windows: int) -> SceneResult:
        """The :class:`SceneResult` (with the arrays kept in memory) once every row is added."""
        self.result.windows = windows
        if self.keep_in_memory:
            self.result.labels = np.concatenate(self.mem_labels, axis=0)
        if self.return_probabilities:
            self.result.probabilities = np.concatenate(self.mem_probs, axis=1)
        return self.result
