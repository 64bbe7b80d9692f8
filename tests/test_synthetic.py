"""data/synthetic.py: the in-memory SEN12MS look-alike of the demo and the scale experiment."""
import torch

from data.synthetic import SyntheticSEN12MS, make_patch


def test_patches_are_deterministic_normalised_and_labelled():
    a, b = make_patch(0, "test", 5, size=32), make_patch(0, "test", 5, size=32)
    assert torch.equal(a["s1"], b["s1"]) and torch.equal(a["s2"], b["s2"])
    assert a["s1"].shape == (2, 32, 32) and a["s2"].shape == (13, 32, 32) and a["dfc"].shape == (1, 32, 32)
    for key in ("s1", "s2"):
        assert a[key].dtype == torch.float32 and 0.0 <= float(a[key].min()) and float(a[key].max()) <= 1.0
    assert 0 <= int(a["dfc_label"]) < 8
    assert not torch.equal(make_patch(0, "validation", 5, size=32)["s2"], a["s2"])


def test_streamed_and_materialised_splits_agree():
    streamed = SyntheticSEN12MS(6, "validation", size=32, seed=1)
    cached = SyntheticSEN12MS(6, "validation", size=32, seed=1).materialise()
    assert len(streamed) == 6
    assert torch.equal(streamed[3]["s2"], cached[3]["s2"])
