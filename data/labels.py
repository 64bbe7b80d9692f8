"""Land-cover label tables (IGBP, DFC2020) and vectorised label helpers.

Pipeline of the original: MODIS IGBP (1-17) -> DFC classes (1-10) via
:data:`IGBP_TO_DFC`; then DFC 3 (savanna), 8 (snow/ice) and 0 become
:data:`IGNORE_INDEX` and the rest is renumbered to the 8 classes 0-7 of
:data:`DFC_CLASSES`. All mappings are lookup tables applied with numpy indexing.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = [
    "IGNORE_INDEX",
    "NUM_CLASSES",
    "IGBP_CLASSES",
    "DFC10_CLASSES",
    "DFC_CLASSES",
    "DFC10_COLORS",
    "DFC_COLORS",
    "NO_DATA_COLOR",
    "IGBP_TO_DFC",
    "DFC10_TO_DFC8",
    "IGBP_TO_DFC8",
    "igbp_to_dfc8",
    "dfc10_to_dfc8",
    "single_label",
    "multilabel_one_hot",
    "colorize",
]

IGNORE_INDEX = 255
"""Label of invalid / savanna / snow pixels; ignored by the losses and metrics."""

IGBP_CLASSES: Tuple[str, ...] = (
    "Evergreen Needleleaf Forests", "Evergreen Broadleaf Forests", "Deciduous Needleleaf Forests",
    "Deciduous Broadleaf Forests", "Mixed Forests", "Closed Shrublands", "Open Shrublands",
    "Woody Savannas", "Savannas", "Grasslands", "Permanent Wetlands", "Croplands",
    "Urban and Built-up Lands", "Cropland/Natural Vegetation Mosaics", "Permanent Snow and Ice",
    "Barren", "Water Bodies",
)
"""IGBP class names, code ``i + 1`` at position ``i``."""

DFC10_CLASSES: Tuple[str, ...] = (
    "Forest", "Shrubland", "Savanna", "Grassland", "Wetlands",
    "Croplands", "Urban/Built-up", "Snow/Ice", "Barren", "Water",
)
"""DFC2020 classes as stored in the ``dfc`` files, code ``i + 1`` at position ``i``."""

DFC_CLASSES: Tuple[str, ...] = (
    "Forest", "Shrubland", "Grassland", "Wetlands", "Croplands", "Urban/Built-up", "Barren", "Water",
)
"""The 8 classes the models predict (0-7)."""

NUM_CLASSES = len(DFC_CLASSES)

DFC10_COLORS: Tuple[str, ...] = (
    "#009900", "#c6b044", "#fbff13", "#b6ff05", "#27ff87",
    "#c24f44", "#a5a5a5", "#69fff8", "#f9ffa4", "#1c0dff",
)
"""The DFC2020 palette for classes 1-10."""

DFC_COLORS: Tuple[str, ...] = tuple(c for i, c in enumerate(DFC10_COLORS) if i not in (2, 7))
"""Colours of the 8 classes of :data:`DFC_CLASSES`."""

NO_DATA_COLOR = "#000000"
"""Colour of :data:`IGNORE_INDEX` pixels."""

IGBP_TO_DFC = np.array([0, 1, 1, 1, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 6, 8, 9, 10], dtype=np.uint8)
"""DFC class (1-10, 0 = none) indexed by IGBP code (0-17)."""

DFC10_TO_DFC8 = np.array([255, 0, 1, 255, 2, 3, 4, 5, 255, 6, 7], dtype=np.uint8)
"""8-class label (or 255) indexed by DFC class (0-10)."""

IGBP_TO_DFC8 = DFC10_TO_DFC8[IGBP_TO_DFC]
"""8-class label (or 255) indexed by IGBP code (0-17)."""


def _lookup(table: np.ndarray, array: np.ndarray) -> np.ndarray:
    """``table[array]`` as uint8, with values outside the table mapped to 255."""
    a = np.asarray(array)
    if a.dtype.kind == "f":
        a = np.nan_to_num(a, nan=-1.0)
    a = a.astype(np.int64, copy=False)
    padded = np.append(table, np.uint8(IGNORE_INDEX))
    outside = (a < 0) | (a >= len(table))
    return padded[np.where(outside, len(table), a)]


def igbp_to_dfc8(array: np.ndarray) -> np.ndarray:
    """Map MODIS IGBP codes (any shape) to the 8 classes, 255 for invalid/savanna/snow."""
    return _lookup(IGBP_TO_DFC8, array)


def dfc10_to_dfc8(array: np.ndarray) -> np.ndarray:
    """Map DFC2020 classes 1-10 (any shape) to the 8 classes, 255 for 0/savanna/snow."""
    return _lookup(DFC10_TO_DFC8, array)


def _counts(label_map: np.ndarray) -> np.ndarray:
    a = np.asarray(label_map).astype(np.int64, copy=False).ravel()
    if a.size and (a.min() < 0 or a.max() > IGNORE_INDEX):
        raise ValueError(f"label values must lie in 0..{IGNORE_INDEX}, got {a.min()}..{a.max()}")
    return np.bincount(a, minlength=IGNORE_INDEX + 1)


def single_label(label_map: np.ndarray) -> int:
    """Most frequent value of ``label_map``, 255 included (the original's rule).

    Ties go to the smallest value (as ``np.unique`` + ``argmax``).
    """
    return int(np.argmax(_counts(label_map)))


def multilabel_one_hot(
    label_map: np.ndarray, num_classes: int = NUM_CLASSES, threshold: float = 0.1
) -> np.ndarray:
    """float32 ``(num_classes,)``: 1 for every class covering >= ``threshold`` of all pixels.

    The denominator is the whole map, 255 pixels included; 255 itself is never a class.
    """
    counts = _counts(label_map)[:num_classes]
    size = max(np.asarray(label_map).size, 1)
    return (counts / size >= threshold).astype(np.float32)


def colorize(label_map: np.ndarray, colors: Tuple[str, ...] = DFC_COLORS) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` image of an 8-class map; 255 and unknown values are black."""
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colors], dtype=np.uint8)
    return _lookup_rgb(rgb, label_map)


def _lookup_rgb(rgb: np.ndarray, label_map: np.ndarray) -> np.ndarray:
    a = np.asarray(label_map).astype(np.int64, copy=False)
    padded = np.vstack([rgb, np.zeros((1, 3), np.uint8)])
    outside = (a < 0) | (a >= len(rgb))
    return padded[np.where(outside, len(rgb), a)]
