"""Metrics cross-checked against scikit-learn on random data with ignored targets."""
from collections import defaultdict

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import jaccard_score, precision_recall_fscore_support

from training.metrics import IGNORE_INDEX, MetricAccumulator, confusion_matrix, scores_from_confusion


def _random_segmentation(seed=0, batches=3, n=8):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batches):
        logits = torch.randn(2, n, 16, 16, generator=g)
        target = torch.randint(0, n, (2, 16, 16), generator=g)
        target[torch.rand(2, 16, 16, generator=g) < 0.2] = IGNORE_INDEX
        target[target == 3] = IGNORE_INDEX  # class 3 absent from the targets
        out.append((logits, target))
    return out


def test_confusion_matrix_matches_sklearn_and_ignores_255():
    data = _random_segmentation()
    acc = MetricAccumulator("segmentation", num_classes=8)
    for logits, target in data:
        acc.update(logits, target)
    pred = torch.cat([l.argmax(1).flatten() for l, _ in data]).numpy()
    true = torch.cat([t.flatten() for _, t in data]).numpy()
    keep = true != IGNORE_INDEX
    expected = sk_confusion(true[keep], pred[keep], labels=range(8))
    np.testing.assert_array_equal(acc.cm.numpy(), expected)

    scores = acc.compute()
    assert scores["overall_accuracy"] == pytest.approx((pred[keep] == true[keep]).mean())
    iou = jaccard_score(true[keep], pred[keep], labels=range(8), average=None, zero_division=0)
    present = np.isin(np.arange(8), true[keep])
    np.testing.assert_allclose(np.array(scores["per_class_iou"])[present], iou[present])
    assert np.isnan(scores["per_class_iou"][3])  # absent class: not counted as 0
    assert scores["miou"] == pytest.approx(iou[present].mean())
    _, recall, _, _ = precision_recall_fscore_support(true[keep], pred[keep], labels=range(8), zero_division=0)
    assert scores["average_accuracy"] == pytest.approx(recall[present].mean())


def test_whole_set_accuracy_differs_from_per_batch_mean():
    # The original averaged per-batch pixel accuracy; batches of unequal size expose it.
    cm = confusion_matrix(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 0, 0]), 2)
    assert scores_from_confusion(cm)["overall_accuracy"] == pytest.approx(0.75)


def test_single_label_accumulator():
    logits = torch.tensor([[2.0, 0, 0], [0, 3.0, 0], [0, 0, 1.0], [5.0, 0, 0]])
    target = torch.tensor([0, 2, 2, IGNORE_INDEX])
    acc = MetricAccumulator("single_label", num_classes=3)
    acc.update(logits[:2], target[:2])
    acc.update(logits[2:], target[2:])
    s = acc.compute()
    assert s["overall_accuracy"] == pytest.approx(2 / 3)
    assert s["per_class_accuracy"][0] == 1.0 and s["per_class_accuracy"][2] == 0.5
    assert np.isnan(s["per_class_accuracy"][1])
    assert s["average_accuracy"] == pytest.approx(0.75)
    assert "miou" not in s


def test_multilabel_matches_sklearn():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(50, 8, generator=g)
    target = (torch.rand(50, 8, generator=g) > 0.6).float()
    acc = MetricAccumulator("multi_label", num_classes=8)
    acc.update(logits[:20], target[:20])
    acc.update(logits[20:], target[20:])
    s = acc.compute()
    pred = (torch.sigmoid(logits) > 0.5).numpy()
    p, r, f, _ = precision_recall_fscore_support(target.numpy(), pred, average=None, zero_division=0)
    np.testing.assert_allclose(s["per_class_precision"], p)
    np.testing.assert_allclose(s["per_class_recall"], r)
    np.testing.assert_allclose(s["per_class_f1"], f)
    mp, mr, mf, _ = precision_recall_fscore_support(target.numpy(), pred, average="micro", zero_division=0)
    assert (s["overall_precision"], s["overall_recall"], s["overall_f1"]) == pytest.approx((mp, mr, mf))
    assert s["average_f1"] == pytest.approx(f.mean())


def test_target_outside_class_range_is_a_clear_error():
    with pytest.raises(ValueError, match="class 9"):
        confusion_matrix(torch.tensor([0]), torch.tensor([9]), 8)


# --------------------------------------------------------------------------------------
# The original's definitions (its metrics.py), re-implemented here sample by sample as it
# did, against MetricAccumulator(...).compute()["original"].

class OrigClasswiseAccuracy:
    def __init__(self):
        self.tp_per_class, self.count_per_class = defaultdict(int), defaultdict(int)
        self.count = self.tp = 0

    def add_batch(self, y, y_hat):
        for true, pred in zip(y, y_hat):
            self.count_per_class["class_" + str(true.item())] += 1
            self.count += 1
            if true == pred:
                self.tp_per_class["class_" + str(true.item())] += 1
                self.tp += 1

    def classwise(self):
        return {k: self.tp_per_class[k] / c for k, c in self.count_per_class.items()}


class OrigMultilabel:
    def __init__(self, n):
        self.n = n
        self.data = {i: {"tp": 0, "fp": 0, "fn": 0} for i in range(n)}
        self.tp = self.fp = self.fn = 0

    def add_batch(self, y_batch, y_hat_batch):
        for y, y_hat in zip(y_batch, y_hat_batch):
            for i in range(self.n):
                d = self.data[i]
                if y_hat[i] == y[i]:
                    if y_hat[i]:
                        d["tp"] += 1
                        self.tp += 1
                elif y_hat[i]:
                    d["fp"] += 1
                    self.fp += 1
                else:
                    d["fn"] += 1
                    self.fn += 1

    def scores(self):
        p = [0 if d["tp"] == 0 else d["tp"] / (d["tp"] + d["fp"]) for d in self.data.values()]
        r = [0 if d["tp"] == 0 else d["tp"] / (d["tp"] + d["fn"]) for d in self.data.values()]
        f = [0 if a + b == 0 else 2 * a * b / (a + b) for a, b in zip(p, r)]
        op = 0 if self.tp == 0 else self.tp / (self.tp + self.fp)
        orr = 0 if self.tp == 0 else self.tp / (self.tp + self.fn)
        of = 0 if op + orr == 0 else 2 * op * orr / (op + orr)
        return {"per_class_precision": p, "per_class_recall": r, "per_class_f1": f,
                "average_precision": np.mean(p), "average_recall": np.mean(r), "average_f1": np.mean(f),
                "overall_precision": op, "overall_recall": orr, "overall_f1": of}


class OrigPixelwise:
    def __init__(self, n):
        self.n, self.count = n, 0
        self.acc = {c: 0 for c in range(n)}

    def add_batch(self, y, y_hat):
        self.count += 1
        for c in range(self.n):
            preds_c, targs_c = y_hat == c, y == c
            num_correct = (preds_c * targs_c).sum().cpu().detach().numpy()
            num_pixels = np.sum(targs_c.cpu().detach().numpy())
            with np.errstate(invalid="ignore"):
                self.acc[c] += num_correct / num_pixels

    def classwise(self):
        return [self.acc[c] / self.count for c in range(self.n)]


def _single_label_batches(seed=0, batches=4, n=8):
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in range(batches):
        size = 13 + 5 * b  # unequal batch sizes
        logits = torch.randn(size, n, generator=g)
        target = torch.randint(0, n, (size,), generator=g)
        logits[torch.arange(size)[::3], target[::3]] += 3.0  # some right answers
        target[torch.rand(size, generator=g) < 0.15] = IGNORE_INDEX
        target[target == 6] = IGNORE_INDEX  # class 6 absent from the truth
        out.append((logits, target))
    return out


def test_original_single_label_equals_the_originals_classwise_accuracy():
    data = _single_label_batches()
    acc, ref = MetricAccumulator("single_label"), OrigClasswiseAccuracy()
    for logits, target in data:
        acc.update(logits, target)
        ref.add_batch(target, logits.argmax(1))
    s = acc.compute()
    o = s["original"]
    assert set(o) == {"overall_accuracy", "average_accuracy", "per_class_accuracy"}
    cw = ref.classwise()
    assert "class_255" in cw and cw["class_255"] == 0 and "class_6" not in cw
    assert o["overall_accuracy"] == pytest.approx(ref.tp / ref.count)
    assert o["average_accuracy"] == pytest.approx(np.mean(list(cw.values())))
    assert len(o["per_class_accuracy"]) == 9
    for c in list(range(8)) + [255]:
        got = o["per_class_accuracy"][8 if c == 255 else c]
        if f"class_{c}" in cw:
            assert got == pytest.approx(cw[f"class_{c}"]), c
        else:
            assert np.isnan(got), c
    # the project's numbers: 255 left out, so the same per-class values and a higher OA / AA
    np.testing.assert_allclose(o["per_class_accuracy"][:8], s["per_class_accuracy"])
    ignored = sum(int((t == IGNORE_INDEX).sum()) for _, t in data)
    labelled = sum(s["support"])
    assert o["overall_accuracy"] == pytest.approx(s["overall_accuracy"] * labelled / (labelled + ignored))
    present = [v for v in s["per_class_accuracy"] if not np.isnan(v)]
    assert o["average_accuracy"] == pytest.approx(sum(present) / (len(present) + 1))


def test_original_single_label_without_255_equals_the_project():
    g = torch.Generator().manual_seed(3)
    logits, target = torch.randn(40, 8, generator=g), torch.randint(0, 8, (40,), generator=g)
    acc = MetricAccumulator("single_label")
    acc.update(logits, target)
    s = acc.compute()
    assert np.isnan(s["original"]["per_class_accuracy"][8])
    for key in ("overall_accuracy", "average_accuracy"):
        assert s["original"][key] == pytest.approx(s[key])


def test_original_multilabel_equals_the_originals_metrics():
    g = torch.Generator().manual_seed(2)
    acc, ref = MetricAccumulator("multi_label"), OrigMultilabel(8)
    for size in (17, 9, 30):
        logits = torch.randn(size, 8, generator=g) - 1.0
        target = (torch.rand(size, 8, generator=g) > 0.7).float()
        target[:, 2] = 0  # class 2 never true: tp = 0, precision/recall count as 0
        logits[:, 5] = -10.0  # class 5 never predicted
        logits[0, 0] = 0.0  # sigmoid 0.5 rounds to 0: not predicted
        acc.update(logits, target)
        ref.add_batch(target, torch.sigmoid(logits).round())
    s = acc.compute()
    o, r = s["original"], ref.scores()
    assert set(o) == set(r)
    for key, value in r.items():
        np.testing.assert_allclose(o[key], value, err_msg=key)
    assert o["per_class_precision"][2] == 0 and o["per_class_recall"][5] == 0
    # the project leaves undefined classes out of the averages; the original counts them as 0
    assert np.isnan(s["per_class_recall"][2]) and np.isnan(s["per_class_precision"][5])
    assert o["average_precision"] < s["average_precision"] and o["average_recall"] < s["average_recall"]
    for key in ("overall_precision", "overall_recall", "overall_f1"):  # micro: the same when tp > 0
        assert o[key] == pytest.approx(s[key])


def test_original_multilabel_no_true_positive_is_zero_not_nan():
    acc = MetricAccumulator("multi_label", num_classes=3)
    acc.update(torch.full((4, 3), -5.0), torch.ones(4, 3))
    o = acc.compute()["original"]
    assert o["overall_f1"] == 0 and o["average_precision"] == 0 and o["per_class_recall"] == [0, 0, 0]


def test_original_segmentation_is_a_mean_over_batches_with_nan():
    data = _random_segmentation(seed=4, batches=4)
    data[1][1][0, :8] = 7  # class 7 wider in one batch: batch weights matter
    acc, ref = MetricAccumulator("segmentation"), OrigPixelwise(8)
    for logits, target in data:
        acc.update(logits, target)
        ref.add_batch(target, logits.argmax(1))
    s = acc.compute()
    o = s["original"]
    assert set(o) == {"average_accuracy", "per_class_accuracy", "batches"} and o["batches"] == 4
    np.testing.assert_allclose(o["per_class_accuracy"], ref.classwise())  # NaN where NaN
    assert np.isnan(o["per_class_accuracy"][3]) and np.isnan(o["average_accuracy"])  # class 3 absent
    present = [c for c in range(8) if c != 3]
    assert np.nanmean(o["per_class_accuracy"]) == pytest.approx(np.mean(np.array(ref.classwise())[present]))
    # per-batch means differ from the project's whole-set per-class accuracy
    assert not np.allclose(np.array(o["per_class_accuracy"])[present],
                           np.array(s["per_class_accuracy"])[present])


def test_original_segmentation_class_absent_from_one_batch_stays_nan():
    acc = MetricAccumulator("segmentation", num_classes=2)
    logits = torch.zeros(1, 2, 2, 2)
    acc.update(logits, torch.tensor([[[0, 1], [1, 1]]]))
    acc.update(logits, torch.tensor([[[0, 0], [IGNORE_INDEX, 0]]]))  # no class-1 pixel
    o = acc.compute()["original"]
    assert o["per_class_accuracy"][0] == pytest.approx(1.0)
    assert np.isnan(o["per_class_accuracy"][1]) and np.isnan(o["average_accuracy"])


def _summed(parts, task):
    """Accumulators per 'rank', state summed as all_reduce_sum does."""
    accs = []
    for batches in parts:
        acc = MetricAccumulator(task)
        for logits, target in batches:
            acc.update(logits, target)
        accs.append(acc)
    total = accs[0]
    for other in accs[1:]:
        for mine, theirs in zip(total.state_tensors(), other.state_tensors()):
            mine += theirs  # in place, like dist.all_reduce
    return total.compute()


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_original_scores_summed_across_ranks_equal_one_accumulator(task):
    g = torch.Generator().manual_seed(5)
    if task == "single_label":
        samples = [(l[i:i + 1], t[i:i + 1]) for l, t in _single_label_batches(seed=5) for i in range(len(t))]
    else:
        logits = torch.randn(60, 8, generator=g)
        target = (torch.rand(60, 8, generator=g) > 0.6).float()
        samples = [(logits[i:i + 1], target[i:i + 1]) for i in range(60)]
    one = _summed([samples], task)
    # a DistributedSampler-like split: every other sample, in batches of 4
    halves = [samples[r::2] for r in range(2)]
    batched = [[(torch.cat([l for l, _ in h[i:i + 4]]), torch.cat([t for _, t in h[i:i + 4]]))
                for i in range(0, len(h), 4)] for h in halves]
    two = _summed(batched, task)
    _assert_same(one["original"], two["original"])


def test_original_segmentation_summed_across_ranks_equals_the_same_batches_on_one():
    data = _random_segmentation(seed=6, batches=6)
    for _, target in data:
        target[target == IGNORE_INDEX] = 3  # every class in every batch: finite numbers
    one = _summed([data], "segmentation")
    two = _summed([data[0::2], data[1::2]], "segmentation")
    _assert_same(one["original"], two["original"])
    assert np.isfinite(one["original"]["average_accuracy"])
    # every state tensor is summable (what all_reduce_sum does)
    assert all(t.dtype in (torch.long, torch.float64) for t in MetricAccumulator("segmentation").state_tensors())


def test_scores_table_shows_both_definitions():
    from utils.report import scores_table

    acc = MetricAccumulator("single_label")
    for logits, target in _single_label_batches():
        acc.update(logits, target)
    s = acc.compute()
    table = scores_table(s, "single_label")
    assert f"| overall accuracy | {100 * s['overall_accuracy']:.2f} |" in table
    assert f"| overall accuracy (original) | {100 * s['original']['overall_accuracy']:.2f} |" in table
    assert f"| average accuracy (original) | {100 * s['original']['average_accuracy']:.2f} |" in table
    assert "| class | accuracy | accuracy (orig.) |" in table
    assert "| no data (255) | – | 0.00 |" in table
    # scores from before the original's definitions: the old layout
    old = {k: v for k, v in s.items() if k != "original"}
    assert "original" not in scores_table(old, "single_label") and "255" not in scores_table(old, "single_label")

    acc = MetricAccumulator("segmentation")
    for logits, target in _random_segmentation():
        acc.update(logits, target)
    table = scores_table(acc.compute(), "segmentation")
    assert "| average accuracy (original) | – |" in table  # NaN: class 3 absent from a batch
    assert "| class | accuracy | iou | accuracy (orig.) |" in table


def test_results_table_has_original_columns(tmp_path):
    import json

    from utils.results import find_results, results_tables

    runs = [("single_label", {"average_accuracy": 0.5, "overall_accuracy": 0.75,
                              "original": {"average_accuracy": 0.4, "overall_accuracy": 0.7}}),
            ("multi_label", {"average_f1": 0.6, "overall_f1": 0.65,
                             "original": {"average_precision": 0.1, "average_recall": 0.2, "average_f1": 0.3}}),
            ("segmentation", {"average_accuracy": 0.4, "overall_accuracy": 0.6, "miou": 0.3})]
    for i, (task, scores) in enumerate(runs):
        (tmp_path / f"run{i}").mkdir()
        (tmp_path / f"run{i}" / "results.json").write_text(json.dumps(
            {"run_name": f"r{i}", "model": "M", "setting": "s", "task": task, "finetuning": True,
             "checkpoint": None, "scores": scores}))
    table = results_tables(find_results([str(tmp_path)]))
    assert "| run | model | setting | AA | OA | AA (orig.) | OA (orig.) |" in table
    assert "| r0 | M | fine-tuned | 50.00 | 75.00 | 40.00 | 70.00 |" in table
    assert "| avg P (orig.) | avg R (orig.) | avg F1 (orig.) |" in table
    assert "| 65.00 | 10.00 | 20.00 | 30.00 |" in table
    assert "| AA | OA | mIoU | AA (orig.) |" in table
    assert "| 40.00 | 60.00 | 30.00 | – |" in table  # an older run: no original scores
