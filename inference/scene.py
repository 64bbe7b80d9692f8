"""Whole-scene prediction: a model over a scene of any size with sliding windows.

:func:`predict_scene` reads the inputs (:mod:`inference.sources`) one row of windows at a
time, runs the model on the windows (:mod:`inference.windows`: placement, per-window
normalisation, blending), and streams the finished rows of the label map (and optionally the
class probabilities) to tiled GeoTIFFs on the S2 grid (:class:`inference.writer.TiledWriter`).
It is a few plain functions sharing one :class:`_Prediction` state object.

No-data: pixels where all S2 bands are 0 (or any S2 band is NaN), and, when S1 is given,
pixels where S1 is NaN (including outside the S1 footprint), are written as 255 (label) and
NaN (probabilities); they still take part in inference of their windows, as they would in
training crops.

Memory
------
The scene is processed one *row of windows* at a time. For the current row the raw input
strip (``window`` rows x full width, 13 S2 bands in their file dtype + 2 S1 bands) is read
once, windows are cut from it and sent through the model ``batch_size`` at a time, and their
weighted outputs are added into a strip accumulator of ``window`` rows x full width (``C``
float32 class planes, a weight plane, a validity mask). Rows above the start of the next
window row can receive no more contributions; they are finalised (arg-max, mask; normalised
only for a probability output), handed to the writers, and the accumulator shifts up by the
stride. Writers buffer finished rows until a whole row of 256 px GeoTIFF tiles is complete
and write it. Peak memory therefore scales with the scene *width*, never its height::

    window x W x (2 x 13 + 4 x 2 + 4 x (C + 1))  bytes   input strip (uint16 S2) + accumulator
  + stride x W x 4 x C                              bytes   accumulator shift
  + batch_size x window² x 4 x (15 + 2 C)           bytes   one model batch (+ the model itself)
  [ + (256 + window) x W x 4 x C + stride x W x 4 x C  with a probability output ]

For a 10,980 px wide Sentinel-2 tile (C = 8, window 224, batch 16) the numpy buffers peak
at about 0.26 GB (measured with tracemalloc), 0.53 GB with ``--probabilities`` -- versus
3.9 GB for the float32 class stack of the whole scene. GDAL adds its block cache
(``GDAL_CACHEMAX``). The preview is drawn from a decimated read of the written map, so it is
bounded as well.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from data.transforms import preprocess_s1 as default_preprocess_s1
from data.transforms import preprocess_s2 as default_preprocess_s2
from inference.outputs import OutputOptions, SceneOutputs, SceneResult
from inference.sources import Grid
from inference.windows import blend_weights, cell_bounds, pad_to, window_starts, window_stride
from utils import cli, hardware

__all__ = ["predict_scene", "SceneResult", "WindowOptions", "OutputOptions"]


@dataclass
class WindowOptions:
    """How :func:`predict_scene` runs the model over the scene (its sliding-window keywords).

    ``window``, ``overlap``, ``batch_size``, ``device``: the sliding windows. ``blend``:
    ``"probabilities"`` (weighted mean of softmax outputs) or ``"logits"`` (weighted mean of logits,
    softmax afterwards). ``precision``: ``"fp32"`` or ``"bf16"`` (the forward pass under
    ``torch.autocast`` in bfloat16; :func:`utils.hardware.resolve_precision` picks it for
    ``--precision auto``; outputs are blended in float32 either way). ``preprocess_s1`` /
    ``preprocess_s2``: per-window normalisation, default ``data.transforms.preprocess_s1`` /
    ``preprocess_s2``. ``s1_zeros_if_missing``: without ``s1`` the model gets an all-zero S1
    tensor (S2-only models). ``progress``: a bar on a terminal.
    """

    window: int = 224
    overlap: float = 0.5
    batch_size: int = 8
    device: object = "cpu"
    blend: str = "probabilities"
    precision: str = "fp32"
    preprocess_s1: Optional[Callable] = None
    preprocess_s2: Optional[Callable] = None
    s1_zeros_if_missing: bool = True
    progress: bool = True

    def __post_init__(self):
        if self.blend not in ("probabilities", "logits"):
            raise ValueError(f"blend must be 'probabilities' or 'logits', got {self.blend!r}")
        if self.window < 1 or self.batch_size < 1:
            raise ValueError("window and batch_size must be positive")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")


def split_settings(settings: Dict[str, object]) -> tuple:
    """``predict_scene``'s keywords as ``(WindowOptions, OutputOptions)``; an unknown keyword is a TypeError."""
    window_keys = {f.name for f in fields(WindowOptions)}
    output_keys = {f.name for f in fields(OutputOptions)}
    unknown = sorted(set(settings) - window_keys - output_keys)
    if unknown:
        raise TypeError(f"predict_scene() got unexpected keyword argument(s) {unknown}; "
                        f"known: {sorted(window_keys | output_keys)}")
    return (WindowOptions(**{k: v for k, v in settings.items() if k in window_keys}),
            OutputOptions(**{k: v for k, v in settings.items() if k in output_keys}))


def predict_scene(model, s2, s1=None, *, cloud_mask=None, timings: Optional[Dict[str, float]] = None,
                  **settings) -> SceneResult:
    """Predict a land-cover map of a whole scene with sliding windows (see module docstring).

    Args:
        model: ``nn.Module``; ``forward({"s1": (B,2,h,w), "s2": (B,13,h,w)})`` returns
            ``(B, C, h', w')`` segmentation logits or ``(B, C)`` classification logits.
        s2: Sentinel-2 source (:func:`inference.products.open_s2`,
            :class:`inference.sources.ArraySource`); its grid is the output grid.
        s1: optional Sentinel-1 source on the same grid (:func:`inference.sentinel1.open_s1`).
        cloud_mask: optional source on the S2 grid whose ``read(row_off, col_off, h, w)`` returns
            a ``(h, w)`` bool array, True = cloud. Flagged pixels take part in inference (as in
            training crops) but are written as 255 / no data and counted separately
            (``result.cloud_pixels``, ``cloud_area_m2``).
        timings: optional dict; seconds spent in each phase are added to its keys ``read`` (decoding
            and resampling the inputs), ``normalise`` (per-window normalisation, padding, batching),
            ``inference`` (the forward pass), ``blend`` (softmax, weighting, accumulation) and
            ``write`` (finished rows to the outputs). On CUDA it synchronises after every batch.
        **settings: the keywords of :class:`WindowOptions` (``window=224, overlap=0.5,
            batch_size=8, device="cpu", blend="probabilities", precision="fp32", preprocess_s1,
            preprocess_s2, s1_zeros_if_missing=True, progress=True``) and of
            :class:`inference.outputs.OutputOptions` (``out_path, probabilities_path,
            probabilities_dtype="float32", class_names, colors, tags, keep_in_memory,
            return_probabilities=False``).
    """
    opts, output_options = split_settings(settings)
    window, batch_size, progress = opts.window, opts.batch_size, opts.progress
    grid = s2.grid
    if s1 is not None and not s1.grid.same_as(grid):
        raise ValueError(f"Sentinel-1 source {getattr(s1, 'name', s1)} is not on the Sentinel-2 grid "
                         "(open it with open_s1(path, s2.grid))")
    st = _Prediction(
        model=model, device=torch.device(opts.device), grid=grid, window=window,
        stride=window_stride(window, opts.overlap), batch_size=batch_size, blend=opts.blend,
        preprocess_s1=opts.preprocess_s1 or default_preprocess_s1,
        preprocess_s2=opts.preprocess_s2 or default_preprocess_s2,
        s1_zeros_if_missing=opts.s1_zeros_if_missing, precision=opts.precision, timings=timings,
        output_options=output_options, cloud_masked=cloud_mask is not None)
    H = grid.height
    rows, cols = st.rows, st.cols
    model.eval()
    bar = cli.progress(total=st.n_windows, unit="win", desc="windows", enabled=progress)  # a terminal only
    try:
        with torch.inference_mode():
            for ri, r0 in enumerate(rows):
                with _timed(st, "read"):
                    s2_strip, s1_strip, strip_valid = _read_strip(st, s2, s1, r0)
                for b in range(0, len(cols), batch_size):
                    _run_batch(st, ri, r0, list(range(b, min(b + batch_size, len(cols)))), s2_strip, s1_strip)
                    bar.update(min(batch_size, len(cols) - b))
                st.valid[r0 - st.top:r0 - st.top + st.wh] = strip_valid
                if cloud_mask is not None:
                    with _timed(st, "read"):
                        _add_cloud_flags(st, cloud_mask, r0)
                with _timed(st, "write"):
                    _finalize(st, rows[ri + 1] if ri + 1 < len(rows) else H)
    finally:
        bar.close()
        if st.outputs is not None:
            with _timed(st, "write"):
                st.outputs.close()
    return st.outputs.finish(st.n_windows)


@contextmanager
def _timed(st: "_Prediction", phase: str):
    """Add the seconds of the block to ``st.timings[phase]`` (nothing when no timings were asked for)."""
    if st.timings is None:
        yield
        return
    t0 = time.perf_counter()
    try:
        yield
    finally:
        if phase == "inference" and st.device.type == "cuda":
            torch.cuda.synchronize(st.device)
        st.timings[phase] = st.timings.get(phase, 0.0) + time.perf_counter() - t0


@dataclass(eq=False)
class _Prediction:
    """Settings and running state of one :func:`predict_scene` call.

    The strip accumulator (``acc``: class planes, ``wsum``: weights, ``valid``, ``cloudy``) holds
    ``wh`` rows x full width; its row 0 is scene row ``top``. It is allocated by the first batch,
    once the model's number of outputs is known.
    """

    model: torch.nn.Module
    device: torch.device
    grid: Grid
    window: int
    stride: int
    batch_size: int
    blend: str
    preprocess_s1: Callable
    preprocess_s2: Callable
    s1_zeros_if_missing: bool
    output_options: OutputOptions
    cloud_masked: bool = False
    precision: str = "fp32"                  # "fp32" or "bf16" (autocast)
    timings: Optional[Dict[str, float]] = None
    # running state
    outputs: Optional[SceneOutputs] = None   # opened by the first batch (mode and classes known)
    top: int = 0
    acc: Optional[np.ndarray] = None
    wsum: Optional[np.ndarray] = None
    valid: Optional[np.ndarray] = None
    cloudy: Optional[np.ndarray] = None

    def __post_init__(self):
        H, W = self.grid.height, self.grid.width
        self.rows = window_starts(H, self.window, self.stride)
        self.cols = window_starts(W, self.window, self.stride)
        self.row_cells = cell_bounds(self.rows, self.window, H)
        self.col_cells = cell_bounds(self.cols, self.window, W)
        self.wh, self.ww = min(self.window, H), min(self.window, W)   # valid part of every window
        self.seg_weights = blend_weights(self.window)[:self.wh, :self.ww]
        self.n_windows = len(self.rows) * len(self.cols)


def _read_strip(st: _Prediction, s2, s1, r0: int):
    """The raw S2 (and S1) strip of the window row at ``r0`` and its validity mask."""
    wh, W = st.wh, st.grid.width
    s2_strip = s2.read(r0, 0, wh, W)
    if s2_strip.shape[0] != 13:
        raise ValueError(f"Sentinel-2 source {getattr(s2, 'name', s2)}: expected 13 bands, got {s2_strip.shape[0]}")
    strip_valid = np.zeros((wh, W), bool)
    for band in s2_strip:                       # band by band: no (13, h, W) temporaries
        strip_valid |= band != 0
    if s2_strip.dtype.kind == "f":
        for band in s2_strip:
            bad = ~np.isfinite(band)
            if bad.any():
                strip_valid &= ~bad
                band[bad] = 0.0
    s1_strip = None
    if s1 is not None:
        s1_strip = s1.read(r0, 0, wh, W)
        if s1_strip.shape[0] != 2:
            raise ValueError(f"Sentinel-1 source {getattr(s1, 'name', s1)}: expected 2 bands, got {s1_strip.shape[0]}")
        if s1_strip.dtype.kind == "f":
            for band in s1_strip:
                strip_valid &= np.isfinite(band)
    return s2_strip, s1_strip, strip_valid


def _model_output(st: _Prediction, batch_cols: List[int], s2_strip, s1_strip) -> torch.Tensor:
    """Normalise the windows starting at ``batch_cols`` of the strips and run the model on them."""
    window, ww = st.window, st.ww
    with _timed(st, "normalise"):
        x2 = [pad_to(np.asarray(st.preprocess_s2(s2_strip[:, :, c0:c0 + ww]), np.float32), window, window)
              for c0 in batch_cols]
        x1 = [pad_to(np.asarray(st.preprocess_s1(s1_strip[:, :, c0:c0 + ww]), np.float32), window, window)
              for c0 in batch_cols] if s1_strip is not None else []
        t2 = torch.from_numpy(np.stack(x2)).to(st.device)
        if x1:
            t1 = torch.from_numpy(np.stack(x1)).to(st.device)
        elif st.s1_zeros_if_missing:
            t1 = torch.zeros((len(batch_cols), 2, window, window), device=st.device)
        else:
            t1 = None
    with _timed(st, "inference"), hardware.autocast(st.device, st.precision):
        out = st.model({"s2": t2} if t1 is None else {"s1": t1, "s2": t2})
    if isinstance(out, dict):
        raise TypeError("the model returned a dict (a pre-training model?); predict.py needs "
                        "a classification or segmentation model")
    return out.float()


def _run_batch(st: _Prediction, ri: int, r0: int, batch_idx: List[int], s2_strip, s1_strip):
    """Add the weighted outputs of the windows ``batch_idx`` of window row ``ri`` to the accumulator."""
    batch_cols = [st.cols[i] for i in batch_idx]
    out = _model_output(st, batch_cols, s2_strip, s1_strip)
    if st.outputs is None:
        with _timed(st, "write"):
            _start(st, out)
    with _timed(st, "blend"):
        _blend(st, ri, r0, batch_idx, batch_cols, out)


def _blend(st: _Prediction, ri: int, r0: int, batch_idx: List[int], batch_cols: List[int], out: torch.Tensor):
    """Weight the batch's outputs and add them to the strip accumulator."""
    if out.shape[1] != st.outputs.result.num_classes:
        raise ValueError("the model changed its number of outputs between batches")
    wh, ww, top = st.wh, st.ww, st.top
    if out.ndim == 4:
        if out.shape[-2:] != (st.window, st.window):
            out = F.interpolate(out, size=(st.window, st.window), mode="bilinear", align_corners=False)
        vals = out if st.blend == "logits" else torch.softmax(out, dim=1)
        vals = vals[:, :, :wh, :ww].cpu().numpy()
        for k, c0 in enumerate(batch_cols):
            st.acc[:, r0 - top:r0 - top + wh, c0:c0 + ww] += vals[k] * st.seg_weights
            st.wsum[r0 - top:r0 - top + wh, c0:c0 + ww] += st.seg_weights
    else:
        vals = out if st.blend == "logits" else torch.softmax(out, dim=1)
        vals = vals.cpu().numpy()
        ra, rb = st.row_cells[ri], st.row_cells[ri + 1]
        for k, ci in enumerate(batch_idx):
            ca, cb = st.col_cells[ci], st.col_cells[ci + 1]
            st.acc[:, ra - top:rb - top, ca:cb] += vals[k][:, None, None]
            st.wsum[ra - top:rb - top, ca:cb] += 1.0


def _start(st: _Prediction, out: torch.Tensor):
    """On the first batch: the prediction mode, the accumulator and the outputs."""
    if out.ndim == 4:
        mode = "segmentation"
    elif out.ndim == 2:
        mode = "classification"
    else:
        raise ValueError(f"model output of shape {tuple(out.shape)}: expected (B, C, H, W) or (B, C)")
    C = out.shape[1]
    if C > 255:
        raise ValueError(f"{C} classes do not fit a uint8 map with nodata 255")
    W = st.grid.width
    st.acc = np.zeros((C, st.wh, W), np.float32)
    st.wsum = np.zeros((st.wh, W), np.float32)
    st.valid = np.zeros((st.wh, W), bool)
    st.outputs = SceneOutputs(st.grid, mode, C, window=st.window, stride=st.stride, max_rows=st.wh,
                              blend=st.blend, options=st.output_options, cloud_masked=st.cloud_masked)


def _add_cloud_flags(st: _Prediction, cloud_mask, r0: int):
    if st.cloudy is None:
        st.cloudy = np.zeros_like(st.valid)
    flags = np.asarray(cloud_mask.read(r0, 0, st.wh, st.grid.width), bool)
    if flags.shape != (st.wh, st.grid.width):
        raise ValueError(f"cloud mask {getattr(cloud_mask, 'name', cloud_mask)}: read "
                         f"{flags.shape}, expected {(st.wh, st.grid.width)}")
    st.cloudy[r0 - st.top:r0 - st.top + st.wh] = flags


def _finalize(st: _Prediction, upto: int):
    """Hand scene rows ``[top, upto)`` to the outputs and shift the accumulator up."""
    n = upto - st.top
    if n <= 0:
        return
    st.outputs.add_rows(st.top, st.acc[:, :n], st.wsum[:n], st.valid[:n],
                        st.cloudy[:n] if st.cloudy is not None else None)
    for a in (st.acc, st.wsum, st.valid, st.cloudy):
        if a is not None:
            rest = a.shape[-2] - n
            a[..., :rest, :] = a[..., n:, :].copy()
            a[..., rest:, :] = 0
    st.top = upto
