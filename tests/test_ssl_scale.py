"""benchmarks/ssl_scale.py in its tiny CPU setting: both architectures, monitor, JSON and PNG."""
import json

import pytest

from benchmarks import ssl_scale


@pytest.mark.slow
def test_tiny_scale_experiment_runs_on_cpu(tmp_path):
    ssl_scale.main(["--tiny", "--device", "cpu", "--out", str(tmp_path)])
    summary = json.loads((tmp_path / "ssl_scale.json").read_text())
    assert [r["arch"] for r in summary["results"]] == ["resnet18", "swin_t"]
    for r in summary["results"]:
        assert r["steps"] >= 1 and len(r["history"]) == 2          # step 0 and the end
        # the wall time of an architecture covers its disjoint parts (pool, training, monitor)
        assert r["wall_seconds"] >= r["pool_seconds"] + r["train_seconds"] + r["monitor_seconds"]
        assert r["history"][0]["step"] == 0
        for row in r["history"]:
            assert all(0.0 <= row[k] <= 1.0 for k in ("knn_fused", "probe_fused", "retrieval_top1"))
        d = r["end_vs_random"]["probe_fused"]
        assert d["low"] <= d["diff"] <= d["high"] and d["verdict"]
    assert (tmp_path / "ssl_scale.png").stat().st_size > 1000
