"""Up-front checks of a dataset root, before a run trains on it.

:func:`check_dataset` looks at what :class:`~data.DFCDataset` would read, cheaply: the root,
the observation lists (present, parseable, not empty), every season folder they name, and
the first patch of each list (every sensor's file: present, readable, band count, dtype,
256 x 256 px, and Sentinel-1 in dB rather than linear backscatter), and the root's
``classes.json`` (parseable; the first ``dfc`` patch holds only its values and 0). Errors are
:class:`~data.errors.DatasetError` (:class:`~data.errors.DatasetNotFoundError` for what is
missing) whose message names the flag, the file and what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

from .bands import PATCH_SIZE, SENSORS, Season, Sensor
from .errors import DatasetError, DatasetNotFoundError

__all__ = ["check_dataset", "check_patch_array", "check_label_values", "check_same_classes", "SAMPLE_HINT"]

SAMPLE_HINT = "`python -m data.sample --root sample_data` writes a small sample dataset"

_KINDS = {"f": "floating-point", "u": "unsigned integer", "i": "integer"}


def _season_folders(root: Path) -> str:
    found = [s.value for s in Season if (root / s.value).is_dir()]
    return ", ".join(found) if found else "none"


def check_patch_array(array: np.ndarray, sensor: Sensor, path: Union[str, Path]) -> None:
    """Raise :class:`DatasetError` if one sensor's patch has the wrong size, dtype or units."""
    spec = SENSORS[sensor]
    if array.ndim != 3 or array.shape[0] != spec.count:
        raise DatasetError(f"{path}: expected {spec.count} band(s) for {sensor.value} "
                           f"({', '.join(spec.bands)}), found {array.shape[0] if array.ndim == 3 else array.shape}")
    height, width = array.shape[1:]
    if (height, width) != (PATCH_SIZE, PATCH_SIZE):
        raise DatasetError(f"{path}: {width} x {height} px; SEN12MS / DFC2020 patches are "
                           f"{PATCH_SIZE} x {PATCH_SIZE} (re-cut or resample the patches)")
    kind = array.dtype.kind
    if sensor is Sensor.s1:
        if kind != "f":
            raise DatasetError(
                f"{path}: Sentinel-1 stored as {array.dtype} (linear or scaled backscatter?); expected "
                f"float32 backscatter in dB, which the dataset clips to [-25, 0] dB (anything else becomes "
                f"a constant): convert with 10 * log10(linear power)")
        finite = array[np.isfinite(array)]
        if finite.size and float(np.median(finite)) > 0.0:
            raise DatasetError(
                f"{path}: Sentinel-1 values look like linear backscatter, not dB (median "
                f"{float(np.median(finite)):.3g}; dB backscatter lies mostly between -25 and 0): "
                f"convert with 10 * log10(linear power)")
    elif kind not in ("u", "i"):
        raise DatasetError(f"{path}: {sensor.value} stored as {array.dtype}; expected {spec.dtype} "
                           f"({spec.description})")


def check_label_values(array: np.ndarray, scheme, path: Union[str, Path], scheme_path: Union[str, Path]) -> None:
    """Raise :class:`DatasetError` if a ``dfc`` patch holds values its root's ``classes.json``
    does not define (0 = no label is always allowed; DFC codes 3 and 8 for the DFC classes)."""
    allowed = set(int(v) for v in scheme.values) | {0} | ({3, 8} if scheme.is_dfc8 else set())
    found = np.unique(np.asarray(array))
    unknown = [int(v) for v in found if v == v and int(v) not in allowed]
    if unknown:
        listed = ", ".join(str(v) for v in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise DatasetError(f"{path}: label value(s) {listed} are not classes of {scheme_path} (values "
                           f"{', '.join(str(v) for v in scheme.values)}; 0 = no label): the labels and the "
                           "class file do not belong together")


def check_dataset(root: Optional[Union[str, Path]], mode: str, *, flag: str = "--train_dir",
                  mode_flag: str = "--train_mode", balanced_classes: bool = False,
                  observations_csv: Optional[Union[str, Path]] = None) -> Dict[Path, int]:
    """Check the dataset ``DFCDataset(root, mode, balanced_classes=...)`` would read.

    ``flag`` / ``mode_flag`` name the command-line flags in the messages. Returns the number
    of observations of each list read.
    """
    from .dataset import DFC2020_MODES, observation_files, read_observations
    from .reader import SEN12MSReader

    if root is None or str(root) == "":
        raise DatasetError(f"{flag} is required (the dataset root); {SAMPLE_HINT}")
    root = Path(root)
    if not root.exists():
        raise DatasetNotFoundError(
            f"{flag} {root}: no such folder (expected a SEN12MS / DFC2020 root holding season folders "
            f"such as {Season.VALSET.value}/); {SAMPLE_HINT}")
    if not root.is_dir():
        raise DatasetError(f"{flag} {root} is a file, not a dataset folder (expected a root holding "
                           f"season folders such as {Season.VALSET.value}/)")
    try:
        files = observation_files(root, mode, balanced_classes, observations_csv)
    except DatasetNotFoundError as err:
        raise DatasetNotFoundError(f"{flag} {root} ({mode_flag} {mode}): {err}") from None
    from .classes import CLASSES_FILE, scheme_of_root

    try:
        scheme = scheme_of_root(root)
    except DatasetError as err:
        raise DatasetError(f"{flag} {root}: {err}") from None
    own_scheme = (root / CLASSES_FILE).is_file()
    reader = SEN12MSReader(root)
    sensors = [Sensor.s1, Sensor.s2, Sensor.lc] + ([Sensor.dfc] if mode in DFC2020_MODES else [])
    counts: Dict[Path, int] = {}
    for csv_path in files:
        seasons, scenes, patches = read_observations(csv_path)  # malformed rows: DatasetError with the line
        counts[csv_path] = len(seasons)
        if not len(seasons):
            raise DatasetError(f"{csv_path} lists no observations (the list {mode_flag} {mode} reads); "
                               "expected rows like Seasons.VALSET,0,649")
        members = list(Season)
        for code in np.unique(seasons):
            season = members[code]
            if not (root / season.value).is_dir():
                hint = ""
                if mode == "sen12ms" and (root / Season.VALSET.value).is_dir():
                    hint = f"; this looks like a DFC2020 root: use {mode_flag} validation, test or dfc"
                elif mode in DFC2020_MODES and (root / Season.SPRING.value).is_dir():
                    hint = f"; this looks like a SEN12MS root: use {mode_flag} sen12ms"
                raise DatasetNotFoundError(
                    f"{flag} {root}: season folder {season.value}/ not found, needed by {csv_path} "
                    f"({mode_flag} {mode}); season folders there: {_season_folders(root)}{hint}")
        season, scene, patch = members[seasons[0]], int(scenes[0]), int(patches[0])
        for sensor in sensors:
            try:
                array, _ = reader.read(season, scene, patch, sensor)
            except DatasetError as err:
                raise type(err)(f"{err} (first observation of {csv_path})") from None
            check_patch_array(array, sensor, reader.path(season, scene, patch, sensor))
            if sensor is Sensor.dfc and own_scheme:
                check_label_values(array, scheme, reader.path(season, scene, patch, sensor), root / CLASSES_FILE)
    return counts


def check_same_classes(train_root: Union[str, Path], val_root: Optional[Union[str, Path]], *,
                       flag: str = "--train_dir", val_flag: str = "--val_dir"):
    """The class scheme both roots share (:func:`data.classes.scheme_of_root`); a one-line
    :class:`DatasetError` naming both files when they differ (names or label-file values)."""
    from .classes import scheme_of_root, scheme_origin

    scheme = scheme_of_root(train_root)
    if val_root is None or Path(val_root).resolve() == Path(train_root).resolve():
        return scheme
    other = scheme_of_root(val_root)
    if not scheme.same_classes(other):
        raise DatasetError(
            f"{flag} and {val_flag} have different classes: {scheme_origin(train_root)} has "
            f"{scheme.describe()}, {scheme_origin(val_root)} has {other.describe()}; train and evaluate "
            "on datasets with the same classes.json")
    return scheme
