"""How good is a map on the held-out test area of a prepared dataset?

``python -m preparation.assess --dataset OUT --map map.tif`` compares a land-cover map written by
``predict.py`` (on a product's Sentinel-2 grid) with the reference labels of the dataset's
test patches (``OUT/test``, prepared from ``--labels``), pixel by pixel over the union of the
test patches (overlapping patches counted once), and prints the overall accuracy with a 95 %
interval next to chance. The interval is a cluster bootstrap over the spatial test blocks,
not over pixels: neighbouring pixels are not independent, so a pixel-level interval would be
far too narrow.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from data.classes import ClassScheme
from data.errors import DatasetError
from data.labels import IGNORE_INDEX

__all__ = ["map_accuracy", "format_accuracy", "main"]


def _test_patches(root: Path, scene: int) -> List[dict]:
    with open(root / "patches.csv", newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["role"] == "test" and int(r["scene"]) == scene]


def map_accuracy(dataset: Path, map_path: Path, scene: int = 0, n_boot: int = 2000, seed: int = 0) -> dict:
    """Overall accuracy of ``map_path`` on the test patches of product ``scene`` of ``dataset``.

    Returns pixels, correct, ``oa``, ``ci`` (block bootstrap), ``blocks``, per-class recall,
    uniform chance (1/K) and the majority-class share of the test reference.
    """
    dataset, map_path = Path(dataset), Path(map_path)
    meta_path = dataset / "dataset.json"
    if not meta_path.is_file():
        raise DatasetError(f"--dataset {dataset}: no dataset.json (not written by prepare_dataset.py)")
    meta = json.loads(meta_path.read_text())
    if "classes" not in meta:
        raise DatasetError(f"--dataset {dataset} has no labels, so no test area to assess")
    scheme = ClassScheme.from_json(meta["classes"], str(meta_path))
    block = int(meta["settings"]["block_size"])
    patches = _test_patches(dataset, scene)
    if not patches:
        raise DatasetError(f"--dataset {dataset}: no test patch of scene {scene}")
    rows = [int(p["row"]) for p in patches]
    cols = [int(p["col"]) for p in patches]
    size = int(meta.get("patch_size", 256))
    top, left = min(rows), min(cols)
    h, w = max(rows) + size - top, max(cols) + size - left
    truth = np.full((h, w), IGNORE_INDEX, np.uint8)
    for p in patches:
        season = p["season"]
        path = dataset / "test" / season / f"dfc_{scene}" / f"{season}_dfc_{scene}_p{p['patch']}.tif"
        with rasterio.open(path) as ref:
            r0, c0 = int(p["row"]) - top, int(p["col"]) - left
            truth[r0:r0 + size, c0:c0 + size] = scheme.to_indices(ref.read(1))
    grid = meta["scenes"][scene]
    with rasterio.open(map_path) as src:
        if (src.width, src.height) != (grid["width"], grid["height"]) or not src.transform.almost_equals(
                Affine(*grid["transform"])):
            raise DatasetError(f"--map {map_path} is not on the grid of the dataset's scene {scene} "
                               f"({grid['path']}); predict.py writes the map on the --s2 grid")
        pred = src.read(1, window=Window(left, top, w, h))
        names = [src.tags().get(f"CLASS_{i}") for i in range(scheme.num_classes)]
    if all(n is not None for n in names) and names != list(scheme.names):
        raise DatasetError(f"--map {map_path} holds the classes {names}, the dataset {list(scheme.names)}")
    valid = (truth != IGNORE_INDEX) & (pred != IGNORE_INDEX)
    rr, cc = np.nonzero(valid)
    correct = pred[valid] == truth[valid]
    # clusters: the spatial blocks of the split (anchored at the first product's top-left corner)
    blocks = ((rr + top) // block) * 1_000_000 + (cc + left) // block
    ids, inverse = np.unique(blocks, return_inverse=True)
    hits = np.bincount(inverse, weights=correct, minlength=len(ids))
    totals = np.bincount(inverse, minlength=len(ids)).astype(np.float64)
    draws = np.random.default_rng(seed).integers(0, len(ids), size=(n_boot, len(ids)))
    boot = hits[draws].sum(axis=1) / np.maximum(totals[draws].sum(axis=1), 1)
    labels = truth[valid]
    counts = np.bincount(labels, minlength=scheme.num_classes)
    recall = {n: (float(correct[labels == i].mean()) if counts[i] else None) for i, n in enumerate(scheme.names)}
    return {"pixels": int(valid.sum()), "correct": int(correct.sum()), "oa": float(correct.mean()),
            "ci": (float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))), "blocks": len(ids),
            "test_patches": len(patches), "recall": recall, "chance_uniform": 1.0 / scheme.num_classes,
            "majority_class": scheme.names[int(counts.argmax())],
            "majority_share": float(counts.max() / max(counts.sum(), 1))}


def format_accuracy(r: dict) -> str:
    lo, hi = r["ci"]
    return (f"map accuracy on the held-out test area: {100 * r['oa']:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}] "
            f"({r['pixels']:,} px of {r['test_patches']} test patches in {r['blocks']} blocks; 95 % CI: bootstrap "
            f"over the blocks)\n   chance: {100 * r['chance_uniform']:.1f} % (uniform over "
            f"{len(r['recall'])} classes), {100 * r['majority_share']:.1f} % (always '{r['majority_class']}', "
            "the most frequent test class)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m preparation.assess", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, type=Path, help="dataset root written by prepare_dataset.py")
    p.add_argument("--map", required=True, type=Path, help="map written by predict.py on the scene's S2 grid")
    p.add_argument("--scene", type=int, default=0, help="index of the product in the dataset's --s2 list")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args(argv)
    try:
        result = map_accuracy(args.dataset, args.map, args.scene)
    except (DatasetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_accuracy(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
