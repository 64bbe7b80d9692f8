"""``DFCDataset``: the original SEN12MS / DFC2020 torch dataset, reimplemented."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from rasterio.windows import Window
from torch.utils.data import Dataset

from .bands import PATCH_SIZE, Season, Sensor, parse_season
from .classes import ClassScheme, scheme_of_root
from .errors import DatasetError, DatasetNotFoundError
from .labels import (
    IGBP_TO_DFC8,
    IGNORE_INDEX,
    NUM_CLASSES,
    igbp_to_dfc8,
    multilabel_one_hot,
    single_label,
)
from .reader import PatchGeo, SEN12MSReader
from .transforms import preprocess_s1, preprocess_s2

__all__ = ["DFCDataset", "MODES", "BUNDLED_SPLITS", "read_observations", "observation_files", "tile_offsets",
           "subset_indices", "SAMPLING_SEED"]

Sample = Dict[str, Any]

MODES: Tuple[str, ...] = ("sen12ms", "validation", "test", "dfc")
DFC2020_MODES: Tuple[str, ...] = ("validation", "test", "dfc")
_MODE_PARTS: Dict[str, Tuple[str, ...]] = {
    "sen12ms": ("sen12ms",),
    "validation": ("validation",),
    "test": ("test",),
    "dfc": ("validation", "test"),
}
BUNDLED_SPLITS = Path(__file__).resolve().parent / "splits"
"""Folder of the observation lists shipped with the code."""
SAMPLING_SEED = 42
"""The original's ``sampling_seed``: fixed, whatever the run's ``--seed``."""


def subset_indices(n: int, fraction: float, seed: int = SAMPLING_SEED) -> np.ndarray:
    """Sorted positions of the observations that ``used_data_fraction=fraction`` keeps.

    The original's pandas selection, reproduced with numpy alone:
    ``observations.sample(frac=fraction, random_state=seed).sort_index()`` draws
    ``np.random.RandomState(seed).choice(n, size=round(fraction * n), replace=False)``
    (Python's ``round``: halves go to the even number) and sorting restores list order.
    Checked against real pandas in ``tests/fixtures/original_subsets.json``. The result
    may be empty (e.g. ``fraction * n < 0.5``), as in the original.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    size = round(fraction * n)
    chosen = np.random.RandomState(seed).choice(n, size=size, replace=False)
    return np.sort(chosen.astype(np.int64, copy=False))


def observation_files(
    base_dir: Union[str, Path],
    mode: str,
    balanced_classes: bool = False,
    observations_csv: Optional[Union[str, Path]] = None,
) -> List[Path]:
    """The observation CSV(s) a dataset reads, by precedence.

    1. ``observations_csv`` if given; 2. ``<base_dir>/<mode>_observations[_balanced_classes].csv``;
    3. per part of the mode (``dfc`` = ``validation`` + ``test``) the file in ``base_dir``,
    else the bundled one in :data:`BUNDLED_SPLITS`.
    """
    if observations_csv is not None:
        path = Path(observations_csv)
        if not path.is_file():
            raise DatasetNotFoundError(f"observation CSV not found: {path}")
        return [path]
    base_dir = Path(base_dir)
    suffix = "_observations_balanced_classes.csv" if balanced_classes else "_observations.csv"
    local = base_dir / f"{mode}{suffix}"
    if local.is_file():
        return [local]
    files = []
    for part in _MODE_PARTS[mode]:
        candidates = [base_dir / f"{part}{suffix}", BUNDLED_SPLITS / f"{part}{suffix}"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise DatasetNotFoundError(
                f"observation CSV for mode {mode!r} not found: looked for "
                + " and ".join(str(c) for c in candidates)
            )
        files.append(found)
    return files


def read_observations(path: Union[str, Path]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse an observation CSV into ``(season_codes, scenes, patches)`` int64 arrays.

    Rows are ``Seasons.VALSET,0,649`` with optional extra columns (``dfc_label``,
    ``copy_nr`` of the balanced lists); a header row starting with ``Season`` is skipped.
    ``season_codes`` index ``list(Season)``.
    """
    path = Path(path)
    members = list(Season)
    cache: Dict[str, int] = {}
    seasons: List[int] = []
    scenes: List[int] = []
    patches: List[int] = []
    with open(path, newline="") as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip():
                continue
            if line_no == 1 and row[0].strip().lower() == "season":
                continue
            try:
                code = cache.get(row[0])
                if code is None:
                    code = cache[row[0]] = members.index(parse_season(row[0]))
                seasons.append(code)
                scenes.append(int(row[1]))
                patches.append(int(row[2]))
            except (ValueError, IndexError) as err:
                raise DatasetError(f"{path}, line {line_no}: bad observation row {row!r} ({err})") from None
    return (np.asarray(seasons, dtype=np.int64), np.asarray(scenes, dtype=np.int64),
            np.asarray(patches, dtype=np.int64))


def tile_offsets(size: int, patch_size: int = PATCH_SIZE) -> List[int]:
    """Offsets of ``ceil(patch_size / size)`` windows covering ``[0, patch_size)``.

    Windows are adjacent; the last is shifted in to end at the patch edge.
    """
    count = math.ceil(patch_size / size)
    return [min(i * size, patch_size - size) for i in range(count)]


class DFCDataset(Dataset):
    """SEN12MS (``mode="sen12ms"``) or DFC2020 (``validation``, ``test``, ``dfc``) samples.

    A sample is a dict of float32 tensors with the original's keys: ``s1`` (2,H,W) and
    ``s2`` (13,H,W) normalised to [0, 1] (see :mod:`data.transforms`), ``lc`` (1,H,W)
    MODIS IGBP mapped to classes 0-7 / 255, ``lc_label`` () and ``lc_multilabel_one_hot``
    (8,); DFC2020 modes add ``dfc``, ``dfc_label``, ``dfc_multilabel_one_hot`` (K,) from the
    high-resolution map, in the K classes of the dataset's class scheme (:attr:`scheme`): the
    ``classes`` argument (a :class:`~data.classes.ClassScheme` or a ``classes.json`` path), else
    ``<base_dir>/classes.json`` (written by ``prepare_dataset.py``), else
    :data:`~data.classes.DFC8`, the paper's 8 classes (DFC codes 1-10, savanna and snow/ice
    ignored). The ``lc`` layer always has the 8 DFC classes. Plus ``s1_nan_pixels`` (int:
    NaN values in the S1 crop, summed over both bands, replaced by -25 dB before
    normalisation) and ``index`` (int).
    Labels: most frequent value incl. 255; multi-label: classes with >= 10 % of all pixels.
    S1 NaN never reaches a model: the original skipped such batches in its training loop;
    here they are repaired and counted, so a loop may still skip ``s1_nan_pixels > 0``.

    Modes: ``sen12ms`` = the four SEN12MS seasons (no ``dfc``); ``validation`` / ``test`` =
    the DFC2020 splits; ``dfc`` = all of DFC2020 (validation + test lists concatenated; the
    original's ``*_DFC`` season folders do not exist in the public release).

    Observation lists, by precedence: ``observations_csv`` > ``<base_dir>/<mode>_observations.csv``
    > bundled ``data/splits/`` (``_balanced_classes`` variants with ``balanced_classes``).
    ``used_data_fraction`` < 1 keeps the original's subset (:func:`subset_indices`: pandas'
    ``sample(frac=..., random_state=sampling_seed)``, the class attribute ``sampling_seed`` 42
    whatever ``seed`` is; a subclass may set another), in list order. With ``cover_all_parts``
    the original samples after expanding each patch into ``int(256**2 / size**2)`` parts: one per
    patch at 224 px, so the same subset; at smaller sizes it sampled parts, here whole patches are
    sampled, then tiled.

    Crops (``image_px_size`` < 256; all sensors of a sample share one rasterio window):

    ==================  ===============  ==============================================
    cover_all_parts     random_crop      crop
    ==================  ===============  ==============================================
    True                (must be falsy)  tiles: ceil(256/size)^2 windows per patch, each
                                         its own item (``len`` multiplies); adjacent,
                                         the last row/column shifted in to the edge
    False               True             random offset from a numpy Generator seeded by
                                         ``seed`` (re-seeded per DataLoader worker from
                                         ``seed`` and the worker's torch seed); after
                                         ``set_epoch(e)`` from ``(seed, e, index)`` alone
    False               False            deterministic centre crop
    ==================  ===============  ==============================================

    ``random_crop=None`` (default) means True in ``sen12ms`` mode and False in the
    DFC2020 modes, so validation and test crops are deterministic.
    """

    sampling_seed: int = SAMPLING_SEED   # the original's, for used_data_fraction (not the run's --seed)

    def __init__(
        self,
        base_dir: Union[str, Path],
        mode: str = "dfc",
        transforms: Optional[Callable[[Sample], Sample]] = None,
        clip_sample_values: bool = True,
        used_data_fraction: float = 1.0,
        image_px_size: int = 256,
        cover_all_parts: bool = False,
        balanced_classes: bool = False,
        seed: int = 42,
        observations_csv: Optional[Union[str, Path]] = None,
        random_crop: Optional[bool] = None,
        classes: Optional[Union[ClassScheme, str, Path]] = None,
    ) -> None:
        self.reader = SEN12MSReader(base_dir)
        self.base_dir = self.reader.root
        if classes is None:
            self.scheme = scheme_of_root(self.base_dir)
        else:
            self.scheme = classes if isinstance(classes, ClassScheme) else ClassScheme.load(classes)
        self._dfc_table = self.scheme.table_u16()
        if mode not in MODES:
            raise DatasetError(f"unknown mode {mode!r} for dataset at {self.base_dir}; "
                               f"expected one of {', '.join(MODES)}")
        if not 0.0 < used_data_fraction <= 1.0:
            raise ValueError(f"used_data_fraction must be in (0, 1], got {used_data_fraction}")
        if not 0 < int(image_px_size) <= PATCH_SIZE:
            raise ValueError(f"image_px_size must be in 1..{PATCH_SIZE}, got {image_px_size}")
        if random_crop and cover_all_parts:
            raise ValueError("random_crop and cover_all_parts exclude each other")
        self.mode = mode
        self.transforms = transforms
        self.clip_sample_values = clip_sample_values
        self.used_data_fraction = used_data_fraction
        self.image_px_size = int(image_px_size)
        self.cover_all_parts = cover_all_parts
        self.balanced_classes = balanced_classes
        self.seed = seed
        self.has_dfc = mode in DFC2020_MODES
        self.random_crop = (mode == "sen12ms") if random_crop is None else bool(random_crop)

        self.observation_files = observation_files(self.base_dir, mode, balanced_classes, observations_csv)
        parts = [read_observations(p) for p in self.observation_files]
        seasons, scenes, patches = (np.concatenate(cols) for cols in zip(*parts))
        if used_data_fraction < 1.0 and len(seasons):
            chosen = subset_indices(len(seasons), used_data_fraction, self.sampling_seed)
            if not len(chosen):
                raise DatasetError(
                    f"used_data_fraction={used_data_fraction} of {len(seasons)} {mode} observations "
                    f"keeps none (round({used_data_fraction * len(seasons):.3g}) = 0, the original's "
                    f"pandas rounding); use a larger fraction")
            seasons, scenes, patches = seasons[chosen], scenes[chosen], patches[chosen]
        self._seasons, self._scenes, self._patches = seasons, scenes, patches
        self._season_list = list(Season)
        for code in np.unique(seasons):
            self.reader.check_season(self._season_list[code])

        size = self.image_px_size
        if size == PATCH_SIZE:
            self._offsets: List[Optional[Tuple[int, int]]] = [None]
        elif cover_all_parts:
            steps = tile_offsets(size)
            self._offsets = [(row, col) for row in steps for col in steps]
        elif self.random_crop:
            self._offsets = [None]
        else:
            centre = (PATCH_SIZE - size) // 2
            self._offsets = [(centre, centre)]
        self._rng = np.random.default_rng(seed)
        self._rng_key: Optional[Tuple[int, int]] = None
        self._epoch: Optional[int] = None

    # ------------------------------------------------------------------ indexing
    def __len__(self) -> int:
        return len(self._seasons) * len(self._offsets)

    @property
    def classes(self) -> Tuple[str, ...]:
        """Names of the ``dfc`` target classes (label i = ``classes[i]``, 255 = ignored); the
        8 DFC classes unless the dataset has its own scheme (the ``lc`` targets always have 8)."""
        return self.scheme.names

    @property
    def num_classes(self) -> int:
        return self.scheme.num_classes

    @property
    def tiles_per_patch(self) -> int:
        """Items per observation (> 1 only with ``cover_all_parts``)."""
        return len(self._offsets)

    def observation(self, index: int) -> Tuple[Season, int, int]:
        """``(season, scene, patch)`` of item ``index``."""
        row = self._check_index(index) // len(self._offsets)
        return self._season_list[self._seasons[row]], int(self._scenes[row]), int(self._patches[row])

    def _check_index(self, index: int) -> int:
        n = len(self)
        index = int(index)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for dataset of length {n}")
        return index

    def _crop_rng(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        key = None if info is None else (info.id, info.seed)
        if key != self._rng_key:
            self._rng = np.random.default_rng(self.seed if info is None else [self.seed, info.seed])
            self._rng_key = key
        return self._rng

    def set_epoch(self, epoch: int) -> None:
        """Make random crops a function of ``(seed, epoch, index)`` alone.

        The training engine calls this every epoch, so the crops do not depend on worker
        processes or on how many samples were drawn before: a run resumed after a kill sees
        exactly the crops the uninterrupted run would have seen.
        """
        self._epoch = int(epoch)

    def window(self, index: int) -> Optional[Window]:
        """The rasterio window of item ``index`` (draws a new offset for random crops)."""
        index = self._check_index(index)
        size = self.image_px_size
        if size == PATCH_SIZE:
            return None
        offset = self._offsets[index % len(self._offsets)]
        if offset is None:
            rng = (self._crop_rng() if self._epoch is None
                   else np.random.default_rng([self.seed, self._epoch, index]))
            # offsets 0 .. 255 - size, as the original (np.random.randint(0, 256 - size))
            row, col = (int(v) for v in rng.integers(0, max(PATCH_SIZE - size, 1), size=2))
        else:
            row, col = offset
        return Window(col, row, size, size)

    def geo(self, index: int, window: Optional[Window] = None) -> PatchGeo:
        """CRS, transform and bounds of item ``index`` (of ``window`` if given, else the full patch)."""
        season, scene, patch = self.observation(index)
        _, geo = self.reader.read(season, scene, patch, Sensor.lc, bands=["IGBP"], window=window)
        return geo

    # ------------------------------------------------------------------ samples
    def __getitem__(self, index: int) -> Sample:
        index = self._check_index(index)
        season, scene, patch = self.observation(index)
        window = self.window(index)
        read = self.reader.read_array  # pixels only: no CRS parsing per file
        s1 = read(season, scene, patch, Sensor.s1, window=window)
        s2 = read(season, scene, patch, Sensor.s2, window=window)
        igbp = read(season, scene, patch, Sensor.lc, bands=["IGBP"], window=window)

        sample: Sample = {
            "s1": torch.from_numpy(preprocess_s1(s1, clip=self.clip_sample_values)),
            "s2": torch.from_numpy(preprocess_s2(s2, clip=self.clip_sample_values)),
        }
        sample.update(_label_entries("lc", _map_labels(igbp, _IGBP_TO_DFC8_U16, igbp_to_dfc8)))
        if self.has_dfc:
            dfc = read(season, scene, patch, Sensor.dfc, window=window)
            sample.update(_label_entries("dfc", _map_labels(dfc, self._dfc_table, self.scheme.to_indices),
                                         self.scheme.num_classes))
        sample["s1_nan_pixels"] = int(np.isnan(s1).sum())
        sample["index"] = index
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def plot(self, index_or_sample: Union[int, Sample], **kwargs: Any):
        """Figure of a sample (see :func:`data.plot.plot_sample`)."""
        from .plot import plot_sample

        kwargs.setdefault("classes", self.scheme)
        if isinstance(index_or_sample, dict):
            return plot_sample(index_or_sample, **kwargs)
        season, scene, patch = self.observation(index_or_sample)
        kwargs.setdefault("title", f"{season.value} scene {scene} patch {patch}")
        return plot_sample(self[index_or_sample], **kwargs)

    def __repr__(self) -> str:
        return (f"DFCDataset(base_dir={str(self.base_dir)!r}, mode={self.mode!r}, "
                f"observations={len(self._seasons)}, items={len(self)}, image_px_size={self.image_px_size})")


def _u16_table(small: np.ndarray) -> np.ndarray:
    """A 65536-entry uint8 table equal to ``small`` where defined and 255 elsewhere."""
    table = np.full(1 << 16, IGNORE_INDEX, dtype=np.uint8)
    table[:len(small)] = small
    return table


# uint16 files (lc, dfc): one table lookup instead of the general int64 path of data.labels;
# the dfc table is the scheme's (ClassScheme.table_u16: DFC8's equals dfc10_to_dfc8 on 0..65535)
_IGBP_TO_DFC8_U16 = _u16_table(IGBP_TO_DFC8)


def _map_labels(array: np.ndarray, table_u16: np.ndarray, general: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``general(array)`` (``igbp_to_dfc8`` / ``scheme.to_indices``); a single lookup for uint16 input."""
    if array.dtype == np.uint16:
        return table_u16[array]
    return general(array)


def _label_entries(key: str, label_map: np.ndarray, num_classes: int = NUM_CLASSES) -> Sample:
    """``key``, ``key_label`` and ``key_multilabel_one_hot`` for a ``num_classes`` (1,H,W) map.

    Same values as :func:`data.labels.single_label` / :func:`~data.labels.multilabel_one_hot`
    (checked against them in the tests), from one histogram of the uint8 map.
    """
    if label_map.dtype != np.uint8:
        return {
            key: torch.from_numpy(label_map.astype(np.float32)),
            f"{key}_label": torch.tensor(float(single_label(label_map)), dtype=torch.float32),
            f"{key}_multilabel_one_hot": torch.from_numpy(multilabel_one_hot(label_map, num_classes)),
        }
    counts = np.bincount(label_map.reshape(-1), minlength=IGNORE_INDEX + 1)
    size = max(label_map.size, 1)
    return {
        key: torch.from_numpy(label_map.astype(np.float32)),
        f"{key}_label": torch.tensor(float(np.argmax(counts)), dtype=torch.float32),
        f"{key}_multilabel_one_hot": torch.from_numpy((counts[:num_classes] / size >= 0.1).astype(np.float32)),
    }
