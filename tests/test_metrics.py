"""Metrics cross-checked against scikit-learn on random data with ignored targets."""
import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import jaccard_score, precision_recall_fscore_support

from utils.metrics import IGNORE_INDEX, MetricAccumulator, confusion_matrix, scores_from_confusion


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
