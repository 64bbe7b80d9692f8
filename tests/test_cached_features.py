"""Cached-feature linear evaluation (training/features.py) equals the uncached run with the
same fixed crops: same training order, head weights, optimiser state and final scores."""
import json

import pytest
import torch

import train_evaluation
from training.features import FixedCrops


def eval_args(root, out, *extra):
    return train_evaluation.get_args_parser().parse_args(
        ["--train_dir", str(root), "--model", "DoubleResNetSimCLRDownstream", "--base_model",
         "resnet18", "--image_px_size", "64", "--batch_size", "8", "--num_workers", "0",
         "--no-finetuning", "--epochs", "3", "--lr_step_epochs", "2", "--learning_rate", "1e-2",
         "--validation_every", "2", "--output_dir", str(out), *extra])


@pytest.mark.slow
def test_cached_run_equals_uncached_run_with_the_same_fixed_crops(sample_root, tmp_path):
    plain = train_evaluation.main(eval_args(sample_root, tmp_path / "plain", "--fixed_crops", "2"))
    cached = train_evaluation.main(eval_args(sample_root, tmp_path / "cached", "--fixed_crops", "2",
                                             "--cache_features", "--no-save_optimizer"))
    a = torch.load(tmp_path / "plain" / "checkpoint_last.pth", weights_only=False)
    b = torch.load(tmp_path / "cached" / "checkpoint_last.pth", weights_only=False)
    for key, value in a["model_weights"].items():
        torch.testing.assert_close(b["model_weights"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert a["epochs"] == b["epochs"] == 3 and a["global_step"] == b["global_step"]
    assert a["scheduler"] == b["scheduler"]          # MultiStepLR: x0.1 after epoch 2
    assert a["optim_state"] is not None and b["optim_state"] is None   # --no-save_optimizer: lean
    sa, sb = plain["scores"], cached["scores"]
    assert sa["confusion_matrix"] == sb["confusion_matrix"]
    assert json.dumps(sa["original"]) == json.dumps(sb["original"])   # NaN for absent classes
    for key in ("overall_accuracy", "average_accuracy", "loss"):
        assert sb[key] == pytest.approx(sa[key], rel=1e-4, abs=1e-6)
    # the same epoch records (validation after epoch indices 0, 2)
    la = [json.loads(x) for x in (tmp_path / "plain" / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "cached" / "log.jsonl").read_text().splitlines()]
    assert [sorted(k for k in r if k.startswith("val/")) != [] for r in la] == \
        [sorted(k for k in r if k.startswith("val/")) != [] for r in lb] == [True, False, True]
    for ra, rb in zip(la, lb):
        assert rb["train/loss"] == pytest.approx(ra["train/loss"], rel=1e-4)


def test_fixed_crops_are_the_same_every_time(sample_root):
    from data import DFCDataset

    ds = DFCDataset(sample_root, mode="validation", image_px_size=64, random_crop=True, seed=3)
    fixed = FixedCrops(ds, 2)
    assert len(fixed) == 2 * len(ds)
    first, again = fixed[len(ds) + 1], fixed[len(ds) + 1]
    assert torch.equal(first["s2"], again["s2"]) and first["crop"] == 1
    assert not torch.equal(fixed[1]["s2"], first["s2"])   # crop 0 and crop 1 differ


def test_cached_features_refuse_what_they_cannot_reproduce(sample_root, tmp_path):
    for extra in (["--finetuning"], ["--reproduce_original"]):
        with pytest.raises(SystemExit, match="cache_features"):
            train_evaluation.main(eval_args(sample_root, tmp_path, "--cache_features", *extra))
