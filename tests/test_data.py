"""Data layer against the original's fixture: samples, labels, normalisation, reader, errors."""

import hashlib
import io
import json
import lzma
import shutil

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from data import DFCDataset, Season, SEN12MSReader, Sensor
from data.bands import SENSORS, parse_season
from data.dataset import BUNDLED_SPLITS, observation_files, read_observations, subset_indices, tile_offsets
from data.errors import DatasetError, DatasetNotFoundError
from data.labels import (
    DFC_CLASSES,
    DFC_COLORS,
    IGBP_TO_DFC,
    IGBP_TO_DFC8,
    IGNORE_INDEX,
    colorize,
    dfc10_to_dfc8,
    igbp_to_dfc8,
    multilabel_one_hot,
    single_label,
)
from data.transforms import preprocess_s1, preprocess_s2


@pytest.fixture(scope="module")
def expected(fixture_dir):
    path = fixture_dir / "dfc_fixture" / "expected_dataset.pt.xz"
    return torch.load(io.BytesIO(lzma.open(path).read()), weights_only=False)


@pytest.fixture(scope="module")
def ref_root(fixture_dir):
    return fixture_dir / "dfc_fixture" / "data"


@pytest.fixture()
def root_copy(ref_root, tmp_path):
    """A writable copy of the fixture data, for breaking things."""
    return shutil.copytree(ref_root, tmp_path / "data")


# ---------------------------------------------------------------- reference fixture
@pytest.mark.parametrize("mode", ["validation", "sen12ms"])
def test_samples_equal_original(expected, ref_root, mode):
    ds = DFCDataset(ref_root, mode=mode)
    assert len(ds) == len(expected[mode]) == 2
    for i, reference in enumerate(expected[mode]):
        sample = ds[i]
        assert set(sample) == set(reference) | {"s1_nan_pixels", "index"}
        for key, value in reference.items():
            assert sample[key].dtype == value.dtype == torch.float32, key
            assert sample[key].shape == value.shape, key
            assert torch.equal(sample[key], value), f"{mode}[{i}][{key}] differs from the original"
        assert sample["s1_nan_pixels"] == 0 and sample["index"] == i


def test_observations_csv_argument_overrides(expected, ref_root, tmp_path):
    csv_path = tmp_path / "one.csv"
    csv_path.write_text("Seasons.VALSET,0,1\n")
    ds = DFCDataset(ref_root, mode="validation", observations_csv=csv_path)
    assert ds.observation_files == [csv_path] and len(ds) == 1
    assert torch.equal(ds[0]["dfc"], expected["validation"][1]["dfc"])


def test_csv_precedence(ref_root, tmp_path):
    # a CSV in base_dir beats the bundled list
    assert observation_files(ref_root, "validation") == [ref_root / "validation_observations.csv"]
    # without one, the bundled list; "dfc" = validation + test
    assert observation_files(tmp_path, "test") == [BUNDLED_SPLITS / "test_observations.csv"]
    assert observation_files(tmp_path, "dfc") == [BUNDLED_SPLITS / "validation_observations.csv",
                                                  BUNDLED_SPLITS / "test_observations.csv"]
    assert observation_files(tmp_path, "validation", balanced_classes=True) == [
        BUNDLED_SPLITS / "validation_observations_balanced_classes.csv"]


def test_bundled_csvs_parse():
    seasons, scenes, patches = read_observations(BUNDLED_SPLITS / "validation_observations.csv")
    assert len(seasons) == 986 and set(seasons) == {list(Season).index(Season.VALSET)}
    assert (scenes[0], patches[0]) == (0, 649)
    balanced = read_observations(BUNDLED_SPLITS / "validation_observations_balanced_classes.csv")
    assert len(balanced[0]) == 2618 and balanced[2][0] == 649  # header skipped


def test_season_parsing():
    assert parse_season("Seasons.VALSET") is Season.VALSET
    assert parse_season("ROIs1158_spring") is Season.SPRING
    assert parse_season("WINTER") is Season.WINTER
    assert Season.TESTSET.value == "ROIs0000_test" and Season.FALL.csv_name == "Seasons.FALL"
    with pytest.raises(ValueError, match="unknown season"):
        parse_season("Seasons.AUTUMN")


# ---------------------------------------------------------------- labels
def test_label_tables():
    assert IGNORE_INDEX == 255
    assert IGBP_TO_DFC.tolist() == [0, 1, 1, 1, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 6, 8, 9, 10]
    assert dfc10_to_dfc8(np.arange(11)).tolist() == [255, 0, 1, 255, 2, 3, 4, 5, 255, 6, 7]
    assert IGBP_TO_DFC8.tolist() == [255, 0, 0, 0, 0, 0, 1, 1, 255, 255, 2, 3, 4, 5, 4, 255, 6, 7]
    assert igbp_to_dfc8(np.array([[17, 18], [0, 65535]], np.uint16)).tolist() == [[7, 255], [255, 255]]
    assert igbp_to_dfc8(np.array([13.0])).tolist() == [5]
    assert len(DFC_CLASSES) == len(DFC_COLORS) == 8 and DFC_CLASSES[7] == "Water"
    rgb = colorize(np.array([[0, 255]]))
    assert rgb.shape == (1, 2, 3) and rgb[0, 1].tolist() == [0, 0, 0] and rgb[0, 0].tolist() == [0, 153, 0]


def test_single_label_counts_ignore_and_breaks_ties_low():
    assert single_label(np.array([255, 255, 255, 1, 1])) == 255  # the original's quirk
    assert single_label(np.array([[3, 3, 5, 5, 255]])) == 3
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.choice([0, 2, 4, 7, 255], size=(1, 16, 16))
        values, counts = np.unique(m, return_counts=True)
        assert single_label(m) == values[np.argmax(counts)]


def test_multilabel_threshold_over_all_pixels():
    m = np.full(100, 255)
    m[:10] = 0   # exactly 10 %: in
    m[10:19] = 1  # 9 %: out, although 9/81 of the valid pixels would be > 10 %
    m[19:60] = 7
    out = multilabel_one_hot(m)
    assert out.dtype == np.float32 and out.tolist() == [1, 0, 0, 0, 0, 0, 0, 1]


# ---------------------------------------------------------------- normalisation
def _original_normalise(tensor):
    """The original's per-band loop, verbatim in spirit."""
    out = tensor.clone()
    for b in range(out.shape[0]):
        out[b] = out[b] / (torch.ones(out.shape[1:]) * out[b].max().item() + 1e-5)
    return out


def test_preprocess_matches_original_loop():
    rng = np.random.default_rng(1)
    s1 = rng.normal(-15, 8, (2, 64, 64)).astype(np.float32)
    s2 = rng.integers(0, 14000, (13, 64, 64)).astype(np.uint16)
    ref_s1 = _original_normalise(torch.from_numpy(np.clip(s1, -25, 0) + 25))
    ref_s2 = _original_normalise(torch.from_numpy(np.clip(s2, 0, 10000).astype(np.float32)))
    assert torch.equal(torch.from_numpy(preprocess_s1(s1)), ref_s1)
    assert torch.equal(torch.from_numpy(preprocess_s2(s2)), ref_s2)
    assert preprocess_s1(s1).dtype == preprocess_s2(s2).dtype == np.float32
    # no clip: no shift either, as the original
    assert torch.equal(torch.from_numpy(preprocess_s2(s2, clip=False)),
                       _original_normalise(torch.from_numpy(s2.astype(np.float32))))
    assert torch.equal(torch.from_numpy(preprocess_s1(s1, clip=False)), _original_normalise(torch.from_numpy(s1)))


def test_preprocess_s1_repairs_nan():
    s1 = np.full((2, 8, 8), -10.0, np.float32)
    s1[0, 0, :3] = np.nan
    s1[1, 4, 4] = np.nan
    out = preprocess_s1(s1)
    assert not np.isnan(out).any()
    assert out[0, 0, :3].tolist() == [0, 0, 0] and out[1, 4, 4] == 0  # -25 dB floor -> 0
    assert np.allclose(out[0, 1], 15 / (15 + 1e-5))
    assert not np.isnan(preprocess_s1(s1, clip=False)).any()
    assert np.isnan(s1).sum() == 4  # input untouched


# ---------------------------------------------------------------- reader
def test_reader_path_and_read(ref_root):
    reader = SEN12MSReader(ref_root)
    path = reader.path(Season.VALSET, 0, 1, Sensor.s2)
    assert path == ref_root / "ROIs0000_validation" / "s2_0" / "ROIs0000_validation_s2_0_p1.tif"
    full, geo = reader.read("Seasons.VALSET", 0, 1, "s2")
    assert full.shape == (13, 256, 256) and full.dtype == np.uint16
    assert geo.crs.to_epsg() == 32632 and geo.transform.a == 10 and geo.shape == (256, 256)
    rgb, _ = reader.read(Season.VALSET, 0, 1, Sensor.s2, bands=["B04", "B03", "B02"])
    assert np.array_equal(rgb, full[[3, 2, 1]])
    b8a, _ = reader.read(Season.VALSET, 0, 1, Sensor.s2, bands="B8A")
    assert np.array_equal(b8a[0], full[SENSORS[Sensor.s2].bands.index("B8A")])
    with pytest.raises(ValueError, match="unknown s2 band 'B13'"):
        reader.read(Season.VALSET, 0, 1, Sensor.s2, bands=["B13"])


def test_reader_window_equals_slice_and_georeferences(ref_root):
    reader = SEN12MSReader(ref_root)
    full, geo = reader.read(Season.VALSET, 0, 0, Sensor.s1)
    crop, cgeo = reader.read(Season.VALSET, 0, 0, Sensor.s1, window=Window(30, 70, 100, 60))
    assert np.array_equal(crop, full[:, 70:130, 30:130])
    assert cgeo.transform.c == geo.transform.c + 30 * 10 and cgeo.transform.f == geo.transform.f - 70 * 10
    assert cgeo.bounds.left == cgeo.transform.c and cgeo.bounds.right == cgeo.transform.c + 1000
    assert cgeo.bounds.top == cgeo.transform.f and cgeo.bounds.bottom == cgeo.transform.f - 600
    with pytest.raises(DatasetError, match="outside"):
        reader.read(Season.VALSET, 0, 0, Sensor.s1, window=(200, 0, 100, 100))


# ---------------------------------------------------------------- bad input
def test_missing_root_names_path(tmp_path):
    missing = tmp_path / "nowhere"
    for make in (lambda: SEN12MSReader(missing), lambda: DFCDataset(missing, mode="validation")):
        with pytest.raises(DatasetNotFoundError, match="root not found") as err:
            make()
        assert str(missing) in str(err.value) and isinstance(err.value, FileNotFoundError)


def test_missing_season_folder_names_path(root_copy):
    shutil.rmtree(root_copy / "ROIs1970_fall")
    with pytest.raises(DatasetNotFoundError, match="season folder not found") as err:
        DFCDataset(root_copy, mode="sen12ms")
    assert str(root_copy / "ROIs1970_fall") in str(err.value)
    with pytest.raises(DatasetNotFoundError, match="season folder not found"):
        SEN12MSReader(root_copy).read(Season.FALL, 5, 0, Sensor.s1)


def test_missing_patch_file_names_path(root_copy):
    path = SEN12MSReader(root_copy).path(Season.VALSET, 0, 1, Sensor.dfc)
    path.unlink()
    ds = DFCDataset(root_copy, mode="validation")
    ds[0]
    with pytest.raises(DatasetNotFoundError, match="patch file not found") as err:
        ds[1]
    assert str(path) in str(err.value)
    shutil.rmtree(path.parent)
    with pytest.raises(DatasetNotFoundError, match="sensor folder not found"):
        ds[0]


def test_wrong_band_count_names_path(root_copy):
    path = SEN12MSReader(root_copy).path(Season.VALSET, 0, 0, Sensor.s1)
    with rasterio.open(path) as src:
        profile, data = src.profile, src.read()
    profile.update(count=3)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.concatenate([data, data[:1]]))
    with pytest.raises(DatasetError, match="expected 2 band") as err:
        DFCDataset(root_copy, mode="validation")[0]
    assert str(path) in str(err.value) and "found 3" in str(err.value)


def test_truncated_geotiff_names_path(root_copy):
    path = SEN12MSReader(root_copy).path(Season.VALSET, 0, 0, Sensor.s2)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DatasetError, match="corrupt or truncated") as err:
        DFCDataset(root_copy, mode="validation")[0]
    assert str(path) in str(err.value)
    path.write_bytes(b"not a tiff at all")
    with pytest.raises(DatasetError, match="corrupt or truncated"):
        SEN12MSReader(root_copy).read(Season.VALSET, 0, 0, Sensor.s2)


def test_bad_arguments(ref_root, tmp_path):
    with pytest.raises(DatasetError, match="unknown mode 'train'") as err:
        DFCDataset(ref_root, mode="train")
    assert str(ref_root) in str(err.value)
    with pytest.raises(DatasetNotFoundError, match="observation CSV not found"):
        DFCDataset(ref_root, mode="validation", observations_csv=tmp_path / "none.csv")
    with pytest.raises(DatasetNotFoundError, match="sen12ms_observations_balanced_classes.csv"):
        DFCDataset(ref_root, mode="sen12ms", balanced_classes=True)
    bad = tmp_path / "bad.csv"
    bad.write_text("Seasons.VALSET,0,1\nSeasons.VALSET,zero,2\n")
    with pytest.raises(DatasetError, match="line 2") as err:
        DFCDataset(ref_root, mode="validation", observations_csv=bad)
    assert str(bad) in str(err.value)
    for kwargs in ({"used_data_fraction": 0.0}, {"image_px_size": 300},
                   {"cover_all_parts": True, "random_crop": True, "image_px_size": 128}):
        with pytest.raises(ValueError):
            DFCDataset(ref_root, mode="validation", **kwargs)


def test_tile_offsets():
    assert tile_offsets(128) == [0, 128]
    assert tile_offsets(224) == [0, 32]
    assert tile_offsets(100) == [0, 100, 156]
    assert tile_offsets(256) == [0]


def test_set_epoch_makes_random_crops_a_function_of_epoch_and_index(sample_root):
    """What exact resume relies on: crops independent of draw order and workers."""
    from data import DFCDataset

    a = DFCDataset(sample_root, mode="sen12ms", image_px_size=64, seed=3)
    b = DFCDataset(sample_root, mode="sen12ms", image_px_size=64, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    for i in range(4):
        a.window(i)  # draws that must not shift b's crops
    assert [a.window(i) for i in (5, 6)] == [b.window(i) for i in (5, 6)]
    b.set_epoch(3)
    assert [a.window(i) for i in range(8)] != [b.window(i) for i in range(8)]


def test_subset_indices_equal_the_originals_pandas_sample(fixture_dir):
    # made with real pandas by tests/fixtures/make_original_subsets.py
    fixture = json.loads((fixture_dir / "original_subsets.json").read_text())
    for case in fixture["cases"]:
        got = subset_indices(case["n"], case["fraction"], case.get("seed", 42))
        where = f"n={case['n']} fraction={case['fraction']}"
        assert len(got) == case["count"], where
        if "indices" in case:
            assert got.tolist() == case["indices"], where
        else:
            assert hashlib.sha256(got.astype(np.int64).tobytes()).hexdigest() == case["sha256"], where
            assert got[:5].tolist() == case["first"] and got[-5:].tolist() == case["last"], where


def test_used_data_fraction_uses_the_fixed_sampling_seed(sample_root):
    full = DFCDataset(sample_root, mode="dfc")
    obs = [full.observation(i) for i in range(len(full))]
    expected = [obs[i] for i in subset_indices(len(obs), 0.5)]
    for seed in (0, 7):  # the run's seed does not change the subset (the original's sampling_seed=42)
        half = DFCDataset(sample_root, mode="dfc", used_data_fraction=0.5, seed=seed)
        assert [half.observation(i) for i in range(len(half))] == expected
    other = _sampled_with(7)(sample_root, mode="dfc", used_data_fraction=0.5)
    assert [other.observation(i) for i in range(len(other))] == [obs[i] for i in subset_indices(len(obs), 0.5, 7)]
    with pytest.raises(DatasetError, match="keeps none"):
        DFCDataset(sample_root, mode="dfc", used_data_fraction=1 / (4 * len(obs)))


def _sampled_with(seed: int):
    """DFCDataset with another subset seed than the original's 42 (a class attribute)."""
    return type(f"DFCDatasetSeed{seed}", (DFCDataset,), {"sampling_seed": seed})
