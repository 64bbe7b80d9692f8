"""Cloud masks of Sentinel-2 products, read onto the prediction grid (True = cloud).

``MSK_CLASSI_B00.jp2`` (baseline >= 04.00; band 1 opaque clouds, band 2 cirrus), the older
vector ``MSK_CLOUDS_B00.gml`` (rasterised), or a ``*QA60*`` raster (bit 10 opaque, bit 11
cirrus) next to the band files; :func:`open_cloud_mask` picks the product's own (``auto``) or
opens a given file.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import List, Optional

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from inference.products import ProductError, _local
from inference.sources import Grid, open_raster, read_window

__all__ = ["RasterCloudMask", "GMLCloudMask", "open_cloud_mask"]


class RasterCloudMask:
    """A raster cloud mask read onto the S2 grid (nearest neighbour): True = cloud.

    ``kind``: ``"msk_classi"`` (MSK_CLASSI_B00: band 1 opaque, band 2 cirrus, band 3 snow --
    ignored), ``"qa60"`` (bit 10 opaque, bit 11 cirrus) or ``"any"`` (band 1 non-zero).
    Outside the mask's footprint nothing is flagged.
    """

    def __init__(self, path: str, grid: Grid, kind: str = "msk_classi"):
        self.path = self.name = str(path)
        self.kind = kind
        self._src = open_raster(self.path, ProductError, f"cloud mask {self.path}: cannot open")
        self._bands = [1, 2] if kind == "msk_classi" and self._src.count >= 2 else [1]
        self._ds = WarpedVRT(self._src, crs=grid.crs, transform=grid.transform, width=grid.width,
                             height=grid.height, resampling=Resampling.nearest, nodata=0)
        self.grid = grid

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        a = read_window(self._ds, self.path, Window(col_off, row_off, width, height), self._bands, what="cloud mask")
        if self.kind == "qa60":
            return ((a[0].astype(np.int64) >> 10) & 3) != 0
        return (a != 0).any(axis=0)

    def close(self):
        self._ds.close()
        self._src.close()


class GMLCloudMask:
    """The vector cloud mask of products before baseline 04.00 (``MSK_CLOUDS_B00.gml``), rasterised
    onto the S2 grid window by window (a pixel is cloud when its centre is inside a polygon)."""

    def __init__(self, path: str, grid: Grid):
        self.path = self.name = str(path)
        self.grid = grid
        if "!" in self.path and not os.path.exists(self.path):
            zpath, member = self.path.split("!", 1)
            with zipfile.ZipFile(zpath) as zf:
                text = zf.read(member)
        else:
            text = Path(self.path).read_bytes()
        self.polygons = self.parse(text, self.path, grid)

    @staticmethod
    def parse(text, name: str, grid: Optional[Grid] = None) -> List[dict]:
        """GeoJSON-like polygons of the OPAQUE and CIRRUS features of a Sentinel-2 GML mask."""
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            raise ProductError(f"cloud mask {name}: not readable GML ({exc})") from None
        polys = []
        for el in root.iter():
            if _local(el.tag) != "Polygon":
                continue
            srs = el.attrib.get("srsName", "")
            m = re.search(r"EPSG[:/]+(?:\d+\.?\d*:)?(\d+)", srs)
            if m and grid is not None and grid.crs is not None and grid.crs.to_epsg() not in (None, int(m.group(1))):
                raise ProductError(f"cloud mask {name}: polygons in EPSG:{m.group(1)}, the scene is in {grid.crs}")
            rings = []
            for ring in el.iter():
                if _local(ring.tag) != "LinearRing":
                    continue
                coords = []
                for c in ring.iter():
                    if _local(c.tag) in ("posList", "pos") and c.text:
                        coords.extend(float(v) for v in c.text.split())
                dim = int(ring.find(".//*").attrib.get("srsDimension", 2)) if ring.find(".//*") is not None else 2
                pts = [tuple(coords[i:i + 2]) for i in range(0, len(coords) - dim + 1, dim)]
                if len(pts) >= 3:
                    rings.append(pts)
            if rings:
                polys.append({"type": "Polygon", "coordinates": rings})
        return polys

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        if not self.polygons:
            return np.zeros((height, width), bool)
        from rasterio.features import rasterize
        t = self.grid.transform @ rasterio.Affine.translation(col_off, row_off)
        return rasterize(((p, 1) for p in self.polygons), out_shape=(height, width), transform=t,
                         fill=0, dtype="uint8").astype(bool)

    def close(self):
        pass


def open_cloud_mask(product, grid: Grid, mode: str = "auto"):
    """The cloud mask of ``product`` on ``grid`` (or None) and a line saying what is used.

    ``mode``: ``"auto"`` (the product's mask if there is one), ``"none"``, or a path to a mask
    file (``MSK_CLASSI_B00.jp2``, ``*.gml``, a ``QA60`` raster or any 1-band raster, non-zero = cloud).
    """
    if mode == "none":
        return None, "cloud mask: none (--cloud_mask none)"
    if mode == "auto":
        path, kind = product.cloud_mask_file, product.cloud_mask_kind
        if path is None:
            return None, (f"cloud mask: none found for {product.path} (a SAFE product carries "
                          "MSK_CLASSI_B00.jp2 or MSK_CLOUDS_B00.gml); clouds are mapped like any surface")
    else:
        path = mode
        if not os.path.exists(path):
            raise FileNotFoundError(f"--cloud_mask {path}: file does not exist (use auto, none or a mask file)")
        name = os.path.basename(path).upper()
        kind = ("gml" if name.endswith(".GML") else "msk_classi" if "MSK_CLASSI" in name
                else "qa60" if "QA60" in name else "any")
    if kind == "gml":
        mask = GMLCloudMask(path, grid)
        return mask, (f"cloud mask: {os.path.basename(path.split('!')[-1])} (vector, {len(mask.polygons)} "
                      "opaque/cirrus polygons, rasterised)")
    mask = RasterCloudMask(path, grid, kind)
    what = {"msk_classi": "opaque + cirrus bands", "qa60": "bits 10-11", "any": "non-zero pixels"}[kind]
    return mask, f"cloud mask: {os.path.basename(path)} ({what}) -> written as 255"
