"""Sentinel-2 / Sentinel-1 inputs as users have them.

Sentinel-2
----------
:func:`inspect_s2` recognises

* a **SAFE product**, as a folder (``S2A_MSIL1C_..._N0400_....SAFE``) or a ``.zip`` of one:
  band files are taken from ``GRANULE/<one granule>/IMG_DATA`` (20 m and 60 m bands are
  resampled onto the 10 m grid), the metadata from ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``,
  the cloud mask from ``GRANULE/*/QI_DATA``;
* a **folder of band files** (``*_B01.jp2`` ... ``*_B12.jp2``/``.tif``); when it sits inside an
  unzipped SAFE product (e.g. its ``IMG_DATA`` folder) the product metadata and masks above
  it are used too;
* a **13-band GeoTIFF** (B01..B12 incl. B8A and B10).

**Processing-baseline offset.** Products of processing baseline 04.00 and later (processed
since 25 January 2022) store ``DN = 10000 * reflectance - RADIO_ADD_OFFSET`` with
``RADIO_ADD_OFFSET = -1000`` (``BOA_ADD_OFFSET`` in L2A). The training data (SEN12MS) has no
offset, so :func:`decide_offset` takes the offset from the metadata (or from ``--s2_offset``)
and :class:`OffsetSource` adds it to every band before the per-window clipping and
normalisation -- exactly once (wrapping an already corrected source is refused). When the
baseline cannot be known (GeoTIFF or band folder without metadata) no offset is applied and
one warning says so.

**Level-2A** products have no B10 (cirrus) band and hold surface reflectance, not the
top-of-atmosphere values of the L1C training data. They are refused with a message naming
what is missing, unless ``allow_l2a`` asks for the approximation: the B10 channel is filled
with B09 (after the per-window normalisation the model sees B09's pattern there) and surface
reflectance is used as if it were top-of-atmosphere (with ``BOA_ADD_OFFSET`` applied). Expect
lower accuracy, most of all over water and dark surfaces.

**Cloud masks** (:func:`open_cloud_mask`): ``MSK_CLASSI_B00.jp2`` (baseline >= 04.00; band 1
opaque clouds, band 2 cirrus), the older vector ``MSK_CLOUDS_B00.gml`` (rasterised), or a
``*QA60*`` raster (bit 10 opaque, bit 11 cirrus) next to the band files.

Sentinel-1
----------
:func:`open_s1_inputs` takes one 2-band file (VV, VH) or two 1-band files (VV and VH, told
apart by ``vv``/``vh`` in their names, else taken in the given order), in dB (the training
units) or linear backscatter (converted with ``10 log10``; values <= 0 become no data).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from utils.scene import (S2_BAND_NAMES, Grid, S2BandFolderSource, _BAND_RE, find_band_files, open_s1,
                         open_s2)

__all__ = [
    "BASELINE_OFFSET_SINCE",
    "S2Product",
    "OffsetDecision",
    "ProductError",
    "inspect_s2",
    "parse_product_metadata",
    "decide_offset",
    "OffsetSource",
    "open_s2_product",
    "RasterCloudMask",
    "GMLCloudMask",
    "open_cloud_mask",
    "StackSource",
    "LinearToDbSource",
    "open_s1_inputs",
]

BASELINE_OFFSET_SINCE = (4, 0)
"""Processing baseline from which L1C/L2A products carry the -1000 DN offset."""
DEFAULT_OFFSET = -1000.0
METADATA_NAMES = ("MTD_MSIL1C.xml", "MTD_MSIL2A.xml")


class ProductError(ValueError):
    """An input that cannot be used as given; the message names the file and what to do."""


# ----------------------------------------------------------------------------- product description


@dataclass
class S2Product:
    """What :func:`inspect_s2` found out about a Sentinel-2 input."""

    path: str
    kind: str                                  # "safe", "safe_zip", "band_folder", "geotiff"
    level: Optional[str] = None                # "L1C", "L2A" or None (unknown)
    baseline: Optional[str] = None             # e.g. "04.00"; None = unknown
    offsets: Optional[Tuple[float, ...]] = None  # DN added to each band (13); None = unknown
    quantification: float = 10000.0
    metadata_file: Optional[str] = None
    band_files: Optional[Dict[str, List[str]]] = None   # GDAL paths per band (None: GeoTIFF)
    cloud_mask_file: Optional[str] = None      # GDAL path (or a zip member path for GML)
    cloud_mask_kind: Optional[str] = None      # "msk_classi", "gml", "qa60"
    notes: List[str] = field(default_factory=list)

    @property
    def missing_bands(self) -> List[str]:
        if self.band_files is None:
            return []
        return [b for b in S2_BAND_NAMES if b not in self.band_files]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _baseline_tuple(text: Optional[str]) -> Optional[Tuple[int, int]]:
    m = re.match(r"\s*(\d+)\.(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse_product_metadata(xml_text, name: str = "MTD_MSIL1C.xml") -> dict:
    """Level, processing baseline, per-band offsets and quantification of a product metadata file.

    Returns ``{"level", "baseline", "offsets" (13-tuple or None), "quantification"}``. Offsets are
    the ``RADIO_ADD_OFFSET`` (L1C) or ``BOA_ADD_OFFSET`` (L2A) values by ``band_id`` (0 = B01 ...
    8 = B8A ... 12 = B12, the order of :data:`S2_BAND_NAMES`); a product of a baseline before
    04.00 has none (zeros).
    """
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise ProductError(f"{name}: not readable product metadata ({exc})") from None
    level = None
    root_tag = _local(root.tag)
    if "Level-1C" in root_tag:
        level = "L1C"
    elif "Level-2A" in root_tag:
        level = "L2A"
    baseline, quant, offsets = None, None, {}
    for el in root.iter():
        tag = _local(el.tag)
        text = (el.text or "").strip()
        if tag == "PROCESSING_BASELINE" and text:
            baseline = text
        elif tag == "PRODUCT_TYPE" and level is None:
            level = "L1C" if "1C" in text else ("L2A" if "2A" in text else None)
        elif tag in ("QUANTIFICATION_VALUE", "BOA_QUANTIFICATION_VALUE") and text:
            quant = float(text)
        elif tag in ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET") and text and "band_id" in el.attrib:
            offsets[int(el.attrib["band_id"])] = float(text)
    if offsets:
        missing = [S2_BAND_NAMES[i] for i in range(13) if i not in offsets]
        if missing and level != "L2A":
            raise ProductError(f"{name}: offsets listed for some bands but not for {', '.join(missing)}")
        off = tuple(offsets.get(i, 0.0) for i in range(13))
    else:
        bt = _baseline_tuple(baseline)
        if bt is None:
            off = None
        elif bt < BASELINE_OFFSET_SINCE:
            off = (0.0,) * 13
        else:   # baseline >= 04.00 always carries the offset; the list should be there
            off = (DEFAULT_OFFSET,) * 13
    return {"level": level, "baseline": baseline, "offsets": off, "quantification": quant or 10000.0}


def _band_files_from(paths: Sequence[str]) -> Dict[str, List[str]]:
    found: Dict[str, List[str]] = {}
    for p in sorted(paths):
        m = _BAND_RE.search(p.rsplit("/", 1)[-1])
        if m:
            found.setdefault(m.group(1).upper(), []).append(p)
    return found


def _one_granule(product: str, granules: Sequence[str]) -> str:
    granules = sorted(set(granules))
    if not granules:
        raise ProductError(f"Sentinel-2 product {product}: no GRANULE/*/IMG_DATA folder with band files")
    if len(granules) > 1:
        raise ProductError(f"Sentinel-2 product {product} holds {len(granules)} granules "
                           f"({', '.join(g.rsplit('/', 1)[-1] for g in granules[:3])}...); pass one "
                           "granule's IMG_DATA folder as --s2")
    return granules[0]


def _apply_metadata(prod: S2Product, xml_text, name: str):
    meta = parse_product_metadata(xml_text, name)
    prod.level = meta["level"] or prod.level
    prod.baseline = meta["baseline"]
    prod.offsets = meta["offsets"]
    prod.quantification = meta["quantification"]
    prod.metadata_file = name


def _inspect_zip(path: str) -> S2Product:
    prod = S2Product(path=path, kind="safe_zip")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            mtd = [n for n in names if n.rsplit("/", 1)[-1] in METADATA_NAMES and n.count("/") <= 1]
            if not mtd:
                raise ProductError(f"Sentinel-2 zip {path}: no MTD_MSIL1C.xml or MTD_MSIL2A.xml at the top of "
                                   "a .SAFE folder inside; is it a Sentinel-2 SAFE product?")
            _apply_metadata(prod, zf.read(mtd[0]), f"{path}!{mtd[0]}")
    except zipfile.BadZipFile as exc:
        raise ProductError(f"Sentinel-2 input {path}: not a readable zip file ({exc})") from None
    vsi = "/vsizip/" + os.path.abspath(path) + "/"
    img = [n for n in names if re.search(r"GRANULE/[^/]+/IMG_DATA/", n) and _BAND_RE.search(n.rsplit("/", 1)[-1])]
    granule = _one_granule(path, [n.split("/IMG_DATA/")[0] for n in img])
    prod.band_files = _band_files_from([vsi + n for n in img if n.startswith(granule + "/")])
    qi = [n for n in names if n.startswith(granule + "/QI_DATA/")]
    for suffix, kind in (("MSK_CLASSI_B00.jp2", "msk_classi"), ("MSK_CLOUDS_B00.gml", "gml")):
        hit = [n for n in qi if n.endswith(suffix)]
        if hit:
            prod.cloud_mask_file = (vsi + hit[0]) if kind != "gml" else f"{path}!{hit[0]}"
            prod.cloud_mask_kind = kind
            break
    return prod


def _find_metadata_above(folder: Path, levels: int = 5) -> Optional[Path]:
    for parent in [folder, *list(folder.parents)[:levels]]:
        for name in METADATA_NAMES:
            if (parent / name).is_file():
                return parent / name
    return None


def _find_mask_near(folder: Path) -> Tuple[Optional[str], Optional[str]]:
    """Cloud mask of a granule: QI_DATA next to IMG_DATA (or next to R10m's parent), or in the folder."""
    candidates = [folder, folder / "QI_DATA", folder.parent / "QI_DATA", folder.parent.parent / "QI_DATA"]
    for suffix, kind in (("MSK_CLASSI_B00.jp2", "msk_classi"), ("MSK_CLOUDS_B00.gml", "gml")):
        for c in candidates:
            hits = sorted(c.glob("*" + suffix)) if c.is_dir() else []
            if hits:
                return str(hits[0]), kind
    hits = sorted(p for p in folder.glob("*") if re.search(r"QA60", p.name, re.I) and p.suffix.lower() in
                  (".tif", ".tiff", ".jp2"))
    if hits:
        return str(hits[0]), "qa60"
    return None, None


def inspect_s2(path) -> S2Product:
    """Describe a Sentinel-2 input (SAFE folder or zip, band folder, GeoTIFF); reads metadata only."""
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Sentinel-2 input {path} does not exist")
    if os.path.isfile(path) and path.lower().endswith(".zip"):
        return _inspect_zip(path)
    if os.path.isfile(path):
        return S2Product(path=path, kind="geotiff")
    folder = Path(path)
    own_mtd = [folder / n for n in METADATA_NAMES if (folder / n).is_file()]
    if own_mtd or folder.name.upper().endswith(".SAFE"):
        prod = S2Product(path=path, kind="safe")
        if own_mtd:
            _apply_metadata(prod, own_mtd[0].read_bytes(), str(own_mtd[0]))
        else:
            prod.notes.append(f"{path}: no MTD_MSIL1C.xml / MTD_MSIL2A.xml in the SAFE folder")
        img = [p for p in sorted(folder.glob("GRANULE/*/IMG_DATA/**/*")) if p.is_file() and _BAND_RE.search(p.name)]
        granule = _one_granule(path, [str(p).split(os.sep + "IMG_DATA" + os.sep)[0] for p in img])
        prod.band_files = _band_files_from([str(p) for p in img if str(p).startswith(granule + os.sep)])
        prod.cloud_mask_file, prod.cloud_mask_kind = _find_mask_near(Path(granule) / "IMG_DATA")
        return prod
    prod = S2Product(path=path, kind="band_folder")
    found = find_band_files(folder)
    prod.band_files = {b: [str(p) for p in ps] for b, ps in found.items()}
    mtd = _find_metadata_above(folder)
    if mtd is not None:
        _apply_metadata(prod, mtd.read_bytes(), str(mtd))
    elif any(re.search(r"_B\d\w_(10|20|60)m\.", p) for ps in prod.band_files.values() for p in ps):
        prod.level = "L2A"      # L2A file names (T32TMT_..._B02_10m.jp2)
    if prod.band_files:
        first = Path(next(iter(prod.band_files.values()))[0]).parent
        prod.cloud_mask_file, prod.cloud_mask_kind = _find_mask_near(first)
    return prod


# ----------------------------------------------------------------------------- offset


@dataclass
class OffsetDecision:
    """The offset added to every S2 band (DN), where it came from, and what to tell the user."""

    offsets: Tuple[float, ...]      # 13 values, DN added before clipping
    scale: float                    # 10000 / quantification (1 for every product so far)
    source: str                     # "metadata", "flag", "none (baseline unknown)"
    message: str
    warning: Optional[str] = None

    @property
    def is_identity(self) -> bool:
        return all(o == 0 for o in self.offsets) and self.scale == 1.0

    def tag(self) -> str:
        """Compact text for the output metadata: one value when all bands agree."""
        vals = set(self.offsets)
        v = f"{self.offsets[0]:g}" if len(vals) == 1 else "[" + ",".join(f"{o:g}" for o in self.offsets) + "]"
        return v if self.scale == 1.0 else f"{v} then x{self.scale:g}"


def decide_offset(product: S2Product, flag: Optional[float] = None) -> OffsetDecision:
    """Choose the S2 offset: ``--s2_offset`` if given, else the product metadata, else none (with a warning)."""
    scale = 10000.0 / product.quantification if product.quantification else 1.0
    what = f"processing baseline {product.baseline}" if product.baseline else "processing baseline unknown"
    if flag is not None:
        offsets = (float(flag),) * 13
        warning = None
        if product.offsets is not None and tuple(product.offsets) != offsets:
            warning = (f"--s2_offset {flag:g} overrides the offset {OffsetDecision(product.offsets, 1, '', '').tag()} "
                       f"of {product.metadata_file} ({what})")
        return OffsetDecision(offsets, scale, "flag", f"S2 offset {flag:g} DN on every band (--s2_offset)", warning)
    if product.offsets is not None:
        dec = OffsetDecision(tuple(product.offsets), scale, "metadata", "")
        kind = "BOA_ADD_OFFSET" if product.level == "L2A" else "RADIO_ADD_OFFSET"
        dec.message = (f"S2 offset {dec.tag()} DN ({kind} of {Path(product.metadata_file.split('!')[-1]).name}, "
                       f"{what})")
        return dec
    return OffsetDecision(
        (0.0,) * 13, 1.0, "none (baseline unknown)", "S2 offset: none applied (processing baseline unknown)",
        warning=(f"the processing baseline of {product.path} cannot be known (no MTD_MSIL1C.xml); no offset "
                 "applied, as for products processed before 25 January 2022. For a product of baseline 04.00 or "
                 "later pass --s2_offset -1000 (its values are 10000 x reflectance + 1000); --s2_offset 0 "
                 "confirms no offset and silences this warning"))


class OffsetSource:
    """Wraps an S2 source and adds the per-band offset (then scales) to its values.

    Returns float32; a band value of 0 (no data in L1C/L2A) stays 0 and a pixel whose bands are
    all 0 becomes NaN (no data for :func:`utils.scene.predict_scene`), so that pixels darker than
    the offset still count as data. Clipping to [0, 10000] happens afterwards, in the per-window
    normalisation. Wrapping a source twice is refused: the offset is applied exactly once.
    """

    offset_applied = True

    def __init__(self, src, offsets: Sequence[float], scale: float = 1.0):
        if getattr(src, "offset_applied", False):
            raise ValueError(f"{getattr(src, 'name', src)}: the S2 offset is already applied")
        if len(offsets) != 13:
            raise ValueError(f"expected 13 offsets, got {len(offsets)}")
        self.src = src
        self.grid = src.grid
        self.count = 13
        self.name = getattr(src, "name", "<s2>")
        self.offsets = np.asarray(offsets, np.float32)
        self.scale = np.float32(scale)

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        raw = self.src.read(row_off, col_off, height, width)
        out = raw.astype(np.float32)
        if out.shape[0] != 13:
            return out            # predict_scene names the wrong band count
        empty = np.ones(raw.shape[1:], bool)
        for b in range(13):
            band = out[b]
            zero = raw[b] == 0
            empty &= zero
            band += self.offsets[b]
            if self.scale != 1:
                band *= self.scale
            band[zero] = 0.0
        out[:, empty] = np.nan
        return out

    def close(self):
        self.src.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def l2a_refusal(product: S2Product) -> str:
    missing = ", ".join(product.missing_bands) or "B10"
    what = ("is a Level-2A product" if product.metadata_file else "looks like a Level-2A product (L2A file names "
            "or only B10 missing)")
    return (f"Sentinel-2 input {product.path} {what}: band {missing} is missing (cirrus, not "
            "delivered in L2A) and its values are surface (bottom-of-atmosphere) reflectance, while the models "
            "were trained on Level-1C top-of-atmosphere values. Use the L1C product of the same acquisition, or "
            "pass --allow_l2a for an approximation (B10 filled from B09, surface reflectance used as TOA)")


def open_s2_product(path, resampling="bilinear", allow_l2a: bool = False):
    """Open a Sentinel-2 input for prediction (without the offset). Returns ``(source, product)``.

    Raises :class:`ProductError` (a ``ValueError``) with a one-line message for an L2A product
    without ``allow_l2a``, a product with several granules, or missing bands.
    """
    product = inspect_s2(path)
    if product.kind == "geotiff":
        try:
            return open_s2(path, resampling=resampling), product
        except ValueError as exc:
            if "found 12" in str(exc):
                raise ProductError(f"{exc} (a Level-2A stack without B10? the models need the 13 Level-1C "
                                   "bands; use the L1C product, or its SAFE folder/zip with --allow_l2a)") from None
            raise
    files = dict(product.band_files or {})
    is_l2a = product.level == "L2A" or (product.level is None and product.missing_bands == ["B10"])
    if is_l2a:
        product.level = "L2A"
        if not allow_l2a:
            raise ProductError(l2a_refusal(product))
        if "B09" in files:
            files["B10"] = files["B09"]
            product.notes.append("L2A approximation: B10 channel filled from B09; surface reflectance used "
                                 "as top-of-atmosphere")
    if product.missing_bands and set(product.missing_bands) - set(files):
        missing = [b for b in S2_BAND_NAMES if b not in files]
        raise ProductError(f"Sentinel-2 {product.kind.replace('_', ' ')} {path}: missing band file(s) "
                           f"{', '.join(missing)} (expected files named like *_B01.jp2 for all of "
                           f"{', '.join(S2_BAND_NAMES)})")
    return S2BandFolderSource(path, resampling=resampling, files=files), product


# ----------------------------------------------------------------------------- cloud masks


class RasterCloudMask:
    """A raster cloud mask read onto the S2 grid (nearest neighbour): True = cloud.

    ``kind``: ``"msk_classi"`` (MSK_CLASSI_B00: band 1 opaque, band 2 cirrus, band 3 snow --
    ignored), ``"qa60"`` (bit 10 opaque, bit 11 cirrus) or ``"any"`` (band 1 non-zero).
    Outside the mask's footprint nothing is flagged.
    """

    def __init__(self, path: str, grid: Grid, kind: str = "msk_classi"):
        self.path = self.name = str(path)
        self.kind = kind
        try:
            self._src = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as exc:
            raise ProductError(f"cloud mask {self.path}: cannot open ({exc})") from None
        self._bands = [1, 2] if kind == "msk_classi" and self._src.count >= 2 else [1]
        self._ds = WarpedVRT(self._src, crs=grid.crs, transform=grid.transform, width=grid.width,
                             height=grid.height, resampling=Resampling.nearest, nodata=0)
        self.grid = grid

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        a = self._ds.read(self._bands, window=Window(col_off, row_off, width, height))
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


def open_cloud_mask(product: S2Product, grid: Grid, mode: str = "auto"):
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


# ----------------------------------------------------------------------------- Sentinel-1


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


class LinearToDbSource:
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

    def close(self):
        self.src.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


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
