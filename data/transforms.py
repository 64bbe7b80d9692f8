"""Input normalisation of the original dataset, bit-exact and vectorised.

Per band the original divided the float32 tensor by
``torch.ones(H, W) * band.max().item() + 1e-5`` (float32 arithmetic); here
the per-band max is taken with one ``amax`` and broadcast, which rounds the same.

Speed (the dataset calls these per sample): one float32 output buffer, written in place
(convert + clip in one ufunc pass, divide in place); for uint16 S2 the per-band max is taken
on the integers (clip and float32 conversion are monotone and exact on 0..65535, so the
denominator is the same float32). ``np.clip`` with Python scalars on uint16 was ~10x slower.

The public face of the same normalisation, for users of an exported encoder:
``normalize_s1`` / ``normalize_s2`` take a numpy array or a torch tensor, one patch
``(C, H, W)`` or a batch ``(B, C, H, W)`` (numpy goes through ``preprocess_s1`` / ``preprocess_s2``
themselves; torch repeats their float32 steps), and ``SentinelNormalize(sensor)`` is the
torchvision-v2 transform (built on first use: importing torchvision's v2 costs seconds).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from .bands import SENSORS, Sensor

__all__ = ["preprocess_s1", "preprocess_s2", "normalize_per_band", "normalize_s1", "normalize_s2",
           "SentinelNormalize", "S1_CLIP", "S2_CLIP", "EPS"]  # noqa: F822 (SentinelNormalize: lazy)

S1_CLIP: Tuple[float, float] = SENSORS[Sensor.s1].clip_range  # (-25, 0) dB
S2_CLIP: Tuple[float, float] = SENSORS[Sensor.s2].clip_range  # (0, 10000)
EPS = np.float32(1e-5)


def normalize_per_band(array: np.ndarray) -> np.ndarray:
    """Divide each band of a float32 ``(C, H, W)`` array by its own max + 1e-5 (in float32)."""
    array = np.asarray(array, dtype=np.float32)
    denominator = array.max(axis=(-2, -1), keepdims=True) + EPS
    return array / denominator


def _normalize_in_place(out: np.ndarray, band_max: np.ndarray = None) -> np.ndarray:
    """:func:`normalize_per_band` on a float32 array this module owns (no new buffer)."""
    if band_max is None:
        band_max = out.max(axis=(-2, -1), keepdims=True)
    np.divide(out, band_max + EPS, out=out)
    return out


def preprocess_s1(array: np.ndarray, clip: bool = True) -> np.ndarray:
    """Sentinel-1 dB ``(C, H, W)`` -> float32 in [0, 1].

    NaN values are first replaced by the clip floor (-25 dB, i.e. 0 after the shift),
    also when ``clip`` is False. With ``clip`` (default): clip to [-25, 0], add 25,
    divide each band by its max + 1e-5. Without: no clip and no shift (the original's
    behaviour: the dB values are divided by their own, usually negative, max).
    """
    floor, ceil = S1_CLIP
    out = np.array(array, dtype=np.float32, copy=True)
    np.copyto(out, np.float32(floor), where=np.isnan(out))
    if clip:
        np.clip(out, np.float32(floor), np.float32(ceil), out=out)
        out -= np.float32(floor)
    return _normalize_in_place(out)


def preprocess_s2(array: np.ndarray, clip: bool = True) -> np.ndarray:
    """Sentinel-2 L1C ``(C, H, W)`` (uint16, reflectance x 10000) -> float32 in [0, 1].

    With ``clip`` (default) values are clipped to [0, 10000] first; then each band is
    divided by its max + 1e-5.
    """
    array = np.asarray(array)
    low, high = S2_CLIP
    if array.dtype == np.uint16 and array.ndim >= 2:
        # fast path (the S2 files are uint16): one pass to float32 with the upper clip
        # (the lower one, 0, is a no-op on unsigned), band max on the integers
        out = np.empty(array.shape, np.float32)
        band_max = array.max(axis=(-2, -1), keepdims=True) if array.size else None
        if clip:
            np.minimum(array, np.uint16(high), out=out, casting="unsafe")
            if band_max is not None:
                band_max = np.minimum(band_max, np.uint16(high))
        else:
            np.copyto(out, array, casting="unsafe")
        return _normalize_in_place(out, None if band_max is None else band_max.astype(np.float32))
    out = array
    if clip:
        out = np.clip(out, low, high)
    return normalize_per_band(out.astype(np.float32))


# ---------------------------------------------------------------------------------------------
# the public normalisation: numpy or torch, one patch (C, H, W) or a batch (B, C, H, W)

def _normalize_tensor(x: "torch.Tensor", sensor: str, clip: bool) -> "torch.Tensor":
    """:func:`preprocess_s1` / :func:`preprocess_s2` in torch ops (float32, same rounding)."""
    low, high = S1_CLIP if sensor == "s1" else S2_CLIP
    out = x.to(torch.float32, copy=True)
    if sensor == "s1":
        out.masked_fill_(torch.isnan(out), low)
    if clip:
        out.clamp_(low, high)
        if sensor == "s1":
            out -= low
    return out.div_(out.amax(dim=(-2, -1), keepdim=True) + torch.tensor(EPS, dtype=torch.float32))


def _normalize(x, sensor: str, clip: bool):
    if getattr(x, "ndim", None) not in (3, 4):
        raise ValueError(f"normalize_{sensor}: expected a (C, H, W) patch or a (B, C, H, W) batch, "
                         f"got shape {tuple(getattr(x, 'shape', ())) or type(x).__name__}")
    if isinstance(x, np.ndarray):
        return (preprocess_s1 if sensor == "s1" else preprocess_s2)(x, clip=clip)
    return _normalize_tensor(x, sensor, clip)


def normalize_s1(x, clip: bool = True):
    """Sentinel-1 backscatter in dB -> float32 in [0, 1], exactly as ``DFCDataset`` does.

    ``x``: numpy array or torch tensor, ``(2, H, W)`` or ``(B, 2, H, W)`` (VV, VH). NaN -> -25 dB;
    clip to [-25, 0] dB; add 25; divide each band of each patch by its own maximum + 1e-5.
    ``clip=False``: NaN repair and the division only (the dataset's ``clip_sample_values=False``).
    Returns the same kind (numpy array / tensor on the input's device).
    """
    return _normalize(x, "s1", clip)


def normalize_s2(x, clip: bool = True):
    """Sentinel-2 Level-1C DN (reflectance x 10000) -> float32 in [0, 1], exactly as ``DFCDataset``.

    ``x``: numpy array or torch tensor, ``(13, H, W)`` or ``(B, 13, H, W)`` (B01..B12 with B8A, B10).
    Clip to [0, 10000]; divide each band of each patch by its own maximum + 1e-5.
    Returns the same kind (numpy array / tensor on the input's device).
    """
    return _normalize(x, "s2", clip)


def _make_sentinel_normalize():
    """Build :class:`SentinelNormalize` (torchvision's v2 import takes seconds: only when asked for)."""
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import Transform

    class SentinelNormalize(Transform):
        """``normalize_s1`` / ``normalize_s2`` as a torchvision-v2 transform.

        On a tensor (or ``tv_tensors.Image``): the normalised tensor, same type. On a sample dict:
        a copy with ``sample[key]`` normalised (``key`` defaults to the sensor name, ``"s1"`` /
        ``"s2"``; TorchGeo samples use ``key="image"``), the other entries untouched.
        """

        def __init__(self, sensor: str, clip: bool = True, key: "str | None" = None) -> None:
            if sensor not in ("s1", "s2"):
                raise ValueError(f"SentinelNormalize: sensor must be 's1' or 's2', got {sensor!r}")
            super().__init__()
            self.sensor, self.clip, self.key = sensor, clip, key or sensor

        def _apply(self, x):
            out = _normalize(x, self.sensor, self.clip)
            return tv_tensors.wrap(out, like=x) if isinstance(x, tv_tensors.TVTensor) else out

        def forward(self, *inputs):
            sample = inputs[0] if len(inputs) == 1 else inputs
            if isinstance(sample, dict):
                if self.key not in sample:
                    raise KeyError(f"SentinelNormalize({self.sensor!r}): the sample has no {self.key!r} "
                                   f"key (keys: {sorted(sample)}); pass key=")
                return {**sample, self.key: self._apply(sample[self.key])}
            return self._apply(sample)

        def extra_repr(self) -> str:
            return f"sensor={self.sensor!r}, clip={self.clip}, key={self.key!r}"

    SentinelNormalize.__module__ = __name__
    SentinelNormalize.__qualname__ = "SentinelNormalize"  # picklable (DataLoader workers)
    return SentinelNormalize


def __getattr__(name: str):
    if name == "SentinelNormalize":
        cls = globals()["SentinelNormalize"] = _make_sentinel_normalize()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
