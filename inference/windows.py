"""Sliding windows: their placement, the stride cells of classification maps, blend weights.

Windows of ``window`` px (224 by default, the training crop size) are placed with stride
``round(window * (1 - overlap))``; along each axis the last window is shifted inward so
that it ends at the scene border (no padding needed), and a scene axis shorter than one
window gets a single window whose missing part is filled by symmetric (mirror) padding of
the raw values; padded pixels are never written. Every window is normalised on its own
with ``data.transforms.preprocess_s1`` / ``preprocess_s2`` -- clipping and division of each
band by its own maximum within the window, exactly as the training crops were normalised.

*Segmentation* models (output ``(B, C, h, w)``): each window's softmax probabilities (or its
raw logits with ``blend="logits"``) are multiplied by a separable weight window
``w(i) w(j)`` with ``w(i) = eps + (1 - eps) sin^2(pi (i + 0.5) / window)`` (a Hann window
that never reaches 0; ``eps = 1e-3``) and accumulated together with the weights; the result
is the weighted mean, so predictions fade smoothly from one window to the next (no seams)
and pixels near the scene border, covered by a single window, get that window's value.
An output smaller than the window is upsampled bilinearly to it first.

*Classification* models (output ``(B, C)``): each window's label is painted over its
*stride cell*: the pixels closer (along each axis) to this window's centre than to the
centre of any neighbouring window. Cells tile the scene without gaps or overlaps and each
lies inside its window, so the map is a mosaic of about ``stride x stride`` blocks (larger
at the edges). The probability output holds the window's class probabilities over its cell.
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np

__all__ = ["window_stride", "window_starts", "cell_bounds", "blend_weights", "pad_to"]


def window_stride(window: int, overlap: float) -> int:
    """Stride of windows of ``window`` px overlapping by the fraction ``overlap`` (0 <= overlap < 1)."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    return max(1, int(round(window * (1.0 - overlap))))


def window_starts(size: int, window: int, stride: int) -> List[int]:
    """Start offsets along one axis: ``0, stride, 2 stride, ...``, the last one shifted inward
    to end exactly at ``size``; a single ``0`` when ``size <= window``."""
    if size <= window:
        return [0]
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def cell_bounds(starts: Sequence[int], window: int, size: int) -> np.ndarray:
    """Boundaries of the stride cells of windows along one axis (len(starts) + 1 values).

    Cell ``j`` = ``[b[j], b[j+1])`` holds the pixels nearest to window ``j``'s centre; the
    midpoint between two centres is ``(s[j-1] + s[j] + window) // 2``. Cells tile ``[0, size)``
    and each lies inside its window.
    """
    s = np.asarray(starts, dtype=np.int64)
    b = np.empty(len(s) + 1, np.int64)
    b[0], b[-1] = 0, size
    b[1:-1] = (s[:-1] + s[1:] + window) // 2
    return b


def blend_weights(window: int, eps: float = 1e-3) -> np.ndarray:
    """Separable ``(window, window)`` Hann-like weights, ``eps`` at the border, 1 in the centre."""
    i = np.arange(window, dtype=np.float64)
    w = eps + (1.0 - eps) * np.sin(np.pi * (i + 0.5) / window) ** 2
    return np.outer(w, w).astype(np.float32)


def pad_to(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    """``(C, h', w')`` -> ``(C, h, w)`` by symmetric (mirror) padding at the bottom and right."""
    ph, pw = h - arr.shape[1], w - arr.shape[2]
    if ph == 0 and pw == 0:
        return arr
    return np.pad(arr, ((0, 0), (0, ph), (0, pw)), mode="symmetric")

