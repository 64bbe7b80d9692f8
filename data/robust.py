"""Unreadable samples: skip, record, go on — and stop past a budget.

A long run must not die on one corrupt file deep in SEN12MS. :class:`RobustDataset` wraps a
dataset (a :class:`~data.DFCDataset`, or a wrapper of one such as ``training.features.FixedCrops``):

* a sample that cannot be read (missing, corrupt or truncated file, wrong band count, a crop of
  the wrong size that would break batching) is caught *in the DataLoader worker* and described
  as a :class:`BadSample` (the file, a one-line reason, the item, the observation);
* for training (``substitute=True``) another sample, drawn from ``(seed, epoch, index, attempt)``,
  takes its place, so batch sizes and ``drop_last`` are unchanged and a resumed run draws the
  same substitutes; for evaluation (``substitute=False``) the sample is dropped, so a metric is
  over fewer samples, never over a duplicate;
* the records travel inside the sample (``sample["_skipped"]``); :func:`collate` gathers them
  into ``batch["_skipped"]`` and drops evaluation samples that were skipped;
* the main process hands them to a :class:`BadSampleLog`: a warning once per file, a line per
  file in ``bad_samples.txt`` of the run folder, counts, and :class:`TooManyBadSamples` once more
  distinct samples than the budget (``--max_bad_samples``) were unreadable.

``--exclude_list`` files (``python -m data.verify --out``, or a run's ``bad_samples.txt``) name
files; :func:`read_exclude_list` turns them into observations the wrapper leaves out.
"""
from __future__ import annotations

import argparse
import copy
import math
import re
import sys
import time
from pathlib import Path
from typing import Iterable, List, NamedTuple, Optional, Sequence, Set, Tuple, Union

import numpy as np
from torch.utils.data import Dataset, default_collate
from tqdm.auto import tqdm

from .bands import Season, Sensor
from .errors import DatasetError

__all__ = ["BadSample", "RobustDataset", "BadSampleLog", "TooManyBadSamples", "collate", "explain",
           "SKIPPED_KEY", "RECORD_NAME", "ObservationKey", "patch_key", "read_exclude_list",
           "parse_budget", "resolve_budget", "is_empty"]

SKIPPED_KEY = "_skipped"
"""Sample / batch key of the :class:`BadSample` records (popped before a model sees the batch)."""
_DROPPED_KEY = "_dropped"
RECORD_NAME = "bad_samples.txt"
"""The record of a run's skipped files, in its run folder."""

ObservationKey = Tuple[str, int, int]
"""``(season folder, scene, patch)``: one observation (all its sensors' files)."""

_PATCH_NAME = re.compile(r"(ROIs\d{4}_[a-z]+)_(s1|s2|lc|dfc)_(\d+)_p(\d+)\.tiff?$", re.IGNORECASE)
_SEASONS = {s.value.lower(): s.value for s in Season}
#: sample keys whose shape the wrapper checks, with the sensor file they come from and the bands
_SHAPES = (("s1", Sensor.s1, 2), ("s2", Sensor.s2, 13), ("lc", Sensor.lc, 1), ("dfc", Sensor.dfc, 1))


class BadSample(NamedTuple):
    """One skipped item: which file, why, which item and observation."""

    file: str
    reason: str
    index: int
    key: Optional[ObservationKey]


class TooManyBadSamples(DatasetError):
    """More distinct samples were unreadable than ``--max_bad_samples`` allows."""


# ---------------------------------------------------------------------------- messages
def explain(exc: BaseException) -> str:
    """One line for ``exc``; rasterio's "See previous exception" replaced by GDAL's own cause."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if "previous exception" in message:
        cause, seen = exc, set()
        while (cause.__cause__ or cause.__context__) is not None and id(cause) not in seen:
            seen.add(id(cause))
            cause = cause.__cause__ or cause.__context__
        root = " ".join(str(cause).split())
        if cause is not exc and root:
            message = re.sub(r"Read failed\. See previous exception for details\.?", root, message)
            if root not in message:
                message = f"{message} ({root})"
    return message


def patch_key(path: Union[str, Path]) -> Optional[ObservationKey]:
    """The observation of a SEN12MS / DFC2020 patch file name, or None if it is not one."""
    match = _PATCH_NAME.search(Path(str(path)).name)
    if match is None or match.group(1).lower() not in _SEASONS:
        return None
    return _SEASONS[match.group(1).lower()], int(match.group(3)), int(match.group(4))


def read_exclude_list(path: Union[str, Path], flag: str = "--exclude_list") -> Set[ObservationKey]:
    """Observations named by a list of files (first tab-separated field; ``#`` comments).

    Accepts ``python -m data.verify --out`` lists and a run's ``bad_samples.txt``. A line that is
    not a patch file name is a :class:`DatasetError` naming the flag, the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{flag} {path}: no such file (write one with `python -m data.verify --root DIR "
                           f"--out {path}`)")
    keys: Set[ObservationKey] = set()
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_no, line in enumerate(handle, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            name = text.split("\t", 1)[0].strip()
            key = patch_key(name)
            if key is None:
                raise DatasetError(
                    f"{flag} {path}, line {line_no}: {name[:80]!r} is not a SEN12MS / DFC2020 patch file "
                    "(expected a path ending like ROIs1868_summer_s2_83_p650.tif, optionally followed by a "
                    "tab and a reason)")
            keys.add(key)
    return keys


# ------------------------------------------------------------------------------ budget
def parse_budget(text: str) -> Union[int, float]:
    """``--max_bad_samples``: a count (``25``, ``0`` = strict) or a fraction (``0.01``, ``1%``)."""
    raw = str(text).strip()
    try:
        if raw.endswith("%"):
            value: Union[int, float] = float(raw[:-1]) / 100
        elif re.fullmatch(r"[+]?\d+", raw):
            value = int(raw)
        else:
            value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a count (e.g. 25, 0 = stop at the first) or a fraction of the split (e.g. 0.01 or "
            f"1%), got {text!r}") from None
    if isinstance(value, float) and not (0 < value <= 1 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"a fraction must be in (0, 1] (or a whole count >= 0), got {text}")
    return value


def resolve_budget(value: Union[int, float, None], n: int, *, reproduce_original: bool = False,
                   flag: str = "--max_bad_samples") -> Tuple[int, str]:
    """``(budget, how it was set)`` for a split of ``n`` samples.

    Default: 10 samples or 0.1 % of the split, whichever is larger; ``--reproduce_original``
    without the flag: 0 (the original's DataLoader died on the first unreadable file).
    """
    if value is None and reproduce_original:
        return 0, f"{flag} 0 (--reproduce_original: the original stopped at the first unreadable file)"
    if value is None:
        budget = max(10, int(0.001 * n))
        return budget, f"{flag} {budget} (the default: 10 or 0.1 % of the {n} samples, whichever is larger)"
    if isinstance(value, float):
        budget = int(math.floor(value * n))
        return budget, f"{flag} {value:g} ({budget} of the {n} samples)"
    return int(value), f"{flag} {int(value)}" + (" (strict)" if int(value) == 0 else "")


# ----------------------------------------------------------------------------- dataset
def _base(dataset) -> Tuple[Optional[Dataset], int]:
    """The ``DFCDataset``-like dataset that names files, and the modulo of ``FixedCrops``-style wrappers."""
    if hasattr(dataset, "observation") and hasattr(dataset, "reader"):
        return dataset, 0
    inner, n = getattr(dataset, "dataset", None), getattr(dataset, "n", None)
    if inner is not None and hasattr(inner, "observation") and hasattr(inner, "reader") and n:
        return inner, int(n)
    return None, 0


class _BadShape(ValueError):
    def __init__(self, file: str, reason: str):
        super().__init__(reason)
        self.file = file


class RobustDataset(Dataset):
    """``dataset`` with unreadable samples skipped and recorded (see the module docstring).

    ``exclude``: observations left out (from :func:`read_exclude_list`); ``len`` shrinks.
    ``substitute``: replace a skipped sample by another (training) or drop it (evaluation);
    :meth:`view` gives the other policy over the same data. ``log``: the main process's
    :class:`BadSampleLog` (not sent to workers).
    """

    def __init__(self, dataset: Dataset, *, split: str = "train", substitute: bool = True, seed: int = 0,
                 exclude: Optional[Iterable[ObservationKey]] = None, max_attempts: int = 20):
        self.dataset = dataset
        self.split = split
        self.substitute = substitute
        self.seed = int(seed)
        self.max_attempts = max_attempts
        self.log: Optional[BadSampleLog] = None
        self._epoch = 0
        self._base, self._modulo = _base(dataset)
        self.excluded = 0
        self._kept: Optional[np.ndarray] = None
        exclude = set(exclude or ())
        if exclude:
            if self._base is None:
                raise DatasetError(f"--exclude_list needs a SEN12MS / DFC2020 dataset, not {type(dataset).__name__}")
            keep = [i for i in range(len(dataset)) if self.observation_key(i) not in exclude]
            self.excluded = len(dataset) - len(keep)
            self._kept = np.asarray(keep, dtype=np.int64)

    # ---------------------------------------------------------------- indexing
    def __len__(self) -> int:
        return len(self.dataset) if self._kept is None else len(self._kept)

    @property
    def observations(self) -> int:
        """Distinct observations behind the items (the split size the budget is a fraction of)."""
        tiles = getattr(self._base, "tiles_per_patch", 1) if self._base is not None else 1
        crops = len(self.dataset) // self._modulo if self._modulo else 1
        return max(1, len(self) // max(1, tiles * crops))

    @property
    def base(self) -> Optional[Dataset]:
        """The wrapped ``DFCDataset`` (the one that names files), if there is one."""
        return self._base

    @property
    def epoch_dependent(self) -> bool:
        """Whether the wrapped data changes with ``set_epoch`` (then workers are not kept)."""
        return hasattr(self.dataset, "set_epoch")

    def _inner(self, index: int) -> int:
        return int(index) if self._kept is None else int(self._kept[int(index)])

    def _base_index(self, inner: int) -> int:
        return inner % self._modulo if self._modulo else inner

    def observation_key(self, inner: int) -> Optional[ObservationKey]:
        """``(season folder, scene, patch)`` of the wrapped dataset's item ``inner``."""
        if self._base is None:
            return None
        season, scene, patch = self._base.observation(self._base_index(inner))
        return season.value, int(scene), int(patch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch = int(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def view(self, *, substitute: bool) -> "RobustDataset":
        """The same data (and log) with the other skip policy."""
        other = copy.copy(self)   # (copy goes through __getstate__, which leaves the log out)
        other.log, other.substitute = self.log, substitute
        return other

    def __getstate__(self) -> dict:  # workers get no log: only the main process records
        state = dict(self.__dict__)
        state["log"] = None
        return state

    # ---------------------------------------------------------------- reading
    def _files(self, inner: int) -> List[Tuple[Sensor, str]]:
        if self._base is None:
            return []
        season, scene, patch = self._base.observation(self._base_index(inner))
        return [(sensor, str(self._base.reader.path(season, scene, patch, sensor)))
                for _, sensor, _ in _SHAPES]

    def _check_shapes(self, sample: dict, inner: int) -> None:
        size = getattr(self._base, "image_px_size", None)
        if size is None or not isinstance(sample, dict):
            return
        files = dict(self._files(inner))
        for key, sensor, bands in _SHAPES:
            value = sample.get(key)
            if value is not None and tuple(value.shape) != (bands, size, size):
                raise _BadShape(files[sensor], f"{key} crop is {tuple(value.shape)}, expected {(bands, size, size)} "
                                               "(a patch of the wrong size or band count)")

    def _record(self, index: int, inner: int, exc: Exception) -> BadSample:
        message = explain(exc)
        file = getattr(exc, "file", None)
        if file is None:
            for _, candidate in self._files(inner):
                if candidate in message:
                    file = candidate
                    break
        reason = message
        if file is not None:
            reason = message.replace(f"{file}: ", "", 1) if message.startswith(f"{file}: ") else message
            if reason == message and "not found" in message and message.endswith(file):
                reason = "file not found"
        elif self._base is not None:
            season, scene, patch = self.observation_key(inner)
            file = f"{season} scene {scene} patch {patch}"
        else:
            file = f"item {inner}"
        return BadSample(str(file), reason, int(index), self.observation_key(inner))

    def _substitute(self, index: int, attempt: int) -> Optional[int]:
        n = len(self)
        if n < 2:
            return None
        draw = int(np.random.default_rng([self.seed, self._epoch, int(index), attempt]).integers(n - 1))
        return draw + 1 if draw >= int(index) else draw

    def __getitem__(self, index: int):
        records: List[BadSample] = []
        current: Optional[int] = int(index)
        for attempt in range(self.max_attempts):
            inner = self._inner(current)
            try:
                sample = self.dataset[inner]
                self._check_shapes(sample, inner)
            except (OSError, ValueError) as exc:   # DatasetError is a ValueError
                records.append(self._record(current, inner, exc))
                current = self._substitute(int(index), attempt) if self.substitute else None
                if current is None:
                    break
                continue
            if records:
                sample[SKIPPED_KEY] = records
            return sample
        return {SKIPPED_KEY: records, _DROPPED_KEY: True}


def collate(samples: Sequence[dict]) -> dict:
    """``default_collate`` of the samples that were read; their skip records in ``batch["_skipped"]``."""
    records: List[BadSample] = []
    kept = []
    for sample in samples:
        if isinstance(sample, dict):
            records.extend(sample.pop(SKIPPED_KEY, ()) or ())
            if sample.pop(_DROPPED_KEY, False):
                continue
        kept.append(sample)
    batch = default_collate(kept) if kept else {}
    if records:
        batch[SKIPPED_KEY] = records
    return batch


def is_empty(batch) -> bool:
    """True for a batch whose every sample was skipped (evaluation) — nothing to run."""
    return isinstance(batch, dict) and not any(k != SKIPPED_KEY for k in batch)


# ---------------------------------------------------------------------------- the log
class BadSampleLog:
    """The main process's record of one split: warnings, ``bad_samples.txt``, counts, budget.

    ``add(records)`` warns once per file (naming it), appends each new file with its reason,
    counts every skip and raises :class:`TooManyBadSamples` once more distinct observations
    than ``budget`` were unreadable. With ``resume`` the split's earlier lines are read back,
    so a resumed run keeps its record (observations now excluded no longer count).
    """

    def __init__(self, path: Union[str, Path], split: str, budget: int, budget_text: str, *,
                 resume: bool = False, exclude: Optional[Iterable[ObservationKey]] = None,
                 checkpoint: Optional[Union[str, Path]] = None, root: Optional[Union[str, Path]] = None):
        self.path = Path(path)
        self.split = split
        self.budget, self.budget_text = int(budget), budget_text
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.root = root
        self.files: Set[str] = set()
        self.keys: Set[object] = set()
        self.skipped = 0          # skip events (a file read again next epoch counts again)
        if resume and self.path.is_file():
            excluded = set(exclude or ())
            for file, split_name in self._lines():
                self.files.add(file)
                key = patch_key(file) or file
                if split_name == split and key not in excluded:
                    self.keys.add(key)

    def _lines(self) -> List[Tuple[str, str]]:
        out = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.strip() and not line.startswith("#"):
                parts = line.split("\t")
                out.append((parts[0], parts[1] if len(parts) > 1 else ""))
        return out

    @property
    def bad(self) -> int:
        """Distinct unreadable observations of this split so far (what the budget counts)."""
        return len(self.keys)

    def add(self, records: Iterable[BadSample], epoch: Optional[int] = None) -> None:
        for record in records:
            self.skipped += 1
            if record.file not in self.files:
                self.files.add(record.file)
                self._write(record, epoch)
                tqdm.write(f"warning: skipped unreadable {self.split} sample {record.file}: {record.reason} "
                           f"(recorded in {self.path})", file=sys.stderr)
            self.keys.add(record.key or record.file)
            if self.bad > self.budget:
                raise TooManyBadSamples(self._stop_message(record))

    def _write(self, record: BadSample, epoch: Optional[int]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        with open(self.path, "a", encoding="utf-8") as handle:
            if new:
                handle.write("# unreadable samples this run skipped: file<TAB>split<TAB>epoch<TAB>reason "
                             "(--exclude_list accepts this file)\n")
            when = "-" if epoch is None else f"epoch {epoch}"
            handle.write(f"{record.file}\t{self.split}\t{when}\t{record.reason}\t"
                         f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")

    def _stop_message(self, last: BadSample) -> str:
        if self.checkpoint is not None and self.checkpoint.is_file():
            kept, again = f"the last good checkpoint {self.checkpoint} is kept", "continue with --resume auto"
        else:
            kept, again = "no checkpoint had been written yet", "start again with --overwrite"
        verify = f"python -m data.verify --root {self.root} --out bad.txt" if self.root else "python -m data.verify"
        return (f"{self.bad} unreadable {self.split} samples exceed {self.budget_text}; the last: {last.file}: "
                f"{last.reason}; every one is listed in {self.path}; {kept}. Check the whole dataset with "
                f"`{verify}`, then {again} --exclude_list bad.txt (or raise --max_bad_samples)")
