"""Unreadable samples deep in the data: skipped, recorded, budgeted (``data.robust``), as a user meets them.

Files are corrupted in the middle of the observation lists (never the first patch, which the
up-front check of ``data.validate`` already reads), and the loaders run with two worker
processes, so the records have to travel from the workers to the main process. The scripts run
in-process through ``training.cli.run(main, parser, argv)``, what ``python script.py ...`` does.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

import train_d_swin_backbone
import train_evaluation
import train_resnet_backbone
from data import DFCDataset
from data.bands import Season
from data.robust import (
    RobustDataset,
    parse_budget,
    patch_key,
    read_exclude_list,
    resolve_budget,
)
from training import cli, engine

REPO = Path(__file__).resolve().parents[1]
PATCHES = {"sen12ms": 4, "validation": 8, "test": 8}


# ------------------------------------------------------------------------------ helpers


def rows(root: Path, mode: str) -> list:
    """``(season, scene, patch)`` of each row of ``<mode>_observations.csv``, in list order."""
    out = []
    for line in (root / f"{mode}_observations.csv").read_text().splitlines():
        season, scene, patch = line.split(",")[:3]
        out.append((Season[season.split(".")[1]], int(scene), int(patch)))
    return out


def patch_path(root: Path, obs, sensor: str) -> Path:
    season, scene, patch = obs
    return root / season.value / f"{sensor}_{scene}" / f"{season.value}_{sensor}_{scene}_p{patch}.tif"


def corrupt(path: Path, how: str) -> Path:
    """Damage one patch file: ``truncate`` (header kept, pixels gone), ``garbage`` (header
    zeroed), ``missing``, ``wrong_size`` (a 200 x 200 patch) or ``bands`` (a band too few or many)."""
    if how == "truncate":
        os.truncate(path, 4096)
    elif how == "garbage":
        data = bytearray(path.read_bytes())
        data[64:] = bytes(len(data) - 64)
        path.write_bytes(bytes(data))
    elif how == "missing":
        path.unlink()
    else:
        with rasterio.open(path) as src:
            array, profile = src.read(), src.profile
        if how == "wrong_size":
            array = array[:, :200, :200]
        else:   # one band too few (too many for a one-band file)
            array = array[:-1] if len(array) > 1 else np.concatenate([array, array])
        profile.update(height=array.shape[1], width=array.shape[2], count=array.shape[0])
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(array)
    return path


def resnet_argv(root: Path, out: Path, *extra) -> list:
    return ["--train_dir", str(root), "--arch", "resnet18", "--image_px_size", "32", "--batch_size", "4",
            "--workers", "2", "--output_dir", str(out), *extra]


def run_script(script, argv, capsys) -> tuple:
    code = cli.run(script.main, script.get_args_parser(), argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def records(run: Path) -> list:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def recorded_files(run: Path) -> list:
    lines = (run / "bad_samples.txt").read_text().splitlines()
    return [line.split("\t")[0] for line in lines if line and not line.startswith("#")]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------- the dataset wrapper
def test_every_kind_of_bad_sample_is_replaced_in_workers_and_recorded(root):
    obs = rows(root, "sen12ms")
    bad = {corrupt(patch_path(root, obs[5], "s2"), "truncate"): "corrupt or truncated",
           corrupt(patch_path(root, obs[7], "lc"), "garbage"): "corrupt or truncated",
           corrupt(patch_path(root, obs[9], "s1"), "missing"): "not found",
           corrupt(patch_path(root, obs[11], "s2"), "wrong_size"): "wrong size",
           corrupt(patch_path(root, obs[13], "s2"), "bands"): "band"}
    bad_index = {5, 7, 9, 11, 13}
    data = RobustDataset(DFCDataset(root, mode="sen12ms", image_px_size=256, random_crop=False), seed=3)
    loader = engine.build_loader(data, batch_size=4, shuffle=True, num_workers=2, seed=3, drop_last=True)
    seen, skipped = [], []
    for batch in loader:
        assert batch["s2"].shape == (4, 13, 256, 256)           # batches stay full
        skipped += batch.pop("_skipped", [])
        seen += batch["index"].tolist()
    assert len(seen) == 16 and not bad_index & set(seen)        # only readable samples, 5 substitutes
    assert {r.file for r in skipped} == set(map(str, bad)) and len(skipped) >= 5   # a substitute may be bad too
    for record in skipped:
        assert bad[Path(record.file)] in record.reason, record
        assert record.key == patch_key(record.file)
    # the substitutes are a function of (seed, epoch, index): the same again, others next epoch
    again = [i for b in loader for i in b["index"].tolist()]
    assert again == seen
    engine.set_epoch(loader, 1)
    assert sorted(i for b in loader for i in b["index"].tolist()) != sorted(seen)

    # evaluation: unreadable samples are dropped, not replaced (a metric must not count a sample twice)
    eval_loader = engine.build_loader(data, batch_size=4, shuffle=False, num_workers=2, evaluation=True)
    kept, dropped = [], []
    for batch in eval_loader:
        dropped += batch.pop("_skipped", [])
        kept += batch["index"].tolist() if "index" in batch else []
    assert sorted(kept) == sorted(set(range(16)) - bad_index)
    assert sorted(r.index for r in dropped) == sorted(bad_index)


def test_exclude_list_budget_and_their_parsing(root, tmp_path):
    obs = rows(root, "sen12ms")
    listed = tmp_path / "bad.txt"
    listed.write_text(f"# a comment\n{patch_path(root, obs[3], 's2')}\tcorrupt\n\n"
                      f"ROIs1970_fall/lc_45/{patch_path(root, obs[8], 'lc').name}\n")
    keys = read_exclude_list(listed)
    assert keys == {patch_key(patch_path(root, obs[3], "s2")), patch_key(patch_path(root, obs[8], "lc"))}
    data = RobustDataset(DFCDataset(root, mode="sen12ms", image_px_size=32), exclude=keys)
    assert len(data) == 14 and data.excluded == 2
    assert {data.observation_key(data._inner(i)) for i in range(len(data))}.isdisjoint(keys)
    listed.write_text("ROIs1868_summer_s2_83_p650.tif\nnot-a-patch.txt\n")
    with pytest.raises(ValueError, match=r"--exclude_list .*bad.txt, line 2: 'not-a-patch.txt'"):
        read_exclude_list(listed)

    assert parse_budget("0") == 0 and parse_budget("25") == 25
    assert parse_budget("0.01") == 0.01 and parse_budget("1%") == 0.01
    for text in ("-1", "1.5", "abc", "0.0"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_budget(text)
    assert resolve_budget(None, 16)[0] == 10                  # 10 or 0.1 %, whichever is larger
    assert resolve_budget(None, 180_662)[0] == 180            # SEN12MS
    assert resolve_budget(0.01, 1000)[0] == 10 and resolve_budget(3, 1000)[0] == 3
    budget, text = resolve_budget(None, 180_662, reproduce_original=True)
    assert budget == 0 and "--reproduce_original" in text
    assert resolve_budget(5, 100, reproduce_original=True)[0] == 5   # an explicit flag wins


# ----------------------------------------------------------------------------- the scripts
@pytest.mark.slow
def test_two_bad_files_the_run_finishes_and_both_are_named(root, tmp_path, capsys):
    obs = rows(root, "sen12ms")
    bad = [corrupt(patch_path(root, obs[6], "s2"), "truncate"), corrupt(patch_path(root, obs[10], "lc"), "garbage")]
    run = tmp_path / "run"
    code, out, err = run_script(train_resnet_backbone, resnet_argv(root, run, "--epochs", "2"), capsys)
    assert code == 0, err[-2000:]
    assert sorted(recorded_files(run)) == sorted(map(str, bad))        # each file once, with its reason
    for path in bad:
        assert err.count(f"warning: skipped unreadable training sample {path}") == 1   # warned once
    logged = records(run)
    assert [r["epoch"] for r in logged] == [1, 2]
    assert all(r["train/skipped_samples"] >= 2 and r["train/bad_samples_total"] == 2 for r in logged)
    assert "skipped unreadable training samples" in (run / "log.txt").read_text()
    assert torch.load(run / "checkpoint_last.pth", weights_only=True)["epoch"] == 2

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run))
    events.Reload()
    assert [e.value for e in events.Scalars("train/skipped_samples")][0] >= 2


@pytest.mark.slow
def test_many_bad_files_stop_with_one_line_keep_the_checkpoint_and_resume_after_cleaning(root, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_script(train_resnet_backbone, resnet_argv(root, run, "--epochs", "1"), capsys)
    assert code == 0, err[-2000:]
    checkpoint = run / "checkpoint_last.pth"
    before = sha(checkpoint)

    obs = rows(root, "sen12ms")
    bad = {corrupt(patch_path(root, obs[i], sensor), how)
           for i, sensor, how in ((2, "s2", "truncate"), (5, "s1", "garbage"), (9, "lc", "missing"),
                                  (12, "s2", "truncate"), (14, "s1", "truncate"))}
    code, _, err = run_script(train_resnet_backbone,
                              resnet_argv(root, run, "--epochs", "3", "--resume", "auto", "--max_bad_samples", "2"),
                              capsys)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: 3 unreadable training samples exceed --max_bad_samples 2")
    assert f"every one is listed in {run / 'bad_samples.txt'}" in last
    assert f"the last good checkpoint {checkpoint} is kept" in last and "Traceback" not in err
    assert sha(checkpoint) == before                                       # epoch 1 intact
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1
    assert len(recorded_files(run)) == 3 and set(map(Path, recorded_files(run))) <= bad

    # the whole-dataset check names exactly the damaged files; its list makes the resume clean
    from data import verify

    listed = tmp_path / "bad.txt"
    assert verify.main(["--root", str(root), "--out", str(listed), "--workers", "2"]) == 1
    assert set(map(Path, (line.split("\t")[0] for line in listed.read_text().splitlines()[1:]))) == bad
    code, _, err = run_script(train_resnet_backbone,
                              resnet_argv(root, run, "--epochs", "3", "--resume", "auto", "--exclude_list",
                                          str(listed)), capsys)
    assert code == 0, err[-2000:]
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 3
    logged = records(run)
    assert [r["epoch"] for r in logged] == [1, 2, 3]
    assert logged[-1]["train/skipped_samples"] == 0
    assert "warning: skipped" not in err                                   # excluded files are not read
    assert len(recorded_files(run)) == 3                                   # the record is kept


@pytest.mark.slow
@pytest.mark.parametrize("flag,expected", [
    (["--max_bad_samples", "0"], "exceed --max_bad_samples 0 (strict)"),
    (["--reproduce_original"], "exceed --max_bad_samples 0 (--reproduce_original: the original stopped"),
])
def test_strict_and_reproduce_original_stop_at_the_first_unreadable_file(root, tmp_path, capsys, flag, expected):
    path = corrupt(patch_path(root, rows(root, "sen12ms")[9], "s2"), "truncate")
    code, _, err = run_script(train_resnet_backbone,
                              resnet_argv(root, tmp_path / "run", "--epochs", "1", *flag), capsys)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: 1 unreadable training samples ") and expected in last
    assert str(path) in last and "no checkpoint had been written yet" in last


@pytest.mark.slow
@pytest.mark.parametrize("cached", [False, True])
def test_evaluation_reports_skipped_test_samples_next_to_every_metric(root, tmp_path, capsys, cached):
    test_bad = corrupt(patch_path(root, rows(root, "test")[4], "s2"), "truncate")
    train_bad = corrupt(patch_path(root, rows(root, "validation")[5], "dfc"), "garbage")
    run = tmp_path / "run"
    argv = ["--train_dir", str(root), "--model", "DoubleResNetSimCLRDownstream", "--image_px_size", "32",
            "--batch_size", "4", "--epochs", "1", "--workers", "2", "--output_dir", str(run)]
    code, out, err = run_script(train_evaluation, argv + (["--cache_features"] if cached else []), capsys)
    assert code == 0, err[-2000:]
    results = json.loads((run / "results.json").read_text())
    assert results["scores"]["skipped_samples"] == 1 and results["scores"]["evaluated_samples"] == 7
    headline = [line for line in out.splitlines() if line.startswith("| average accuracy")]
    assert headline and all("7 of 8 samples (1 unreadable, skipped)" in line for line in headline)
    lines = [line.split("\t") for line in (run / "bad_samples.txt").read_text().splitlines()[1:]]
    assert {(line[0], line[1]) for line in lines} == {(str(test_bad), "evaluation"), (str(train_bad), "training")}
    assert records(run)[-1]["val/skipped_samples"] == 1


def test_swin_script_takes_the_flags_and_reads_through_the_wrapper(root, tmp_path):
    from training.data import pretraining_loaders

    listed = tmp_path / "bad.txt"
    listed.write_text(f"{patch_path(root, rows(root, 'sen12ms')[1], 's1')}\n")
    args = train_d_swin_backbone.get_args_parser().parse_args(
        ["--train_dir", str(root), "--max_bad_samples", "1%", "--exclude_list", str(listed),
         "--output_dir", str(tmp_path / "run"), "--batch_size", "4", "--workers", "0"])
    train_d_swin_backbone.resolve_settings(args)
    train_loader, _ = pretraining_loaders(args)
    data = train_loader.dataset
    assert isinstance(data, RobustDataset) and len(data) == 15 and data.log.budget == 0
    assert data.log.path == tmp_path / "run" / "bad_samples.txt"


# ------------------------------------------------------------------------- error messages
def test_output_dir_that_cannot_be_created_is_one_line(pristine, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, _, err = run_script(train_resnet_backbone, resnet_argv(pristine, blocker / "run", "--epochs", "1"), capsys)
    assert code == 2
    assert err.strip() == (f"error: --output_dir {blocker / 'run'}: cannot create the run folder: {blocker} is a "
                           "file, not a folder")


def test_a_malformed_exclude_list_is_refused_up_front(pristine, tmp_path, capsys):
    listed = tmp_path / "bad.txt"
    listed.write_text("hello\n")
    code, _, err = run_script(train_resnet_backbone,
                              resnet_argv(pristine, tmp_path / "run", "--exclude_list", str(listed)), capsys)
    assert code == 2 and err.strip().startswith(f"error: --exclude_list {listed}, line 1: 'hello'")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_predict_names_a_truncated_band_file(tmp_path):
    from affine import Affine

    from data.bands import S2_BANDS
    from models import create_model, downstream_checkpoint, save_checkpoint

    folder = tmp_path / "bands"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for band in S2_BANDS:
        with rasterio.open(folder / f"T32TMT_20200601T103031_{band}.tif", "w", driver="GTiff", height=160,
                           width=160, count=1, dtype="uint16", crs="EPSG:32632",
                           transform=Affine(10, 0, 300000, 0, -10, 5600000)) as dst:
            dst.write(rng.integers(1, 5000, (1, 160, 160)).astype(np.uint16))
    broken = folder / "T32TMT_20200601T103031_B04.tif"
    os.truncate(broken, broken.stat().st_size // 3)
    save_checkpoint(downstream_checkpoint(create_model("resnet18", num_classes=8, s1_input_channels=0)),
                    tmp_path / "cls.pth")
    proc = subprocess.run([sys.executable, str(REPO / "predict.py"), "--checkpoint", str(tmp_path / "cls.pth"),
                           "--s2", str(folder), "--out", str(tmp_path / "map.tif"), "--window", "64",
                           "--no-progress"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(broken) in last and "corrupt or truncated" in last
    assert "previous exception" not in proc.stderr and not (tmp_path / "map.tif").exists()


def test_dataset_key_of_a_patch_name():
    assert patch_key("/x/ROIs1868_summer/s2_83/ROIs1868_summer_s2_83_p650.tif") == ("ROIs1868_summer", 83, 650)
    assert patch_key("ROIs0000_test_dfc_0_p7.tif") == ("ROIs0000_test", 0, 7)
    assert patch_key("ROIs9999_nowhere_s2_1_p2.tif") is None and patch_key("other.tif") is None
