"""Smoke test of ``benchmarks/run.py`` (``make bench``): it runs and prints its table.

No timings are asserted (speed lives in the benchmark's output, not in tests).
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


def _run(*args, cwd):
    proc = subprocess.run([sys.executable, str(RUN), *args], capture_output=True, text=True, cwd=cwd, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_quick_matmul_and_loading(sample_root, tmp_path):
    out_json = tmp_path / "bench.json"
    table = _run("--quick", "--repeats", "1", "--only", "matmul,loading", "--data", str(sample_root),
                 "--json", str(out_json), cwd=tmp_path)
    assert "matmul 2048^2 fp32" in table and "loading" in table and "load average" in table
    assert "samples/s >= 200" in table  # the target column
    results = json.loads(out_json.read_text())["results"]
    assert results["matmul"]["gflops"] > 0 and results["matmul"]["peak_rss_mb"] > 0
    assert results["loading"]["samples_per_s"] > 0 and "error" not in results["loading"]


def test_unknown_benchmark_is_an_error(tmp_path):
    proc = subprocess.run([sys.executable, str(RUN), "--only", "nope"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "unknown benchmark" in proc.stderr
