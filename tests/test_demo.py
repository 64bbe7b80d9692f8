"""demo/run_demo.py: the SSL-vs-random comparison line printed at the end of ``make demo``."""
import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_demo():
    spec = importlib.util.spec_from_file_location("run_demo", REPO / "demo" / "run_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(folder: Path, correct: int, total: int) -> Path:
    """A results.json of a 2-class run with ``correct`` of ``total`` test patches right."""
    folder.mkdir()
    cm = [[correct, total - correct], [0, 0]]
    (folder / "results.json").write_text(json.dumps({"scores": {
        "overall_accuracy": correct / total, "average_accuracy": correct / total,
        "confusion_matrix": cm, "support": [total, 0]}}))
    return folder


@pytest.mark.parametrize("ssl,random,n,verdict", [
    (9, 7, 16, "within the noise of the test split"),     # 2 of 16 patches: noise
    (450, 300, 500, "self-supervised better"),
    (300, 450, 500, "random init better"),
])
def test_linear_eval_comparison_names_the_better_backbone_only_beyond_noise(
        run_demo, tmp_path, ssl, random, n, verdict):
    line = run_demo.linear_eval_comparison("swin", _run(tmp_path / "ssl", ssl, n),
                                           _run(tmp_path / "rnd", random, n))
    assert line.endswith(f"{verdict})")
    assert f"({n} test patches" in line
    assert f"self-supervised OA {100 * ssl / n:5.1f} %" in line
    assert f"random init OA {100 * random / n:5.1f} %" in line
