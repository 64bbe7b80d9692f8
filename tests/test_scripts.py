"""The scripts as a user runs them: from any folder, with real defaults in --help, and the
records a run leaves (TensorBoard tags, log files, kept checkpoints)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script,expected", [
    ("train_evaluation.py", "default: 201"),
    ("train_resnet_backbone.py", "default: 201"),
    ("train_d_swin_backbone.py", "0.0005 in backbone_config.json"),   # read from configs/
])
@pytest.mark.slow
def test_help_from_another_folder_shows_real_defaults(tmp_path, script, expected):
    out = subprocess.run([sys.executable, str(REPO / script), "--help"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert expected in text and "(default: None)" not in text


@pytest.mark.slow
def test_pretraining_from_another_folder_keeps_checkpoints_and_writes_its_records(sample_root, tmp_path):
    run = tmp_path / "run"
    out = subprocess.run(
        [sys.executable, str(REPO / "train_resnet_backbone.py"), "--train_dir", str(sample_root),
         "--val_dir", str(sample_root), "--arch", "resnet18", "--epochs", "2", "--batch_size", "6",
         "--image_px_size", "64", "--workers", "0", "--keep_every", "1", "--output_dir", "run"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert {p.name for p in run.glob("checkpoint_*.pth")} == \
        {"checkpoint_last.pth", "checkpoint_0001.pth", "checkpoint_0002.pth"}
    assert torch.load(run / "checkpoint_0001.pth", weights_only=True)["epoch"] == 1
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert {"train/loss", "train/top1", "val/loss", "lr/0"} <= set(records[0])
    assert (run / "log.txt").read_text().count("epoch ") == 2

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train_step/loss", "train_step/lr", "val/loss", "lr/0"} <= tags
