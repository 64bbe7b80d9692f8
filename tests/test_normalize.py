"""The public normalisation (data.normalize_s1 / normalize_s2 / SentinelNormalize) equals DFCDataset's."""
import pickle

import numpy as np
import pytest
import torch

from data import DFCDataset, Sensor, normalize_s1, normalize_s2
from data.transforms import SentinelNormalize

NORMALIZE = {"s1": normalize_s1, "s2": normalize_s2}


def _raw(ds, index):
    """The file values of a sample's window, as the dataset reads them before normalising."""
    season, scene, patch = ds.observation(index)
    window = ds.window(index)
    return {s: ds.reader.read_array(season, scene, patch, getattr(Sensor, s), window=window) for s in NORMALIZE}


@pytest.mark.parametrize("clip", [True, False])
def test_equal_to_the_dataset_numpy_and_torch_single_and_batched(sample_root, clip):
    ds = DFCDataset(sample_root, mode="dfc", image_px_size=256, clip_sample_values=clip)  # whole patches
    indices = range(len(ds))
    samples = [ds[i] for i in indices]
    raws = [_raw(ds, i) for i in indices]
    assert sum(s["s1_nan_pixels"] for s in samples) > 0, "the sample data should include S1 NaN pixels"
    assert raws[0]["s2"].dtype == np.uint16 and raws[0]["s2"].shape == (13, 256, 256)
    for sensor, fn in NORMALIZE.items():
        expected = torch.stack([s[sensor] for s in samples])
        batch = np.stack([r[sensor] for r in raws])
        for i, raw in enumerate(raws):
            assert torch.equal(torch.from_numpy(fn(raw[sensor], clip=clip)), expected[i]), (sensor, i)
            assert torch.equal(fn(torch.from_numpy(raw[sensor]), clip=clip), expected[i]), (sensor, i)
        out_np, out_t = fn(batch, clip=clip), fn(torch.from_numpy(batch), clip=clip)
        assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float32
        assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
        assert torch.equal(torch.from_numpy(out_np), expected) and torch.equal(out_t, expected), sensor


def test_torch_input_is_not_modified_and_other_dtypes_agree():
    rng = np.random.default_rng(1)
    s1 = rng.normal(-15, 8, (2, 2, 16, 16)).astype(np.float32)
    s1[0, 1, 3, 3] = np.nan
    t = torch.from_numpy(s1.copy())
    out = normalize_s1(t)
    assert torch.equal(t.isnan(), torch.from_numpy(np.isnan(s1)))  # input untouched (NaN still there)
    assert not out.isnan().any() and float(out.min()) >= 0 and float(out.max()) < 1
    assert out[0, 1, 3, 3] == 0  # NaN -> -25 dB -> 0
    s2 = rng.integers(0, 16000, (13, 16, 16))
    for dtype in (np.uint16, np.int32, np.float64):
        assert np.array_equal(normalize_s2(s2.astype(dtype)), normalize_s2(s2.astype(np.uint16)))
        assert torch.equal(normalize_s2(torch.from_numpy(s2.astype(dtype))),
                           torch.from_numpy(normalize_s2(s2.astype(np.uint16))))


def test_sentinel_normalize_transform_in_a_v2_pipeline(sample_root):
    """On a 64 px crop: the normalisation is taken over the crop, as the dataset does."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    ds = DFCDataset(sample_root, mode="test", image_px_size=64)
    sample, raw = ds[0], _raw(ds, 0)
    t = SentinelNormalize("s2")
    assert torch.equal(t(torch.from_numpy(raw["s2"])), sample["s2"])
    image = t(tv_tensors.Image(torch.from_numpy(raw["s2"].astype(np.float32))))
    assert isinstance(image, tv_tensors.Image) and torch.equal(image.as_subclass(torch.Tensor), sample["s2"])
    # sample dicts: only the named entry changes (TorchGeo's key "image")
    pipe = v2.Compose([SentinelNormalize("s1", key="image")])
    out = pipe({"image": torch.from_numpy(raw["s1"]), "mask": torch.ones(1, 64, 64)})
    assert torch.equal(out["image"], sample["s1"]) and torch.equal(out["mask"], torch.ones(1, 64, 64))
    both = v2.Compose([SentinelNormalize("s1"), SentinelNormalize("s2")])(
        {"s1": torch.from_numpy(raw["s1"]), "s2": torch.from_numpy(raw["s2"])})
    assert torch.equal(both["s1"], sample["s1"]) and torch.equal(both["s2"], sample["s2"])
    assert torch.equal(pickle.loads(pickle.dumps(t))(torch.from_numpy(raw["s2"])), sample["s2"])  # workers
    with pytest.raises(KeyError, match="no 'image' key"):
        SentinelNormalize("s2", key="image")({"s2": torch.zeros(13, 4, 4)})
    with pytest.raises(ValueError, match="'s1' or 's2'"):
        SentinelNormalize("s3")


def test_wrong_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(C, H, W\) patch or a \(B, C, H, W\) batch"):
        normalize_s2(np.zeros((64, 64), np.uint16))
    with pytest.raises(ValueError, match="normalize_s1"):
        normalize_s1(torch.zeros(1, 1, 2, 4, 4))
