"""SEN12MS / DFC2020 data layer: reader, dataset, labels, transforms, plots, sample data."""

from .bands import DFC2020_SEASONS, SEN12MS_SEASONS, SENSORS, Season, Sensor
from .dataset import MODES, DFCDataset
from .errors import DatasetError, DatasetNotFoundError
from .labels import (
    DFC_CLASSES,
    DFC_COLORS,
    IGBP_TO_DFC,
    IGNORE_INDEX,
    NUM_CLASSES,
    dfc10_to_dfc8,
    igbp_to_dfc8,
    multilabel_one_hot,
    single_label,
)
from .reader import PatchGeo, SEN12MSReader
from .transforms import normalize_s1, normalize_s2, preprocess_s1, preprocess_s2

__all__ = [
    "DFCDataset", "MODES", "SEN12MSReader", "PatchGeo", "Season", "Sensor", "SENSORS",
    "SEN12MS_SEASONS", "DFC2020_SEASONS", "DatasetError", "DatasetNotFoundError",
    "DFC_CLASSES", "DFC_COLORS", "IGBP_TO_DFC", "IGNORE_INDEX", "NUM_CLASSES",
    "igbp_to_dfc8", "dfc10_to_dfc8", "single_label", "multilabel_one_hot",
    "preprocess_s1", "preprocess_s2", "normalize_s1", "normalize_s2", "SentinelNormalize",
]


def __getattr__(name: str):
    if name == "SentinelNormalize":  # built on first use (torchvision's v2 import takes seconds)
        from . import transforms

        return transforms.SentinelNormalize
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
