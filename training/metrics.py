"""Evaluation metrics for single-label, multi-label and segmentation targets.

Every metric here is computed over the *whole* evaluation set from accumulated
counts (a confusion matrix, or per-class TP/FP/FN), never averaged per batch as the
original did. Targets equal to ``IGNORE_INDEX`` (255) are left out everywhere. These are
the project's scores (the documented fix).

The original's definitions (its ``metrics.py``: ``ClasswiseAccuracy``,
``ClasswiseMultilabelMetrics``, ``PixelwiseMetrics``) are computed alongside, so a run
can be set beside the paper's numbers; ``MetricAccumulator.compute()`` returns them under
``scores["original"]`` (see :func:`original_single_label_scores`,
:func:`original_multilabel_scores`, :func:`original_segmentation_scores`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

IGNORE_INDEX = 255


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Confusion matrix ``cm[true, pred]`` (int64) over every non-ignored element."""
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    if target.numel() and (target.max() >= num_classes or target.min() < 0):
        raise ValueError(f"target holds class {int(target.max())}, outside 0..{num_classes - 1} "
                         f"(and not the ignore index {ignore_index})")
    idx = target * num_classes + pred.clamp(0, num_classes - 1)
    return torch.bincount(idx, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Element-wise num/den with NaN where den == 0 (class absent: left out of averages)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def scores_from_confusion(cm: np.ndarray | torch.Tensor) -> dict:
    """Overall/average/per-class accuracy, per-class IoU and mIoU from a confusion matrix.

    Per-class accuracy is the recall of that class (the original's definition). Classes
    absent from the targets get NaN and are left out of the averages (``np.nanmean``).
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    per_class_acc = _safe_div(tp, support)
    iou = _safe_div(tp, support + predicted - tp)
    present = support > 0
    return {
        "overall_accuracy": float(tp.sum() / cm.sum()) if cm.sum() else float("nan"),
        "average_accuracy": float(np.nanmean(per_class_acc)) if present.any() else float("nan"),
        "per_class_accuracy": per_class_acc.tolist(),
        "per_class_iou": np.where(present, iou, np.nan).tolist(),
        "miou": float(np.nanmean(np.where(present, iou, np.nan))) if present.any() else float("nan"),
        "support": support.astype(int).tolist(),
    }


def multilabel_scores(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict:
    """Per-class, average (macro) and overall (micro) precision, recall and F1."""
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    o_p = _safe_div(tp.sum(), tp.sum() + fp.sum())
    o_r = _safe_div(tp.sum(), tp.sum() + fn.sum())
    o_f1 = _safe_div(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum())

    def mean(a):
        return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")

    return {
        "per_class_precision": precision.tolist(),
        "per_class_recall": recall.tolist(),
        "per_class_f1": f1.tolist(),
        "average_precision": mean(precision),
        "average_recall": mean(recall),
        "average_f1": mean(f1),
        "overall_precision": float(o_p),
        "overall_recall": float(o_r),
        "overall_f1": float(o_f1),
    }


# --------------------------------------------------------------------------------------
# The original's definitions (reproduced exactly; for comparison with the paper only)

def original_single_label_scores(cm: np.ndarray | torch.Tensor, ignored: int) -> dict:
    """The original's ``ClasswiseAccuracy`` from the confusion matrix and the number of
    samples whose label is 255 (``ignored``).

    The original keys each sample by its true label, 255 included (``class_255``): a
    class's accuracy is ``tp / count`` for every class that occurs in the truth, and
    ``class_255`` occurs whenever a 255 label does, with accuracy 0 (an argmax over the
    classes never predicts 255). ``average_accuracy`` is the mean over those occurring
    entries (so a 255 entry pulls it down); ``overall_accuracy`` is ``tp / count`` over all
    samples, 255-labelled ones counting as errors.

    ``per_class_accuracy`` is a list of ``num_classes + 1`` values: classes ``0..C-1``, then
    the 255 entry last; NaN marks an entry absent from the truth (the original has no key
    for it, so it is not averaged).
    """
    cm = np.asarray(cm, dtype=np.float64)
    ignored = int(ignored)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    per_class = np.append(_safe_div(tp, support), 0.0 if ignored else np.nan)
    count = cm.sum() + ignored
    present = np.isfinite(per_class)
    return {
        "overall_accuracy": float(tp.sum() / count) if count else float("nan"),
        "average_accuracy": float(per_class[present].mean()) if present.any() else float("nan"),
        "per_class_accuracy": per_class.tolist(),
    }


def original_multilabel_scores(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict:
    """The original's ``ClasswiseMultilabelMetrics`` (predictions ``sigmoid(logits).round()``).

    Per class: precision = 0 if tp == 0 else tp/(tp+fp); recall = 0 if tp == 0 else
    tp/(tp+fn); F1 = 0 if p + r == 0 else 2pr/(p+r). ``average_*`` = mean over *all*
    classes (undefined ones count as 0); ``overall_*`` = micro, 0 if the total tp is 0,
    overall F1 from the overall precision and recall.
    """
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    has_tp = tp > 0
    precision = np.where(has_tp, tp / np.where(has_tp, tp + fp, 1.0), 0.0)
    recall = np.where(has_tp, tp / np.where(has_tp, tp + fn, 1.0), 0.0)
    pr = precision + recall
    f1 = np.where(pr > 0, 2 * precision * recall / np.where(pr > 0, pr, 1.0), 0.0)
    t, p_, n_ = tp.sum(), fp.sum(), fn.sum()
    o_p = float(t / (t + p_)) if t else 0.0
    o_r = float(t / (t + n_)) if t else 0.0
    o_f1 = 2 * o_p * o_r / (o_p + o_r) if o_p + o_r else 0.0
    return {
        "per_class_precision": precision.tolist(),
        "per_class_recall": recall.tolist(),
        "per_class_f1": f1.tolist(),
        "average_precision": float(precision.mean()),
        "average_recall": float(recall.mean()),
        "average_f1": float(f1.mean()),
        "overall_precision": o_p,
        "overall_recall": o_r,
        "overall_f1": float(o_f1),
    }


def batch_class_accuracy(batch_cm: np.ndarray | torch.Tensor) -> np.ndarray:
    """One batch's per-class pixel accuracy as the original's ``PixelwiseMetrics`` adds it,
    from that batch's confusion matrix: ``correct_c / pixels_c`` for each class c, NaN
    where class c has no pixel in the batch (numpy's 0/0). Targets of 255 match no class."""
    batch_cm = np.asarray(batch_cm, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(batch_cm) / batch_cm.sum(axis=1)


def original_segmentation_scores(acc_sum: np.ndarray, batches: int) -> dict:
    """The original's ``PixelwiseMetrics``: per class, the mean over *batches* of that
    batch's pixel accuracy (``acc_sum`` = per-class sum of :func:`batch_class_accuracy`).

    Faithful, NaN included: a class absent from any one batch makes its accuracy NaN for
    the whole run (the original adds numpy's 0/0 = NaN to its running sum), and
    ``average_accuracy`` (``np.mean`` over all classes) is then NaN too. The original has no
    overall accuracy or IoU for segmentation. Under DDP each rank's batches count
    separately (sums and batch counts are added across ranks).
    """
    acc_sum = np.asarray(acc_sum, dtype=np.float64)
    batches = int(batches)
    per_class = acc_sum / batches if batches else np.full_like(acc_sum, np.nan)
    return {
        "average_accuracy": float(np.mean(per_class)),
        "per_class_accuracy": per_class.tolist(),
        "batches": batches,
    }


@dataclass
class MetricAccumulator:
    """Accumulates predictions batch by batch and reports metrics for the whole set.

    ``task`` is ``"single_label"`` (logits (B,C), targets (B,)), ``"multi_label"``
    (logits (B,C), 0/1 targets (B,C); a class is predicted where sigmoid > threshold) or
    ``"segmentation"`` (logits (B,C,H,W), targets (B,H,W) or (B,1,H,W)).

    ``compute()`` returns the project's whole-set scores plus ``scores["original"]``, the
    original's definitions: single-label ``overall_accuracy``, ``average_accuracy``,
    ``per_class_accuracy`` (C + 1 entries, the 255 entry last); multi-label the same keys
    as the project's (``average_*``, ``overall_*``, ``per_class_*`` of precision, recall,
    F1); segmentation ``average_accuracy``, ``per_class_accuracy``, ``batches`` (each
    ``update`` call is one batch, as in the original's loop).

    All state is in :meth:`state_tensors`, every one summable across ranks.
    """

    task: str
    num_classes: int = 8
    threshold: float = 0.5
    cm: torch.Tensor = field(init=False)
    tp: torch.Tensor = field(init=False)
    fp: torch.Tensor = field(init=False)
    fn: torch.Tensor = field(init=False)
    ignored: torch.Tensor = field(init=False)  # single-label samples labelled 255
    batch_acc_sum: torch.Tensor = field(init=False)  # segmentation: sum of per-batch class accuracy
    batches: torch.Tensor = field(init=False)  # segmentation: update calls

    STATE = ("cm", "tp", "fp", "fn", "ignored", "batch_acc_sum", "batches")

    def __post_init__(self):
        if self.task not in ("single_label", "multi_label", "segmentation"):
            raise ValueError(f"unknown task {self.task!r}: single_label, multi_label or segmentation")
        self.reset()

    def reset(self) -> None:
        n = self.num_classes
        self.cm = torch.zeros(n, n, dtype=torch.long)
        self.tp = torch.zeros(n, dtype=torch.long)
        self.fp = torch.zeros(n, dtype=torch.long)
        self.fn = torch.zeros(n, dtype=torch.long)
        self.ignored = torch.zeros(1, dtype=torch.long)
        self.batch_acc_sum = torch.zeros(n, dtype=torch.float64)
        self.batches = torch.zeros(1, dtype=torch.long)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        logits, target = logits.detach().cpu(), target.detach().cpu()
        if self.task == "multi_label":
            pred = torch.sigmoid(logits.float()) > self.threshold
            truth = target > 0.5
            self.tp += (pred & truth).sum(0)
            self.fp += (pred & ~truth).sum(0)
            self.fn += (~pred & truth).sum(0)
            return
        if self.task == "segmentation" and target.ndim == logits.ndim:
            target = target.squeeze(1)
        batch_cm = confusion_matrix(logits.argmax(1), target, self.num_classes)
        self.cm += batch_cm
        if self.task == "single_label":
            self.ignored += (target == IGNORE_INDEX).sum()
        else:  # the original's per-batch pixel accuracy (one update call = one batch)
            self.batch_acc_sum += torch.from_numpy(batch_class_accuracy(batch_cm.numpy()))
            self.batches += 1

    def merge_(self, other: "MetricAccumulator") -> None:
        """Add another accumulator's counts (e.g. gathered from another rank)."""
        for name in self.STATE:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def state_tensors(self) -> list[torch.Tensor]:
        """Every state tensor (summed in place across ranks before ``compute``)."""
        return [getattr(self, name) for name in self.STATE]

    def compute(self) -> dict:
        if self.task == "multi_label":
            tp, fp, fn = self.tp.numpy(), self.fp.numpy(), self.fn.numpy()
            scores = multilabel_scores(tp, fp, fn)
            scores["original"] = original_multilabel_scores(tp, fp, fn)
            return scores
        scores = scores_from_confusion(self.cm.numpy())
        scores["confusion_matrix"] = self.cm.tolist()
        if self.task == "single_label":  # IoU is a segmentation metric
            scores.pop("per_class_iou")
            scores.pop("miou")
            scores["original"] = original_single_label_scores(self.cm.numpy(), int(self.ignored.sum()))
        else:
            scores["original"] = original_segmentation_scores(self.batch_acc_sum.numpy(),
                                                              int(self.batches.sum()))
        return scores


def headline(scores: dict) -> dict:
    """The scalar metrics of a score dict (what goes to TensorBoard and the progress bar)."""
    return {k: v for k, v in scores.items() if isinstance(v, float)}
