"""The preparation run: open, plan the splits, then one pass of strips that writes the patches.

:func:`prepare` does everything ``prepare_dataset.py`` promises:

1. refuse an ``--out`` that holds other settings (unless ``--overwrite``) or a dataset it did not
   write, or that would overwrite an input; resume one of the same settings;
2. open every Sentinel-2 product with its offset, cloud mask, Sentinel-1 and labels (errors name
   the file before anything is written) and check every label code against the class mapping;
3. lay the patch grid, the spatial blocks and their splits (:mod:`preparation.splits`);
4. read each product one strip of patch rows at a time (rows shared by overlapping strips are
   read once; memory is bounded by a strip, not the scene), decide each patch (straddles splits,
   no data, clouds, labelled share), write its files and append its record;
5. write the observation lists, ``classes.json``, ``dataset.json`` and ``footprints.png``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from affine import Affine

from data.bands import PATCH_SIZE, SENSORS, Season, Sensor
from data.classes import CLASSES_FILE, ClassScheme, LabelMapping, label_mapping
from data.errors import DatasetError
from data.labels import IGNORE_INDEX
from data.layout import patch_path, write_patch
from preparation import records as rec
from preparation.labels import NO_LABEL, VECTOR_SUFFIXES, geojson_names, mapping_for_names, open_labels
from preparation.scenes import Scene, SceneOptions, open_scene
from preparation.splits import BlockGrid, assign_blocks, patch_origins, split_of
from utils import cli

__all__ = ["Settings", "prepare", "S1_PLACEHOLDER_DB", "FORMAT"]

FORMAT = "SEN12MS / DFC2020 layout written by prepare_dataset.py"
S1_PLACEHOLDER_DB = -25.0
"""Sentinel-1 value written when no ``--s1`` is given (the clip floor: 0 after normalisation)."""
_QUICKLOOK_PX = 1200


@dataclass
class Settings:
    """Everything that decides what ``prepare`` writes (``dataset.json`` keeps it; a re-run with
    other settings on the same folder is refused unless ``overwrite``)."""

    s2: List[str]
    out: str
    s1: Optional[List[str]] = None
    labels: Optional[str] = None
    classes: Optional[str] = None
    stride: int = PATCH_SIZE
    block_size: int = 1280
    split_fractions: Tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0
    min_labelled: float = 0.5
    max_cloud: float = 0.1
    max_nodata: float = 0.1
    s2_offset: Optional[float] = None
    allow_l2a: bool = False
    cloud_mask: str = "auto"
    s1_units: str = "db"
    resampling: str = "bilinear"
    label_resampling: str = "auto"
    label_property: str = "class"

    def record(self) -> dict:
        """JSON-ready settings with absolute input paths (what a re-run is compared with)."""
        out = asdict(self)
        out["s2"] = [str(Path(p).resolve()) for p in self.s2]
        out["s1"] = [str(Path(p).resolve()) for p in self.s1] if self.s1 else None
        out["labels"] = str(Path(self.labels).resolve()) if self.labels else None
        if self.classes and Path(self.classes).is_file():
            out["classes"] = str(Path(self.classes).resolve())
        out["split_fractions"] = list(self.split_fractions)
        out.pop("out")
        return out


@dataclass
class _Plan:
    """The products, the class mapping and, per product, the split of every patch position."""

    scenes: List[Scene]
    mapping: Optional[LabelMapping]
    blocks: BlockGrid
    assignment: Dict[Tuple[int, int], str]
    splits: Dict[Tuple[int, int, int], str] = field(default_factory=dict)   # (scene, row, col) -> split or ""


# ------------------------------------------------------------------------------------ the folder
def _artefacts(out: Path) -> List[Path]:
    """What a prepared dataset consists of (what --overwrite removes; nothing else is touched)."""
    found = [out / n for n in (rec.DATASET_FILE, rec.PATCHES_FILE, rec.FIGURE_FILE, CLASSES_FILE,
                               "sen12ms_observations.csv", "validation_observations.csv",
                               "validation_observations_balanced_classes.csv", "test_observations.csv",
                               ".quicklook")]
    found += [out / s.value for s in Season] + [out / rec.TEST_ROOT]
    return [p for p in found if p.exists()]


def _check_inputs_outside(out: Path, settings: Settings) -> None:
    """An input inside what --out writes would be overwritten: refuse."""
    owned = [out / s.value for s in Season] + [out / rec.TEST_ROOT] + [out / n for n in (
        rec.DATASET_FILE, rec.PATCHES_FILE, rec.FIGURE_FILE, CLASSES_FILE)]
    inputs = [("--s2", p) for p in settings.s2] + [("--s1", p) for p in settings.s1 or []]
    inputs += [("--labels", settings.labels)] if settings.labels else []
    for flag, path in inputs:
        real = Path(path).resolve()
        for place in owned:
            place = place.resolve()
            if real == place or place in real.parents:
                raise DatasetError(f"--out {out} would write over the {flag} input {path}; choose another --out "
                                   "(an input is never overwritten)")


def _differences(old: dict, new: dict) -> List[str]:
    return [f"{k}: {old.get(k)!r} before, {new.get(k)!r} now" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]


def check_out(out: Path, settings: Settings, overwrite: bool, log: Callable[[str], None]) -> bool:
    """Make ``out`` ready; returns True when an earlier run of the same settings is resumed."""
    _check_inputs_outside(out, settings)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out} is a file, not a folder")
    found = _artefacts(out) if out.is_dir() else []
    if not found:
        return False
    meta = out / rec.DATASET_FILE
    try:
        old = json.loads(meta.read_text()) if meta.is_file() else None
    except (OSError, json.JSONDecodeError):
        old = None
    if not old or old.get("format") != FORMAT:
        raise DatasetError(f"--out {out} already holds data that prepare_dataset.py did not write "
                           f"({', '.join(p.name for p in found[:4])}); choose another --out (it is never deleted, "
                           "not even with --overwrite)")
    diffs = _differences(old.get("settings", {}), settings.record())
    if not diffs:
        if overwrite:
            _remove(found, out, log)
            return False
        log(f"resuming the dataset in {out} ({old.get('status', 'unknown status')})")
        return True
    if not overwrite:
        raise DatasetError(f"--out {out} holds a dataset prepared with other settings ({'; '.join(diffs[:4])}); "
                           "pass --overwrite to replace it, or choose another --out")
    _remove(found, out, log)
    return False


def _remove(paths: Sequence[Path], out: Path, log: Callable[[str], None]) -> None:
    for p in paths:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    log(f"--overwrite: removed the dataset prepared earlier in {out}")


# ------------------------------------------------------------------------------------- planning
def _mapping(settings: Settings) -> Optional[LabelMapping]:
    if not settings.labels:
        return None
    if settings.classes:
        return label_mapping(settings.classes)
    if Path(settings.labels).suffix.lower() in VECTOR_SUFFIXES and Path(settings.labels).is_file():
        names = geojson_names(settings.labels, settings.label_property)
        if names:
            return mapping_for_names(names)
    raise DatasetError("--classes is required with --labels: a preset (worldcover, dfc) or a class file "
                       "mapping the label codes to class names")


def _open_scenes(settings: Settings, mapping: Optional[LabelMapping]) -> List[Scene]:
    options = SceneOptions(s2_offset=settings.s2_offset, allow_l2a=settings.allow_l2a,
                           cloud_mask=settings.cloud_mask, resampling=settings.resampling, s1=settings.s1,
                           s1_units=settings.s1_units)

    def labels_on(grid):
        return open_labels(settings.labels, grid, resampling=settings.label_resampling,
                           prop=settings.label_property, mapping=mapping)

    scenes: List[Scene] = []
    try:
        for i, path in enumerate(settings.s2):
            if len(settings.s2) > 1 and settings.cloud_mask not in ("auto", "none"):
                raise DatasetError("--cloud_mask FILE needs a single --s2 product (use auto or none)")
            scene = open_scene(i, path, options, labels_on if settings.labels else None)
            scenes.append(scene)
            g = scene.grid
            if g.width < PATCH_SIZE or g.height < PATCH_SIZE:
                raise DatasetError(f"--s2 {path}: {g.width} x {g.height} px, smaller than one {PATCH_SIZE} x "
                                   f"{PATCH_SIZE} px patch")
            if scene.labels is not None:
                codes = sorted(scene.labels.codes())
                mapping.apply(np.asarray(codes, np.int64), what=f"--labels {settings.labels}")
    except BaseException as exc:
        for s in scenes:
            s.close()
        if isinstance(exc, (ValueError, OSError)) and not isinstance(exc, DatasetError):
            raise DatasetError(str(exc)) from exc   # the readers' messages name the file: one line
        raise
    return scenes


def _plan(settings: Settings) -> _Plan:
    mapping = _mapping(settings)
    scenes = _open_scenes(settings, mapping)
    ref = scenes[0].grid
    blocks = BlockGrid(ref.crs, settings.block_size * abs(ref.transform.a), (ref.transform.c, ref.transform.f))
    touched: Dict[Tuple[int, int, int], frozenset] = {}
    for scene in scenes:
        g = scene.grid
        for row in patch_origins(g.height, PATCH_SIZE, settings.stride):
            for col in patch_origins(g.width, PATCH_SIZE, settings.stride):
                touched[(scene.index, row, col)] = blocks.blocks(blocks.bounds_of(g, row, col, PATCH_SIZE, PATCH_SIZE))
    assignment = assign_blocks(set().union(*touched.values()), settings.split_fractions, settings.seed)
    plan = _Plan(scenes, mapping, blocks, assignment)
    plan.splits = {key: split_of(b, assignment) or "" for key, b in touched.items()}
    return plan


# ------------------------------------------------------------------------------------- one strip
class _RollingRows:
    """Full-width rows ``[top, top + height)`` of a scene, each row read once when strips overlap."""

    def __init__(self, scene: Scene, height: int):
        self.scene, self.height = scene, height
        self.top: Optional[int] = None
        self.layers: Dict[str, Optional[np.ndarray]] = {}

    def _read(self, row: int, n: int) -> Dict[str, Optional[np.ndarray]]:
        s = self.scene
        return {"s2": s.read_s2(row, n), "s1": s.read_s1(row, n), "cloud": s.read_cloud(row, n),
                "labels": s.read_labels(row, n)}

    def get(self, top: int) -> Tuple[Dict[str, Optional[np.ndarray]], int]:
        """The layers of rows ``[top, top + height)`` and the first row not read before."""
        h = self.height
        if self.top is not None and self.top < top < self.top + h:
            keep = self.top + h - top
            new = self._read(self.top + h, h - keep)
            self.layers = {k: None if v is None else np.concatenate([v[..., h - keep:, :], new[k]], axis=-2)
                           for k, v in self.layers.items()}
            first_new = self.top + h
        else:
            self.layers = self._read(top, h)
            first_new = top
        self.top = top
        return self.layers, first_new


def _decide(layers: Dict[str, Optional[np.ndarray]], col: int, record: rec.PatchRecord, settings: Settings,
            mapping: Optional[LabelMapping]) -> Optional[Dict[str, np.ndarray]]:
    """Fill ``record`` for the patch at ``col`` of the strip; its arrays when it is written."""
    sl = np.s_[..., col:col + PATCH_SIZE]
    s2 = layers["s2"][sl]
    nodata = (s2 == 0).any(axis=0)
    s1 = layers["s1"][sl] if layers["s1"] is not None else None
    if s1 is not None:
        nodata |= np.isnan(s1).any(axis=0)
    cloud = layers["cloud"][sl] if layers["cloud"] is not None else np.zeros(nodata.shape, bool)
    record.nodata, record.cloud = float(nodata.mean()), float(cloud.mean())
    if not record.split:
        record.reason = "straddles a split boundary (touches blocks of two splits)"
        return None
    if record.nodata > settings.max_nodata:
        record.reason = f"no data {100 * record.nodata:.1f} % > --max_nodata {100 * settings.max_nodata:g} %"
        return None
    if record.cloud > settings.max_cloud:
        record.reason = f"clouds {100 * record.cloud:.1f} % > --max_cloud {100 * settings.max_cloud:g} %"
        return None
    arrays = {"s2": s2, "s1": s1 if s1 is not None else np.full((2,) + s2.shape[1:], S1_PLACEHOLDER_DB, np.float32),
              "lc": np.zeros((SENSORS[Sensor.lc].count,) + s2.shape[1:], np.uint16)}
    labelled_enough = False
    if mapping is not None:
        codes = layers["labels"][sl]
        values = np.zeros(codes.shape, np.uint16)
        has = codes != NO_LABEL
        values[has] = mapping.apply(codes[has])
        values[nodata | cloud] = 0                   # nothing to learn under clouds or no data
        index = mapping.scheme.to_indices(values)
        counts = np.bincount(index.ravel(), minlength=IGNORE_INDEX + 1)
        record.labelled = 1.0 - counts[IGNORE_INDEX] / index.size
        record.label = int(np.argmax(counts))       # the original's rule: 255 included
        record.class_pixels = [int(c) for c in counts[:mapping.scheme.num_classes]]
        labelled_enough = record.labelled >= settings.min_labelled
        if labelled_enough:
            arrays["dfc"] = values[None]
    if labelled_enough:
        record.role = record.split
    elif record.split == "test":
        record.reason = (f"test block, labelled {100 * record.labelled:.0f} % < --min_labelled "
                         f"{100 * settings.min_labelled:g} % (kept out of pre-training)" if mapping is not None
                         else "test block (kept out of pre-training)")
        return None
    else:
        record.role = "pretrain"
        record.class_pixels = []
    return arrays


def _write_strip(scene: Scene, row: int, layers, plan: _Plan, settings: Settings, out: Path) -> List[rec.PatchRecord]:
    g = scene.grid
    cols = patch_origins(g.width, PATCH_SIZE, settings.stride)
    records = []
    for j, col in enumerate(cols):
        r = rec.PatchRecord(scene.index, (row // settings.stride) * len(cols) + j, row, col,
                            split=plan.splits[(scene.index, row, col)])
        arrays = _decide(layers, col, r, settings, plan.mapping)
        if arrays is not None:
            root_name, season = rec.ROLES[r.role]
            season = season or scene.season
            r.season = season.value
            transform = g.transform @ Affine.translation(col, row)
            for sensor, array in arrays.items():
                write_patch(patch_path(out / root_name, season, scene.index, r.patch, Sensor(sensor)), array,
                            g.crs, transform)
        records.append(r)
    return records


# ------------------------------------------------------------------------------------ the run
class _Quicklook:
    """A decimated B04/B03/B02 image of a product, filled strip by strip (kept across resumes)."""

    def __init__(self, scene: Scene, folder: Path):
        g = scene.grid
        self.step = max(1, math.ceil(max(g.width, g.height) / _QUICKLOOK_PX))
        self.path = folder / f"scene{scene.index}.npy"
        shape = (3, math.ceil(g.height / self.step), math.ceil(g.width / self.step))
        self.rgb = np.load(self.path) if self.path.is_file() else np.zeros(shape, np.uint16)
        if self.rgb.shape != shape:
            self.rgb = np.zeros(shape, np.uint16)
        self.scene = scene

    def add(self, s2: np.ndarray, top: int, first_new: int) -> None:
        rows = [r for r in range(first_new, top + s2.shape[1]) if r % self.step == 0]
        if rows:
            self.rgb[:, [r // self.step for r in rows]] = s2[[3, 2, 1]][:, [r - top for r in rows], ::self.step]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        np.save(self.path, self.rgb)

    def figure_input(self) -> dict:
        g = self.scene.grid
        return {"scene": self.scene.index, "path": self.scene.path, "rgb": rec.quicklook_rgb(self.rgb),
                "step": self.step, "width": g.width, "height": g.height}


def _metadata(settings: Settings, plan: _Plan, status: str, extra: Optional[dict] = None) -> dict:
    from inference import software_version

    meta = {
        "format": FORMAT, "status": status, "software_version": software_version(),
        "settings": settings.record(),
        "patch_size": PATCH_SIZE,
        "roles": {"ROIs0000_validation/": "train (train_evaluation.py --train_dir OUT trains on it)",
                  "ROIs0000_test/": "validation (train_evaluation.py --val_dir OUT evaluates on it)",
                  f"{rec.TEST_ROOT}/ROIs0000_test/": f"test, held out (--val_dir OUT/{rec.TEST_ROOT}); in no other list",
                  "ROIs1158_spring/ ... ROIs2017_winter/": "unlabelled patches for pre-training (season of the "
                                                          "acquisition date)",
                  "sen12ms_observations.csv": "pre-training list: unlabelled, train and validation patches"},
        "scenes": [s.describe() for s in plan.scenes],
        "crs": str(plan.scenes[0].grid.crs),
        "sentinel1": ({"paths": settings.s1, "units": settings.s1_units, "stored": "float32 dB, VV VH"} if settings.s1
                      else {"paths": None, "stored": f"placeholder: constant {S1_PLACEHOLDER_DB} dB (no --s1); train "
                            "Sentinel-2-only models (--s1_input_channels 0), pre-training needs real Sentinel-1"}),
        "sentinel2": {"stored": "uint16 L1C top-of-atmosphere reflectance x 10000, 13 bands B01..B12 with B8A and "
                               "B10, processing-baseline offset removed (as SEN12MS)"},
        "blocks": {"size_px": settings.block_size, "size_crs_units": plan.blocks.size, "crs": str(plan.blocks.crs),
                   "count": len(plan.assignment),
                   "per_split": {s: sum(1 for v in plan.assignment.values() if v == s)
                                 for s in ("train", "validation", "test")}},
    }
    if plan.mapping is not None:
        meta["labels"] = {**plan.scenes[0].labels.describe(), "classes_spec": settings.classes,
                          "mapping": plan.mapping.describe()}
        meta["classes"] = plan.mapping.scheme.to_json()
    return {**meta, **(extra or {})}


def prepare(settings: Settings, *, overwrite: bool = False, progress: Optional[bool] = None,
            log: Callable[[str], None] = print) -> dict:
    """Prepare the dataset described by ``settings`` (see the module docstring); returns ``dataset.json``."""
    start = time.perf_counter()
    out = Path(settings.out)
    resume = check_out(out, settings, overwrite, log)
    plan = _plan(settings)           # opens every input and checks the label codes: nothing written yet
    try:
        out.mkdir(parents=True, exist_ok=True)
        rec.write_json(out / rec.DATASET_FILE, _metadata(settings, plan, "in progress"))
        records = rec.read_records(out / rec.PATCHES_FILE) if resume else []
        done = {(r.scene, r.row) for r in records}
        looks = [_Quicklook(s, out / ".quicklook") for s in plan.scenes]
        for scene, look in zip(plan.scenes, looks):
            rows = patch_origins(scene.grid.height, PATCH_SIZE, settings.stride)
            reader = _RollingRows(scene, PATCH_SIZE)
            bar = cli.progress(total=len(rows), desc=f"scene {scene.index}", enabled=progress, unit="strip")
            for row in rows:
                if (scene.index, row) not in done:
                    layers, first_new = reader.get(row)
                    look.add(layers["s2"], row, first_new)
                    strip = _write_strip(scene, row, layers, plan, settings, out)
                    rec.append_records(out / rec.PATCHES_FILE, strip)
                    look.save()
                    records += strip
                bar.update(1)
            bar.close()
        return _finish(settings, plan, records, looks, out, time.perf_counter() - start, log)
    finally:
        for s in plan.scenes:
            s.close()


def _finish(settings: Settings, plan: _Plan, records, looks, out: Path, seconds: float, log) -> dict:
    lists = rec.write_lists(out, records)
    if plan.mapping is not None:
        scheme: ClassScheme = plan.mapping.scheme
        scheme.save(out / CLASSES_FILE)
        scheme.save(out / rec.TEST_ROOT / CLASSES_FILE)
    rec.plot_footprints(out / rec.FIGURE_FILE, [q.figure_input() for q in looks], records, PATCH_SIZE,
                        plan.assignment, settings.block_size)
    summary = rec.summarise(records, plan.mapping.scheme if plan.mapping else None)
    n = len(records)
    meta = _metadata(settings, plan, "complete", {
        **summary, "lists": {k: str(p.relative_to(out)) for k, p in lists.items()},
        "seconds": round(seconds, 1), "patch_positions": n,
        "patches_per_s": round(n / seconds, 2) if seconds > 0 else None})
    rec.write_json(out / rec.DATASET_FILE, meta)
    p, skipped = summary["patches"], summary["skipped"]
    reasons = ", ".join(f"{k}: {v}" for k, v in skipped["by_reason"].items()) or "none"
    log(f"dataset in {out}: train {p['train']}, validation {p['validation']}, test {p['test']} (held out in "
        f"{out / rec.TEST_ROOT}), pre-training list {p['pretraining_list']} patches; skipped "
        f"{skipped['total']} of {n} ({reasons})")
    log(f"records: {out / rec.DATASET_FILE}, {out / rec.PATCHES_FILE}; figure: {out / rec.FIGURE_FILE}")
    return meta
