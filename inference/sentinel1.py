"""Sentinel-1 inputs on the Sentinel-2 grid.

:func:`open_s1` opens one GeoTIFF (VV, VH in dB) and, if its grid differs from the Sentinel-2
grid, reprojects it onto that grid (``WarpedVRT``; areas outside the S1 footprint read as NaN
and become no data). :func:`open_s1_inputs` takes one 2-band file (VV, VH) or two 1-band files
(VV and VH, told apart by ``vv``/``vh`` in their names, else taken in the given order), in dB
(the training units) or linear backscatter (converted with ``10 log10``; values <= 0 become no
data).
"""

from __future__ import annotations

import os
import re
from typing import List, Sequence

import numpy as np
import rasterio
from rasterio.warp import transform_bounds

from inference.sources import Grid, RasterSource, WrappedSource

__all__ = ["open_s1", "open_s1_inputs", "StackSource", "LinearToDbSource"]


def open_s1(path, grid: Grid, resampling="bilinear", reference_name: str = "the Sentinel-2 scene",
            bands: int = 2):
    """Open a Sentinel-1 GeoTIFF (VV, VH in dB; ``bands=1``: one polarisation) and put it on ``grid``.

    Identical grids are read directly; otherwise the file is reprojected onto ``grid`` with a
    ``WarpedVRT`` (pixels outside the S1 footprint read as NaN, i.e. no-data). Raises
    ``ValueError`` (naming the file) for a wrong band count, a missing CRS, or no overlap
    with the grid.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"Sentinel-1 input {path} does not exist")
    with rasterio.open(path) as src:
        count, crs, bounds = src.count, src.crs, src.bounds
    if count != bands:
        what = "2 bands (VV, VH in dB)" if bands == 2 else f"{bands} band(s)"
        raise ValueError(f"Sentinel-1 GeoTIFF {path}: expected {what}, found {count}")
    if crs is None or grid.crs is None:
        if not (crs is None and grid.crs is None):
            raise ValueError(f"Sentinel-1 GeoTIFF {path}: CRS {crs} vs {grid.crs} of {reference_name}; "
                             "both must be georeferenced")
        s1_bounds = tuple(bounds)
    else:
        s1_bounds = transform_bounds(crs, grid.crs, *bounds, densify_pts=21)
    g = grid.bounds  # (left, bottom, right, top)
    overlap = (min(s1_bounds[2], g[2]) > max(s1_bounds[0], g[0])) and (min(s1_bounds[3], g[3]) > max(s1_bounds[1], g[1]))
    if not overlap:
        raise ValueError(f"Sentinel-1 GeoTIFF {path} (CRS {crs}) does not overlap {reference_name} "
                         f"(CRS {grid.crs}): no common area, nothing to predict")
    return RasterSource(path, expected_count=bands, what="Sentinel-1 GeoTIFF", grid=grid,
                        resampling=resampling, nodata=float("nan"), warp_dtype="float32")



class StackSource:
    """Stack single-band sources on one grid into one multi-band source."""

    def __init__(self, sources: Sequence, name: str):
        self.sources = list(sources)
        self.grid = self.sources[0].grid
        self.count = len(self.sources)
        self.name = name
        self.warped = any(getattr(s, "warped", False) for s in self.sources)

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        return np.concatenate([s.read(row_off, col_off, height, width) for s in self.sources], axis=0)

    def close(self):
        for s in self.sources:
            s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LinearToDbSource(WrappedSource):
    """Linear backscatter (sigma0 / gamma0, power) -> dB; values <= 0 or NaN become NaN (no data)."""

    def __init__(self, src):
        self.src = src
        self.grid = src.grid
        self.count = getattr(src, "count", 2)
        self.name = getattr(src, "name", "<s1>")
        self.warped = getattr(src, "warped", False)

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        a = self.src.read(row_off, col_off, height, width).astype(np.float32)
        bad = ~(a > 0)
        a[bad] = 1.0
        out = 10.0 * np.log10(a)
        out[bad] = np.nan
        return out


def _order_vv_vh(paths: Sequence[str]) -> List[str]:
    names = [os.path.basename(p).lower() for p in paths]
    vv = [i for i, n in enumerate(names) if re.search(r"(^|[^a-z])vv([^a-z]|$)", n)]
    vh = [i for i, n in enumerate(names) if re.search(r"(^|[^a-z])vh([^a-z]|$)", n)]
    if len(vv) == 1 and len(vh) == 1 and vv != vh:
        return [paths[vv[0]], paths[vh[0]]]
    return list(paths)


def open_s1_inputs(paths, grid: Grid, units: str = "db", resampling="bilinear",
                   reference_name: str = "the Sentinel-2 scene"):
    """Sentinel-1 on ``grid`` in dB from one 2-band file or two 1-band files (VV, VH)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [str(p) for p in paths]
    if units not in ("db", "linear"):
        raise ValueError(f"--s1_units must be 'db' or 'linear', got {units!r}")
    if len(paths) == 1:
        src = open_s1(paths[0], grid, resampling=resampling, reference_name=reference_name)
    elif len(paths) == 2:
        ordered = _order_vv_vh(paths)
        parts = []
        try:
            for p in ordered:
                parts.append(open_s1(p, grid, resampling=resampling, reference_name=reference_name, bands=1))
        except Exception:
            for s in parts:
                s.close()
            raise
        src = StackSource(parts, name=" + ".join(ordered))
    else:
        raise ValueError(f"--s1 takes one 2-band file or two files (VV, VH), got {len(paths)} files")
    return LinearToDbSource(src) if units == "linear" else src
