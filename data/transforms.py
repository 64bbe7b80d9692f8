"""Input normalisation of the original dataset, bit-exact and vectorised.

Per band the original divided the float32 tensor by
``torch.ones(H, W) * band.max().item() + 1e-5`` (float32 arithmetic); here
the per-band max is taken with one ``amax`` and broadcast, which rounds the same.

Speed (the dataset calls these per sample): one float32 output buffer, written in place
(convert + clip in one ufunc pass, divide in place); for uint16 S2 the per-band max is taken
on the integers (clip and float32 conversion are monotone and exact on 0..65535, so the
denominator is the same float32). ``np.clip`` with Python scalars on uint16 was ~10x slower.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from .bands import SENSORS, Sensor

__all__ = ["preprocess_s1", "preprocess_s2", "normalize_per_band", "S1_CLIP", "S2_CLIP", "EPS"]

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
