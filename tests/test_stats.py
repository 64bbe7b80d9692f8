"""utils/stats.py against known values."""
import numpy as np
import pytest

from utils import stats


def test_wilson_matches_the_textbook_value():
    lo, hi = stats.wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert stats.wilson(0, 10)[0] == 0.0


def test_paired_difference_and_mcnemar():
    a = np.array([1] * 80 + [0] * 20, bool)
    b = np.array([1] * 50 + [0] * 50, bool)
    d = stats.paired_bootstrap_diff(a, b)
    assert d["diff"] == pytest.approx(0.30) and d["low"] > 0.15 and d["high"] < 0.45
    assert "a better" in stats.verdict(d, "a", "b")
    m = stats.mcnemar(a, b)
    assert m["only_a"] == 30 and m["only_b"] == 0 and m["p_value"] < 1e-6
    same = stats.paired_bootstrap_diff(a, a, labels=np.arange(100) % 4)
    assert same["diff"] == 0.0 and "no difference" in stats.verdict(same, "a", "b")
