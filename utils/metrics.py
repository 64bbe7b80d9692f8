"""Evaluation metrics for single-label, multi-label and segmentation targets.

Every metric here is computed over the *whole* evaluation set from accumulated
counts (a confusion matrix, or per-class TP/FP/FN), never averaged per batch as the
original did. Targets equal to ``IGNORE_INDEX`` (255) are left out everywhere.
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


@dataclass
class MetricAccumulator:
    """Accumulates predictions batch by batch and reports metrics for the whole set.

    ``task`` is ``"single_label"`` (logits (B,C), targets (B,)), ``"multi_label"``
    (logits (B,C), 0/1 targets (B,C); a class is predicted where sigmoid > threshold) or
    ``"segmentation"`` (logits (B,C,H,W), targets (B,H,W) or (B,1,H,W)).
    """

    task: str
    num_classes: int = 8
    threshold: float = 0.5
    cm: torch.Tensor = field(init=False)
    tp: torch.Tensor = field(init=False)
    fp: torch.Tensor = field(init=False)
    fn: torch.Tensor = field(init=False)

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
        self.cm += confusion_matrix(logits.argmax(1), target, self.num_classes)

    def merge_(self, other: "MetricAccumulator") -> None:
        """Add another accumulator's counts (e.g. gathered from another rank)."""
        for name in ("cm", "tp", "fp", "fn"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def state_tensors(self) -> list[torch.Tensor]:
        return [self.cm, self.tp, self.fp, self.fn]

    def compute(self) -> dict:
        if self.task == "multi_label":
            return multilabel_scores(self.tp.numpy(), self.fp.numpy(), self.fn.numpy())
        scores = scores_from_confusion(self.cm.numpy())
        scores["confusion_matrix"] = self.cm.tolist()
        if self.task == "single_label":  # IoU is a segmentation metric
            scores.pop("per_class_iou")
            scores.pop("miou")
        return scores


def headline(scores: dict) -> dict:
    """The scalar metrics of a score dict (what goes to TensorBoard and the progress bar)."""
    return {k: v for k, v in scores.items() if isinstance(v, float)}
