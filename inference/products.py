"""Sentinel-2 inputs as users have them: SAFE products, band folders, GeoTIFFs.

:func:`open_s2` (the library entry point) and :func:`open_s2_product` (``predict.py``)
open, and :func:`inspect_s2` recognises

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
offset, so :func:`inference.offset.decide_offset` takes the offset from the metadata (or from ``--s2_offset``)
and :class:`inference.offset.OffsetSource` adds it to every band before the per-window clipping and
normalisation -- exactly once (wrapping an already corrected source is refused). When the
baseline cannot be known (GeoTIFF or band folder without metadata) no offset is applied and
one warning says so.

**Level-2A** products have no B10 (cirrus) band and hold surface reflectance, not the
top-of-atmosphere values of the L1C training data. They are refused with a message naming
what is missing, unless ``allow_l2a`` asks for the approximation: the B10 channel is filled
with B09 (after the per-window normalisation the model sees B09's pattern there) and surface
reflectance is used as if it were top-of-atmosphere (with ``BOA_ADD_OFFSET`` applied). Expect
lower accuracy, most of all over water and dark surfaces.

Cloud masks are :mod:`inference.clouds`, Sentinel-1 :mod:`inference.sentinel1`.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from data.bands import S2_BANDS
from inference.offset import OffsetSource, decide_offset
from inference.sources import _BAND_RE, RasterSource, S2BandFolderSource, find_band_files

__all__ = [
    "BASELINE_OFFSET_SINCE",
    "S2Product",
    "ProductError",
    "inspect_s2",
    "parse_product_metadata",
    "open_s2_product",
    "open_s2",
]

BASELINE_OFFSET_SINCE = (4, 0)
"""Processing baseline from which L1C/L2A products carry the -1000 DN offset."""
DEFAULT_OFFSET = -1000.0
METADATA_NAMES = ("MTD_MSIL1C.xml", "MTD_MSIL2A.xml")


class ProductError(ValueError):
    """An input that cannot be used as given; the message names the file and what to do."""

    user_facing = True   # utils.cli prints the message as it is


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
        return [b for b in S2_BANDS if b not in self.band_files]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _baseline_tuple(text: Optional[str]) -> Optional[Tuple[int, int]]:
    m = re.match(r"\s*(\d+)\.(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse_product_metadata(xml_text, name: str = "MTD_MSIL1C.xml") -> dict:
    """Level, processing baseline, per-band offsets and quantification of a product metadata file.

    Returns ``{"level", "baseline", "offsets" (13-tuple or None), "quantification"}``. Offsets are
    the ``RADIO_ADD_OFFSET`` (L1C) or ``BOA_ADD_OFFSET`` (L2A) values by ``band_id`` (0 = B01 ...
    8 = B8A ... 12 = B12, the order of :data:`S2_BANDS`); a product of a baseline before
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
        missing = [S2_BANDS[i] for i in range(13) if i not in offsets]
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
        missing = [b for b in S2_BANDS if b not in files]
        raise ProductError(f"Sentinel-2 {product.kind.replace('_', ' ')} {path}: missing band file(s) "
                           f"{', '.join(missing)} (expected files named like *_B01.jp2 for all of "
                           f"{', '.join(S2_BANDS)})")
    return S2BandFolderSource(path, resampling=resampling, files=files), product



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
        src, product = open_s2_product(path, resampling=resampling)
        d = decide_offset(product)
        return src if d.is_identity else OffsetSource(src, d.offsets, d.scale)
    if os.path.isdir(path):
        return S2BandFolderSource(path, resampling=resampling)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Sentinel-2 input {path} does not exist")
    src = RasterSource(path, expected_count=len(S2_BANDS), what="Sentinel-2 GeoTIFF (B01..B12 incl. B8A, B10)")
    return src

