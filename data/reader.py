"""Read SEN12MS / DFC2020 patches from the original on-disk layout with rasterio.

Layout: ``<root>/<season>/<sensor>_<scene>/<season>_<sensor>_<scene>_p<patch>.tif``,
e.g. ``ROIs0000_validation/s2_0/ROIs0000_validation_s2_0_p649.tif``.

Two ways to read: :meth:`SEN12MSReader.read` (rasterio, returns the georeferencing too) and
:meth:`SEN12MSReader.read_array` (pixels only, what the dataset uses). ``read_array`` reads plain
striped GeoTIFFs -- the SEN12MS / DFC2020 files are uncompressed, pixel-interleaved strips --
directly with one ``pread`` (deflate strips with ``zlib``) and falls back to ``read`` for anything
else (tiles, other codecs, predictors, big-endian, BigTIFF, wrong band counts, truncated or
corrupt files), so its values and errors are those of rasterio. Opening a file with rasterio
parses its CRS through PROJ (more than half of the cost of ``rasterio.open``), which a
training sample never needs.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import rasterio
from affine import Affine
from rasterio.coords import BoundingBox
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from .bands import SENSORS, Season, Sensor, parse_season
from .errors import DatasetError, DatasetNotFoundError

__all__ = ["PatchGeo", "SEN12MSReader", "WindowLike"]

WindowLike = Union[Window, Tuple[int, int, int, int]]
"""A rasterio ``Window`` or ``(col_off, row_off, width, height)``."""


@dataclass(frozen=True)
class PatchGeo:
    """Georeferencing of what was read (window-aware)."""

    crs: Optional[CRS]
    transform: Affine
    bounds: BoundingBox
    shape: Tuple[int, int]


def _as_window(window: Optional[WindowLike]) -> Optional[Window]:
    if window is None or isinstance(window, Window):
        return window
    col_off, row_off, width, height = (int(v) for v in window)
    return Window(col_off, row_off, width, height)


def _bounds(transform: Affine, width: float, height: float) -> BoundingBox:
    """Bounding box of a ``width`` x ``height`` pixel grid with the given transform."""
    xs, ys = zip(*(transform @ (col, row) for col in (0, width) for row in (0, height)))
    return BoundingBox(min(xs), min(ys), max(xs), max(ys))


# ------------------------------------------------------------------ direct TIFF strip reading
_TIFF_DTYPES = {
    (1, 8): np.uint8, (1, 16): np.uint16, (1, 32): np.uint32, (1, 64): np.uint64,
    (2, 8): np.int8, (2, 16): np.int16, (2, 32): np.int32, (2, 64): np.int64,
    (3, 32): np.float32, (3, 64): np.float64,
}
_TIFF_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q"}  # BYTE, SHORT, LONG, LONG8 (little-endian)
_HEAD = 16384  # bytes read up front; holds the IFD and its arrays for GDAL-written files
_DEFLATE = (8, 32946)
_HAVE_PREAD = hasattr(os, "pread") and hasattr(os, "preadv")  # not on Windows: rasterio only


class _Unsupported(Exception):
    """The file is not a plain striped TIFF this module reads itself (use rasterio)."""


@dataclass(frozen=True)
class _Strips:
    width: int
    height: int
    count: int
    dtype: np.dtype
    planar: bool  # PlanarConfiguration 2 (one band after the other)
    deflate: bool
    rows_per_strip: int
    offsets: np.ndarray
    byte_counts: np.ndarray


def _parse_strips(fd: int) -> _Strips:
    """Layout of the first image of a little-endian classic TIFF, or raise ``_Unsupported``."""
    head = os.pread(fd, _HEAD, 0)
    if len(head) < 8 or head[:4] != b"II*\x00":
        raise _Unsupported("not a little-endian classic TIFF")

    def chunk(offset: int, size: int) -> bytes:
        if offset + size <= len(head):
            return head[offset:offset + size]
        data = os.pread(fd, size, offset)
        if len(data) != size:
            raise _Unsupported("truncated header")
        return data

    ifd = struct.unpack_from("<I", head, 4)[0]
    (n,) = struct.unpack("<H", chunk(ifd, 2))
    entries = chunk(ifd + 2, 12 * n)
    tags = {}
    for i in range(n):
        tag, typ, count, value = struct.unpack_from("<HHII", entries, 12 * i)
        code = _TIFF_TYPES.get(typ)
        if code is None:
            continue  # ASCII, RATIONAL, DOUBLE, ...: not needed here
        size = struct.calcsize(code) * count
        raw = entries[12 * i + 8:12 * i + 8 + size] if size <= 4 else chunk(value, size)
        tags[tag] = np.frombuffer(raw, dtype="<" + code, count=count)

    def one(tag: int, default: Optional[int] = None) -> int:
        if tag not in tags:
            if default is None:
                raise _Unsupported(f"missing tag {tag}")
            return default
        values = tags[tag]
        if len(values) > 1 and not (values == values[0]).all():
            raise _Unsupported(f"tag {tag} differs per band")
        return int(values[0])

    if 322 in tags or 324 in tags:
        raise _Unsupported("tiled")
    compression = one(259, 1)
    if compression != 1 and (compression not in _DEFLATE or one(317, 1) != 1):
        raise _Unsupported(f"compression {compression} / predictor")
    width, height, count = one(256), one(257), one(277, 1)
    dtype = _TIFF_DTYPES.get((one(339, 1), one(258, 1)))
    if dtype is None:
        raise _Unsupported("sample format")
    planar = one(284, 1) == 2
    rows = min(one(278, height), height)
    offsets, byte_counts = tags.get(273), tags.get(279)
    per_band = -(-height // rows)
    if offsets is None or byte_counts is None or len(offsets) != len(byte_counts) \
            or len(offsets) != per_band * (count if planar and count > 1 else 1):
        raise _Unsupported("strip table")
    return _Strips(width, height, count, np.dtype(dtype).newbyteorder("<"), planar and count > 1,
                   compression != 1, rows, offsets.astype(np.int64), byte_counts.astype(np.int64))


def _read_rows(fd: int, lay: _Strips, first: int, row0: int, row1: int, samples: int) -> np.ndarray:
    """Rows ``row0:row1`` of the strips starting at strip ``first`` as ``(rows, width * samples)``."""
    rps, row_bytes = lay.rows_per_strip, lay.width * samples * lay.dtype.itemsize
    s0, s1 = first + row0 // rps, first + (row1 - 1) // rps + 1
    offsets, counts = lay.offsets[s0:s1], lay.byte_counts[s0:s1]
    if not lay.deflate and (len(offsets) == 1 or (offsets[1:] == offsets[:-1] + counts[:-1]).all()):
        skip = (row0 % rps) * row_bytes
        size = (row1 - row0) * row_bytes
        if skip + size > int(counts.sum()):
            raise _Unsupported("short strips")
        buf = bytearray(size)
        if os.preadv(fd, [buf], int(offsets[0]) + skip) != size:
            raise _Unsupported("truncated file")
    else:
        parts = []
        for offset, count in zip(offsets.tolist(), counts.tolist()):
            data = os.pread(fd, count, offset)
            if len(data) != count:
                raise _Unsupported("truncated file")
            if lay.deflate:
                try:
                    data = zlib.decompress(data)
                except zlib.error as err:
                    raise _Unsupported(str(err)) from None
            parts.append(data)
        data = b"".join(parts)
        skip = (row0 % rps) * row_bytes
        if len(data) < skip + (row1 - row0) * row_bytes:
            raise _Unsupported("short strips")
        buf = bytearray(data[skip:skip + (row1 - row0) * row_bytes])
    return np.frombuffer(buf, dtype=lay.dtype).reshape(row1 - row0, lay.width * samples)


def _read_direct(path: Path, expected_count: int, indexes: Optional[Sequence[int]],
                 win: Optional[Window]) -> np.ndarray:
    """``(C, h, w)`` native-endian array as ``rasterio``'s ``read(indexes, window=win)``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        lay = _parse_strips(fd)
        if lay.count != expected_count:
            raise _Unsupported("band count")
        if win is None:
            r0, c0, h, w = 0, 0, lay.height, lay.width
        else:
            r0, c0, h, w = int(win.row_off), int(win.col_off), int(win.height), int(win.width)
            if (r0 != win.row_off or c0 != win.col_off or h != win.height or w != win.width or r0 < 0 or c0 < 0
                    or h <= 0 or w <= 0 or r0 + h > lay.height or c0 + w > lay.width):
                raise _Unsupported("window")
        bands = list(range(lay.count)) if indexes is None else [i - 1 for i in indexes]
        if lay.planar:
            per_band = len(lay.offsets) // lay.count
            out = np.stack([_read_rows(fd, lay, b * per_band, r0, r0 + h, 1)[:, c0:c0 + w] for b in bands])
        else:
            rows = _read_rows(fd, lay, 0, r0, r0 + h, lay.count).reshape(h, lay.width, lay.count)
            pixels = rows[:, c0:c0 + w]
            if indexes is None:
                out = np.ascontiguousarray(pixels.transpose(2, 0, 1))
            else:
                out = np.ascontiguousarray(pixels[:, :, bands].transpose(2, 0, 1))
    finally:
        os.close(fd)
    if not out.flags.writeable or not out.flags.c_contiguous:
        out = out.copy()
    return out.astype(out.dtype.newbyteorder("="), copy=False)


class SEN12MSReader:
    """Random access to patches under a SEN12MS / DFC2020 ``root``.

    Raises :class:`~data.errors.DatasetNotFoundError` if ``root`` is not a folder.
    Every read opens the file once; errors name the path and the problem.
    """

    def __init__(self, root: Union[str, Path]) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"dataset root not found: {self.root} (expected a folder with "
                                       f"season folders such as {Season.VALSET.value}/)")

    def __repr__(self) -> str:
        return f"SEN12MSReader(root={str(self.root)!r})"

    def season_dir(self, season: "Season | str") -> Path:
        """``<root>/<season>``."""
        return self.root / parse_season(season).value

    def path(self, season: "Season | str", scene: int, patch: int, sensor: "Sensor | str") -> Path:
        """Path of one patch file (whether it exists or not)."""
        season = parse_season(season)
        sensor = Sensor(sensor if not isinstance(sensor, Sensor) else sensor.value)
        name = f"{season.value}_{sensor.value}_{int(scene)}_p{int(patch)}.tif"
        return self.root / season.value / f"{sensor.value}_{int(scene)}" / name

    def check_season(self, season: "Season | str") -> Path:
        """Return the season folder or raise naming it."""
        folder = self.season_dir(season)
        if not folder.is_dir():
            raise DatasetNotFoundError(f"season folder not found: {folder}")
        return folder

    def _missing(self, path: Path) -> DatasetNotFoundError:
        """Explain which part of ``path`` (season folder, sensor folder, file) is missing."""
        season_dir, sensor_dir = path.parent.parent, path.parent
        if not self.root.is_dir():
            return DatasetNotFoundError(f"dataset root not found: {self.root}")
        if not season_dir.is_dir():
            return DatasetNotFoundError(f"season folder not found: {season_dir} (needed for {path})")
        if not sensor_dir.is_dir():
            return DatasetNotFoundError(f"sensor folder not found: {sensor_dir} (needed for {path})")
        return DatasetNotFoundError(f"patch file not found: {path}")

    def _locate(self, season, scene: int, patch: int, sensor, bands) -> tuple:
        """(sensor, its band spec, the patch file, 1-based band indexes or None for all)."""
        sensor = Sensor(sensor if not isinstance(sensor, Sensor) else sensor.value)
        spec = SENSORS[sensor]
        if isinstance(bands, str):
            bands = [bands]
        indexes = None if bands is None else [spec.index(b) + 1 for b in bands]
        return sensor, spec, self.path(season, scene, patch, sensor), indexes

    def read(
        self,
        season: "Season | str",
        scene: int,
        patch: int,
        sensor: "Sensor | str",
        bands: Optional[Union[str, Sequence[str]]] = None,
        window: Optional[WindowLike] = None,
    ) -> Tuple[np.ndarray, PatchGeo]:
        """Read ``(C, H, W)`` in file units (dtype as on disk) and its georeferencing.

        ``bands``: band names (see :data:`data.bands.SENSORS`), default all, in file order.
        ``window``: only this part of the patch is read; the returned transform and
        bounds are those of the window.
        """
        sensor, spec, path, indexes = self._locate(season, scene, patch, sensor, bands)
        win = _as_window(window)
        if not path.is_file():
            raise self._missing(path)
        try:
            with rasterio.open(path) as src:
                if src.count != spec.count:
                    raise DatasetError(
                        f"{path}: expected {spec.count} band(s) for {sensor.value} "
                        f"({', '.join(spec.bands)}), found {src.count}"
                    )
                if win is not None:
                    if (win.col_off < 0 or win.row_off < 0 or win.width <= 0 or win.height <= 0
                            or win.col_off + win.width > src.width
                            or win.row_off + win.height > src.height):
                        raise DatasetError(
                            f"{path}: window {win} outside the {src.height}x{src.width} raster"
                        )
                    transform = src.transform @ Affine.translation(win.col_off, win.row_off)
                    bounds = _bounds(transform, win.width, win.height)
                else:
                    transform, bounds = src.transform, src.bounds
                array = src.read(indexes if indexes is not None else None, window=win)
                geo = PatchGeo(src.crs, transform, bounds, (int(array.shape[1]), int(array.shape[2])))
        except DatasetError:
            raise
        except (RasterioError, OSError) as err:
            raise DatasetError(f"{path}: cannot read GeoTIFF, corrupt or truncated file ({err})") from err
        return array, geo

    def read_array(self, season: "Season | str", scene: int, patch: int, sensor: "Sensor | str",
                   bands: Optional[Union[str, Sequence[str]]] = None,
                   window: Optional[WindowLike] = None) -> np.ndarray:
        """The array of :meth:`read` (same values, dtype and errors), without georeferencing.

        Plain striped GeoTIFFs (uncompressed or deflate without predictor, as SEN12MS / DFC2020)
        are read directly; anything else goes through :meth:`read`.
        """
        sensor, spec, path, indexes = self._locate(season, scene, patch, sensor, bands)
        if _HAVE_PREAD:
            try:
                return _read_direct(path, spec.count, indexes, _as_window(window))
            except (_Unsupported, OSError, ValueError, struct.error):
                pass
        return self.read(season, scene, patch, sensor, bands=bands, window=window)[0]
