"""Label maps on the Sentinel-2 grid, and their codes checked against the class mapping.

* :class:`RasterLabels`: a one-band label raster in any CRS and resolution, read onto the
  10 m grid by nearest neighbour (labels as coarse as the grid or coarser) or by the mode of
  the covered source pixels (finer labels) -- never interpolated. Pixels outside the raster or
  equal to its nodata value read as :data:`NO_LABEL`.
* :class:`VectorLabels`: GeoJSON polygons whose ``property`` holds a class code (a number) or a
  class name, rasterised onto the grid (later features win where polygons overlap).

Both are sources in the sense of :mod:`inference.sources`: ``read(row, col, h, w)`` returns an
``int64 (h, w)`` array of source codes. :func:`open_labels` picks one; :meth:`codes` lists the
codes a label map holds over the grid, so an unknown code is refused before anything is written.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds, transform_geom
from rasterio.windows import Window, from_bounds

from data.classes import ClassScheme, LabelMapping
from data.errors import DatasetError
from inference.sources import Grid, grid_of, open_raster

__all__ = ["NO_LABEL", "RasterLabels", "VectorLabels", "open_labels", "mapping_for_names", "VECTOR_SUFFIXES"]

NO_LABEL = -1
"""Code of pixels without a label (outside the map, or the raster's nodata)."""

VECTOR_SUFFIXES = (".geojson", ".json")
_SCAN_ROWS = 2048


def _overlaps(a: Sequence[float], b: Sequence[float]) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def _pixel_size(transform) -> float:
    return math.sqrt(abs(transform.a * transform.e - transform.b * transform.d))


def _metres(crs, transform) -> float:
    """Approximate pixel size in metres (degrees of latitude taken as 111.32 km)."""
    size = _pixel_size(transform)
    if crs is not None and crs.is_geographic:
        return abs(transform.e) * 111_320.0
    return size * (crs.linear_units_factor[1] if crs is not None and crs.is_projected else 1.0)


class RasterLabels:
    """A one-band label raster on ``grid`` (see the module docstring)."""

    def __init__(self, path, grid: Grid, resampling: str = "auto", what: str = "--labels"):
        self.path = self.name = str(path)
        self.grid = grid
        self._src = open_raster(self.path, DatasetError, f"{what} {self.path}: cannot open as a raster")
        src = self._src
        if src.count != 1:
            src.close()
            raise DatasetError(f"{what} {self.path}: a label map has one band, found {src.count}")
        if src.crs is None:
            src.close()
            raise DatasetError(f"{what} {self.path}: no CRS (a label map must be georeferenced)")
        self.nodata = src.nodata
        self.src_bounds = transform_bounds(grid.crs, src.crs, *grid.bounds, densify_pts=21)
        if not _overlaps(self.src_bounds, src.bounds):
            src.close()
            raise DatasetError(f"{what} {self.path} (CRS {src.crs}) does not overlap the Sentinel-2 scene "
                               f"(CRS {grid.crs}): no common area")
        coarser = _metres(src.crs, src.transform) >= 0.75 * _metres(grid.crs, grid.transform)
        if resampling == "auto":
            resampling = "nearest" if coarser else "mode"
        if resampling not in ("nearest", "mode"):
            raise DatasetError(f"--label_resampling {resampling}: labels are resampled by nearest or mode only")
        self.resampling = resampling
        self.warped = not grid_of(src).same_as(grid)
        self._ds = src if not self.warped else WarpedVRT(
            src, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
            resampling=Resampling[resampling], nodata=NO_LABEL, dtype="int32")

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        win = Window(col_off, row_off, width, height)
        if self.warped:
            return self._ds.read(1, window=win).astype(np.int64)
        a = self._ds.read(1, window=win, boundless=True, fill_value=self.nodata or 0).astype(np.int64)
        if self.nodata is not None:
            a[a == int(self.nodata)] = NO_LABEL
        return a

    def codes(self) -> Set[int]:
        """Every code of the raster over the scene (its own pixels, in chunks; nodata left out)."""
        src = self._src
        win = from_bounds(*self.src_bounds, transform=src.transform).round_offsets().round_lengths()
        win = win.intersection(Window(0, 0, src.width, src.height))
        found: Set[int] = set()
        for top in range(int(win.row_off), int(win.row_off + win.height), _SCAN_ROWS):
            h = min(_SCAN_ROWS, int(win.row_off + win.height) - top)
            a = src.read(1, window=Window(win.col_off, top, win.width, h))
            values = np.unique(a)
            if self.nodata is not None:
                values = values[values != self.nodata]
            if values.dtype.kind == "f":
                values = values[~np.isnan(values)]
                if not np.all(values == np.round(values)):
                    raise DatasetError(f"--labels {self.path}: values are not whole numbers (a continuous "
                                       "raster, not a class map?)")
            found.update(int(v) for v in values)
        return found

    def describe(self) -> dict:
        return {"path": self.path, "kind": "raster", "crs": str(self._src.crs),
                "pixel_size": _pixel_size(self._src.transform), "nodata": self.nodata,
                "resampling": self.resampling if self.warped else "none (same grid)"}

    def close(self) -> None:
        if self._ds is not self._src:
            self._ds.close()
        self._src.close()


def _geojson_crs(obj: dict, path: str) -> str:
    """The legacy ``crs`` member of a GeoJSON (``EPSG:4326`` when absent, as RFC 7946 says)."""
    crs = obj.get("crs")
    if not crs:
        return "EPSG:4326"
    name = (crs.get("properties") or {}).get("name") if isinstance(crs, dict) else None
    if not name:
        raise DatasetError(f"--labels {path}: unreadable 'crs' member {crs!r}")
    if "CRS84" in name:
        return "OGC:CRS84"
    return "EPSG:" + name.rsplit(":", 1)[-1] if "EPSG" in name.upper() else name


class VectorLabels:
    """GeoJSON polygons with a class property, rasterised onto ``grid`` (see the module docstring).

    ``names``: class name -> code, used when the property holds names instead of numbers.
    """

    def __init__(self, path, grid: Grid, prop: str = "class", names: Optional[Dict[str, int]] = None):
        self.path = self.name = str(path)
        self.grid = grid
        self.prop = prop
        try:
            obj = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"--labels {path}: cannot read as GeoJSON ({exc})") from None
        features = obj.get("features") if isinstance(obj, dict) else None
        if obj.get("type") == "Feature":
            features = [obj]
        if not isinstance(features, list) or not features:
            raise DatasetError(f"--labels {path}: expected a GeoJSON FeatureCollection with polygon features")
        self.crs = _geojson_crs(obj, self.path)
        self.values: List[object] = []
        shapes: List[Tuple[dict, object]] = []
        for i, feature in enumerate(features):
            geom = feature.get("geometry") or {}
            if geom.get("type") not in ("Polygon", "MultiPolygon"):
                continue
            props = feature.get("properties") or {}
            if prop not in props:
                raise DatasetError(f"--labels {path}: feature {i} has no property {prop!r} (--label_property; "
                                   f"it has {sorted(props) or 'none'})")
            shapes.append((transform_geom(self.crs, grid.crs, geom), props[prop]))
        if not shapes:
            raise DatasetError(f"--labels {path}: no Polygon or MultiPolygon feature")
        self.names = names
        self._shapes = [(g, self._code(v)) for g, v in shapes]
        self._boxes = np.array([_pixel_box(g, grid) for g, _ in self._shapes])
        boxes = self._boxes
        if not ((boxes[:, 2] > 0) & (boxes[:, 0] < grid.width) & (boxes[:, 3] > 0) & (boxes[:, 1] < grid.height)).any():
            raise DatasetError(f"--labels {path} (CRS {self.crs}) does not overlap the Sentinel-2 scene "
                               f"(CRS {grid.crs}): no polygon falls inside it")

    def _code(self, value) -> int:
        if isinstance(value, bool) or value is None:
            raise DatasetError(f"--labels {self.path}: property {self.prop!r} holds {value!r}, not a class")
        if isinstance(value, (int, float)) and float(value) == int(value):
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        if self.names is None:
            raise DatasetError(f"--labels {self.path}: property {self.prop!r} holds the name {value!r}; names "
                               "need --classes with those class names (or numeric codes in the property)")
        key = str(value).strip().lower()
        if key not in self.names:
            raise DatasetError(f"--labels {self.path}: class name {value!r} is not in the class file "
                               f"(its classes: {', '.join(sorted(self.names))})")
        return self.names[key]

    def codes(self) -> Set[int]:
        return {c for _, c in self._shapes}

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        from rasterio.features import rasterize

        b = self._boxes
        hit = (b[:, 2] > col_off) & (b[:, 0] < col_off + width) & (b[:, 3] > row_off) & (b[:, 1] < row_off + height)
        if not hit.any():
            return np.full((height, width), NO_LABEL, np.int64)
        t = self.grid.transform @ rasterio.Affine.translation(col_off, row_off)
        shapes = [self._shapes[i] for i in np.flatnonzero(hit)]
        out = rasterize(shapes, out_shape=(height, width), transform=t, fill=NO_LABEL, dtype="int32")
        return out.astype(np.int64)

    def describe(self) -> dict:
        return {"path": self.path, "kind": "geojson", "crs": self.crs, "property": self.prop,
                "features": len(self._shapes), "resampling": "rasterised (pixel centres inside polygons)"}

    def close(self) -> None:
        pass


def _pixel_box(geom: dict, grid: Grid) -> Tuple[float, float, float, float]:
    """(col0, row0, col1, row1) of a geometry's bounding box in grid pixels."""
    xs, ys = [], []

    def walk(coords):
        if coords and isinstance(coords[0], (int, float)):
            xs.append(coords[0])
            ys.append(coords[1])
        else:
            for c in coords:
                walk(c)

    walk(geom["coordinates"])
    inv = ~grid.transform
    cols, rows = zip(*(inv @ (x, y) for x in (min(xs), max(xs)) for y in (min(ys), max(ys))))
    return min(cols), min(rows), max(cols), max(rows)


def mapping_for_names(names: Sequence[str]) -> LabelMapping:
    """A class mapping for polygons labelled by name without a class file: one class per name
    (sorted), codes 1..K = label-file values."""
    unique = sorted({str(n).strip() for n in names})
    from data.classes import _palette

    scheme = ClassScheme(tuple(unique), tuple(_palette(len(unique))), tuple(range(1, len(unique) + 1)),
                         "from --labels")
    return LabelMapping(scheme, {i + 1: i + 1 for i in range(len(unique))}, source="class names of --labels")


def open_labels(path, grid: Grid, *, resampling: str = "auto", prop: str = "class",
                mapping: Optional[LabelMapping] = None):
    """A :class:`VectorLabels` for ``.geojson`` / ``.json``, else a :class:`RasterLabels`."""
    if not Path(path).exists():
        raise DatasetError(f"--labels {path}: no such file")
    if Path(path).suffix.lower() in VECTOR_SUFFIXES:
        names = None
        if mapping is not None:
            value_of = dict(zip(mapping.scheme.values, mapping.scheme.names))
            names = {value_of[v].lower(): code for code, v in mapping.codes.items() if v in value_of}
        return VectorLabels(path, grid, prop=prop, names=names)
    return RasterLabels(path, grid, resampling=resampling)


def geojson_names(path, prop: str) -> Optional[List[str]]:
    """The class names of a GeoJSON whose ``prop`` holds names (None if it holds numbers)."""
    obj = json.loads(Path(path).read_text())
    values = [(f.get("properties") or {}).get(prop) for f in obj.get("features", [])]
    names = [v for v in values if isinstance(v, str) and not v.strip().lstrip("-").isdigit()]
    return names or None
