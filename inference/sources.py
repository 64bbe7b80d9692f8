"""Raster sources on a grid, read window by window (nothing reads a whole scene).

A *source* is any object with a ``grid`` (:class:`Grid`) and
``read(row_off, col_off, height, width) -> (C, h, w) array`` (in file units and dtype, e.g.
uint16 for S2; a fresh array the caller may modify); :func:`inference.scene.predict_scene`
reads its inputs through that interface only.

* :class:`ArraySource`: an in-memory array (tests, notebooks, small scenes).
* :class:`RasterSource`: one multi-band file, optionally warped onto another grid (GDAL
  ``WarpedVRT``).
* :class:`S2BandFolderSource`: a folder of per-band Sentinel-2 files (``*_B01.jp2`` /
  ``*_B01.tif`` ... ``*_B12``, also L2A names such as ``*_B02_10m.jp2``; searched recursively
  when no band file sits directly in it). Bands at 20 m / 60 m are resampled on the fly onto
  the grid of the finest 10 m band (B02, B03, B04 or B08) -- bilinear by default (``nearest``
  keeps the original values, ``cubic`` is available too) -- and stacked in the order of
  :data:`data.bands.S2_BANDS`.

Opening a Sentinel-2 input of any kind (SAFE product, band folder, GeoTIFF) is
:func:`inference.products.open_s2`; Sentinel-1 is :mod:`inference.sentinel1`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from data.bands import S2_BANDS

__all__ = ["Grid", "ArraySource", "RasterSource", "S2BandFolderSource", "find_band_files", "grid_of",
           "resampling_method", "RESAMPLING", "ReadError", "read_window"]

#: 10 m bands whose grid may serve as the reference grid of a per-band folder (in preference order).
S2_10M_BANDS = ("B02", "B03", "B04", "B08")
RESAMPLING = {"nearest": Resampling.nearest, "bilinear": Resampling.bilinear, "cubic": Resampling.cubic}


def resampling_method(name) -> Resampling:
    """``"bilinear"`` / ``"nearest"`` / ``"cubic"`` (or a ``Resampling``) as a ``Resampling``."""
    if isinstance(name, Resampling):
        return name
    try:
        return RESAMPLING[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown resampling {name!r}; choose one of {sorted(RESAMPLING)}") from None


class ReadError(OSError):
    """Pixels of a file could not be read (corrupt or truncated); the message names the file."""


def read_window(ds, path: str, window: Window, indexes=None, what: str = "raster") -> np.ndarray:
    """``ds.read(indexes, window=window)``; a failure names ``path`` and GDAL's cause in one line
    (rasterio itself says only "Read failed. See previous exception for details.")."""
    try:
        return ds.read(indexes, window=window)
    except Exception as exc:  # noqa: BLE001  (RasterioIOError and GDAL's CPLE_* errors alike)
        from data.robust import explain

        rows = f"rows {int(window.row_off)}-{int(window.row_off + window.height) - 1}"
        raise ReadError(f"{what} {path}: cannot read {rows} (corrupt or truncated file?): {explain(exc)}") from exc


def open_raster(path, error: type, message: str):
    """``rasterio.open(path)``; a file GDAL cannot open raises ``error(f"{message} (GDAL's reason)")``,
    one line that names the file and the flag or input it came from."""
    try:
        return rasterio.open(str(path))
    except rasterio.errors.RasterioIOError as exc:
        raise error(f"{message} ({exc})") from None


class WrappedSource:
    """Base of a source that transforms another one (``self.src``): closing closes that one."""

    def close(self):
        self.src.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS, affine transform and size (the output grid of a prediction)."""

    crs: Optional[rasterio.crs.CRS]
    transform: rasterio.Affine
    width: int
    height: int

    @property
    def bounds(self):
        """(left, bottom, right, top) in CRS units."""
        return rasterio.transform.array_bounds(self.height, self.width, self.transform)

    def same_as(self, other: "Grid", tol: float = 1e-6) -> bool:
        """True when both grids are identical (same CRS, size and transform up to ``tol`` px)."""
        if (self.width, self.height) != (other.width, other.height) or self.crs != other.crs:
            return False
        px = max(abs(self.transform.a), abs(self.transform.e), 1e-12)
        return self.transform.almost_equals(other.transform, precision=tol * px)


def grid_of(ds) -> Grid:
    """The :class:`Grid` of an open rasterio dataset."""
    return Grid(ds.crs, ds.transform, ds.width, ds.height)


class ArraySource:
    """An in-memory ``(C, H, W)`` array on a :class:`Grid` (tests, notebooks, small scenes)."""

    def __init__(self, array: np.ndarray, grid: Optional[Grid] = None, name: str = "<array>"):
        array = np.asarray(array)
        if array.ndim != 3:
            raise ValueError(f"{name}: expected a (C, H, W) array, got shape {array.shape}")
        self.array = array
        self.count = array.shape[0]
        self.name = name
        self.grid = grid or Grid(None, rasterio.Affine.identity(), array.shape[2], array.shape[1])
        if (self.grid.height, self.grid.width) != array.shape[1:]:
            raise ValueError(f"{name}: array shape {array.shape[1:]} does not match the grid")

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        return self.array[:, row_off:row_off + height, col_off:col_off + width].copy()

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RasterSource:
    """A multi-band raster (optionally warped onto another grid), read window by window."""

    def __init__(self, path, expected_count: Optional[int] = None, what: str = "raster",
                 grid: Optional[Grid] = None, resampling="bilinear", nodata=None, warp_dtype=None):
        self.path = str(path)
        self.name = self.path
        self.what = what
        self._src = open_raster(self.path, FileNotFoundError, f"{what}: cannot open {self.path}")
        self.count = self._src.count
        if expected_count is not None and self.count != expected_count:
            self._src.close()
            raise ValueError(f"{what} {self.path}: expected {expected_count} bands, found {self.count}")
        self.warped = False
        self._ds = self._src
        if grid is not None and not grid_of(self._src).same_as(grid):
            self.warped = True
            self._ds = WarpedVRT(self._src, crs=grid.crs, transform=grid.transform, width=grid.width,
                                 height=grid.height, resampling=resampling_method(resampling),
                                 nodata=nodata, dtype=warp_dtype)
        self.grid = grid if grid is not None else grid_of(self._src)

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        return read_window(self._ds, self.path, Window(col_off, row_off, width, height), what=self.what)

    def close(self):
        if self._ds is not self._src:
            self._ds.close()
        self._src.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_BAND_RE = re.compile(r"(?:^|[_\-.])(B(?:0[1-9]|1[0-2]|8A))(?:_(\d+)m)?\.(?:jp2|tiff?)$", re.IGNORECASE)


def find_band_files(folder) -> Dict[str, List[Path]]:
    """Map band name -> candidate files (``*_B04.jp2``, ``*_B04.tif``, ``*_B04_10m.jp2`` ...).

    Looks in ``folder`` itself first and, if no band file is there, recursively below it.
    """
    folder = Path(folder)
    found: Dict[str, List[Path]] = {}
    for pattern in ("*", "**/*"):
        for path in sorted(folder.glob(pattern)):
            m = _BAND_RE.search(path.name)
            if m and path.is_file():
                found.setdefault(m.group(1).upper(), []).append(path)
        if found:
            break
    return found


class S2BandFolderSource:
    """A folder of per-band Sentinel-2 files stacked into 13 bands on a 10 m grid.

    The reference grid is that of the finest of B02/B03/B04/B08; every band on another grid
    (20 m, 60 m, or a different CRS) is resampled onto it on the fly with ``resampling``.
    When several files hold the same band (L2A ``R10m/R20m/R60m``) the finest one is used.
    Areas a band does not cover read as 0.
    """

    def __init__(self, folder, resampling="bilinear", files: Optional[Dict[str, List[str]]] = None):
        self.path = str(folder)
        self.name = self.path
        self.count = len(S2_BANDS)
        found = find_band_files(folder) if files is None else {b: list(p) for b, p in files.items()}
        missing = [b for b in S2_BANDS if b not in found]
        if missing:
            raise FileNotFoundError(
                f"Sentinel-2 folder {self.path}: missing band file(s) {', '.join(missing)} "
                f"(expected files named like *_B01.jp2 or *_B01.tif for all of {', '.join(S2_BANDS)})")
        self._srcs = []
        self._readers = []
        self.files: Dict[str, str] = {}
        try:
            chosen = {}
            for band in S2_BANDS:
                best = None
                for path in found[band]:
                    src = rasterio.open(path)
                    self._srcs.append(src)
                    if src.count != 1:
                        raise ValueError(f"Sentinel-2 band file {path}: expected 1 band, found {src.count}")
                    res = abs(src.transform.a * src.transform.e - src.transform.b * src.transform.d)
                    if best is None or res < best[0]:
                        best = (res, src)
                chosen[band] = best[1]
                self.files[band] = best[1].name
            ref_band = min(S2_10M_BANDS, key=lambda b: (
                abs(chosen[b].transform.a * chosen[b].transform.e - chosen[b].transform.b * chosen[b].transform.d),
                S2_10M_BANDS.index(b)))
            self.reference_band = ref_band
            self.grid = grid_of(chosen[ref_band])
            rs = resampling_method(resampling)
            for band in S2_BANDS:
                src = chosen[band]
                if src.crs is None:
                    raise ValueError(f"Sentinel-2 band file {src.name}: no CRS")
                if grid_of(src).same_as(self.grid):
                    self._readers.append(src)
                else:
                    vrt = WarpedVRT(src, crs=self.grid.crs, transform=self.grid.transform,
                                    width=self.grid.width, height=self.grid.height, resampling=rs,
                                    nodata=src.nodata if src.nodata is not None else 0)
                    self._srcs.append(vrt)
                    self._readers.append(vrt)
        except Exception:
            self.close()
            raise

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        win = Window(col_off, row_off, width, height)
        out = np.empty((len(self._readers), height, width), np.result_type(*[ds.dtypes[0] for ds in self._readers]))
        for i, (band, ds) in enumerate(zip(S2_BANDS, self._readers)):
            out[i] = read_window(ds, self.files[band], win, 1, what=f"Sentinel-2 band file ({band})")
        return out

    def close(self):
        for ds in reversed(self._srcs):
            ds.close()
        self._srcs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

