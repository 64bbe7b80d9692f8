"""demo/evidence.py: the three evidence blocks printed by ``make demo`` (formatting and verdicts)."""
from pathlib import Path

import numpy as np
import pytest

from demo import evidence

REPO = Path(__file__).resolve().parents[1]


def test_report_prints_every_accuracy_with_its_ci_and_the_plain_verdict():
    from utils import stats

    sup = {"n_train": 800, "n_test": 500, "epochs": 6, "size": 64, "oa": 0.6, "oa_ci": (0.55, 0.64),
           "aa": 0.5, "aa_ci": (0.45, 0.55), "chance_aa": 0.125}
    row = {"retrieval_top1": 0.002, "retrieval_top5": 0.01, "retrieval_chance_top1": 0.002,
           "knn_fused": 0.4, "probe_fused": 0.5, "probe_s1": 0.3, "probe_s2": 0.45, "n_test": 500}
    end = dict(row, retrieval_top1=0.05, probe_fused=0.4, loss=4.0)
    a = np.array([1] * 200 + [0] * 300, bool)
    b = np.array([1] * 250 + [0] * 250, bool)
    d = stats.paired_bootstrap_diff(a, b)
    d.update(verdict=stats.verdict(d, "pre-trained", "random init"), mcnemar_p=0.01)
    pre = {"history": [row, end], "steps": 200, "batch_size": 64, "train_seconds": 180.0,
           "end_vs_random": {k: d for k in ("probe_fused", "probe_s1", "probe_s2", "knn_fused")}}
    text = evidence.report(sup, pre)
    assert "AA  50.0 % [45.0, 55.0]" in text and "AA / chance = 4.0x" in text
    assert "random init better than pre-trained (95 % CI excludes 0)" in text
    assert "step 0   0.2 %" in text and "end   5.0 %" in text
    assert text.count("[") >= 12   # a CI beside every accuracy


@pytest.mark.slow
def test_quick_demo_prints_the_three_blocks_and_writes_the_monitor_png(tmp_path):
    """``demo/run_demo.py --quick --skip_smoke`` as a user runs it (tiny sizes, seconds)."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "demo/run_demo.py", "--quick", "--skip_smoke", "--skip_own_data",
                          "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    for block in ("A. Downstream learning", "B. Pre-training learning", "C. SSL vs random init"):
        assert block in out.stdout
    assert out.stdout.count("McNemar p =") == 4
    ev = tmp_path / "evidence"
    assert (ev / "monitor.png").stat().st_size > 5000
    saved = json.loads((ev / "evidence.json").read_text())
    history = saved["pretraining"]["history"]
    assert history[0]["step"] == 0 and history[-1]["step"] == saved["pretraining"]["steps"] >= 1
    assert (ev / "evidence.txt").read_text().strip() in out.stdout
    steps = [e.step for e in _tensorboard_scalars(ev, "monitor/knn_fused")]
    assert steps == [h["step"] for h in history]          # the curves are in TensorBoard too


def _tensorboard_scalars(folder, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    assert tag in acc.Tags()["scalars"], acc.Tags()["scalars"]
    return acc.Scalars(tag)


def test_monitor_records_go_to_tensorboard_and_log_txt(tmp_path):
    history = [{"step": 0, "train_seconds": 0.0, "samples": 0, "knn_fused": 0.30, "probe_s2": 0.40},
               {"step": 7, "train_seconds": 3.5, "samples": 448, "knn_fused": 0.36, "probe_s2": 0.47, "loss": 4.2}]
    evidence.write_monitor_records(history, tmp_path)
    knn = _tensorboard_scalars(tmp_path, "monitor/knn_fused")
    assert [(e.step, round(e.value, 3)) for e in knn] == [(0, 0.30), (7, 0.36)]
    assert [e.step for e in _tensorboard_scalars(tmp_path, "train/loss")] == [7]
    lines = (tmp_path / "log.txt").read_text().splitlines()
    assert len(lines) == 2 and "step      7" in lines[1] and "probe_s2=0.470" in lines[1]


@pytest.mark.slow
def test_a_resumed_demo_reuses_its_evidence_only_for_the_same_settings(tmp_path):
    import subprocess
    import sys

    def demo(*extra):
        return subprocess.run([sys.executable, "demo/run_demo.py", "--quick", "--skip_smoke", "--skip_own_data",
                               "--out", str(tmp_path), *extra], cwd=REPO, capture_output=True,
                              text=True, timeout=300)

    assert demo().returncode == 0
    again = demo()
    assert again.returncode == 0 and "(finished earlier)" in again.stdout
    other = demo("--seed", "1")            # would otherwise print seed 0's numbers as seed 1's
    assert other.returncode != 0
    assert "holds evidence of other settings" in other.stderr and "--fresh" in other.stderr
    assert demo("--seed", "1", "--fresh").returncode == 0
    assert '"seed": 1' in (tmp_path / "evidence" / "evidence.json").read_text()


def test_an_interrupted_smoke_step_is_started_again_not_refused(tmp_path, capsys):
    from demo import run_demo

    run = tmp_path / "swin_finetuned"
    assert run_demo.restart_flags(run, "results.json") == []          # not there yet
    run.mkdir()
    assert run_demo.restart_flags(run, "results.json") == []          # empty folder
    (run / "config.json").write_text("{}")                             # interrupted mid-run
    assert run_demo.restart_flags(run, "results.json") == ["--overwrite"]
    assert "unfinished run of an earlier demo" in capsys.readouterr().out
    (run / "results.json").write_text("{}")                            # finished: never replaced
    assert run_demo.restart_flags(run, "results.json") == []


@pytest.mark.slow
def test_quick_own_data_block_prepares_trains_maps_and_scores_the_test_area(tmp_path):
    """``demo/run_demo.py --quick --skip_evidence --skip_smoke``: the 'your own data' loop as a user runs it."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "demo/run_demo.py", "--quick", "--skip_evidence", "--skip_smoke",
                          "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out")], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    own = tmp_path / "out" / "own_data"
    line = (own / "accuracy.txt").read_text()
    assert line.startswith("map accuracy on the held-out test area:") and line.strip() in out.stdout
    assert "chance:" in line and "uniform over 7 classes" in line
    meta = json.loads((own / "dataset" / "dataset.json").read_text())
    assert [c["name"] for c in meta["classes"]["classes"]][:2] == ["Forest", "Shrub and grassland"]
    assert meta["patches"]["test"] >= 1 and (own / "dataset" / "footprints.png").is_file()
    summary = json.loads((own / "areas.json").read_text())
    assert [c["name"] for c in summary["classes"]] == [c["name"] for c in meta["classes"]["classes"]]
