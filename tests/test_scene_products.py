"""Sentinel-2 products as users have them (inference/, predict.py): tiny SAFE-like products.

Two products of the same scene: a processing-baseline 04.00 one (DN = 10000 x reflectance +
1000, ``RADIO_ADD_OFFSET = -1000``, ``MSK_CLASSI_B00.jp2`` cloud mask) and a baseline 02.09
one (no offset, the cloud box as a ``MSK_CLOUDS_B00.gml`` polygon, zipped). The toy
``BitSegmenter`` of ``test_predict`` turns the bit bands B02-B04 into known classes; its
output depends on the offset (5000 vs 6000 DN bits normalise differently), so equal maps mean
the offset was removed exactly once.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from test_predict import BIT_BANDS, HAS_JP2, ORIGIN, UTM, BitSegmenter, from_origin, label_pattern, write_tif

from data.bands import S2_BANDS
from inference import clouds, offset, products, sentinel1, sources, writer

H, W = 240, 300                       # multiples of 6: whole 60 m pixels
RES = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10,
       "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20}
NODATA = (slice(60, 120), slice(180, 240))     # all bands 0 (outside the swath)
CLOUD = (slice(120, 180), slice(60, 120))      # flagged by the cloud masks
SNOW = (slice(0, 30), slice(0, 30))            # MSK_CLASSI band 3 (snow): never masked
TILE_ID = "T32TMT"
EXT = "jp2" if HAS_JP2 else "tif"


def reference_stack(seed=0):
    """13-band uint16 SEN12MS-like DN (no offset): bit bands encode ``label_pattern``, coarse bands
    are constant on their own pixels, B01 = 1000 (so no valid pixel is all zero)."""
    rng = np.random.default_rng(seed)
    labels = label_pattern(H, W)
    stack = np.empty((13, H, W), np.uint16)
    for i, band in enumerate(S2_BANDS):
        f = RES[band] // 10
        coarse = rng.integers(100, 3000, (H // f, W // f)).astype(np.uint16)
        stack[i] = np.kron(coarse, np.ones((f, f), np.uint16))
    stack[0] = 1000
    for j, b in enumerate(BIT_BANDS):
        stack[b] = 5000 * ((labels.astype(np.uint16) >> j) & 1)
    stack[(slice(None),) + NODATA] = 0
    return labels, stack


def offset_stack():
    """The reference scene as a baseline >= 04.00 product stores it: DN + 1000, no data stays 0."""
    _, stack = reference_stack()
    off = stack + np.uint16(1000)
    off[(slice(None),) + NODATA] = 0
    return off


MTD = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-{lvl}_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-{lvl}.xsd">
  <n1:General_Info>
    <Product_Info>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
      <PRODUCT_TYPE>S2MSI{lvl_short}</PRODUCT_TYPE>
    </Product_Info>
    <Product_Image_Characteristics>
      <{q}QUANTIFICATION_VALUE unit="none">10000</{q}QUANTIFICATION_VALUE>
      {offsets}
    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-{lvl}_User_Product>
"""


def mtd_xml(baseline, offset=None, level="1C", bands=range(13)):
    tag = "RADIO_ADD_OFFSET" if level == "1C" else "BOA_ADD_OFFSET"
    lst = "Radiometric_Offset_List" if level == "1C" else "BOA_ADD_OFFSET_VALUES_LIST"
    offsets = "" if offset is None else (f"<{lst}>" + "".join(
        f'<{tag} band_id="{i}">{offset}</{tag}>' for i in bands) + f"</{lst}>")
    return MTD.format(lvl=level, lvl_short=level, baseline=baseline, offsets=offsets,
                      q="" if level == "1C" else "BOA_")


def gml_mask(box):
    x0, x1 = ORIGIN[0] + box[1].start * 10, ORIGIN[0] + box[1].stop * 10
    y0, y1 = ORIGIN[1] - box[0].start * 10, ORIGIN[1] - box[0].stop * 10
    ring = " ".join(f"{x:.0f} {y:.0f}" for x, y in [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)])
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<eop:Mask xmlns:eop="http://www.opengis.net/eop/2.0" xmlns:gml="http://www.opengis.net/gml/3.2">
  <eop:maskMembers>
    <eop:MaskFeature gml:id="OPAQUE.0">
      <eop:maskType codeSpace="urn:gs2:S2PDGS:maskType">OPAQUE</eop:maskType>
      <eop:extentOf>
        <gml:Polygon gml:id="OPAQUE.0.Polygon" srsName="urn:ogc:def:crs:EPSG::32632">
          <gml:exterior><gml:LinearRing><gml:posList srsDimension="2">{ring}</gml:posList></gml:LinearRing></gml:exterior>
        </gml:Polygon>
      </eop:extentOf>
    </eop:MaskFeature>
  </eop:maskMembers>
</eop:Mask>
"""


def make_safe(root: Path, baseline: str, offset: bool, mask: str, level: str = "1C") -> Path:
    """A SAFE folder: MTD_MSIL{level}.xml, GRANULE/<one>/IMG_DATA band files, QI_DATA cloud mask."""
    stack = offset_stack() if offset else reference_stack()[1]
    n = baseline.replace(".", "")
    safe = root / f"S2A_MSIL{level}_20220601T103031_N{n}_R108_{TILE_ID}_20220601T120000.SAFE"
    granule = safe / "GRANULE" / f"L{level}_{TILE_ID}_A036000_20220601T103031"
    img, qi = granule / "IMG_DATA", granule / "QI_DATA"
    img.mkdir(parents=True)
    qi.mkdir()
    (safe / f"MTD_MSIL{level}.xml").write_text(mtd_xml(baseline, -1000 if offset else None, level))
    for i, band in enumerate(S2_BANDS):
        f = RES[band] // 10
        coarse = stack[i, ::f, ::f]
        if level == "2A":
            if band == "B10":
                continue
            folder = img / f"R{RES[band]}m"
            folder.mkdir(exist_ok=True)
            path = folder / f"{TILE_ID}_20220601T103031_{band}_{RES[band]}m.{EXT}"
        else:
            path = img / f"{TILE_ID}_20220601T103031_{band}.{EXT}"
        write_tif(path, coarse[None], from_origin(*ORIGIN, RES[band], RES[band]))
    if mask == "classi":
        m = np.zeros((3, H // 6, W // 6), np.uint8)
        r, c = slice(CLOUD[0].start // 6, CLOUD[0].stop // 6), slice(CLOUD[1].start // 6, CLOUD[1].stop // 6)
        half = (r.start + r.stop) // 2
        m[0, r.start:half, c] = 1                      # opaque clouds
        m[1, half:r.stop, c] = 1                       # cirrus
        m[2, SNOW[0].start // 6:SNOW[0].stop // 6, SNOW[1].start // 6:SNOW[1].stop // 6] = 1   # snow
        write_tif(qi / f"MSK_CLASSI_B00.{EXT}", m, from_origin(*ORIGIN, 60, 60))
    elif mask == "gml":
        (qi / "MSK_CLOUDS_B00.gml").write_text(gml_mask(CLOUD))
    return safe


def zip_safe(safe: Path) -> Path:
    out = safe.parent / (safe.name.replace(".SAFE", "") + ".zip")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted(safe.rglob("*")):
            zf.write(p, p.relative_to(safe.parent).as_posix())
    shutil.rmtree(safe)
    return out


@pytest.fixture(scope="module")
def products_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("products")
    new = make_safe(d / "new", "04.00", offset=True, mask="classi")
    old = zip_safe(make_safe(d / "old", "02.09", offset=False, mask="gml"))
    return {"dir": d, "new": new, "old": old}


# ----------------------------------------------------------------------------- metadata & offset


def test_metadata_and_offset_decision(products_dir):
    new = products.inspect_s2(products_dir["new"])
    assert (new.kind, new.level, new.baseline) == ("safe", "L1C", "04.00")
    assert new.offsets == (-1000.0,) * 13 and new.cloud_mask_kind == "msk_classi"
    assert sorted(new.band_files) == sorted(S2_BANDS)
    old = products.inspect_s2(products_dir["old"])
    assert (old.kind, old.baseline, old.offsets, old.cloud_mask_kind) == ("safe_zip", "02.09", (0.0,) * 13, "gml")
    assert all(p[0].startswith("/vsizip/") for p in old.band_files.values())
    # a band folder inside the SAFE finds the metadata above it
    img = next(products_dir["new"].glob("GRANULE/*/IMG_DATA"))
    assert products.inspect_s2(img).baseline == "04.00"

    d = offset.decide_offset(new)
    assert d.offsets == (-1000.0,) * 13 and d.source == "metadata" and d.warning is None
    assert "RADIO_ADD_OFFSET" in d.message and "04.00" in d.message and d.tag() == "-1000"
    assert offset.decide_offset(old).is_identity
    unknown = products.S2Product(path="scene.tif", kind="geotiff")
    d = offset.decide_offset(unknown)
    assert d.is_identity and "cannot be known" in d.warning and "--s2_offset -1000" in d.warning
    assert offset.decide_offset(unknown, 0.0).warning is None
    assert "overrides" in offset.decide_offset(new, 0.0).warning
    # a baseline >= 04.00 without the list still gets the offset; an unparsable file is named
    assert products.parse_product_metadata(mtd_xml("05.10"))["offsets"] == (-1000.0,) * 13
    with pytest.raises(products.ProductError, match="MTD_MSIL1C.xml"):
        products.parse_product_metadata("<broken", "MTD_MSIL1C.xml")


def test_offset_applied_exactly_once_values_equal_the_old_product(products_dir):
    _, stack = reference_stack()
    src_new, prod_new = products.open_s2_product(products_dir["new"], resampling="nearest")
    src_old, _ = products.open_s2_product(products_dir["old"], resampling="nearest")
    with src_old:
        old = src_old.read(0, 0, H, W)
    np.testing.assert_array_equal(old, stack)                   # the zip reads back the reference
    d = offset.decide_offset(prod_new)
    with offset.OffsetSource(src_new, d.offsets, d.scale) as src:
        got = src.read(0, 0, H, W)
        assert np.isnan(got[(slice(None),) + NODATA]).all()     # all-zero pixels: no data
        np.testing.assert_array_equal(np.nan_to_num(got, nan=0.0), old.astype(np.float32))
        with pytest.raises(ValueError, match="already applied"):
            offset.OffsetSource(src, d.offsets)
    # inference.products.open_s2 (the library entry point) removes the offset of a SAFE product too
    with products.open_s2(products_dir["new"], resampling="nearest") as src:
        assert src.offset_applied
        np.testing.assert_array_equal(np.nan_to_num(src.read(0, 0, H, W), nan=0.0), old.astype(np.float32))


# ----------------------------------------------------------------------------- CLI end to end


def _factory(name, num_classes=8, checkpoint=None, **options):
    model = BitSegmenter(s1_bit=name == "ToyBitsS1")
    model.load_state_dict(checkpoint["model_weights"])
    return model


def _checkpoint(tmp_path, name="ToyBits", **options):
    path = tmp_path / f"{name}.pt"
    torch.save({"model_name": name, "model_options": {"s1_input_channels": 0, **options},
                "model_weights": BitSegmenter(s1_bit=name == "ToyBitsS1").state_dict()}, path)
    return path


@pytest.fixture()
def cli(monkeypatch, capsys):
    import models
    import predict
    monkeypatch.setattr(models, "create_model", _factory, raising=False)

    def run(*argv):
        assert predict.main([str(a) for a in argv] + ["--no_progress", "--device", "cpu"]) == 0
        return capsys.readouterr()
    return run


def test_safe_products_offset_clouds_cog_categories(products_dir, tmp_path, cli):
    ckpt = _checkpoint(tmp_path)
    labels, _ = reference_stack()
    outs = {}
    for key in ("new", "old"):
        out = tmp_path / key / "map.tif"
        printed = cli("--checkpoint", ckpt, "--s2", products_dir[key], "--out", out, "--probabilities",
                      tmp_path / key / "p.tif", "--summary", tmp_path / key / "s.json", "--resampling", "nearest")
        with rasterio.open(out) as ds:
            outs[key] = {"map": ds.read(1), "tags": ds.tags(), "printed": printed,
                         "summary": json.loads((tmp_path / key / "s.json").read_text())}
        with rasterio.open(tmp_path / key / "p.tif") as ds:
            assert ds.dtypes[0] == "uint8" and ds.nodata == 255 and ds.count == 8
            assert ds.scales == (1 / 255,) * 8
            outs[key]["probs"] = ds.read()
    new, old = outs["new"], outs["old"]
    assert "RADIO_ADD_OFFSET" in new["printed"].err and "-1000" in new["printed"].err
    assert "cannot be known" not in new["printed"].err + old["printed"].err
    # offset removed exactly once: the same map and probabilities as the product without offset
    np.testing.assert_array_equal(new["map"], old["map"])
    np.testing.assert_array_equal(new["probs"], old["probs"])
    exp = labels.copy()
    exp[NODATA] = 255
    exp[CLOUD] = 255
    np.testing.assert_array_equal(new["map"], exp)                  # snow box is mapped, not masked
    valid = exp != 255
    assert (new["probs"][:, ~valid] == 255).all() and (new["probs"][:, valid] <= 254).all()
    np.testing.assert_array_equal(new["probs"][:, valid].argmax(0), exp[valid])
    # the same product read without removing its offset gives other probabilities (the check is sensitive)
    cli("--checkpoint", ckpt, "--s2", products_dir["new"], "--out", tmp_path / "raw.tif", "--probabilities",
        tmp_path / "raw_p.tif", "--resampling", "nearest", "--s2_offset", "0")
    with rasterio.open(tmp_path / "raw_p.tif") as ds:
        raw = ds.read().astype(int)
    assert np.abs(raw[:, valid] - new["probs"][:, valid].astype(int)).max() > 10
    # summary: cloud-free area and cloud area, no-data apart
    s = new["summary"]
    assert s["cloud_pixels"] == 60 * 60 and s["nodata_pixels"] == 60 * 60
    assert abs(s["cloud_area_km2"] - 0.36) < 1e-9 and abs(s["cloud_free_area_km2"] - valid.sum() * 1e-4) < 1e-9
    assert s["s2_offset"] == "-1000" and s["processing_baseline"] == "04.00"
    assert "clouds" in new["printed"].out and "cloud-free area" in new["printed"].out
    # provenance tags
    t = new["tags"]
    assert (t["MODEL"], t["CHECKPOINT"], t["S2_OFFSET"], t["PROCESSING_BASELINE"]) == \
        ("ToyBits", ckpt.name, "-1000", "04.00")
    assert t["SOFTWARE_VERSION"] and "MSK_CLASSI_B00" in t["CLOUD_MASK"]
    assert old["tags"]["S2_OFFSET"] == "0" and "MSK_CLOUDS_B00.gml" in old["tags"]["CLOUD_MASK"]
    # a Cloud-Optimised GeoTIFF with mode overviews, colour table and category names GDAL reads
    out = tmp_path / "new" / "map.tif"
    assert writer.validate_cog(out) == []
    with rasterio.open(out) as ds:
        assert ds.overviews(1) == [2] and ds.colormap(1)[0][3] == 255
        with rasterio.open(out, overview_level=0) as ov:
            assert set(np.unique(ov.read(1))) <= set(range(8)) | {255}   # mode: real classes only
    cats = writer.read_category_names(out)
    assert cats["categories"] == json.loads(t["CLASS_NAMES"]) and cats["categories"][0] == "Forest"
    assert cats["rat_fields"][:2] == ["Value", "Class"] and ["7", "Water"] == cats["rat"][7][:2]
    assert writer.validate_cog(tmp_path / "new" / "p.tif") == []


def test_unknown_baseline_warns_once_and_flag_applies_offset(products_dir, tmp_path, cli):
    """A GeoTIFF has no metadata: one warning; --s2_offset -1000 on offset data gives the reference map."""
    labels, stack = reference_stack()
    tif = write_tif(tmp_path / "S2_offset.tif", offset_stack(), from_origin(*ORIGIN, 10, 10))
    ckpt = _checkpoint(tmp_path)
    ref = write_tif(tmp_path / "S2_reference.tif", stack, from_origin(*ORIGIN, 10, 10))
    probs = {}
    for key, s2, extra in (("none", tif, []), ("flag", tif, ["--s2_offset", "-1000"]),
                           ("reference", ref, ["--s2_offset", "0"])):
        printed = cli("--checkpoint", ckpt, "--s2", s2, "--out", tmp_path / f"{key}.tif", "--probabilities",
                      tmp_path / f"p_{key}.tif", "--probabilities_dtype", "float32", *extra)
        assert printed.err.count("cannot be known") == (1 if key == "none" else 0)
        with rasterio.open(tmp_path / f"p_{key}.tif") as ds:
            assert ds.dtypes[0] == "float32"
            probs[key] = ds.read()
    with rasterio.open(tmp_path / "flag.tif") as ds:
        assert ds.tags()["S2_OFFSET_SOURCE"] == "flag" and ds.tags()["S2_OFFSET"] == "-1000"
        right = ds.read(1)
    exp = labels.copy()
    exp[NODATA] = 255
    np.testing.assert_array_equal(right, exp)
    np.testing.assert_array_equal(probs["flag"], probs["reference"])
    # without the offset the model sees other values: the probabilities move by far more than rounding
    assert np.nanmax(np.abs(probs["none"] - probs["reference"])) > 0.05


def test_l2a_is_refused_with_a_clear_message(tmp_path, cli, capsys):
    import predict
    safe = make_safe(tmp_path, "04.00", offset=True, mask="classi", level="2A")
    ckpt = _checkpoint(tmp_path)
    with pytest.raises(SystemExit) as err:
        predict.main(["--checkpoint", str(ckpt), "--s2", str(safe), "--out", str(tmp_path / "m.tif")])
    msg = str(err.value)
    assert msg.startswith("error: ") and "\n" not in msg
    assert "Level-2A" in msg and "B10" in msg and "--allow_l2a" in msg and safe.name in msg
    assert not (tmp_path / "m.tif").exists()
    # opt-in: B10 from B09, BOA_ADD_OFFSET applied
    printed = cli("--checkpoint", ckpt, "--s2", safe, "--out", tmp_path / "m.tif", "--allow_l2a",
                  "--resampling", "nearest")
    assert "BOA_ADD_OFFSET" in printed.err and "B10 channel filled from B09" in printed.err
    with rasterio.open(tmp_path / "m.tif") as ds:
        assert "B09" in ds.tags()["L2A_APPROXIMATION"] and ds.tags()["PRODUCT_LEVEL"] == "L2A"
        labels, _ = reference_stack()
        exp = labels.copy()
        exp[NODATA] = 255
        exp[CLOUD] = 255
        np.testing.assert_array_equal(ds.read(1), exp)


def test_s1_linear_two_files_equals_db_and_s1_only_keeps_clouds(products_dir, tmp_path, cli):
    """S1 in dB (one 2-band file) and linear (two files, given VH first) give the same map; an
    S1-only model keeps the cloudy pixels (radar sees through clouds)."""
    labels, _ = reference_stack()
    vv_db = np.where((labels >> 2) & 1, 0.0, -25.0).astype(np.float32)
    vh_db = np.full_like(vv_db, -15.0)
    t = from_origin(*ORIGIN, 10, 10)
    db = write_tif(tmp_path / "S1_db.tif", np.stack([vv_db, vh_db]), t)
    vv = write_tif(tmp_path / "S1_VV_linear.tif", (10 ** (vv_db / 10))[None], t)
    vh = write_tif(tmp_path / "S1_VH_linear.tif", (10 ** (vh_db / 10))[None], t)
    ckpt = _checkpoint(tmp_path, "ToyBitsS1", s1_input_channels=2, s2_input_channels=0)
    maps = []
    for extra in (["--s1", db], ["--s1", vh, vv, "--s1_units", "linear", "--overwrite"]):
        printed = cli("--checkpoint", ckpt, "--s2", products_dir["new"], "--out", tmp_path / "m.tif",
                      "--resampling", "nearest", *extra)
        assert "S1-only" in printed.err
        with rasterio.open(tmp_path / "m.tif") as ds:
            maps.append(ds.read(1))
    np.testing.assert_array_equal(maps[0], maps[1])
    exp = labels.copy()
    exp[NODATA] = 255
    np.testing.assert_array_equal(maps[0], exp)                     # cloud box mapped
    with sentinel1.open_s1_inputs([vh, vv], sources.Grid(UTM, t, W, H), units="linear") as src:
        np.testing.assert_allclose(src.read(0, 0, H, W), np.stack([vv_db, vh_db]), atol=1e-4)


def test_seam_metric_of_the_scene_benchmark_sees_window_borders():
    """benchmarks/scene.py's seam ratio: ~1 for a map without traces of the windows, > 1 with jumps at borders."""
    from benchmarks import scene as bench
    y, x = np.mgrid[:448, :448]
    smooth = np.stack([0.5 + 0.4 * np.sin(x / 37.0 + y / 53.0)] * 2)
    smooth[1] = 1 - smooth[0]
    m = bench.seam_metrics(smooth.argmax(0).astype(np.uint8), smooth.astype(np.float32), 224, 0.0)
    assert 0.8 < m["prob_seam_ratio"] < 1.25
    seamy = smooth.copy()
    seamy[0, :, 224:] = np.clip(seamy[0, :, 224:] + 0.2, 0, 1)   # the second window column disagrees
    seamy[1] = 1 - seamy[0]
    m = bench.seam_metrics(seamy.argmax(0).astype(np.uint8), seamy.astype(np.float32), 224, 0.0)
    assert m["prob_seam_ratio"] > 2


def test_cloud_mask_files_qa60_and_gml_and_errors(tmp_path):
    """--cloud_mask FILE: a QA60 raster (bits 10/11; other bits ignored) at 60 m and a GML mask
    land on the 10 m grid; a missing file or a GML in another CRS is a one-line error naming it."""
    g = sources.Grid(UTM, from_origin(*ORIGIN, 10, 10), W, H)
    qa = np.zeros((1, H // 6, W // 6), np.uint16)
    qa[0, 20:25, 10:20] = 1 << 10          # opaque
    qa[0, 25:30, 10:20] = 1 << 11          # cirrus
    qa[0, 0:5, 0:5] = 1 << 3               # another bit: not a cloud
    path = write_tif(tmp_path / "S2_QA60.tif", qa, from_origin(*ORIGIN, 60, 60))
    prod = products.S2Product(path="scene.tif", kind="geotiff")
    expected = np.zeros((H, W), bool)
    expected[CLOUD] = True
    mask, line = clouds.open_cloud_mask(prod, g, path)
    assert "QA60" in line
    np.testing.assert_array_equal(mask.read(0, 0, H, W), expected)
    np.testing.assert_array_equal(mask.read(100, 50, 50, 40), expected[100:150, 50:90])
    mask.close()
    (tmp_path / "MSK_CLOUDS_B00.gml").write_text(gml_mask(CLOUD))
    mask, line = clouds.open_cloud_mask(prod, g, str(tmp_path / "MSK_CLOUDS_B00.gml"))
    assert "1 opaque/cirrus polygons" in line
    np.testing.assert_array_equal(mask.read(0, 0, H, W), expected)
    assert clouds.open_cloud_mask(prod, g, "auto")[0] is None
    with pytest.raises(FileNotFoundError, match="--cloud_mask .*nope.tif"):
        clouds.open_cloud_mask(prod, g, str(tmp_path / "nope.tif"))
    (tmp_path / "other.gml").write_text(gml_mask(CLOUD).replace("32632", "32633"))
    with pytest.raises(products.ProductError, match="other.gml.*EPSG:32633"):
        clouds.open_cloud_mask(prod, g, str(tmp_path / "other.gml"))
