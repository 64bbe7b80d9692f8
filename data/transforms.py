"""Input normalisation of the original dataset, bit-exact and vectorised.

Per band the original divided the float32 tensor by
``torch.ones(H, W) * band.max().item() + 1e-5`` (float32 arithmetic); here
the per-band max is taken with one ``amax`` and broadcast, which rounds the same.
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
    return normalize_per_band(out)


def preprocess_s2(array: np.ndarray, clip: bool = True) -> np.ndarray:
    """Sentinel-2 L1C ``(C, H, W)`` (uint16, reflectance x 10000) -> float32 in [0, 1].

    With ``clip`` (default) values are clipped to [0, 10000] first; then each band is
    divided by its max + 1e-5.
    """
    out = np.asarray(array)
    if clip:
        low, high = S2_CLIP
        out = np.clip(out, low, high)
    return normalize_per_band(out.astype(np.float32))
