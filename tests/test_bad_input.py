"""Bad input to the training scripts: one clear line, a non-zero exit, and nothing on disk changed.

The catalogue runs each script's command line in-process (``training.cli.run(main, parser, argv)``,
what ``python script.py ...`` does) against the sample data or a small hand-made dataset, with
model building disabled: every case must be refused before a model exists. Each case names a
fragment of the expected message, and every file that existed before (the run folder, the
dataset) must be byte-identical afterwards.
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

import train_d_swin_backbone
import train_evaluation
import train_resnet_backbone
from training import cli, preflight

SCRIPTS = {"eval": train_evaluation, "resnet": train_resnet_backbone, "swin": train_d_swin_backbone}


# ------------------------------------------------------------------------------ helpers
def write_tif(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", height=array.shape[1], width=array.shape[2],
                       count=array.shape[0], dtype=array.dtype.name, crs="EPSG:32632",
                       transform=Affine(10, 0, 300000, 0, -10, 5600000)) as dst:
        dst.write(array)


def mini_dfc_root(root: Path, s1=None, s2=None, size: int = 256, csv_text: Optional[str] = None) -> Path:
    """A DFC2020 root with one patch per split (``s1`` / ``s2`` replace the plausible arrays)."""
    rng = np.random.default_rng(0)
    arrays = {
        "s1": rng.normal(-12, 4, (2, size, size)).astype(np.float32) if s1 is None else s1,
        "s2": rng.integers(0, 5000, (13, size, size)).astype(np.uint16) if s2 is None else s2,
        "lc": np.full((4, size, size), 10, np.uint16),
        "dfc": np.full((1, size, size), 1, np.uint16),
    }
    for season in ("ROIs0000_validation", "ROIs0000_test"):
        for sensor, array in arrays.items():
            write_tif(root / season / f"{sensor}_0" / f"{season}_{sensor}_0_p1.tif", array)
    rows = {"validation": "Seasons.VALSET,0,1\n", "test": "Seasons.TESTSET,0,1\n"}
    (root / "validation_observations.csv").write_text(rows["validation"])
    (root / "validation_observations_balanced_classes.csv").write_text(
        rows["validation"] if csv_text is None else csv_text)
    (root / "test_observations.csv").write_text(rows["test"])
    return root


def snapshot(run_dir: Path, data_root: Path) -> dict:
    """Every file of the case's own folder (bytes' hash) and of the shared dataset (size, mtime)."""
    out = {}
    for folder, exact in ((run_dir, True), (data_root, False)):
        for path in sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []:
            st = path.stat()
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if exact else (st.st_size, st.st_mtime_ns)
    return out


def eval_argv(root, out, *extra) -> List[str]:
    return ["--train_dir", str(root), "--model", "DoubleResNetSimCLRDownstream", "--base_model", "resnet18",
            "--image_px_size", "64", "--batch_size", "8", "--num_workers", "0", "--epochs", "1",
            "--output_dir", str(out), *extra]


def resnet_argv(root, out, *extra) -> List[str]:
    return ["--train_dir", str(root), "--arch", "resnet18", "--batch_size", "6", "--image_px_size", "64",
            "--workers", "0", "--epochs", "1", "--output_dir", str(out), *extra]


def swin_argv(root, out, *extra) -> List[str]:
    # no --epochs: the config's TRAIN.EPOCHS is checked too
    return ["--train_dir", str(root), "--batch_size", "4", "--workers", "0", "--output_dir", str(out), *extra]


ARGV = {"eval": eval_argv, "resnet": resnet_argv, "swin": swin_argv}


def stored_config(script: str, argv: List[str]) -> dict:
    """The config a run of ``argv`` stores in its checkpoints."""
    args = SCRIPTS[script].get_args_parser().parse_args(argv)
    if script == "swin":
        cfg, settings = train_d_swin_backbone.resolve_settings(args)
        return {"effective": settings, "config_file": str(args.config), "backbone_config": cfg}
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def downstream_ckpt(config: dict, model_name: str = "DoubleResNetSimCLRDownstream") -> dict:
    return {"model_weights": {"fc.weight": torch.zeros(8, 4)}, "optim_state": {"state": {}, "param_groups": []},
            "val_stats": {}, "epochs": 1, "model_name": model_name, "model_options": {}, "config": config}


def backbone_ckpt(config: Optional[dict], arch: str = "resnet18") -> dict:
    ckpt = {"epoch": 1, "arch": arch, "state_dict": {"backbone1.conv1.weight": torch.zeros(1)},
            "optimizer": {"state": {}, "param_groups": []}}
    if config is not None:
        ckpt["config"] = config
    return ckpt


def run_folder(out: Path, finished: bool = False, ckpt: Optional[dict] = None, tmp_file: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text('{"epochs": 1}\n')
    torch.save(ckpt if ckpt is not None else backbone_ckpt(None), out / "checkpoint_last.pth")
    if finished:
        (out / "results.json").write_text('{"scores": {}}\n')
    if tmp_file:
        (out / ".tmp-x1y2.pth").write_bytes(b"partial")


# ---------------------------------------------------------------------------- catalogue
@dataclass
class Case:
    id: str
    script: str
    extra: List[str] = field(default_factory=list)
    expect: str = ""
    setup: Optional[Callable] = None      # setup(ctx) -> may change ctx["root"], add files, extra argv
    rc: int = 2


def _finished_eval(ctx):
    run_folder(ctx["out"], finished=True, tmp_file=True)


def _unfinished(ctx):
    run_folder(ctx["out"])


def _config_only(ctx):
    ctx["out"].mkdir(parents=True)
    (ctx["out"] / "config.json").write_text("{}\n")


def _other_resume(ctx):
    run_folder(ctx["out"])
    other = ctx["tmp"] / "other"
    run_folder(other)
    ctx["extra"] += ["--resume", str(other / "checkpoint_last.pth")]


def _mini(**kw):
    def setup(ctx):
        ctx["root"] = mini_dfc_root(ctx["tmp"] / "data", **kw)
    return setup


def _file_root(ctx):
    ctx["root"] = ctx["tmp"] / "a_file"
    ctx["root"].write_text("not a folder")


def _missing_sensor(ctx):
    root = mini_dfc_root(ctx["tmp"] / "data")
    for tif in (root / "ROIs0000_validation" / "s1_0").iterdir():
        tif.unlink()
    (root / "ROIs0000_validation" / "s1_0").rmdir()
    ctx["root"] = root


def _missing_season(ctx):
    root = mini_dfc_root(ctx["tmp"] / "data")
    (root / "test_observations.csv").write_text("Seasons.SPRING,1,1\n")
    ctx["root"] = root


def _config_file(change):
    def setup(ctx):
        cfg = json.loads(Path(train_d_swin_backbone.DEFAULT_CONFIG).read_text())
        change(cfg)
        path = ctx["tmp"] / "cfg.json"
        path.write_text(json.dumps(cfg))
        ctx["extra"] += ["--config", str(path)]
    return setup


def _bad_json(ctx):
    path = ctx["tmp"] / "cfg.json"
    path.write_text("{ not json")
    ctx["extra"] += ["--config", str(path)]


def _text_file(name):
    def setup(ctx):
        path = ctx["tmp"] / name
        path.write_text("this is not a checkpoint\n")
        ctx["file"] = path
    return setup


def _with_file(flag, make):
    def setup(ctx):
        make(ctx)
        ctx["extra"] += [flag, str(ctx["file"])]
    return setup


def _unsafe_pickle(ctx):
    ctx["file"] = ctx["tmp"] / "unsafe.pth"
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=1)}, ctx["file"])


def _resume_with(make_ckpt):
    """A run folder whose checkpoint_last.pth is ``make_ckpt(ctx)``; the case resumes it (auto)."""
    def setup(ctx):
        run_folder(ctx["out"], ckpt=make_ckpt(ctx))
        ctx["extra"] += ["--resume", "auto"]
    return setup


def _cfg(ctx, *changes):
    cfg = stored_config(ctx["script"], ARGV[ctx["script"]](ctx["root"], ctx["out"]))
    for key, value in changes:
        node = cfg
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    return cfg


CASES = [
    # 1. nothing lost without asking
    Case("eval-finished-run", "eval", expect="already holds a finished run (config.json, results.json, "
         "checkpoint_last.pth); continue it with --resume auto, replace it with --overwrite", setup=_finished_eval),
    Case("resnet-unfinished-run", "resnet", expect="already holds a run (config.json, checkpoint_last.pth)",
         setup=_unfinished),
    Case("swin-config-only-run", "swin", expect="already holds a run (config.json)", setup=_config_only),
    Case("resume-and-overwrite", "eval", ["--resume", "auto", "--overwrite"], "exclude each other"),
    Case("resume-other-run-into-a-run", "resnet", expect="already holds another run", setup=_other_resume),
    # 3. numeric flags (argparse types)
    Case("epochs-0", "resnet", ["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    Case("eval-epochs-0", "eval", ["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    Case("swin-epochs-0", "swin", ["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    Case("lr-negative", "eval", ["--learning_rate", "-1"], "argument --learning_rate/--lr: must be > 0"),
    Case("resnet-lr-nan", "resnet", ["--lr", "nan"], "must be > 0 and finite, got nan"),
    Case("batch-size-0", "eval", ["--batch_size", "0"], "--batch_size/--batch-size: must be >= 1"),
    Case("fraction-above-1", "eval", ["--train_used_data_fraction", "1.5"], "must be in (0, 1], got 1.5"),
    Case("fraction-0", "resnet", ["--val_used_data_fraction", "0"], "must be in (0, 1], got 0"),
    Case("epochs-not-a-number", "eval", ["--epochs", "ten"], "expected an integer, got 'ten'"),
    Case("temperature-0", "swin", ["--temperature", "0"], "argument --temperature: must be > 0"),
    Case("contrastive-batch-1", "resnet", ["--batch_size", "1"], "--batch_size 1: must be an integer >= 2"),
    # 3. image size for the model
    Case("swin-downstream-128px", "eval", ["--model", "DoubleSwinTransformerDownstream", "--image_px_size",
         "128"], "--image_px_size 128: the Swin-T cannot take it"),
    Case("crop-larger-than-patch", "eval", ["--image_px_size", "300"], "between 1 and 256"),
    Case("resnet-16px", "resnet", ["--image_px_size", "16"], "--image_px_size 16: must be >= 32"),
    Case("swin-128px", "swin", ["--image_px_size", "128"], "--image_px_size 128: the Swin-T cannot take it"),
    Case("swin-config-crop-not-model-size", "swin", expect="the Swin-T is built for model_config.DATA.IMG_SIZE 224",
         setup=_config_file(lambda c: c.update(image_px_size=128))),
    Case("swin-config-epochs-0", "swin", expect="--epochs (TRAIN.EPOCHS of",
         setup=_config_file(lambda c: c["TRAIN"].update(EPOCHS=0))),
    Case("swin-config-lr-negative", "swin", expect="--lr (TRAIN.BASE_LR of",
         setup=_config_file(lambda c: c["TRAIN"].update(BASE_LR=-1))),
    Case("swin-config-not-json", "swin", expect="not valid JSON", setup=_bad_json),
    Case("swin-config-missing", "swin", ["--config", "no/such.json"], "--config no/such.json: no such file"),
    # 3. target / model compatibility
    Case("segmentation-target-classifier", "eval", ["--target", "dfc"], "needs a segmentation model"),
    Case("classification-target-segmentation", "eval", ["--model", "DoubleSwinTransformerSegmentation",
         "--image_px_size", "224"], "predicts maps: use --target dfc"),
    Case("pretraining-model-downstream", "eval", ["--model", "DoubleResNetSimCLR"], "is a pre-training model"),
    Case("dfc-target-sen12ms", "eval", ["--train_mode", "sen12ms"], "needs DFC2020 labels"),
    Case("no-input", "eval", ["--s1_input_channels", "0", "--s2_input_channels", "0"], "drop both inputs"),
    Case("multilabel-10-classes", "eval", ["--target", "dfc_multilabel_one_hot", "--n_classes", "10"],
         "--n_classes 10: the multi-label target"),
    Case("fp16-on-cpu", "eval", ["--amp", "fp16", "--device", "cpu"], "--amp fp16 needs a CUDA device"),
    Case("checkpoint-missing", "eval", ["--checkpoint", "no/such.pth"], "--checkpoint no/such.pth: no such file"),
    Case("checkpoint-not-a-checkpoint", "eval", expect="not a PyTorch checkpoint",
         setup=_with_file("--checkpoint", _text_file("notes.pth"))),
    Case("checkpoint-unsafe-pickle", "eval", expect="refused: the file holds pickled Python objects besides "
         "tensors and plain values (argparse.Namespace)", setup=_with_file("--checkpoint", _unsafe_pickle)),
    # 3. data
    Case("no-train-dir", "swin", ["--train_dir", ""], "--train_dir is required"),
    Case("train-dir-missing", "eval", ["--train_dir", "no/such/root"], "--train_dir no/such/root: no such folder",
         rc=1),
    Case("train-dir-file", "resnet", expect="is a file, not a dataset folder", setup=_file_root, rc=1),
    Case("val-dir-missing", "eval", ["--val_dir", "no/such/dfc"], "--val_dir no/such/dfc: no such folder", rc=1),
    Case("dfc-root-as-sen12ms", "resnet", expect="this looks like a DFC2020 root: use --train_mode validation",
         setup=_mini(), rc=1),
    Case("empty-observation-csv", "eval", expect="lists no observations", setup=_mini(csv_text=""), rc=1),
    Case("malformed-observation-csv", "eval", expect="line 1: bad observation row",
         setup=_mini(csv_text="Seasons.VALSET;0;1\n"), rc=1),
    Case("missing-season-folder", "eval", expect="season folder ROIs1158_spring/ not found",
         setup=_missing_season, rc=1),
    Case("missing-sensor-folder", "eval", expect="sensor folder not found", setup=_missing_sensor, rc=1),
    Case("s1-linear-uint16", "eval", expect="Sentinel-1 stored as uint16",
         setup=_mini(s1=np.full((2, 256, 256), 300, np.uint16)), rc=1),
    Case("s1-linear-float", "eval", expect="look like linear backscatter, not dB",
         setup=_mini(s1=np.full((2, 256, 256), 0.05, np.float32)), rc=1),
    Case("patch-200px", "eval", expect="200 x 200 px; SEN12MS / DFC2020 patches are 256 x 256",
         setup=_mini(size=200), rc=1),
    Case("s2-12-bands", "eval", expect="expected 13 band(s) for s2",
         setup=_mini(s2=np.zeros((12, 256, 256), np.uint16)), rc=1),
    Case("s2-float", "eval", expect="s2 stored as float32; expected uint16",
         setup=_mini(s2=np.zeros((13, 256, 256), np.float32)), rc=1),
    # 4. a resume checks what it resumes
    Case("pretraining-resumes-downstream", "resnet", expect="is a downstream checkpoint (train_evaluation.py",
         setup=_resume_with(lambda ctx: downstream_ckpt({}))),
    Case("downstream-resumes-backbone", "eval", expect="is not a downstream checkpoint (no 'model_weights'); to "
         "start a downstream run from a pre-trained backbone pass --checkpoint",
         setup=_resume_with(lambda ctx: backbone_ckpt(None))),
    Case("resume-other-arch", "resnet", expect="holds a resnet50 backbone, this run trains resnet18",
         setup=_resume_with(lambda ctx: backbone_ckpt(_cfg(ctx), arch="resnet50"))),
    Case("resume-other-temperature", "resnet", expect="temperature: checkpoint 0.5, now 0.07",
         setup=_resume_with(lambda ctx: backbone_ckpt(_cfg(ctx, ("temperature", 0.5))))),
    Case("resume-other-image-size", "resnet", expect="image_px_size: checkpoint 96, now 64",
         setup=_resume_with(lambda ctx: backbone_ckpt(_cfg(ctx, ("image_px_size", 96))))),
    Case("swin-resume-other-drop-path", "swin", expect="effective.drop_path_rate: checkpoint 0.3, now 0.1",
         setup=_resume_with(lambda ctx: backbone_ckpt(_cfg(ctx, ("effective.drop_path_rate", 0.3)), arch="swin_t"))),
    Case("resume-other-model", "eval", expect="holds a DoubleSwinTransformerDownstream, this run trains "
         "DoubleResNetSimCLRDownstream",
         setup=_resume_with(lambda ctx: downstream_ckpt(_cfg(ctx), "DoubleSwinTransformerDownstream"))),
    Case("resume-other-target-and-setting", "eval",
         expect="target: checkpoint 'dfc_multilabel_one_hot', now 'dfc_label'; finetuning: checkpoint True",
         setup=_resume_with(lambda ctx: downstream_ckpt(
             _cfg(ctx, ("target", "dfc_multilabel_one_hot"), ("finetuning", True))))),
    Case("resume-not-a-checkpoint", "eval", expect="not a PyTorch checkpoint",
         setup=_with_file("--resume", _text_file("checkpoint_last.pth")), rc=1),
    Case("resume-unsafe-pickle", "resnet", expect="argparse.Namespace); unpickling them could run arbitrary code",
         setup=_with_file("--resume", _unsafe_pickle), rc=1),
    Case("resume-missing-file", "eval", ["--resume", "no/such.pth"], "--resume no/such.pth: no such checkpoint file",
         rc=1),
]


@pytest.fixture
def no_models(monkeypatch):
    """Every catalogue case must be refused before a model (or a dataset) is built."""
    import models

    def refuse(*a, **k):
        raise AssertionError("reached model building: the bad input was not caught up front")
    monkeypatch.setattr(models, "create_model", refuse)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_with_one_line_and_nothing_changes(case, sample_root, tmp_path, capsys, no_models):
    ctx = {"tmp": tmp_path, "out": tmp_path / "run", "root": sample_root, "extra": [], "script": case.script}
    if case.setup is not None:
        case.setup(ctx)
    before = snapshot(tmp_path, sample_root)
    module = SCRIPTS[case.script]
    argv = ARGV[case.script](ctx["root"], ctx["out"], *case.extra, *ctx["extra"])
    rc = cli.run(module.main, module.get_args_parser(), argv)
    err = capsys.readouterr().err
    assert rc == case.rc, err
    assert case.expect in err, err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err  # one line, no usage dump
    assert snapshot(tmp_path, sample_root) == before


# -------------------------------------------------------------- what is allowed, and how
def test_overwrite_removes_the_previous_runs_files_only(tmp_path, capsys):
    out = tmp_path / "run"
    run_folder(out, finished=True, tmp_file=True)
    for name in ("events.out.tfevents.1.host", "log.txt", "log.jsonl", "confusion_matrix.png",
                 "checkpoint_0002.pth", "notes.txt"):
        (out / name).write_text("x")
    preflight.prepare_run_folder(out, resume=None, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    printed = capsys.readouterr().out
    assert "--overwrite: removed 8 file(s) of the previous run" in printed
    assert "a partial checkpoint left by an interrupted save" in printed


def test_leftover_partial_checkpoints_are_removed_on_the_next_start(tmp_path, capsys):
    out = tmp_path / "run"
    run_folder(out, tmp_file=True)
    keep = snapshot(out, tmp_path / "none")
    preflight.prepare_run_folder(out, resume="auto", overwrite=False)
    assert not (out / ".tmp-x1y2.pth").exists()
    assert f"removed {out / '.tmp-x1y2.pth'}: a partial checkpoint" in capsys.readouterr().out
    assert snapshot(out, tmp_path / "none") == {k: v for k, v in keep.items() if ".tmp-" not in k}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_a_matching_resume_passes_every_check(script, sample_root, tmp_path, capsys, no_models):
    """Same settings, more epochs and another LR: accepted; the run gets as far as building its model."""
    out = tmp_path / "run"
    stored = stored_config(script, ARGV[script](sample_root, out))
    run_folder(out, ckpt=downstream_ckpt(stored) if script == "eval" else
               backbone_ckpt(stored, arch="swin_t" if script == "swin" else "resnet18"), tmp_file=True)
    module = SCRIPTS[script]
    lr = "--learning_rate" if script == "eval" else "--lr"
    argv = ARGV[script](sample_root, out, "--epochs", "7", lr, "0.01", "--resume", "auto")
    assert cli.run(module.main, module.get_args_parser(), argv) == 1
    captured = capsys.readouterr()
    assert "reached model building" in captured.err, captured.err
    assert "a partial checkpoint left by an interrupted save" in captured.out


def test_a_matching_resume_is_accepted(sample_root, tmp_path):
    argv = resnet_argv(sample_root, tmp_path / "run", "--lr", "1e-3", "--epochs", "5")
    run_folder(tmp_path / "run", ckpt=backbone_ckpt(stored_config("resnet", resnet_argv(sample_root, tmp_path / "run"))))
    args = train_resnet_backbone.get_args_parser().parse_args([*argv, "--resume", "auto"])
    current = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    # other epochs and learning rate: continuing a run longer or with another LR is allowed
    preflight.check_resume("auto", args.output_dir, kind="pretraining", current=current,
                           keys=preflight.PRETRAINING_RESUME_KEYS, arch="resnet18")


def test_an_empty_run_folder_and_other_files_are_fine(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    preflight.prepare_run_folder(out, resume=None, overwrite=False)
    preflight.prepare_run_folder(tmp_path / "new", resume=None, overwrite=False)
    assert (out / "notes.txt").read_text() == "mine" and not (tmp_path / "new").exists()


def test_checkpoints_are_read_safely(tmp_path):
    from models.checkpoint import CheckpointError, read_checkpoint

    ok = tmp_path / "numpy.pth"  # the original code kept numpy values in val_stats: plain data, allowed
    torch.save({"model_weights": {"w": torch.ones(1)}, "val_stats": {"acc": np.float64(0.5), "cm": np.eye(2)}}, ok)
    obj, _ = read_checkpoint(ok)
    assert obj["val_stats"]["acc"] == 0.5
    bad = tmp_path / "unsafe.pth"
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=1)}, bad)
    with pytest.raises(CheckpointError, match=r"argparse\.Namespace.*\[checkpoint: .*unsafe\.pth\]"):
        read_checkpoint(bad)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_checkpoint(empty)


def test_disk_full_names_the_file(tmp_path, monkeypatch):
    from models import checkpoint as ck

    target = tmp_path / "checkpoint_last.pth"
    target.write_bytes(b"previous")

    def full(obj, path):
        Path(path).write_bytes(b"part")
        raise RuntimeError("[enforce fail at inline_container.cc] PytorchStreamWriter failed writing file "
                           "data/0: file write failed")
    monkeypatch.setattr(ck.torch, "save", full)
    monkeypatch.setattr(ck, "_disk_full", lambda folder, slack=1 << 20: True)
    with pytest.raises(OSError) as info:
        ck.save_checkpoint({"epoch": 1}, target)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_bytes() == b"previous" and not list(tmp_path.glob(".tmp-*"))
    line = cli.format_error(info.value)
    assert line.startswith(f"disk full while writing {target}") and "--resume auto" in line


def test_disk_full_elsewhere_names_the_run_folder(tmp_path, capsys):
    def main(args):
        raise OSError(errno.ENOSPC, "No space left on device")
    parser = argparse.ArgumentParser()
    parser.add_argument("--output_dir")
    assert cli.run(main, parser, ["--output_dir", str(tmp_path)]) == 1
    assert f"error: disk full while writing a file in {tmp_path}" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path, capsys, no_models):
    argv = eval_argv(tmp_path / "nowhere", tmp_path / "run", "--debug")
    assert cli.run(train_evaluation.main, train_evaluation.get_args_parser(), argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "error: --train_dir" in err


def test_unexpected_errors_are_one_line_with_a_hint(capsys):
    def main(args):
        raise KeyError("s2")
    assert cli.run(main, argparse.ArgumentParser(), []) == 1
    err = capsys.readouterr().err.strip()
    assert err == "error: KeyError: 's2' (run again with --debug for the traceback)"


def test_interrupt_exits_130_with_a_resume_hint(capsys):
    def main(args):
        raise KeyboardInterrupt
    assert cli.run(main, argparse.ArgumentParser(), []) == 130
    assert "--resume auto" in capsys.readouterr().err
