"""train_evaluation.py, the results table and the evaluation scripts on the sample data."""
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

import train_evaluation
from training.engine import Callbacks
from utils.results import find_results, results_tables

REPO = Path(__file__).resolve().parents[1]


def eval_args(root, out, *extra):
    return train_evaluation.get_args_parser().parse_args(
        ["--train_dir", str(root), "--model", "DoubleResNetSimCLRDownstream", "--base_model",
         "resnet18", "--image_px_size", "64", "--batch_size", "8", "--num_workers", "0",
         "--output_dir", str(out), *extra])


@pytest.mark.parametrize("target,task,metric", [
    ("dfc_label", "single_label", "average_accuracy"),
    ("dfc_multilabel_one_hot", "multi_label", "average_f1"),
])
def test_classification_targets_end_to_end(sample_root, tmp_path, target, task, metric):
    results = train_evaluation.main(eval_args(sample_root, tmp_path, "--target", target,
                                              "--epochs", "2", "--finetuning"))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["task"] == task and saved["config"]["target"] == target
    assert 0.0 <= saved["scores"][metric] <= 1.0
    assert saved["scores"] == json.loads(json.dumps(results["scores"], default=str))
    if task == "single_label":
        assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000
        cm = torch.tensor(saved["scores"]["confusion_matrix"])
        assert cm.sum() > 0 and cm.shape == (8, 8)
    ckpt = torch.load(tmp_path / "checkpoint_last.pth", weights_only=True)
    assert {"model_weights", "optim_state", "val_stats", "epochs"} <= set(ckpt)
    assert ckpt["epochs"] == 2 and ckpt["model_name"] == "DoubleResNetSimCLRDownstream"
    # one log.jsonl line per epoch with every scalar, both LRs of fine-tuning, the validations
    # after epoch indices 0 and 1 (the last); log.txt holds the printed epoch lines
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert lines[0]["lr/backbone"] == 1e-5 and lines[0]["lr/head"] == 3e-6
    assert all("train/loss" in r and f"val/{metric}" in r for r in lines)
    assert (tmp_path / "log.txt").read_text().count("epoch ") == 2


def test_linear_evaluation_leaves_the_backbone_untouched(sample_root, tmp_path):
    from models import create_model

    ssl = create_model("DoubleResNetSimCLR", base_model="resnet18")
    torch.save({"state_dict": ssl.state_dict(), "epoch": 1, "arch": "resnet18"}, tmp_path / "ssl.pth")
    train_evaluation.main(eval_args(sample_root, tmp_path / "run", "--epochs", "1",
                                    "--checkpoint", str(tmp_path / "ssl.pth"), "--no-finetuning",
                                    "--classifier_lr", "1e-2"))
    weights = torch.load(tmp_path / "run" / "checkpoint_last.pth", weights_only=False)["model_weights"]
    before = ssl.state_dict()
    for key in ("backbone1.conv1.weight", "backbone2.layer3.0.bn1.running_mean"):
        assert torch.equal(weights[key], before[key]), key   # frozen, BN statistics included
    fresh = create_model("DoubleResNetSimCLRDownstream", base_model="resnet18").state_dict()
    assert not torch.equal(weights["fc.weight"], fresh["fc.weight"])


@pytest.mark.slow
def test_segmentation_end_to_end_with_map_figure(sample_root, tmp_path):
    # The SwinUNet takes 224 px only; two tiny epochs on a fraction of the data.
    args = train_evaluation.get_args_parser().parse_args(
        ["--train_dir", str(sample_root), "--model", "DoubleSwinTransformerSegmentation",
         "--target", "dfc", "--epochs", "1", "--batch_size", "4", "--num_workers", "0",
         "--train_used_data_fraction", "0.2", "--val_used_data_fraction", "0.5",
         "--finetuning", "--example_maps", "2", "--output_dir", str(tmp_path)])
    train_evaluation.main(args)
    scores = json.loads((tmp_path / "results.json").read_text())["scores"]
    assert 0.0 <= scores["miou"] <= 1.0 and len(scores["per_class_iou"]) == 8
    assert (tmp_path / "predictions.png").stat().st_size > 1000


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(sample_root, tmp_path):
    # the LR milestone (x0.1 from epoch index 2 on) falls between the kill and the end
    run = ("--epochs", "3", "--save_every", "1", "--finetuning", "--lr_step_epochs", "2")
    straight = tmp_path / "straight"
    train_evaluation.main(eval_args(sample_root, straight, *run))

    def kill(epoch, step):
        if epoch == 2 and step == 0:
            raise KeyboardInterrupt
    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        train_evaluation.main(eval_args(sample_root, killed, *run), callbacks=Callbacks(after_step=kill))
    train_evaluation.main(eval_args(sample_root, killed, *run, "--resume", "auto"))
    a = torch.load(straight / "checkpoint_last.pth", weights_only=False)["model_weights"]
    b = torch.load(killed / "checkpoint_last.pth", weights_only=False)["model_weights"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    for folder in (straight, killed):  # MultiStepLR across its milestone, resumed or not
        lrs = [json.loads(x)["lr/head"] for x in (folder / "log.jsonl").read_text().splitlines()]
        assert lrs[-3:] == pytest.approx([3e-6, 3e-6, 3e-7])


def test_results_table_collects_runs(tmp_path):
    for i, (task, scores) in enumerate([
        ("single_label", {"average_accuracy": 0.5, "overall_accuracy": 0.75}),
        ("segmentation", {"average_accuracy": 0.4, "overall_accuracy": 0.6, "miou": 0.3}),
    ]):
        run = tmp_path / f"run{i}"
        run.mkdir()
        (run / "results.json").write_text(json.dumps(
            {"run_name": f"r{i}", "model": "M", "setting": "s", "task": task, "finetuning": i == 1,
             "checkpoint": "x.pth", "scores": scores}))
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    (baseline / "results.json").write_text(json.dumps(
        {"run_name": "b", "model": "resnet50", "setting": "resnet50_dfc_label_s1s2_baseline",
         "task": "single_label", "finetuning": True, "checkpoint": None,
         "scores": {"average_accuracy": 0.25, "overall_accuracy": 0.5}}))
    table = results_tables(find_results([str(tmp_path)]))
    assert "| r0 | M | frozen (from SSL) | 50.00 | 75.00 |" in table
    assert "| b | resnet50 | from scratch | 25.00 | 50.00 |" in table
    assert "### Segmentation" in table and "| 40.00 | 60.00 | 30.00 |" in table


def _run_script(script, sample_root, tmp_path, *args, env=None):
    return subprocess.run(
        ["bash", str(REPO / "downstream_eval_scripts" / script), *args], cwd=tmp_path,
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "DFC_ROOT": str(sample_root), "OUTPUT_ROOT": str(tmp_path / "runs"),
             "EPOCHS": "1", "NUM_WORKERS": "0", **(env or {})})


@pytest.mark.slow
def test_eval_script_smoke_and_table(sample_root, tmp_path):
    """A representative script (ResNet SSL, frozen) on the sample data, then run_all's table."""
    from models import create_model

    ckpt = tmp_path / "resnet50.pth"
    torch.save({"state_dict": create_model("DoubleResNetSimCLR", base_model="resnet50").state_dict()}, ckpt)
    out = _run_script("classification/single_label/ssl/resnet50_frozen.sh", sample_root, tmp_path,
                      "--image_px_size", "64", "--batch_size", "16",
                      env={"RESNET50_CHECKPOINT": str(ckpt)})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    results = tmp_path / "runs" / "classification/single_label/ssl/resnet50_frozen/results.json"
    assert json.loads(results.read_text())["run_name"] == "resnet50_frozen"


def test_eval_scripts_fail_clearly_without_paths(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DFC_ROOT", "SWIN_CHECKPOINT", "CHECKPOINT")}
    out = subprocess.run(["bash", str(REPO / "downstream_eval_scripts/segmentation/swin_t_frozen.sh")],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode != 0 and "DFC_ROOT" in out.stderr
    out = subprocess.run(["bash", str(REPO / "downstream_eval_scripts/segmentation/swin_t_frozen.sh")],
                         capture_output=True, text=True, env={**env, "DFC_ROOT": str(tmp_path)}, cwd=tmp_path)
    assert out.returncode != 0 and "SWIN_CHECKPOINT" in out.stderr


def test_every_eval_script_maps_to_valid_flags():
    """Parse each script's train_evaluation.py arguments with the real parser (no training)."""
    parser = train_evaluation.get_args_parser()
    scripts = sorted((REPO / "downstream_eval_scripts").rglob("*.sh"))
    settings = set()
    for script in scripts:
        if script.name in ("common.sh", "run_all.sh"):
            continue
        line = next(l for l in script.read_text().splitlines() if l.startswith("run_eval"))
        argv = [a.strip('"') for a in line.split()[1:] if a not in ('"$@"',)]
        argv = ["X" if a == "$ckpt" else a for a in argv]
        args = parser.parse_args(["--train_dir", "X", *argv])
        settings.add((args.target, args.model, args.s1_input_channels, args.s2_input_channels,
                      args.finetuning, args.checkpoint is not None))
    assert len(scripts) - 2 == len(settings) == 27   # 2 x (8 baselines + 4 ssl) + 3 segmentation
