"""What a prepared dataset records: per-patch records, observation lists, ``dataset.json``, a figure.

Every patch the grid holds gets a :class:`PatchRecord` (written or skipped, and why), appended
to ``patches.csv`` strip by strip as the run goes (which is also how a re-run resumes). At the
end :func:`write_lists` writes the observation lists the scripts read and :func:`summarise` the
counts of ``dataset.json``; :func:`plot_footprints` draws the patches coloured by split over a
Sentinel-2 quicklook.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from data.bands import Season
from data.classes import ClassScheme
from data.layout import BALANCED_HEADER, balanced_rows, write_observations

__all__ = ["PatchRecord", "ROLES", "read_records", "append_records", "write_lists", "summarise",
           "plot_footprints", "write_json", "PATCHES_FILE", "DATASET_FILE", "FIGURE_FILE", "TEST_ROOT"]

PATCHES_FILE = "patches.csv"
DATASET_FILE = "dataset.json"
FIGURE_FILE = "footprints.png"
TEST_ROOT = "test"

#: where each kind of patch goes: (root below --out, season folder or None for the product's season)
ROLES: Dict[str, Tuple[str, Optional[Season]]] = {
    "train": (".", Season.VALSET),          # train_evaluation.py trains on the "validation" lists
    "validation": (".", Season.TESTSET),    # ... and evaluates on the "test" list
    "test": (TEST_ROOT, Season.TESTSET),    # held out: its own root, --val_dir OUT/test
    "pretrain": (".", None),                # unlabelled: the SEN12MS season of the acquisition date
}


@dataclass
class PatchRecord:
    """One patch position of one product: where it went, or why it was skipped."""

    scene: int
    patch: int
    row: int
    col: int
    split: str = ""          # train / validation / test (its blocks), "" if it straddles splits
    role: str = ""           # train / validation / test / pretrain when written, "" when skipped
    season: str = ""         # folder name when written
    reason: str = ""         # why it was skipped
    nodata: float = 0.0
    cloud: float = 0.0
    labelled: float = 0.0
    label: int = -1          # single label (class index, 255 = mostly unlabelled), -1 = no labels
    class_pixels: List[int] = field(default_factory=list)

    @property
    def written(self) -> bool:
        return bool(self.role)

    def row_values(self) -> List[object]:
        values = asdict(self)
        values["class_pixels"] = ";".join(str(v) for v in self.class_pixels)
        for key in ("nodata", "cloud", "labelled"):
            values[key] = f"{values[key]:.4f}"
        return [values[f.name] for f in fields(self)]

    @classmethod
    def from_row(cls, row: Dict[str, str]) -> "PatchRecord":
        pixels = [int(v) for v in row["class_pixels"].split(";") if v]
        return cls(int(row["scene"]), int(row["patch"]), int(row["row"]), int(row["col"]), row["split"],
                   row["role"], row["season"], row["reason"], float(row["nodata"]), float(row["cloud"]),
                   float(row["labelled"]), int(row["label"]), pixels)


_HEADER = [f.name for f in fields(PatchRecord)]


def read_records(path: Path) -> List[PatchRecord]:
    """The records of an earlier run (a line cut short by a kill is ignored)."""
    if not path.is_file():
        return []
    out = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                out.append(PatchRecord.from_row(row))
            except (KeyError, ValueError, TypeError):
                continue
    return out


def append_records(path: Path, records: Iterable[PatchRecord]) -> None:
    """Append one strip's records (the header first when the file is new)."""
    new = not path.exists()
    with open(path, "a", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        if new:
            writer.writerow(_HEADER)
        writer.writerows(r.row_values() for r in records)
        handle.flush()
        os.fsync(handle.fileno())


def _rows(records: Iterable[PatchRecord]) -> List[Tuple[str, int, int]]:
    return [(f"Seasons.{Season(r.season).name}", r.scene, r.patch) for r in records]


def write_lists(out: Path, records: Sequence[PatchRecord]) -> Dict[str, Path]:
    """The observation lists the scripts read (every list is written, empty or not, so that a
    dataset never falls back on the bundled DFC2020 lists)."""
    by_role: Dict[str, List[PatchRecord]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.scene, r.patch)):
        if r.written:
            by_role[r.role].append(r)
    train = by_role["train"]
    paths = {
        "sen12ms": write_observations(out / "sen12ms_observations.csv",
                                      _rows(by_role["pretrain"] + train + by_role["validation"])),
        "train": write_observations(out / "validation_observations.csv", _rows(train)),
        "train_balanced": write_observations(out / "validation_observations_balanced_classes.csv",
                                             balanced_rows(_rows(train), [r.label for r in train]),
                                             header=BALANCED_HEADER),
        "validation": write_observations(out / "test_observations.csv", _rows(by_role["validation"])),
    }
    (out / TEST_ROOT).mkdir(exist_ok=True)
    paths["test"] = write_observations(out / TEST_ROOT / "test_observations.csv", _rows(by_role["test"]))
    return paths


def summarise(records: Sequence[PatchRecord], scheme: Optional[ClassScheme]) -> dict:
    """Counts per role and split, class pixel shares per split, skipped patches by reason."""
    written = [r for r in records if r.written]
    skipped = [r for r in records if not r.written]
    counts = Counter(r.role for r in written)
    out: dict = {
        "patches": {"train": counts["train"], "validation": counts["validation"], "test": counts["test"],
                    "pretrain_only": counts["pretrain"],
                    "pretraining_list": counts["pretrain"] + counts["train"] + counts["validation"]},
        "skipped": {"total": len(skipped), "by_reason": dict(Counter(_reason_kind(r.reason) for r in skipped)),
                    "patches": [{"scene": r.scene, "patch": r.patch, "row": r.row, "col": r.col, "split": r.split,
                                 "reason": r.reason} for r in skipped]},
    }
    if scheme is not None:
        shares = {}
        for role in ("train", "validation", "test"):
            pixels = np.zeros(scheme.num_classes, np.int64)
            for r in written:
                if r.role == role and r.class_pixels:
                    pixels += np.asarray(r.class_pixels, np.int64)
            total = int(pixels.sum())
            shares[role] = {"labelled_pixels": total,
                            "classes": {n: (float(p) / total if total else 0.0) for n, p in zip(scheme.names, pixels)}}
        out["class_pixel_shares"] = shares
    return out


def _reason_kind(reason: str) -> str:
    """The kind of a skip reason (its text up to the first number or parenthesis)."""
    for stop in (" (", ":"):
        reason = reason.split(stop)[0]
    return reason.strip()


def write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


_COLORS = {"train": "#1f77b4", "validation": "#ff7f0e", "test": "#d62728", "pretrain": "#2ca02c"}


def plot_footprints(path: Path, quicklooks: Sequence[dict], records: Sequence[PatchRecord], patch: int,
                    blocks: Optional[Dict[Tuple[int, int], str]] = None, block_px: int = 0) -> Path:
    """Patch outlines coloured by role over each product's S2 quicklook.

    ``blocks`` (block -> split, blocks counted from the first product's top-left corner, y up)
    shades the spatial blocks of the first product by split.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    shown = list(quicklooks)[:4]
    fig, axes = plt.subplots(1, len(shown), figsize=(6.5 * len(shown), 6.8), squeeze=False)
    for ax, look in zip(axes[0], shown):
        rgb, step = look["rgb"], look["step"]
        ax.imshow(rgb, extent=(0, rgb.shape[1] * step, rgb.shape[0] * step, 0), interpolation="nearest")
        if blocks and look["scene"] == shown[0]["scene"]:
            for (i, j), split in blocks.items():
                ax.add_patch(Rectangle((i * block_px, -(j + 1) * block_px), block_px, block_px, linewidth=0,
                                       facecolor=_COLORS[split], alpha=0.22))
        mine = [r for r in records if r.scene == look["scene"]]
        for r in mine:
            if r.written:
                ax.add_patch(Rectangle((r.col + 4, r.row + 4), patch - 8, patch - 8, edgecolor=_COLORS[r.role],
                                       linewidth=0.9, facecolor="none"))
        counts = Counter(r.role or "skipped" for r in mine)
        ax.set_title(f"scene {look['scene']}: {Path(look['path']).name}"[:70], fontsize=9)
        ax.set_xlim(0, look["width"])
        ax.set_ylim(look["height"], 0)
        ax.set_xlabel("column (px)")
        ax.set_ylabel("row (px)")
        labels = {"train": "train", "validation": "validation", "test": "test (held out)",
                  "pretrain": "pre-training only"}
        handles = [Patch(facecolor=c + "55", edgecolor=c, label=f"{labels[k]}: {counts[k]} patches")
                   for k, c in _COLORS.items() if counts[k]]
        if counts["skipped"]:
            handles.append(Patch(facecolor="none", edgecolor="none", label=f"skipped: {counts['skipped']}"))
        ax.legend(handles=handles, loc="lower left", fontsize=8, framealpha=0.85)
    fig.suptitle("patches by split (outlines) over the Sentinel-2 quicklook; shaded: spatial blocks", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def quicklook_rgb(bands: np.ndarray) -> np.ndarray:
    """(3, h, w) uint16 B04/B03/B02 -> float RGB in [0, 1] (2-98 % stretch over data pixels)."""
    rgb = np.moveaxis(bands.astype(np.float32), 0, -1)
    data = rgb.sum(axis=-1) > 0
    if data.any():
        lo, hi = np.percentile(rgb[data], [2, 98])
        rgb = np.clip((rgb - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb[~data] = 0
    return rgb
