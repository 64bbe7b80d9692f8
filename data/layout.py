"""Writing the SEN12MS / DFC2020 on-disk layout: patch files and observation lists.

The reader side is :mod:`data.reader` / :mod:`data.dataset`; this module is what
``python -m data.sample`` and ``prepare_dataset.py`` write with:

* :func:`patch_path` -- ``<root>/<season>/<sensor>_<scene>/<season>_<sensor>_<scene>_p<patch>.tif``;
* :func:`write_patch` -- one sensor's GeoTIFF (images uncompressed, like SEN12MS, which the
  dataset reads fastest; label maps deflate), written atomically (a temporary file renamed);
* :func:`write_observations` / :func:`balanced_rows` -- the ``Seasons.X,scene,patch`` lists and
  the class-balanced training list (each row repeated ``max_count // count(label)`` times, the
  original's ``*_observations_balanced_classes.csv``).
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import rasterio

from .bands import Season, Sensor
from .labels import IGNORE_INDEX

__all__ = ["patch_path", "write_patch", "write_observations", "balanced_rows", "BALANCED_HEADER"]

BALANCED_HEADER = ("Season", "Scene", "ID", "dfc_label", "copy_nr")
"""Header of the class-balanced observation list."""


def patch_path(root: Union[str, Path], season: Season, scene: int, patch: int, sensor: Sensor) -> Path:
    """Where a patch file of ``sensor`` lives under ``root``."""
    name = f"{season.value}_{sensor.value}_{int(scene)}_p{int(patch)}.tif"
    return Path(root) / season.value / f"{sensor.value}_{int(scene)}" / name


def write_patch(path: Union[str, Path], array: np.ndarray, crs, transform, compress: Optional[bool] = None) -> None:
    """Write a ``(C, H, W)`` patch as a striped GeoTIFF (atomically: no half-written file remains).

    ``compress`` (default: label maps only, i.e. uint16 with other than 13 bands) deflates the file;
    Sentinel-1/2 images stay uncompressed, as in SEN12MS.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress is None:
        compress = array.dtype == np.uint16 and array.shape[0] != 13
    profile = dict(driver="GTiff", height=array.shape[1], width=array.shape[2], count=array.shape[0],
                   dtype=array.dtype.name, crs=crs, transform=transform)
    if compress:
        profile.update(compress="deflate", zlevel=1)
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(array)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_observations(path: Union[str, Path], rows: Sequence[Sequence[object]],
                       header: Optional[Sequence[str]] = None) -> Path:
    """An observation list: ``Seasons.X,scene,patch[,...]`` rows (optionally a header first)."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def balanced_rows(rows: Sequence[Tuple[str, int, int]], labels: Sequence[int]) -> List[Tuple[object, ...]]:
    """Repeat each row ``max_count // count(label)`` times (like the original's balanced list).

    ``labels`` are the rows' single labels (255 = ignored: kept once). Rows gain the columns
    ``dfc_label, copy_nr`` of :data:`BALANCED_HEADER`.
    """
    counts = Counter(label for label in labels if label != IGNORE_INDEX)
    top = max(counts.values()) if counts else 1
    out: List[Tuple[object, ...]] = []
    for row, label in zip(rows, labels):
        copies = 1 if label == IGNORE_INDEX else max(1, top // counts[label])
        out.extend((*row, label, copy) for copy in range(copies))
    return out
