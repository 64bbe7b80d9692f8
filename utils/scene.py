"""Whole-scene inference: Sentinel-1/2 scene I/O, sliding windows, blending, GeoTIFF output.

This is the library behind ``predict.py``. The pieces are usable on their own (e.g. from a
notebook):

* :func:`open_s2` opens a Sentinel-2 scene, either one 13-band GeoTIFF, a SAFE product
  (folder or ``.zip``, through :mod:`inference.products`, processing-baseline offset removed)
  or a folder of per-band files (``*_B01.jp2`` / ``*_B01.tif`` ... ``*_B12``, also L2A names such as
  ``*_B02_10m.jp2``; the folder is searched recursively if no band file sits directly in
  it). Bands at 20 m / 60 m are resampled on the fly onto
  the grid of a 10 m band (B02, B03, B04 or B08, the finest one found) through a GDAL
  ``WarpedVRT`` -- bilinear by default (reflectances are smooth enough for it; ``nearest``
  keeps the original values, ``cubic`` is available too) -- and stacked in the order
  B01, B02, B03, B04, B05, B06, B07, B08, B8A, B09, B10, B11, B12.
* :func:`open_s1` opens a Sentinel-1 GeoTIFF (VV, VH in dB) and, if its grid differs from
  the Sentinel-2 grid, reprojects it onto that grid (``WarpedVRT``; areas outside the S1
  footprint read as NaN and become no-data).
* :func:`predict_scene` runs a model over the scene with sliding windows and writes the
  label map (and optionally the class probabilities) as GeoTIFFs on the S2 grid.
* :func:`write_preview`, :func:`area_summary`, :func:`format_summary` make the PNG preview and
  the per-class area table.

Sources are read window by window (nothing reads a whole scene), so any object with a
``grid`` (:class:`Grid`) and ``read(row_off, col_off, height, width) -> (C, h, w) array``
can be used as a source (the array in file units and dtype, e.g. uint16 for S2; a fresh
array the caller may modify); :class:`ArraySource` wraps an in-memory array.

Sliding windows and blending
----------------------------
Windows of ``window`` px (224 by default, the training crop size) are placed with stride
``round(window * (1 - overlap))``; along each axis the last window is shifted inward so
that it ends at the scene border (no padding needed), and a scene axis shorter than one
window gets a single window whose missing part is filled by symmetric (mirror) padding of
the raw values; padded pixels are never written. Every window is normalised on its own
with ``data.transforms.preprocess_s1`` / ``preprocess_s2`` -- clipping and division of each
band by its own maximum within the window, exactly as the training crops were normalised.

*Segmentation* models (output ``(B, C, h, w)``): each window's softmax probabilities (or its
raw logits with ``blend="logits"``) are multiplied by a separable weight window
``w(i) w(j)`` with ``w(i) = eps + (1 - eps) sin^2(pi (i + 0.5) / window)`` (a Hann window
that never reaches 0; ``eps = 1e-3``) and accumulated together with the weights; the result
is the weighted mean, so predictions fade smoothly from one window to the next (no seams)
and pixels near the scene border, covered by a single window, get that window's value.
An output smaller than the window is upsampled bilinearly to it first.

*Classification* models (output ``(B, C)``): each window's label is painted over its
*stride cell*: the pixels closer (along each axis) to this window's centre than to the
centre of any neighbouring window. Cells tile the scene without gaps or overlaps and each
lies inside its window, so the map is a mosaic of about ``stride x stride`` blocks (larger
at the edges). The probability output holds the window's class probabilities over its cell.

No-data: pixels where all S2 bands are 0 (or any S2 band is NaN), and, when S1 is given,
pixels where S1 is NaN (including outside the S1 footprint), are written as 255 (label) and
NaN (probabilities); they still take part in inference of their windows, as they would in
training crops.

Memory
------
The scene is processed one *row of windows* at a time. For the current row the raw input
strip (``window`` rows x full width, 13 S2 bands in their file dtype + 2 S1 bands) is read
once, windows are cut from it and sent through the model ``batch_size`` at a time, and their
weighted outputs are added into a strip accumulator of ``window`` rows x full width (``C``
float32 class planes, a weight plane, a validity mask). Rows above the start of the next
window row can receive no more contributions; they are finalised (arg-max, mask; normalised
only for a probability output), handed to the writers, and the accumulator shifts up by the
stride. Writers buffer finished rows until a whole row of 256 px GeoTIFF tiles is complete
and write it. Peak memory therefore scales with the scene *width*, never its height::

    window x W x (2 x 13 + 4 x 2 + 4 x (C + 1))  bytes   input strip (uint16 S2) + accumulator
  + stride x W x 4 x C                              bytes   accumulator shift
  + batch_size x window² x 4 x (15 + 2 C)           bytes   one model batch (+ the model itself)
  [ + (256 + window) x W x 4 x C + stride x W x 4 x C  with a probability output ]

For a 10,980 px wide Sentinel-2 tile (C = 8, window 224, batch 16) the numpy buffers peak
at about 0.26 GB (measured with tracemalloc), 0.53 GB with ``--probabilities`` -- versus
3.9 GB for the float32 class stack of the whole scene. GDAL adds its block cache
(``GDAL_CACHEMAX``). The preview is drawn from a decimated read of the written map, so it is
bounded as well.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

__all__ = [
    "S2_BAND_NAMES",
    "Grid",
    "ArraySource",
    "RasterSource",
    "S2BandFolderSource",
    "open_s2",
    "open_s1",
    "find_band_files",
    "window_starts",
    "window_stride",
    "cell_bounds",
    "blend_weights",
    "predict_scene",
    "SceneResult",
    "write_preview",
    "area_summary",
    "format_summary",
    "class_colors_rgb",
    "pixel_area_m2",
]

#: Sentinel-2 band order of the stacked 13-band array (the SEN12MS / DFC2020 order).
S2_BAND_NAMES = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
#: 10 m bands whose grid may serve as the reference grid of a per-band folder (in preference order).
S2_10M_BANDS = ("B02", "B03", "B04", "B08")

OUTPUT_NODATA = 255
TILE = 256
RESAMPLING = {"nearest": Resampling.nearest, "bilinear": Resampling.bilinear, "cubic": Resampling.cubic}


def _resampling(name) -> Resampling:
    if isinstance(name, Resampling):
        return name
    try:
        return RESAMPLING[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown resampling {name!r}; choose one of {sorted(RESAMPLING)}") from None


# ----------------------------------------------------------------------------- grids & sources


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


def _grid_of(ds) -> Grid:
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
        try:
            self._src = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as exc:
            raise FileNotFoundError(f"{what}: cannot open {self.path}: {exc}") from None
        self.count = self._src.count
        if expected_count is not None and self.count != expected_count:
            self._src.close()
            raise ValueError(f"{what} {self.path}: expected {expected_count} bands, found {self.count}")
        self.warped = False
        self._ds = self._src
        if grid is not None and not _grid_of(self._src).same_as(grid):
            self.warped = True
            self._ds = WarpedVRT(self._src, crs=grid.crs, transform=grid.transform, width=grid.width,
                                 height=grid.height, resampling=_resampling(resampling),
                                 nodata=nodata, dtype=warp_dtype)
        self.grid = grid if grid is not None else _grid_of(self._src)

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        return self._ds.read(window=Window(col_off, row_off, width, height))

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
        self.count = len(S2_BAND_NAMES)
        found = find_band_files(folder) if files is None else {b: list(p) for b, p in files.items()}
        missing = [b for b in S2_BAND_NAMES if b not in found]
        if missing:
            raise FileNotFoundError(
                f"Sentinel-2 folder {self.path}: missing band file(s) {', '.join(missing)} "
                f"(expected files named like *_B01.jp2 or *_B01.tif for all of {', '.join(S2_BAND_NAMES)})")
        self._srcs = []
        self._readers = []
        self.files: Dict[str, str] = {}
        try:
            chosen = {}
            for band in S2_BAND_NAMES:
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
            self.grid = _grid_of(chosen[ref_band])
            rs = _resampling(resampling)
            for band in S2_BAND_NAMES:
                src = chosen[band]
                if src.crs is None:
                    raise ValueError(f"Sentinel-2 band file {src.name}: no CRS")
                if _grid_of(src).same_as(self.grid):
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
        for i, ds in enumerate(self._readers):
            out[i] = ds.read(1, window=win)
        return out

    def close(self):
        for ds in reversed(self._srcs):
            ds.close()
        self._srcs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _is_safe_product(path) -> bool:
    p = Path(path)
    if p.is_file():
        return p.suffix.lower() == ".zip"
    return p.is_dir() and (p.name.upper().endswith(".SAFE") or
                           any((p / n).is_file() for n in ("MTD_MSIL1C.xml", "MTD_MSIL2A.xml")))


def open_s2(path, resampling="bilinear"):
    """Open a Sentinel-2 scene: a 13-band raster file, a folder of per-band files, or a SAFE product.

    A SAFE product (folder or ``.zip``) is opened by :func:`inference.products.open_s2_product`
    and its processing-baseline offset (``RADIO_ADD_OFFSET``) is removed, as ``predict.py`` does;
    a GeoTIFF or band folder is returned as stored (see ``--s2_offset`` of ``predict.py``).
    """
    if _is_safe_product(path):
        from inference.products import OffsetSource, decide_offset, open_s2_product
        src, product = open_s2_product(path, resampling=resampling)
        d = decide_offset(product)
        return src if d.is_identity else OffsetSource(src, d.offsets, d.scale)
    if os.path.isdir(path):
        return S2BandFolderSource(path, resampling=resampling)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Sentinel-2 input {path} does not exist")
    src = RasterSource(path, expected_count=len(S2_BAND_NAMES), what="Sentinel-2 GeoTIFF (B01..B12 incl. B8A, B10)")
    return src


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


# ----------------------------------------------------------------------------- windows & weights


def window_stride(window: int, overlap: float) -> int:
    """Stride of windows of ``window`` px overlapping by the fraction ``overlap`` (0 <= overlap < 1)."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    return max(1, int(round(window * (1.0 - overlap))))


def window_starts(size: int, window: int, stride: int) -> List[int]:
    """Start offsets along one axis: ``0, stride, 2 stride, ...``, the last one shifted inward
    to end exactly at ``size``; a single ``0`` when ``size <= window``."""
    if size <= window:
        return [0]
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def cell_bounds(starts: Sequence[int], window: int, size: int) -> np.ndarray:
    """Boundaries of the stride cells of windows along one axis (len(starts) + 1 values).

    Cell ``j`` = ``[b[j], b[j+1])`` holds the pixels nearest to window ``j``'s centre; the
    midpoint between two centres is ``(s[j-1] + s[j] + window) // 2``. Cells tile ``[0, size)``
    and each lies inside its window.
    """
    s = np.asarray(starts, dtype=np.int64)
    b = np.empty(len(s) + 1, np.int64)
    b[0], b[-1] = 0, size
    b[1:-1] = (s[:-1] + s[1:] + window) // 2
    return b


def blend_weights(window: int, eps: float = 1e-3) -> np.ndarray:
    """Separable ``(window, window)`` Hann-like weights, ``eps`` at the border, 1 in the centre."""
    i = np.arange(window, dtype=np.float64)
    w = eps + (1.0 - eps) * np.sin(np.pi * (i + 0.5) / window) ** 2
    return np.outer(w, w).astype(np.float32)


# ----------------------------------------------------------------------------- labels metadata


def _default_class_names(num_classes: int) -> List[str]:
    try:
        from data.labels import DFC_CLASSES
        if len(DFC_CLASSES) == num_classes:
            return list(DFC_CLASSES)
    except ImportError:
        pass
    return [f"class_{i}" for i in range(num_classes)]


def class_colors_rgb(num_classes: int, colors=None) -> List[tuple]:
    """RGB 0-255 colours per class: ``colors`` (names, hex, 0-1 or 0-255 tuples) or
    ``data.labels.DFC_COLORS`` when it has ``num_classes`` entries, else a tab10/tab20 palette."""
    from matplotlib import colors as mcolors
    if colors is None:
        try:
            from data.labels import DFC_COLORS
            if len(DFC_COLORS) == num_classes:
                colors = DFC_COLORS
        except ImportError:
            pass
    if colors is None or len(colors) < num_classes:
        import matplotlib
        cmap = matplotlib.colormaps["tab10" if num_classes <= 10 else "tab20"]
        colors = [cmap(i % cmap.N) for i in range(num_classes)]
    out = []
    for c in list(colors)[:num_classes]:
        if isinstance(c, str):
            out.append(tuple(int(round(v * 255)) for v in mcolors.to_rgb(c)))
            continue
        vals = list(c)[:3]
        ints = all(isinstance(v, (int, np.integer)) for v in vals)
        if not ints and max(float(v) for v in vals) <= 1.0:   # matplotlib-style 0-1 floats
            vals = [float(v) * 255 for v in vals]
        out.append(tuple(int(round(float(v))) for v in vals))
    return out


# ----------------------------------------------------------------------------- area


def pixel_area_m2(transform, crs, row_off: int = 0, rows: int = 1) -> np.ndarray:
    """Area (m²) of one pixel in each of ``rows`` rows starting at ``row_off``.

    Projected CRS: ``|det(transform)|`` in CRS units, converted to metres with the CRS's
    linear unit factor (constant over rows). Geographic CRS: the spherical area of the cell
    (authalic radius), which varies with latitude. No CRS: CRS units taken as metres.
    """
    det = abs(transform.a * transform.e - transform.b * transform.d)
    if crs is not None and crs.is_geographic:
        r = 6371007.2
        ys = transform.f + transform.e * (row_off + np.arange(rows + 1, dtype=np.float64))  # north-up rows
        lat = np.radians(np.clip(ys, -90, 90))
        dlon = math.radians(abs(transform.a))
        return (r * r * dlon * np.abs(np.sin(lat[:-1]) - np.sin(lat[1:]))).astype(np.float64)
    factor = 1.0
    if crs is not None:
        try:
            factor = float(crs.linear_units_factor[1])
        except Exception:  # pragma: no cover - exotic CRS
            factor = 1.0
    return np.full(rows, det * factor * factor, dtype=np.float64)


# ----------------------------------------------------------------------------- writers


class _TiledWriter:
    """Buffers finished rows and writes them to a tiled GeoTIFF a row of tiles at a time.

    The buffer holds at most ``TILE + max_rows`` rows (``max_rows``: the largest block ever added).
    """

    def __init__(self, path, grid: Grid, count: int, dtype, nodata, predictor: int, max_rows: int,
                 tags=None, descriptions=None, colormap=None, scales=None):
        profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=count, dtype=dtype,
                       crs=grid.crs, transform=grid.transform, nodata=nodata, tiled=True,
                       blockxsize=TILE, blockysize=TILE, compress="deflate", predictor=predictor,
                       interleave="band", BIGTIFF="IF_SAFER")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self.ds = rasterio.open(self.path, "w", **profile)
        if colormap is not None:
            self.ds.write_colormap(1, colormap)
        if tags:
            self.ds.update_tags(**tags)
        for i, d in enumerate(descriptions or []):
            self.ds.set_band_description(i + 1, d)
        if scales is not None:
            self.ds.scales = tuple(scales)
        self.width, self.height = grid.width, grid.height
        self.buf = np.empty((count, min(TILE + max_rows, grid.height), grid.width), dtype)
        self._top = 0   # scene row of buffer row 0
        self._n = 0     # rows in the buffer

    def add(self, block: np.ndarray):  # (count, rows, W)
        k = block.shape[1]
        if self._n + k > self.buf.shape[1]:
            raise RuntimeError("row block larger than declared")  # pragma: no cover
        self.buf[:, self._n:self._n + k] = block
        self._n += k
        if self._n >= TILE or self._top + self._n >= self.height:
            self._flush()

    def _flush(self):
        if self._n == 0:
            return
        n = self._n if self._top + self._n >= self.height else (self._n // TILE) * TILE
        self.ds.write(self.buf[:, :n], window=Window(0, self._top, self.width, n))
        rest = self._n - n
        if rest:
            self.buf[:, :rest] = self.buf[:, n:self._n]
        self._top += n
        self._n = rest

    def close(self):
        self._flush()
        self.ds.close()


# ----------------------------------------------------------------------------- prediction


@dataclass
class SceneResult:
    """What :func:`predict_scene` did; ``labels`` / ``probabilities`` only when kept in memory."""

    mode: str                      # "segmentation" or "classification"
    num_classes: int
    grid: Grid
    class_names: List[str]
    pixel_counts: np.ndarray       # (num_classes,) valid pixels per class
    area_m2: np.ndarray            # (num_classes,) area per class in m²
    nodata_pixels: int
    nodata_area_m2: float
    windows: int
    window: int
    stride: int
    labels: Optional[np.ndarray] = None
    probabilities: Optional[np.ndarray] = None
    outputs: Dict[str, str] = field(default_factory=dict)
    cloud_masked: bool = False     # a cloud mask was applied
    cloud_pixels: int = 0          # data pixels written as no data because the mask flags them
    cloud_area_m2: float = 0.0


def _pad_to(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    ph, pw = h - arr.shape[1], w - arr.shape[2]
    if ph == 0 and pw == 0:
        return arr
    return np.pad(arr, ((0, 0), (0, ph), (0, pw)), mode="symmetric")


def _default_preprocess():
    from data.transforms import preprocess_s1, preprocess_s2
    return preprocess_s1, preprocess_s2


def predict_scene(model, s2, s1=None, *, out_path=None, probabilities_path=None, window: int = 224,
                  overlap: float = 0.5, batch_size: int = 8, device="cpu", blend: str = "probabilities",
                  class_names: Optional[Sequence[str]] = None, colors=None, progress: bool = True,
                  keep_in_memory: Optional[bool] = None, return_probabilities: bool = False,
                  tags: Optional[Dict[str, str]] = None,
                  preprocess_s1: Optional[Callable] = None, preprocess_s2: Optional[Callable] = None,
                  s1_zeros_if_missing: bool = True, cloud_mask=None,
                  probabilities_dtype: str = "float32") -> SceneResult:
    """Predict a land-cover map of a whole scene with sliding windows (see module docstring).

    Args:
        model: ``nn.Module``; ``forward({"s1": (B,2,h,w), "s2": (B,13,h,w)})`` returns
            ``(B, C, h', w')`` segmentation logits or ``(B, C)`` classification logits.
        s2: Sentinel-2 source (:func:`open_s2`, :class:`ArraySource`); its grid is the output grid.
        s1: optional Sentinel-1 source on the same grid (:func:`open_s1`). When ``None`` and
            ``s1_zeros_if_missing``, the model gets an all-zero S1 tensor (for S2-only models).
        out_path: label GeoTIFF (uint8, nodata 255, colour table, class names as tags).
        probabilities_path: optional GeoTIFF with one probability band per class: float32 (NaN =
            no data) or, with ``probabilities_dtype="uint8"``, ``round(255 p)`` capped at 254 with
            scale 1/255 and nodata 255.
        cloud_mask: optional source on the S2 grid whose ``read(row_off, col_off, h, w)`` returns
            a ``(h, w)`` bool array, True = cloud. Flagged pixels take part in inference (as in
            training crops) but are written as 255 / no data and counted separately
            (``result.cloud_pixels``, ``cloud_area_m2``).
        window, overlap, batch_size, device: sliding-window settings.
        blend: ``"probabilities"`` (weighted mean of softmax outputs, default) or ``"logits"``
            (weighted mean of logits, softmax afterwards).
        keep_in_memory: also return the label map as an array (``result.labels``); default: only
            when ``out_path`` is ``None``. ``return_probabilities``: also return the blended
            ``(C, H, W)`` probabilities (``result.probabilities``; small scenes only).
        preprocess_s1 / preprocess_s2: per-window normalisation; default
            ``data.transforms.preprocess_s1`` / ``preprocess_s2``.
    """
    import torch
    import torch.nn.functional as F

    if probabilities_dtype not in ("float32", "uint8"):
        raise ValueError(f"probabilities_dtype must be 'float32' or 'uint8', got {probabilities_dtype!r}")
    if blend not in ("probabilities", "logits"):
        raise ValueError(f"blend must be 'probabilities' or 'logits', got {blend!r}")
    if window < 1 or batch_size < 1:
        raise ValueError("window and batch_size must be positive")
    if preprocess_s1 is None or preprocess_s2 is None:
        d1, d2 = _default_preprocess()
        preprocess_s1 = preprocess_s1 or d1
        preprocess_s2 = preprocess_s2 or d2
    grid = s2.grid
    if s1 is not None and not s1.grid.same_as(grid):
        raise ValueError(f"Sentinel-1 source {getattr(s1, 'name', s1)} is not on the Sentinel-2 grid "
                         "(open it with open_s1(path, s2.grid))")
    if keep_in_memory is None:
        keep_in_memory = out_path is None
    device = torch.device(device)
    H, W = grid.height, grid.width
    stride = window_stride(window, overlap)
    rows = window_starts(H, window, stride)
    cols = window_starts(W, window, stride)
    row_cells, col_cells = cell_bounds(rows, window, H), cell_bounds(cols, window, W)
    wh, ww = min(window, H), min(window, W)   # valid part of every window
    seg_weights = blend_weights(window)[:wh, :ww]
    n_windows = len(rows) * len(cols)

    model.eval()
    acc = wsum = valid = None        # strip accumulator, allocated once C is known
    top = 0                          # scene row of accumulator row 0
    mode = num_classes = None
    writers: List[_TiledWriter] = []
    label_writer = prob_writer = None
    mem_labels: List[np.ndarray] = []
    mem_probs: List[np.ndarray] = []
    counts = area = None
    nodata_px, nodata_area = 0, 0.0
    cloud_px, cloud_area = 0, 0.0
    cloudy = None                    # strip of cloud flags, like ``valid``
    out_tags = dict(tags or {})

    def start_outputs(C: int):
        nonlocal label_writer, prob_writer, counts, area, class_names
        names = list(class_names) if class_names is not None else _default_class_names(C)
        if len(names) != C:
            raise ValueError(f"{len(names)} class names for a model with {C} outputs")
        class_names = names
        counts, area = np.zeros(C, np.int64), np.zeros(C, np.float64)
        t = {"CLASS_NAMES": json.dumps(names), "NODATA_VALUE": str(OUTPUT_NODATA),
             "PREDICTION_MODE": mode, "WINDOW": str(window), "STRIDE": str(stride), **out_tags}
        t.update({f"CLASS_{i}": n for i, n in enumerate(names)})
        if out_path is not None:
            rgb = class_colors_rgb(C, colors)
            cmap = {i: (*rgb[i], 255) for i in range(C)}
            cmap.update({i: (0, 0, 0, 0) for i in range(C, 256)})
            label_writer = _TiledWriter(out_path, grid, 1, "uint8", OUTPUT_NODATA, 2, wh, tags=t,
                                        descriptions=["land cover class"], colormap=cmap)
            writers.append(label_writer)
        if probabilities_path is not None:
            quantised = probabilities_dtype == "uint8"
            prob_tags = {k: v for k, v in t.items() if k != "NODATA_VALUE"}
            if quantised:
                prob_tags.update(PROBABILITY_SCALE="1/255", NODATA_VALUE=str(OUTPUT_NODATA))
            prob_writer = _TiledWriter(probabilities_path, grid, C, probabilities_dtype,
                                       OUTPUT_NODATA if quantised else float("nan"), 2 if quantised else 3, wh,
                                       tags=prob_tags, descriptions=[f"P({n})" for n in names],
                                       scales=[1.0 / 255.0] * C if quantised else None)
            writers.append(prob_writer)

    def finalize(upto: int):
        """Emit scene rows [top, upto) from the accumulator and shift it up."""
        nonlocal top, nodata_px, nodata_area, cloud_px, cloud_area
        n = upto - top
        if n <= 0:
            return
        lab = acc[:, :n].argmax(axis=0).astype(np.uint8)   # weights > 0: argmax of the weighted mean
        v = valid[:n]
        lab[~v] = OUTPUT_NODATA
        pa = pixel_area_m2(grid.transform, grid.crs, top, n)
        per_row = np.stack([np.bincount(lab[r], minlength=256) for r in range(n)])  # (n, 256)
        nodata_px += int(per_row[:, OUTPUT_NODATA].sum())
        nodata_area += float((per_row[:, OUTPUT_NODATA] * pa).sum())
        if cloud_mask is not None:   # cloudy data pixels: out of the class counts, counted apart
            cl = cloudy[:n] & v
            cl_rows = cl.sum(axis=1)
            if cl_rows.any():
                for r in np.flatnonzero(cl_rows):
                    per_row[r, :] -= np.bincount(lab[r][cl[r]], minlength=256)
                cloud_px += int(cl_rows.sum())
                cloud_area += float((cl_rows * pa).sum())
                lab[cl] = OUTPUT_NODATA
                v = v & ~cl
        counts[:] += per_row[:, :num_classes].sum(0)
        area[:] += (per_row[:, :num_classes] * pa[:, None]).sum(0)
        if label_writer is not None:
            label_writer.add(lab[None])
        if keep_in_memory:
            mem_labels.append(lab)
        if prob_writer is not None or return_probabilities:
            probs = acc[:, :n] / wsum[None, :n]
            if blend == "logits":
                probs = torch.softmax(torch.from_numpy(probs), dim=0).numpy()
            probs[:, ~v] = np.nan
            if prob_writer is not None:
                if probabilities_dtype == "uint8":
                    q = np.minimum(np.rint(np.nan_to_num(probs, nan=0.0) * 255.0), 254).astype(np.uint8)
                    q[:, ~v] = OUTPUT_NODATA
                    prob_writer.add(q)
                else:
                    prob_writer.add(probs)
            if return_probabilities:
                mem_probs.append(probs.copy())
        # shift the accumulator
        rest = acc.shape[1] - n
        acc[:, :rest] = acc[:, n:].copy()
        acc[:, rest:] = 0
        wsum[:rest] = wsum[n:].copy()
        wsum[rest:] = 0
        valid[:rest] = valid[n:].copy()
        valid[rest:] = False
        if cloudy is not None:
            cloudy[:rest] = cloudy[n:].copy()
            cloudy[rest:] = False
        top = upto

    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    bar = tqdm(total=n_windows, unit="win", desc="windows", disable=not progress) if tqdm else None

    try:
        with torch.inference_mode():
            for ri, r0 in enumerate(rows):
                s2_strip = s2.read(r0, 0, wh, W)
                if s2_strip.shape[0] != 13:
                    raise ValueError(f"Sentinel-2 source {getattr(s2, 'name', s2)}: expected 13 bands, "
                                     f"got {s2_strip.shape[0]}")
                strip_valid = np.zeros((wh, W), bool)
                for band in s2_strip:                       # band by band: no (13, h, W) temporaries
                    strip_valid |= band != 0
                if s2_strip.dtype.kind == "f":
                    for band in s2_strip:
                        bad = ~np.isfinite(band)
                        if bad.any():
                            strip_valid &= ~bad
                            band[bad] = 0.0
                if s1 is not None:
                    s1_strip = s1.read(r0, 0, wh, W)
                    if s1_strip.shape[0] != 2:
                        raise ValueError(f"Sentinel-1 source {getattr(s1, 'name', s1)}: expected 2 bands, "
                                         f"got {s1_strip.shape[0]}")
                    if s1_strip.dtype.kind == "f":
                        for band in s1_strip:
                            strip_valid &= np.isfinite(band)
                else:
                    s1_strip = None

                batch: List[int] = []

                def run(batch_idx: List[int]):
                    nonlocal acc, wsum, valid, mode, num_classes
                    batch_cols = [cols[i] for i in batch_idx]
                    x2, x1 = [], []
                    for c0 in batch_cols:
                        x2.append(_pad_to(np.asarray(preprocess_s2(s2_strip[:, :, c0:c0 + ww]), np.float32),
                                          window, window))
                        if s1_strip is not None:
                            x1.append(_pad_to(np.asarray(preprocess_s1(s1_strip[:, :, c0:c0 + ww]), np.float32),
                                              window, window))
                    t2 = torch.from_numpy(np.stack(x2)).to(device)
                    if x1:
                        t1 = torch.from_numpy(np.stack(x1)).to(device)
                    elif s1_zeros_if_missing:
                        t1 = torch.zeros((len(batch_cols), 2, window, window), device=device)
                    else:
                        t1 = None
                    inputs = {"s2": t2} if t1 is None else {"s1": t1, "s2": t2}
                    out = model(inputs)
                    if isinstance(out, dict):
                        raise TypeError("the model returned a dict (a pre-training model?); predict.py needs "
                                        "a classification or segmentation model")
                    out = out.float()
                    if mode is None:
                        if out.ndim == 4:
                            mode = "segmentation"
                        elif out.ndim == 2:
                            mode = "classification"
                        else:
                            raise ValueError(f"model output of shape {tuple(out.shape)}: expected (B, C, H, W) "
                                             "or (B, C)")
                        num_classes = out.shape[1]
                        if num_classes > 255:
                            raise ValueError(f"{num_classes} classes do not fit a uint8 map with nodata 255")
                        acc = np.zeros((num_classes, wh, W), np.float32)
                        wsum = np.zeros((wh, W), np.float32)
                        valid = np.zeros((wh, W), bool)
                        start_outputs(num_classes)
                    if out.shape[1] != num_classes:
                        raise ValueError("the model changed its number of outputs between batches")
                    if mode == "segmentation":
                        if out.shape[-2:] != (window, window):
                            out = F.interpolate(out, size=(window, window), mode="bilinear", align_corners=False)
                        vals = out if blend == "logits" else torch.softmax(out, dim=1)
                        vals = vals[:, :, :wh, :ww].cpu().numpy()
                        for k, c0 in enumerate(batch_cols):
                            a = acc[:, r0 - top:r0 - top + wh, c0:c0 + ww]
                            a += vals[k] * seg_weights
                            wsum[r0 - top:r0 - top + wh, c0:c0 + ww] += seg_weights
                    else:
                        vals = out if blend == "logits" else torch.softmax(out, dim=1)
                        vals = vals.cpu().numpy()
                        ra, rb = row_cells[ri], row_cells[ri + 1]
                        for k, ci in enumerate(batch_idx):
                            ca, cb = col_cells[ci], col_cells[ci + 1]
                            acc[:, ra - top:rb - top, ca:cb] += vals[k][:, None, None]
                            wsum[ra - top:rb - top, ca:cb] += 1.0
                    if bar is not None:
                        bar.update(len(batch_cols))

                for ci in range(len(cols)):
                    batch.append(ci)
                    if len(batch) == batch_size:
                        run(batch)
                        batch = []
                if batch:
                    run(batch)
                valid[r0 - top:r0 - top + wh] = strip_valid
                if cloud_mask is not None:
                    if cloudy is None:
                        cloudy = np.zeros_like(valid)
                    flags = np.asarray(cloud_mask.read(r0, 0, wh, W), bool)
                    if flags.shape != (wh, W):
                        raise ValueError(f"cloud mask {getattr(cloud_mask, 'name', cloud_mask)}: read "
                                         f"{flags.shape}, expected {(wh, W)}")
                    cloudy[r0 - top:r0 - top + wh] = flags
                finalize(rows[ri + 1] if ri + 1 < len(rows) else H)
    finally:
        if bar is not None:
            bar.close()
        for w in writers:
            w.close()

    result = SceneResult(mode=mode, num_classes=num_classes, grid=grid, class_names=list(class_names),
                         pixel_counts=counts, area_m2=area, nodata_pixels=nodata_px,
                         nodata_area_m2=nodata_area, windows=n_windows, window=window, stride=stride,
                         cloud_masked=cloud_mask is not None, cloud_pixels=cloud_px, cloud_area_m2=cloud_area)
    if out_path is not None:
        result.outputs["map"] = str(out_path)
    if probabilities_path is not None:
        result.outputs["probabilities"] = str(probabilities_path)
    if keep_in_memory:
        result.labels = np.concatenate(mem_labels, axis=0)
    if return_probabilities:
        result.probabilities = np.concatenate(mem_probs, axis=1)
    return result


# ----------------------------------------------------------------------------- summary & preview


def area_summary(result: SceneResult, **extra) -> dict:
    """Per-class pixel counts and areas (km²) of a prediction, as a JSON-ready dict."""
    valid_area = float(result.area_m2.sum())
    classes = []
    for i, name in enumerate(result.class_names):
        a = float(result.area_m2[i])
        classes.append({"index": i, "name": name, "pixels": int(result.pixel_counts[i]),
                        "area_km2": a / 1e6, "fraction": (a / valid_area) if valid_area > 0 else 0.0})
    g = result.grid
    px = pixel_area_m2(g.transform, g.crs, 0, 1)[0]
    return {
        "mode": result.mode,
        "crs": g.crs.to_string() if g.crs is not None else None,
        "width": g.width, "height": g.height,
        "transform": list(g.transform)[:6],
        "pixel_area_m2": float(px),
        "classes": classes,
        "valid_pixels": int(result.pixel_counts.sum()),
        "valid_area_km2": valid_area / 1e6,
        "nodata_pixels": int(result.nodata_pixels),
        "nodata_area_km2": result.nodata_area_m2 / 1e6,
        "windows": result.windows, "window": result.window, "stride": result.stride,
        **({"cloud_pixels": int(result.cloud_pixels), "cloud_area_km2": result.cloud_area_m2 / 1e6,
            "cloud_free_area_km2": valid_area / 1e6,
            "cloud_fraction": (result.cloud_area_m2 / (result.cloud_area_m2 + valid_area)
                               if result.cloud_area_m2 + valid_area > 0 else 0.0)}
           if result.cloud_masked else {}),
        **extra,
    }


def format_summary(summary: dict) -> str:
    """The per-class area table of :func:`area_summary` as text."""
    width = max([len(c["name"]) for c in summary["classes"]] + [len("no data"), 5])
    lines = [f"{'class':<{width}}  {'pixels':>12}  {'area km²':>12}  {'share':>7}",
             "-" * (width + 39)]
    for c in summary["classes"]:
        lines.append(f"{c['name']:<{width}}  {c['pixels']:>12d}  {c['area_km2']:>12.4f}  {100 * c['fraction']:>6.2f}%")
    lines.append("-" * (width + 39))
    lines.append(f"{'total':<{width}}  {summary['valid_pixels']:>12d}  {summary['valid_area_km2']:>12.4f}  {100.0:>6.2f}%")
    if "cloud_pixels" in summary:
        lines.append(f"{'clouds':<{width}}  {summary['cloud_pixels']:>12d}  {summary['cloud_area_km2']:>12.4f}  "
                     f"{100 * summary['cloud_fraction']:>6.2f}% of the observed area "
                     f"(cloud-free area mapped: {summary['cloud_free_area_km2']:.4f} km²)")
    lines.append(f"{'no data':<{width}}  {summary['nodata_pixels']:>12d}  {summary['nodata_area_km2']:>12.4f}")
    return "\n".join(lines)


def write_preview(map_path, png_path, class_names: Optional[Sequence[str]] = None, colors=None,
                  max_size: int = 2048, title: Optional[str] = None, dpi: int = 100):
    """Write a PNG preview (with legend) of a label GeoTIFF; reads at most ``max_size`` px per side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    with rasterio.open(map_path) as ds:
        scale = max(ds.width / max_size, ds.height / max_size, 1.0)
        shape = (max(1, int(round(ds.height / scale))), max(1, int(round(ds.width / scale))))
        labels = ds.read(1, out_shape=shape, resampling=Resampling.nearest)
        if class_names is None:
            try:
                class_names = json.loads(ds.tags().get("CLASS_NAMES", "null"))
            except json.JSONDecodeError:
                class_names = None
        crs = ds.crs
    if class_names is None:
        class_names = _default_class_names(int(labels[labels != OUTPUT_NODATA].max(initial=0)) + 1)
    C = len(class_names)
    rgb = np.asarray(class_colors_rgb(C, colors), dtype=np.float64) / 255.0
    rgba = np.ones((shape[0], shape[1], 4))
    valid = labels < C
    rgba[valid, :3] = rgb[labels[valid]]
    rgba[~valid] = (1.0, 1.0, 1.0, 0.0)

    h, w = shape
    fig_w = 8.0
    fig_h = max(3.0, fig_w * h / w * 0.8)
    fig = Figure(figsize=(fig_w + 3.0, fig_h), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0.02, 0.04, 0.68, 0.9])
    ax.imshow(rgba, interpolation="nearest", cmap=ListedColormap(rgb))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"{Path(map_path).name} ({crs.to_string() if crs else 'no CRS'})", fontsize=9)
    handles = [Patch(facecolor=rgb[i], edgecolor="k", linewidth=0.3, label=f"{i}: {class_names[i]}") for i in range(C)]
    handles.append(Patch(facecolor="white", edgecolor="k", linewidth=0.3, label=f"{OUTPUT_NODATA}: no data"))
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=9, frameon=False)
    Path(png_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, bbox_inches="tight", pad_inches=0.1)
    return str(png_path)
