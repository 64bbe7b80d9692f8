"""One Sentinel-2 product with everything that goes with it on its grid, for dataset preparation.

:func:`open_scene` opens a product exactly as ``predict.py`` does (SAFE folder or ``.zip``, band
folder or 13-band GeoTIFF; Level-2A refused unless allowed; the processing-baseline offset
from the metadata or ``--s2_offset``; the product's cloud mask), then Sentinel-1 (one 2-band
file or two files, dB or linear, reprojected onto the S2 grid) and the label map on the same
grid. :meth:`Scene.read_s2` returns the offset-free uint16 values SEN12MS-trained models saw.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from data.bands import Season
from inference.clouds import open_cloud_mask
from inference.offset import OffsetDecision, OffsetSource, decide_offset
from inference.products import S2Product, open_s2_product
from inference.sentinel1 import open_s1_inputs
from inference.sources import Grid

__all__ = ["SceneOptions", "Scene", "open_scene", "season_of"]

_DATE = re.compile(r"_(20\d{2})(\d{2})(\d{2})T\d{6}")
_SEASON_BY_MONTH = {12: Season.WINTER, 1: Season.WINTER, 2: Season.WINTER, 3: Season.SPRING, 4: Season.SPRING,
                    5: Season.SPRING, 6: Season.SUMMER, 7: Season.SUMMER, 8: Season.SUMMER, 9: Season.FALL,
                    10: Season.FALL, 11: Season.FALL}


@dataclass
class SceneOptions:
    """How the inputs are read (the Sentinel-2 options are ``predict.py``'s)."""

    s2_offset: Optional[float] = None       # None: from the product metadata
    allow_l2a: bool = False
    cloud_mask: str = "auto"
    resampling: str = "bilinear"            # 20/60 m S2 bands and S1 onto the 10 m grid
    s1: Optional[Sequence[str]] = None
    s1_units: str = "db"


def acquisition_date(path: str) -> Optional[str]:
    """``YYYY-MM-DD`` from a Sentinel-2 product name (``..._20230615T103031_...``), else None."""
    m = _DATE.search(Path(str(path).rstrip("/")).name) or _DATE.search(str(path))
    return f"{m.group(1)}-{m.group(2)}-{m.group(3)}" if m else None


def season_of(date: Optional[str]) -> Season:
    """The SEN12MS season folder of an acquisition date (meteorological seasons; spring if unknown)."""
    return _SEASON_BY_MONTH[int(date[5:7])] if date else Season.SPRING


@dataclass
class Scene:
    """An open Sentinel-2 product and its companions on its grid; close it when done."""

    index: int
    path: str
    product: S2Product
    raw: object                      # the S2 source as stored
    s2: object                       # the S2 source with the offset applied (float32) or ``raw``
    offset: OffsetDecision
    grid: Grid
    cloud: object = None
    cloud_line: str = ""
    s1: object = None
    labels: object = None
    date: Optional[str] = None
    notes: List[str] = field(default_factory=list)

    @property
    def season(self) -> Season:
        return season_of(self.date)

    def read_s2(self, row: int, height: int) -> np.ndarray:
        """uint16 ``(13, height, width)`` of full-width rows, offset removed; 0 = no data."""
        if self.offset.is_identity:
            a = self.raw.read(row, 0, height, self.grid.width)
            if a.dtype != np.uint16:
                a = np.clip(np.nan_to_num(a, nan=0.0), 0, 65535).astype(np.uint16)
            return a
        v = self.s2.read(row, 0, height, self.grid.width)     # float32, NaN where every band was 0
        empty = np.isnan(v) | (v == 0)                         # no data (a band stored as 0 stays 0)
        # a data pixel keeps >= 1, so that 0 keeps meaning "no data" (values below the offset are noise)
        out = np.clip(np.rint(np.nan_to_num(v, nan=0.0)), 1, 65535).astype(np.uint16)
        out[empty] = 0
        return out

    def read_s1(self, row: int, height: int) -> Optional[np.ndarray]:
        """float32 dB ``(2, height, width)``, NaN = no data; None without Sentinel-1."""
        if self.s1 is None:
            return None
        return self.s1.read(row, 0, height, self.grid.width).astype(np.float32, copy=False)

    def read_cloud(self, row: int, height: int) -> Optional[np.ndarray]:
        if self.cloud is None:
            return None
        return self.cloud.read(row, 0, height, self.grid.width)

    def read_labels(self, row: int, height: int) -> Optional[np.ndarray]:
        if self.labels is None:
            return None
        return self.labels.read(row, 0, height, self.grid.width)

    def describe(self) -> dict:
        """What ``dataset.json`` records about this product."""
        g = self.grid
        return {"index": self.index, "path": self.path, "kind": self.product.kind, "level": self.product.level,
                "processing_baseline": self.product.baseline, "date": self.date, "season_folder": self.season.value,
                "crs": str(g.crs), "transform": list(g.transform)[:6], "width": g.width, "height": g.height,
                "s2_offset_dn": list(self.offset.offsets), "s2_offset_source": self.offset.source,
                "s2_offset_message": self.offset.message, "cloud_mask": self.cloud_line,
                "s1_reprojected": bool(getattr(self.s1, "warped", False)), "notes": list(self.notes)}

    def close(self) -> None:
        for src in (self.labels, self.s1, self.cloud, self.s2, self.raw):
            if src is not None:
                src.close()


def open_scene(index: int, path: str, options: SceneOptions, open_label_source=None) -> Scene:
    """Open product ``path`` with its offset, cloud mask, Sentinel-1 and labels (``open_label_source(grid)``).

    Errors are one-line ``ValueError`` / ``OSError`` / ``DatasetError`` naming the file.
    """
    raw, product = open_s2_product(path, resampling=options.resampling, allow_l2a=options.allow_l2a)
    scene = None
    try:
        offset = decide_offset(product, options.s2_offset)
        s2 = raw if offset.is_identity else OffsetSource(raw, offset.offsets, offset.scale)
        scene = Scene(index, str(path), product, raw, s2, offset, raw.grid, date=acquisition_date(path),
                      notes=list(product.notes))
        if offset.warning:
            scene.notes.append(offset.warning)
        scene.cloud, scene.cloud_line = open_cloud_mask(product, raw.grid, options.cloud_mask)
        if options.s1:
            scene.s1 = open_s1_inputs(options.s1, raw.grid, units=options.s1_units, resampling=options.resampling,
                                      reference_name=f"Sentinel-2 input {path}")
        if open_label_source is not None:
            scene.labels = open_label_source(raw.grid)
        return scene
    except BaseException:
        if scene is not None:
            scene.close()
        else:
            raw.close()
        raise
