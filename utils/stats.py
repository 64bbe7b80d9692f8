"""Confidence intervals for accuracies and for differences between two classifiers on the
same test items (paired): Wilson score interval, percentile bootstrap, paired bootstrap of a
difference, exact McNemar test."""
from __future__ import annotations

import math

import numpy as np


def wilson(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % (default ``z``) Wilson score interval of a proportion ``correct / n``."""
    if n <= 0:
        return (math.nan, math.nan)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_ci(values, statistic=np.mean, n_boot: int = 2000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over the items of ``values``."""
    values = np.asarray(values)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    stats = np.array([statistic(values[i]) for i in idx])
    return (float(np.quantile(stats, alpha / 2)), float(np.quantile(stats, 1 - alpha / 2)))


def average_accuracy(correct: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present of each class's accuracy (recall)."""
    correct, labels = np.asarray(correct, bool), np.asarray(labels)
    return float(np.mean([correct[labels == c].mean() for c in np.unique(labels)]))


def paired_bootstrap_diff(correct_a, correct_b, labels=None, n_boot: int = 2000,
                          alpha: float = 0.05, seed: int = 0) -> dict:
    """Difference ``a - b`` of accuracy (overall; average per class if ``labels`` is given)
    over the same test items, with a paired percentile-bootstrap interval (items resampled
    together for both classifiers)."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape:
        raise ValueError("paired comparison needs the same test items")
    rng = np.random.default_rng(seed)
    if labels is None:
        def stat(i):
            return a[i].mean() - b[i].mean()
    else:
        labels = np.asarray(labels)

        def stat(i):
            return average_accuracy(a[i], labels[i]) - average_accuracy(b[i], labels[i])
    full = stat(np.arange(len(a)))
    boots = np.array([stat(rng.integers(0, len(a), len(a))) for _ in range(n_boot)])
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return {"diff": float(full), "low": float(lo), "high": float(hi), "n": int(len(a))}


def mcnemar(correct_a, correct_b) -> dict:
    """Exact (binomial) two-sided McNemar test on the discordant pairs."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    k = min(only_a, only_b)
    p = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)
    return {"only_a": only_a, "only_b": only_b, "p_value": p}


def verdict(diff: dict, a: str, b: str) -> str:
    """The plain reading of a paired interval: which is better, or no difference shown."""
    if diff["low"] > 0:
        return f"{a} better than {b} (95 % CI excludes 0)"
    if diff["high"] < 0:
        return f"{b} better than {a} (95 % CI excludes 0)"
    return f"no difference shown between {a} and {b} (95 % CI includes 0)"


def fmt_acc(correct: int, n: int) -> str:
    lo, hi = wilson(correct, n)
    return f"{100 * correct / max(n, 1):5.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]"
