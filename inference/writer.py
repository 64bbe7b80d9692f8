"""GeoTIFF outputs: streamed while predicting, then Cloud-Optimised GeoTIFFs with class names.

:class:`TiledWriter` takes finished rows of a map (any number at a time, top to bottom) and
writes them to a tiled, DEFLATE-compressed GeoTIFF one row of 256 px tiles at a time, so it
never holds more than ``256 + max_rows`` rows. :func:`inference.scene.predict_scene` streams
its outputs through it; :func:`to_cog` then
rewrites each one with GDAL's ``COG`` driver: tiles of 256 px, DEFLATE, overviews down to one
tile (``MODE`` resampling for class maps, so overviews hold real classes; ``AVERAGE`` for
probabilities), the IFDs before the data (GDAL's ``COPY_SRC_OVERVIEWS`` layout, which GDAL
reports as ``IMAGE_STRUCTURE`` ``LAYOUT=COG``). Colour table, tags, band descriptions, scale
and nodata are kept.

:func:`write_categories` adds the class names as GDAL *category names* and a thematic *raster
attribute table* (value, class, colour). GeoTIFF keeps both in the GDAL sidecar
``<map>.tif.aux.xml`` (GDAL's own place for them in TIFF files; QGIS and ``gdalinfo`` read it),
so keep that file next to the map; the names are also in the map's own tags (``CLASS_NAMES``,
``CLASS_i``). :func:`read_category_names` reads them back through GDAL (rasterio's).
"""

from __future__ import annotations

import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

__all__ = ["COG_BLOCK", "TiledWriter", "to_cog", "write_categories", "read_category_names", "validate_cog",
           "tmp_path_for"]

COG_BLOCK = 256


class TiledWriter:
    """Buffers finished rows and writes them to a tiled GeoTIFF a row of tiles at a time.

    ``grid``: an :class:`inference.sources.Grid`. The buffer holds at most ``COG_BLOCK + max_rows``
    rows (``max_rows``: the largest block ever added).
    """

    def __init__(self, path, grid, count: int, dtype, nodata, predictor: int, max_rows: int,
                 tags=None, descriptions=None, colormap=None, scales=None):
        profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=count, dtype=dtype,
                       crs=grid.crs, transform=grid.transform, nodata=nodata, tiled=True,
                       blockxsize=COG_BLOCK, blockysize=COG_BLOCK, compress="deflate", predictor=predictor,
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
        self.buf = np.empty((count, min(COG_BLOCK + max_rows, grid.height), grid.width), dtype)
        self._top = 0   # scene row of buffer row 0
        self._n = 0     # rows in the buffer

    def add(self, block: np.ndarray):  # (count, rows, W)
        k = block.shape[1]
        if self._n + k > self.buf.shape[1]:
            raise RuntimeError("row block larger than declared")  # pragma: no cover
        self.buf[:, self._n:self._n + k] = block
        self._n += k
        if self._n >= COG_BLOCK or self._top + self._n >= self.height:
            self._flush()

    def _flush(self):
        if self._n == 0:
            return
        n = self._n if self._top + self._n >= self.height else (self._n // COG_BLOCK) * COG_BLOCK
        self.ds.write(self.buf[:, :n], window=Window(0, self._top, self.width, n))
        rest = self._n - n
        if rest:
            self.buf[:, :rest] = self.buf[:, n:self._n]
        self._top += n
        self._n = rest

    def close(self):
        self._flush()
        self.ds.close()


def tmp_path_for(out_path) -> str:
    """A temporary GeoTIFF path next to ``out_path`` (same file system, so the copy is local)."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".stream.tif", dir=out.parent)
    os.close(fd)
    return name


def _remove(path) -> None:
    for p in (str(path), str(path) + ".aux.xml"):
        try:
            os.remove(p)
        except FileNotFoundError:
            pass


def to_cog(src_path, out_path, resampling: str = "mode", block: int = COG_BLOCK, remove_src: bool = True) -> str:
    """Rewrite a GeoTIFF as a Cloud-Optimised GeoTIFF with overviews (``resampling``: mode, average, nearest)."""
    _remove(out_path)      # also a stale sidecar of an earlier run
    try:
        rasterio.shutil.copy(str(src_path), str(out_path), driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES",
                             BLOCKSIZE=block, OVERVIEWS="AUTO", OVERVIEW_RESAMPLING=resampling.upper(),
                             BIGTIFF="IF_SAFER")
    finally:
        if remove_src:
            _remove(src_path)
    return str(out_path)


def write_categories(path, names: Sequence[str], colors: Sequence[Tuple[int, int, int]],
                     nodata: Optional[int] = 255, nodata_name: str = "no data") -> str:
    """Write class names as GDAL category names + a thematic RAT into ``<path>.aux.xml`` (band 1)."""
    rows = [(i, n, *colors[i]) for i, n in enumerate(names)]
    if nodata is not None:
        rows.append((int(nodata), nodata_name, 0, 0, 0))
    cats = "".join(f"      <Category>{escape(n)}</Category>\n" for n in names)
    fields = [("Value", 0, 5), ("Class", 2, 2), ("Red", 0, 6), ("Green", 0, 7), ("Blue", 0, 8)]
    fdefs = "".join(f'      <FieldDefn index="{i}">\n        <Name>{n}</Name>\n        <Type>{t}</Type>\n'
                    f'        <Usage>{u}</Usage>\n      </FieldDefn>\n' for i, (n, t, u) in enumerate(fields))
    rrows = "".join(f'      <Row index="{k}">' + "".join(f"<F>{escape(str(v))}</F>" for v in r) + "</Row>\n"
                    for k, r in enumerate(rows))
    xml = ('<PAMDataset>\n  <PAMRasterBand band="1">\n    <CategoryNames>\n' + cats + '    </CategoryNames>\n'
           '    <GDALRasterAttributeTable tableType="thematic">\n' + fdefs + rrows +
           '    </GDALRasterAttributeTable>\n  </PAMRasterBand>\n</PAMDataset>\n')
    side = str(path) + ".aux.xml"
    with open(side, "w", encoding="utf-8") as f:
        f.write(xml)
    return side


def read_category_names(path) -> Dict[str, list]:
    """Category names and RAT rows of band 1 as GDAL sees them (through rasterio's GDAL).

    GDAL copies both into a VRT description, which is parsed here; returns
    ``{"categories": [...], "rat": [[value, name, ...], ...], "rat_fields": [...]}``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        vrt = os.path.join(tmp, "band.vrt")
        rasterio.shutil.copy(str(path), vrt, driver="VRT")
        root = ET.parse(vrt).getroot()
    band = root.find("VRTRasterBand")
    cats = [c.text or "" for c in band.findall("CategoryNames/Category")] if band is not None else []
    rat = band.find("GDALRasterAttributeTable") if band is not None else None
    fields = [f.findtext("Name") for f in rat.findall("FieldDefn")] if rat is not None else []
    rows = [[f.text for f in r.findall("F")] for r in rat.findall("Row")] if rat is not None else []
    return {"categories": cats, "rat": rows, "rat_fields": fields}


def validate_cog(path, block: int = COG_BLOCK) -> List[str]:
    """Problems that keep ``path`` from being a Cloud-Optimised GeoTIFF (empty list: valid).

    Checks GDAL's structural-metadata header (``LAYOUT=IFDS_BEFORE_DATA``, written only in the
    ``COPY_SRC_OVERVIEWS`` layout), ``IMAGE_STRUCTURE`` ``LAYOUT=COG``, tiling, and overviews
    whenever the image is larger than one tile (tiled too).
    """
    problems = []
    with open(path, "rb") as f:
        head = f.read(1024)
    if b"GDAL_STRUCTURAL_METADATA_SIZE" not in head or b"LAYOUT=IFDS_BEFORE_DATA" not in head:
        problems.append("no GDAL structural metadata with LAYOUT=IFDS_BEFORE_DATA at the start of the file")
    with rasterio.open(path) as ds:
        if ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") != "COG":
            problems.append(f"IMAGE_STRUCTURE LAYOUT is {ds.tags(ns='IMAGE_STRUCTURE').get('LAYOUT')!r}, not 'COG'")
        if not ds.profile.get("tiled"):
            problems.append("not tiled")
        ovr = ds.overviews(1)
        if max(ds.width, ds.height) > block and not ovr:
            problems.append(f"{ds.width} x {ds.height} px without overviews")
        for f in ovr:
            with rasterio.open(path, overview_level=ovr.index(f)) as o:
                if not o.profile.get("tiled"):
                    problems.append(f"overview 1/{f} not tiled")
    return problems
