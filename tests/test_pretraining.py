"""Pre-training scripts end to end on the generated sample data (CPU, small crops)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train_d_swin_backbone
import train_resnet_backbone
from training.engine import Callbacks, NonFiniteLossError

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"


def resnet_args(root, out, *extra):
    return train_resnet_backbone.get_args_parser().parse_args(
        ["--train_dir", str(root), "--arch", "resnet18", "--batch_size", "6",
         "--image_px_size", "64", "--workers", "0", "--output_dir", str(out), "--lr", "1e-3",
         *extra])


def manifest_names(name):
    return {k["name"]: tuple(k["shape"]) for k in json.loads((FIXTURES / name).read_text())["keys"]}


def test_resnet_pretraining_writes_a_published_layout_checkpoint(sample_root, tmp_path):
    history = train_resnet_backbone.main(resnet_args(sample_root, tmp_path, "--epochs", "1",
                                                     "--val_dir", str(sample_root)))
    # plain tensors and Python types only: loads with weights_only=True (no pickle trust needed)
    ckpt = torch.load(tmp_path / "checkpoint_last.pth", weights_only=True)
    assert {"epoch", "arch", "state_dict", "optimizer"} <= set(ckpt)
    assert ckpt["epoch"] == 1 and ckpt["arch"] == "resnet18"
    assert {k: tuple(v.shape) for k, v in ckpt["state_dict"].items()} == manifest_names("resnet18_keys.json")
    assert (tmp_path / "config.json").exists()
    assert list(tmp_path.glob("events.out.tfevents.*")), "no TensorBoard log"
    assert "val" in history[-1] and "top1" in history[-1]["val"]

    from models import create_model
    model = create_model("DoubleResNetSimCLRDownstream", base_model="resnet18",
                         checkpoint=tmp_path / "checkpoint_last.pth")
    sd = model.state_dict()
    for key in ("backbone1.conv1.weight", "backbone2.layer4.1.bn2.running_var"):
        assert torch.equal(sd[key], ckpt["state_dict"][key])


@pytest.mark.slow
def test_loss_falls_over_a_few_epochs(sample_root, tmp_path):
    history = train_resnet_backbone.main(resnet_args(sample_root, tmp_path, "--epochs", "4"))
    losses = [h["train"]["loss"] for h in history]
    assert losses[-1] < losses[0] * 0.9, losses


def _final_weights(path):
    return torch.load(path, weights_only=False)["state_dict"]


@pytest.mark.slow
def test_killed_run_resumed_with_auto_ends_with_the_same_weights(sample_root, tmp_path):
    # the cosine schedule from epoch 0 on, so the resumed run must restore its state too
    run = ("--epochs", "3", "--lr_schedule_start", "0")
    straight = tmp_path / "straight"
    train_resnet_backbone.main(resnet_args(sample_root, straight, *run))

    killed = tmp_path / "killed"

    def kill(epoch, step):
        if epoch == 1 and step == 1:
            raise KeyboardInterrupt  # mid-epoch 2, after the epoch-1 checkpoint
    with pytest.raises(KeyboardInterrupt):
        train_resnet_backbone.main(resnet_args(sample_root, killed, *run),
                                   callbacks=Callbacks(after_step=kill))
    assert torch.load(killed / "checkpoint_last.pth", weights_only=False)["epoch"] == 1
    train_resnet_backbone.main(resnet_args(sample_root, killed, *run, "--resume", "auto"))
    lrs = [json.loads(x)["lr/0"] for x in (killed / "log.jsonl").read_text().splitlines()]
    assert len(set(lrs)) == 3   # the LR changed every epoch

    a, b = _final_weights(straight / "checkpoint_last.pth"), _final_weights(killed / "checkpoint_last.pth")
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(sample_root, tmp_path):
    train_resnet_backbone.main(resnet_args(sample_root, tmp_path, "--epochs", "1"))
    good = _final_weights(tmp_path / "checkpoint_last.pth")

    def poison(epoch, step):
        model_param = poison.model.backbone1.conv1.weight
        with torch.no_grad():
            model_param.fill_(float("nan"))

    import models
    real_create = models.create_model

    def spy(*a, **k):
        poison.model = real_create(*a, **k)
        return poison.model
    models.create_model = spy
    try:
        with pytest.raises(NonFiniteLossError, match="non-finite loss"):
            train_resnet_backbone.main(resnet_args(sample_root, tmp_path, "--epochs", "2", "--resume", "auto"),
                                       callbacks=Callbacks(after_step=poison))
    finally:
        models.create_model = real_create
    kept = torch.load(tmp_path / "checkpoint_last.pth", weights_only=False)
    assert kept["epoch"] == 1
    assert all(torch.equal(good[k], kept["state_dict"][k]) for k in good)


def test_missing_data_fails_before_any_model_is_built(tmp_path, monkeypatch):
    import models

    def no_model(*a, **k):
        raise AssertionError("a model was built before the data paths were checked")
    monkeypatch.setattr(models, "create_model", no_model)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        train_resnet_backbone.main(resnet_args(tmp_path / "nowhere", tmp_path / "out", "--epochs", "1"))


@pytest.mark.slow
def test_swin_pretraining_one_epoch_full_size(sample_root, tmp_path):
    """Dual Swin-T at 224 px (the only size it takes) on a handful of samples."""
    args = train_d_swin_backbone.get_args_parser().parse_args(
        ["--train_dir", str(sample_root), "--epochs", "1", "--batch_size", "4",
         "--train_used_data_fraction", "0.25", "--workers", "0", "--output_dir", str(tmp_path)])
    train_d_swin_backbone.main(args)
    ckpt = torch.load(tmp_path / "checkpoint_last.pth", weights_only=False)
    assert ckpt["arch"] == "swin_t" and ckpt["epoch"] == 1
    assert {k: tuple(v.shape) for k, v in ckpt["state_dict"].items()} == manifest_names("swin_t_keys.json")
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["effective"]["epochs"] == 1 and cfg["effective"]["batch_size"] == 4
    assert cfg["effective"]["temperature"] == 0.2  # from configs/backbone_config.json
    assert cfg["backbone_config"]["TRAIN"]["BASE_LR"] == 5e-4  # the config file, as read

    from models import create_model
    model = create_model("DoubleSwinTransformerDownstream", checkpoint=tmp_path / "checkpoint_last.pth")
    assert model(  # loads and runs
        {"s1": torch.rand(1, 2, 224, 224), "s2": torch.rand(1, 13, 224, 224)}).shape == (1, 8)

    # resume for a second epoch: the per-iteration schedule continues where it stopped
    args = train_d_swin_backbone.get_args_parser().parse_args(
        ["--train_dir", str(sample_root), "--epochs", "2", "--batch_size", "4",
         "--train_used_data_fraction", "0.25", "--workers", "0", "--output_dir", str(tmp_path),
         "--resume", "auto"])
    train_d_swin_backbone.main(args)
    ckpt = torch.load(tmp_path / "checkpoint_last.pth", weights_only=False)
    steps = ckpt["scheduler"]["num_updates"] // 2
    assert ckpt["epoch"] == 2 and steps >= 1
    from training.schedules import IterationSchedule
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=5e-4)
    ref = IterationSchedule(opt, epochs=2, warmup_epochs=20, steps_per_epoch=steps,
                            warmup_lr=5e-7, min_lr=5e-6)
    expected = []
    for _ in range(2):
        for _ in range(steps):
            ref.step()
        expected.append(opt.param_groups[0]["lr"])
    logged = [json.loads(x)["lr/0"] for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert logged == pytest.approx(expected)   # a restarted schedule would repeat epoch 1's LR


@pytest.mark.slow
def test_torchrun_two_processes_gather_negatives_with_gradients():
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", "tests/helpers/dist_infonce.py"],
                         cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("grads equal: True") == 2


@pytest.mark.slow
def test_torchrun_two_process_pretraining(sample_root, tmp_path):
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", "train_resnet_backbone.py",
                          "--train_dir", str(sample_root), "--arch", "resnet18", "--epochs", "1",
                          "--batch_size", "4", "--image_px_size", "64", "--workers", "0",
                          "--device", "cpu", "--output_dir", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    ckpt = torch.load(tmp_path / "checkpoint_last.pth", weights_only=False)
    assert ckpt["epoch"] == 1
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])  # unwrapped from DDP
