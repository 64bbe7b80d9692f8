"""The sample-data generator and DFCDataset over its output: every mode, crops, CSVs, plots."""

import csv
from collections import Counter

import numpy as np
import pytest
import rasterio
import torch
from conftest import SAMPLE_PATCHES
from torch.utils.data import DataLoader

from data import DFCDataset, Season, SEN12MSReader, Sensor
from data.bands import DFC2020_SEASONS, SEN12MS_SEASONS
from data.dataset import read_observations
from data.errors import DatasetError
from data.labels import dfc10_to_dfc8, igbp_to_dfc8, multilabel_one_hot, single_label
from data.sample import DEFAULT_PATCHES, generate_sample_dataset, main
from data.transforms import preprocess_s1

SHAPES = {"s1": (2,), "s2": (13,), "lc": (1,), "dfc": (1,)}


def _rows(root, split):
    seasons, scenes, patches = read_observations(root / f"{split}_observations.csv")
    return [(list(Season)[s], int(c), int(p)) for s, c, p in zip(seasons, scenes, patches)]


# ---------------------------------------------------------------- generator
def test_layout_and_files(sample_root):
    reader = SEN12MSReader(sample_root)
    origins = set()
    for split, seasons in (("sen12ms", SEN12MS_SEASONS), ("validation", [Season.VALSET]), ("test", [Season.TESTSET])):
        rows = _rows(sample_root, split)
        assert {r[0] for r in rows} == set(seasons)
        for season, scene, patch in rows:
            sensors = [Sensor.s1, Sensor.s2, Sensor.lc] + ([Sensor.dfc] if season in DFC2020_SEASONS else [])
            assert reader.path(season, scene, patch, Sensor.dfc).exists() == (season in DFC2020_SEASONS)
            for sensor in sensors:
                with rasterio.open(reader.path(season, scene, patch, sensor)) as src:
                    assert (src.count, src.dtypes[0]) == {"s1": (2, "float32"), "s2": (13, "uint16"),
                                                          "lc": (4, "uint16"), "dfc": (1, "uint16")}[sensor.value]
                    assert src.shape == (256, 256) and src.res == (10.0, 10.0)
                    assert src.crs.to_epsg() // 100 == 326  # UTM north
                    origins.add((src.crs.to_epsg(), src.transform.c, src.transform.f, sensor.value))
    n = 4 * SAMPLE_PATCHES["sen12ms"] + SAMPLE_PATCHES["validation"] + SAMPLE_PATCHES["test"]
    assert len(origins) == n * 3 + 16  # distinct origin per patch, shared by its sensors


def test_patch_content_is_consistent(sample_root):
    reader = SEN12MSReader(sample_root)
    nan_patches = 0
    water_nir, veg_nir, water_vv, urban_vv = [], [], [], []
    for season, scene, patch in _rows(sample_root, "validation") + _rows(sample_root, "test"):
        s1, _ = reader.read(season, scene, patch, Sensor.s1)
        s2, _ = reader.read(season, scene, patch, Sensor.s2)
        lc, _ = reader.read(season, scene, patch, Sensor.lc)
        dfc, _ = reader.read(season, scene, patch, Sensor.dfc)
        dfc = dfc[0]
        assert 1 <= dfc.min() and dfc.max() <= 10 and 1 <= lc[0].min() and lc[0].max() <= 17
        nan_patches += bool(np.isnan(s1).any())
        # MODIS band 1 is piecewise constant on a 50 px grid
        changes = np.flatnonzero(np.any(np.diff(lc[0].astype(int), axis=0) != 0, axis=1)) + 1
        assert len(changes) == 0 or len(set(changes % 50)) == 1
        # MODIS agrees with the fine map on most pixels
        assert (igbp_to_dfc8(lc[0]) == dfc10_to_dfc8(dfc)).mean() > 0.5
        water, veg, urban = dfc == 10, np.isin(dfc, (1, 4, 6)), dfc == 7
        if water.any():
            water_nir.append(s2[7][water].mean())
            water_vv.append(np.nanmean(s1[0][water]))
        if veg.any():
            veg_nir.append(s2[7][veg].mean())
        if urban.any():
            urban_vv.append(np.nanmean(s1[0][urban]))
    assert nan_patches >= 1
    assert max(water_nir) < min(veg_nir) and max(water_vv) < min(urban_vv)


def test_generator_is_deterministic_and_cli(tmp_path, capsys):
    a = generate_sample_dataset(tmp_path / "a", seed=3, patches=1)
    assert main(["--root", str(tmp_path / "b"), "--seed", "3", "--patches", "1", "--scene", "none"]) == 0
    assert "6 patches" in capsys.readouterr().out
    c = generate_sample_dataset(tmp_path / "c", seed=4, patches={"sen12ms": 1, "validation": 1, "test": 1})
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert (a / "validation_observations.csv").read_text() != (c / "validation_observations.csv").read_text()
    with pytest.raises(SystemExit):
        main(["--root", str(tmp_path / "d"), "--patches", "train=3"])
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0 and "ROIs0000_validation" in capsys.readouterr().out
    assert DEFAULT_PATCHES == {"sen12ms": 8, "validation": 16, "test": 16}


# ---------------------------------------------------------------- dataset over the sample
@pytest.mark.parametrize("mode", ["sen12ms", "validation", "test", "dfc"])
def test_every_mode(sample_root, mode):
    ds = DFCDataset(sample_root, mode=mode)
    n = SAMPLE_PATCHES
    assert len(ds) == {"sen12ms": 4 * n["sen12ms"], "validation": n["validation"], "test": n["test"],
                       "dfc": n["validation"] + n["test"]}[mode]
    has_dfc = mode != "sen12ms"
    labels = []
    for i in range(len(ds)):
        s = ds[i]
        assert set(s) == {"s1", "s2", "lc", "lc_label", "lc_multilabel_one_hot", "s1_nan_pixels", "index"} | (
            {"dfc", "dfc_label", "dfc_multilabel_one_hot"} if has_dfc else set())
        for key in ("lc", "dfc") if has_dfc else ("lc",):
            m = s[key].numpy()
            assert s[key].shape == (1, 256, 256) and set(np.unique(m)) <= set(range(8)) | {255}
            assert s[f"{key}_label"].shape == () and s[f"{key}_label"].dtype == torch.float32
            assert s[f"{key}_label"].item() == single_label(m)
            assert torch.equal(s[f"{key}_multilabel_one_hot"], torch.from_numpy(multilabel_one_hot(m)))
        for key in ("s1", "s2"):
            assert s[key].shape == SHAPES[key] + (256, 256) and s[key].dtype == torch.float32
            assert not torch.isnan(s[key]).any() and s[key].min() >= 0 and s[key].max() <= 1
        assert s["index"] == i and isinstance(s["s1_nan_pixels"], int)
        if has_dfc:
            labels.append(int(s["dfc_label"]))
    if mode in ("validation", "test"):
        assert sorted(labels) == list(range(8))  # every class dominates one patch
    assert ds.classes[0] == "Forest" and ds.num_classes == 8


def test_mode_dfc_is_validation_plus_test(sample_root):
    ds = DFCDataset(sample_root, mode="dfc")
    expected = _rows(sample_root, "validation") + _rows(sample_root, "test")
    assert [ds.observation(i) for i in range(len(ds))] == expected


def test_nan_pixels_are_counted_and_repaired(sample_root):
    ds = DFCDataset(sample_root, mode="sen12ms")
    reader = SEN12MSReader(sample_root)
    ds_val = DFCDataset(sample_root, mode="dfc")
    found = 0
    for dataset in (ds, ds_val):
        for i in range(len(dataset)):
            raw, _ = reader.read(*dataset.observation(i), Sensor.s1)
            nan = np.isnan(raw)
            if nan.any():
                s = dataset[i]
                found += 1
                assert s["s1_nan_pixels"] == int(nan.sum())
                assert not torch.isnan(s["s1"]).any() and (s["s1"].numpy()[nan] == 0).all()
    assert found >= 1


def test_validation_centre_crop_is_deterministic(sample_root):
    ds = DFCDataset(sample_root, mode="validation", image_px_size=128)
    reader = SEN12MSReader(sample_root)
    first = [ds[i] for i in range(3)]
    for i, s in enumerate(first):
        again = ds[i]
        assert all(torch.equal(s[k], again[k]) for k in ("s1", "s2", "dfc", "lc"))
        full = DFCDataset(sample_root, mode="validation")[i]
        assert torch.equal(s["dfc"], full["dfc"][:, 64:192, 64:192])
        raw, _ = reader.read(*ds.observation(i), Sensor.s1)
        assert torch.equal(s["s1"], torch.from_numpy(preprocess_s1(raw[:, 64:192, 64:192])))
        assert s["dfc_label"].item() == single_label(s["dfc"].numpy())


def test_cover_all_parts_tiles_cover_each_patch(sample_root):
    full = DFCDataset(sample_root, mode="test")
    tiles = DFCDataset(sample_root, mode="test", image_px_size=100, cover_all_parts=True)
    assert tiles.tiles_per_patch == 9 and len(tiles) == 9 * len(full)
    for obs in range(2):
        reference = full[obs]["dfc"][0]
        covered = torch.zeros(256, 256, dtype=torch.bool)
        for t in range(9):
            item = obs * 9 + t
            w = tiles.window(item)
            s = tiles[item]
            assert tiles.observation(item) == full.observation(obs)
            rows, cols = slice(w.row_off, w.row_off + 100), slice(w.col_off, w.col_off + 100)
            assert torch.equal(s["dfc"][0], reference[rows, cols])
            covered[rows, cols] = True
        assert covered.all()
    assert [tiles.window(i).col_off for i in range(3)] == [0, 100, 156]


def test_random_crops_follow_the_seed(sample_root):
    def windows(seed, n=6):
        ds = DFCDataset(sample_root, mode="sen12ms", image_px_size=64, seed=seed)
        return [(w.row_off, w.col_off) for w in (ds.window(0) for _ in range(n))]

    assert windows(1) == windows(1)
    assert windows(1) != windows(2)
    assert len(set(windows(1))) > 1  # a new offset each time
    ds = DFCDataset(sample_root, mode="sen12ms", image_px_size=64, seed=5)
    s = ds[0]
    assert s["s1"].shape == (2, 64, 64) and s["lc"].shape == (1, 64, 64)
    # random crops on request in a DFC2020 mode too
    ds = DFCDataset(sample_root, mode="validation", image_px_size=64, random_crop=True, seed=1)
    assert len({(w.row_off, w.col_off) for w in (ds.window(0) for _ in range(6))}) > 1


def test_crop_sensors_share_the_window(sample_root):
    ds = DFCDataset(sample_root, mode="validation", image_px_size=96, random_crop=True, seed=0)
    ds_copy = DFCDataset(sample_root, mode="validation", image_px_size=96, random_crop=True, seed=0)
    w = ds_copy.window(2)
    s = ds[2]
    full = DFCDataset(sample_root, mode="validation")[2]
    rows, cols = slice(w.row_off, w.row_off + 96), slice(w.col_off, w.col_off + 96)
    assert torch.equal(s["dfc"], full["dfc"][:, rows, cols]) and torch.equal(s["lc"], full["lc"][:, rows, cols])
    geo = ds.geo(2, window=w)
    assert geo.shape == (96, 96) and geo.transform.c == ds.geo(2).transform.c + 10 * w.col_off


def test_used_data_fraction(sample_root):
    full = [DFCDataset(sample_root, mode="dfc").observation(i) for i in range(16)]
    half = _sampled_with(7)(sample_root, mode="dfc", used_data_fraction=0.5)
    picked = [half.observation(i) for i in range(len(half))]
    assert len(half) == 8 and set(picked) <= set(full)
    assert picked == sorted(picked, key=full.index)  # list order kept
    again = _sampled_with(7)(sample_root, mode="dfc", used_data_fraction=0.5)
    assert picked == [again.observation(i) for i in range(8)]
    other = _sampled_with(8)(sample_root, mode="dfc", used_data_fraction=0.5)
    assert picked != [other.observation(i) for i in range(8)]
    # the original's pandas rounding: round(0.1 * 16) = 2; round(0.01 * 16) = 0 is an error
    assert len(DFCDataset(sample_root, mode="dfc", used_data_fraction=0.1)) == 2
    with pytest.raises(DatasetError, match="keeps none"):
        DFCDataset(sample_root, mode="dfc", used_data_fraction=0.01)


def test_balanced_classes_csv(sample_root):
    path = sample_root / "validation_observations_balanced_classes.csv"
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["Season", "Scene", "ID", "dfc_label", "copy_nr"]
    ds = DFCDataset(sample_root, mode="validation")
    label_of = {ds.observation(i): int(ds[i]["dfc_label"]) for i in range(len(ds))}
    unique = Counter(int(r["dfc_label"]) for r in rows if r["copy_nr"] == "0")
    top = max(unique.values())
    for key, n in Counter((r["Season"], r["Scene"], r["ID"]) for r in rows).items():
        obs = (Season[key[0].split(".")[1]], int(key[1]), int(key[2]))
        assert n == top // unique[label_of[obs]]
    assert all(int(r["dfc_label"]) == label_of[(Season.VALSET, int(r["Scene"]), int(r["ID"]))] for r in rows)
    balanced = DFCDataset(sample_root, mode="validation", balanced_classes=True)
    assert len(balanced) == len(rows) and balanced.observation_files == [path]


def test_transforms_and_dataloader(sample_root):
    def flip(sample):
        sample["s2"] = sample["s2"].flip(-1)
        return sample

    plain = DFCDataset(sample_root, mode="test")
    ds = DFCDataset(sample_root, mode="test", transforms=flip)
    assert torch.equal(ds[1]["s2"], plain[1]["s2"].flip(-1))
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["s1"].shape == (4, 2, 256, 256) and batch["dfc_label"].shape == (4,)
    assert batch["index"].tolist() == [0, 1, 2, 3] and batch["s1_nan_pixels"].shape == (4,)


def test_plots(sample_root, tmp_path):
    import matplotlib.pyplot as plt

    from data.plot import plot_batch, plot_sample

    ds = DFCDataset(sample_root, mode="validation")
    fig = ds.plot(0)
    assert len(fig.axes) == 5 and fig.axes[4].get_title() == "DFC LC"
    fig.savefig(tmp_path / "sample.png")
    assert (tmp_path / "sample.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sen = DFCDataset(sample_root, mode="sen12ms")[0]
    fig2 = plot_sample(sen, title="t", prediction=np.zeros((256, 256)))
    assert [a.get_title() for a in fig2.axes] == ["S2 RGB", "S1 VV", "S1 VH", "MODIS LC", "Prediction"]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert set(legend) <= set(ds.classes) | {"no data (255)"} and legend
    fig3 = plot_batch(next(iter(DataLoader(ds, batch_size=3))))
    assert len(fig3.axes) == 15
    plt.close("all")


def test_random_crops_differ_between_dataloader_workers(sample_root, monkeypatch):
    from types import SimpleNamespace

    import torch.utils.data as tud

    ds = DFCDataset(sample_root, mode="sen12ms", image_px_size=32, seed=0)

    def offsets(worker_id, worker_seed):
        monkeypatch.setattr(tud, "get_worker_info", lambda: SimpleNamespace(id=worker_id, seed=worker_seed))
        return [(w.row_off, w.col_off) for w in (ds.window(0) for _ in range(5))]

    first, second = offsets(0, 100), offsets(1, 101)
    assert first != second  # forked copies of one Generator would repeat each other
    assert offsets(0, 100) == first  # a worker's stream depends only on seed and worker seed


def test_generate_scene_is_aligned_and_coherent(tmp_path):
    import rasterio

    from data.sample import generate_scene

    paths = generate_scene(tmp_path, height=300, width=260, seed=1)
    with rasterio.open(paths["s2"]) as s2, rasterio.open(paths["s1"]) as s1, rasterio.open(paths["dfc"]) as dfc:
        assert (s2.count, s1.count, dfc.count) == (13, 2, 1)
        assert s2.shape == s1.shape == dfc.shape == (300, 260)
        assert s2.transform == s1.transform == dfc.transform and s2.crs == dfc.crs
        labels = dfc.read(1)
        nir, red = s2.read(8).astype(float), s2.read(4).astype(float)
    assert len(np.unique(labels)) >= 4  # several classes across the scene
    # spatially coherent: most neighbouring pixels share the class
    assert (labels[:, 1:] == labels[:, :-1]).mean() > 0.9
    water, forest = labels == 10, labels == 1
    assert water.sum() > 1000 and forest.sum() > 1000     # seed 1 has both, large
    assert nir[water].mean() < nir[forest].mean()          # water dark in the NIR
    ndvi = (nir - red) / (nir + red + 1e-6)
    assert ndvi[forest].mean() > 0.3 and ndvi[water].mean() < 0.0


def _sampled_with(seed: int):
    """DFCDataset with another subset seed than the original's 42 (a class attribute)."""
    return type(f"DFCDatasetSeed{seed}", (DFCDataset,), {"sampling_seed": seed})
