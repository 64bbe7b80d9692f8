"""Check every file a SEN12MS / DFC2020 root's observation lists name, in parallel.

    python -m data.verify --root /data/sen12ms                  # headers of every listed file
    python -m data.verify --root /data/sen12ms --full           # and decode every pixel
    python -m data.verify --root /data/dfc2020 --out bad.txt    # the list --exclude_list accepts

The training scripts check only the first patch of each list up front (``data.validate``) and
skip an unreadable sample later (``data.robust``); this reads them all once. Per file:
present and not empty, readable header, band count, data type (S1 floating-point dB, the others
integers), 256 x 256 px, a CRS, and the strips its header points to inside the file (a
truncated download); ``--full`` decodes every pixel too and checks S1 is in dB, not linear.
Each bad file is printed with its reason; the exit code is 1 if there is any (2 for a usage
error). ``--out FILE`` writes them as ``path<TAB>reason`` lines, which ``--exclude_list`` of
``train_resnet_backbone.py``, ``train_d_swin_backbone.py`` and ``train_evaluation.py`` accepts.
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .bands import DFC2020_SEASONS, PATCH_SIZE, SEN12MS_SEASONS, SENSORS, Season, Sensor
from .errors import DatasetError

__all__ = ["verify", "VerifyResult", "check_file", "list_files", "default_modes", "main"]

MODE_CHOICES = ("auto", "sen12ms", "validation", "test", "dfc")
_INTEGER_KINDS = ("u", "i")


@dataclass
class VerifyResult:
    """What :func:`verify` found: the files checked and the bad ones ``(path, reason)``."""

    root: Path
    modes: List[str]
    observations: int = 0
    files: int = 0
    bad: List[Tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def files_per_s(self) -> float:
        return self.files / max(self.seconds, 1e-9)


# ------------------------------------------------------------------------------ what to check
def default_modes(root: Path) -> List[str]:
    """The splits whose season folders exist under ``root``."""
    modes = []
    if any((root / s.value).is_dir() for s in SEN12MS_SEASONS):
        modes.append("sen12ms")
    for mode, season in zip(("validation", "test"), DFC2020_SEASONS):
        if (root / season.value).is_dir():
            modes.append(mode)
    return modes


def list_files(root: Path, modes: Sequence[str]) -> Tuple[List[Tuple[str, str]], List[Tuple[str, str]], int]:
    """``(files, problems, observations)``: every ``(path, sensor)`` the lists of ``modes`` name
    (each once), season folders that are missing as ``(folder, reason)``, and the observation count."""
    from .dataset import DFC2020_MODES, observation_files, read_observations
    from .reader import SEN12MSReader

    reader = SEN12MSReader(root)
    members = list(Season)
    files: dict = {}
    problems: List[Tuple[str, str]] = []
    observations: set = set()
    for mode in modes:
        sensors = [Sensor.s1, Sensor.s2, Sensor.lc] + ([Sensor.dfc] if mode in DFC2020_MODES else [])
        for csv_path in observation_files(root, mode):
            seasons, scenes, patches = read_observations(csv_path)
            missing = {}
            for code, scene, patch in zip(seasons.tolist(), scenes.tolist(), patches.tolist()):
                season = members[code]
                if not (root / season.value).is_dir():
                    missing[season] = missing.get(season, 0) + 1
                    continue
                observations.add((season, scene, patch))
                for sensor in sensors:
                    files.setdefault(str(reader.path(season, scene, patch, sensor)), sensor.value)
            for season, count in missing.items():
                problems.append((str(root / season.value), f"season folder missing: {count} observations of "
                                                           f"{csv_path} not checked"))
    return sorted(files.items()), problems, len(observations)


# ------------------------------------------------------------------------------ one file
def _truncation(path: Path, size: int) -> Optional[str]:
    """Where the header's strips end beyond the end of the file (plain striped TIFFs only)."""
    from .reader import _parse_strips, _Unsupported

    fd = os.open(path, os.O_RDONLY)
    try:
        layout = _parse_strips(fd)
    except (_Unsupported, OSError, ValueError):
        return None   # not a layout read directly (tiled, predictor, ...): rasterio's checks stand
    finally:
        os.close(fd)
    end = int((layout.offsets + layout.byte_counts).max()) if len(layout.offsets) else 0
    if end > size:
        return f"truncated: its strips end at byte {end}, the file has {size} bytes"
    return None


def _header_problem(src, sensor: Sensor) -> Optional[str]:
    spec = SENSORS[sensor]
    if src.count != spec.count:
        return f"{src.count} band(s), expected {spec.count} for {sensor.value} ({', '.join(spec.bands)})"
    kinds = {np.dtype(d).kind for d in src.dtypes}
    if sensor is Sensor.s1 and kinds != {"f"}:
        return f"stored as {src.dtypes[0]}; expected float32 backscatter in dB"
    if sensor is not Sensor.s1 and not kinds <= set(_INTEGER_KINDS):
        return f"stored as {src.dtypes[0]}; expected {spec.dtype} ({spec.description})"
    if (src.height, src.width) != (PATCH_SIZE, PATCH_SIZE):
        return f"{src.width} x {src.height} px; SEN12MS / DFC2020 patches are {PATCH_SIZE} x {PATCH_SIZE}"
    if src.crs is None:
        return "no CRS (the file is not georeferenced)"
    return None


def check_file(path: str, sensor: str, full: bool = False) -> Optional[str]:
    """Why ``path`` (a ``sensor`` patch) is unusable, or None if it is fine."""
    import rasterio

    from .robust import explain
    from .validate import check_patch_array

    file, kind = Path(path), Sensor(sensor)
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot stat: {exc.strerror or exc}"
    if size == 0:
        return "empty file (0 bytes)"
    stage = "cannot open (corrupt header?)"
    try:
        with rasterio.open(file) as src:
            problem = _header_problem(src, kind)
            if problem is None and full:
                stage = "cannot decode (corrupt or truncated)"
                array = src.read()
                stage = ""
                check_patch_array(array, kind, file)   # S1 in dB, not linear
    except DatasetError as exc:
        problem = _without_name(str(exc), file)
    except Exception as exc:  # noqa: BLE001  (rasterio / GDAL errors of every kind: a bad file)
        problem = f"{stage}: {_without_name(explain(exc), file)}" if stage else _without_name(explain(exc), file)
    if problem is None and not full:
        problem = _truncation(file, size)
    return problem


def _without_name(message: str, file: Path) -> str:
    for prefix in (f"{file}: ", f"{file.name}: "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    return message.replace(f"{file}: ", "")


def _check(item: Tuple[str, str, bool]) -> Tuple[str, Optional[str]]:
    path, sensor, full = item
    return path, check_file(path, sensor, full)


def _quiet_worker() -> None:
    logging.getLogger("rasterio").setLevel(logging.CRITICAL)   # GDAL's own warnings about bad files


# ------------------------------------------------------------------------------ the run
def verify(root, modes: Optional[Sequence[str]] = None, *, full: bool = False, workers: Optional[int] = None,
           progress: bool = False, on_bad: Optional[Callable[[str, str], None]] = None) -> VerifyResult:
    """Check every file the observation lists of ``modes`` (default: those with season folders) name.

    ``workers`` processes (default: every core); ``on_bad(path, reason)`` is called as bad files
    are found. Raises :class:`DatasetError` for a root that is not a dataset.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"--root {root}: no such folder (expected a SEN12MS / DFC2020 root with season "
                           f"folders such as {Season.VALSET.value}/)")
    modes = list(modes or default_modes(root))
    if not modes:
        raise DatasetError(f"--root {root}: no season folder (ROIs1158_spring/, ..., ROIs0000_validation/, "
                           "ROIs0000_test/) found; is this a SEN12MS / DFC2020 root?")
    start = time.perf_counter()
    files, problems, observations = list_files(root, modes)
    result = VerifyResult(root, modes, observations=observations, files=len(files), bad=list(problems))
    for path, reason in problems:
        if on_bad:
            on_bad(path, reason)
    workers = max(1, workers or os.cpu_count() or 1)
    items = [(path, sensor, full) for path, sensor in files]
    from utils.cli import progress as progress_bar

    bar = progress_bar(total=len(items), unit="file", desc="verify", enabled=progress, leave=True)
    found: List[Tuple[str, str]] = []
    try:
        if workers == 1 or len(items) < 2 * workers:
            _quiet_worker()
            outcomes: Iterable = map(_check, items)
            _collect(outcomes, found, bar, on_bad)
        else:
            context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods()
                                                  else None)
            with context.Pool(workers, initializer=_quiet_worker) as pool:
                chunk = max(1, min(64, len(items) // (workers * 8)))
                _collect(pool.imap_unordered(_check, items, chunksize=chunk), found, bar, on_bad)
    finally:
        bar.close()
    result.bad += sorted(found)
    result.seconds = time.perf_counter() - start
    return result


def _collect(outcomes: Iterable, found: list, bar, on_bad) -> None:
    for path, reason in outcomes:
        bar.update(1)
        if reason is not None:
            found.append((path, reason))
            if on_bad:
                on_bad(path, reason)


def write_list(path: Path, result: VerifyResult, full: bool) -> None:
    """``path<TAB>reason`` lines (``--exclude_list`` reads the first field), a comment first."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"# python -m data.verify --root {result.root} --mode {' '.join(result.modes)}"
                     f"{' --full' if full else ''} ({time.strftime('%Y-%m-%d %H:%M')}): {len(result.bad)} bad of "
                     f"{result.files} files; --exclude_list accepts this file\n")
        for file, reason in result.bad:
            handle.write(f"{file}\t{reason}\n")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m data.verify", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="SEN12MS / DFC2020 root (season folders and, optionally, lists)")
    p.add_argument("--mode", nargs="+", default=["auto"], choices=MODE_CHOICES,
                   help="observation lists to check (the root's own, else the bundled data/splits/); auto: "
                        "every split whose season folders exist (default: auto)")
    p.add_argument("--full", action="store_true",
                   help="decode every pixel too (slower; finds corruption inside compressed data)")
    p.add_argument("--workers", "-j", type=int, default=os.cpu_count() or 1,
                   help=f"processes (default: every core, {os.cpu_count() or 1} here)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="write the bad files as path<TAB>reason lines (what --exclude_list accepts)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (there is none when stderr is not a terminal)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()

    def one_line(message: str):
        print(f"{parser.prog}: error: {message} (--help lists every flag)", file=sys.stderr)
        raise SystemExit(2)

    parser.error = one_line
    args = parser.parse_args(argv)
    if args.workers < 1:
        one_line(f"argument --workers: must be >= 1, got {args.workers}")
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not args.overwrite:
        one_line(f"--out {out} already exists; pass --overwrite to replace it")
    if out is not None and not out.parent.is_dir():
        one_line(f"--out {out}: the folder {out.parent} does not exist")
    modes = None if "auto" in args.mode else list(dict.fromkeys(args.mode))

    def report(path: str, reason: str) -> None:
        from tqdm.auto import tqdm

        tqdm.write(f"{path}\t{reason}")

    try:
        result = verify(args.root, modes, full=args.full, workers=args.workers,
                        progress=args.progress and sys.stderr.isatty(), on_bad=report)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    if out is not None:
        write_list(out, result, args.full)
    what = "decoded" if args.full else "header-checked"
    print(f"{result.files} files of {result.observations} observations ({', '.join(result.modes)}) {what} in "
          f"{result.seconds:.1f} s ({result.files_per_s:.0f} files/s, {args.workers} processes): "
          f"{len(result.bad)} bad" + (f"; list written to {out}" if out is not None else ""), file=sys.stderr)
    return 1 if result.bad else 0


if __name__ == "__main__":
    sys.exit(main())
