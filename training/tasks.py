"""What a training run optimises: a *task* turns model outputs and a batch into a loss.

``ContrastiveTask`` (pre-training: cross-modal InfoNCE) and ``SupervisedTask`` (the downstream
targets: single-label, multi-label, segmentation), each with the metric accumulator of its kind.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from training.losses import info_nce_loss
from training.metrics import IGNORE_INDEX, MetricAccumulator


class ContrastiveTask:
    """Cross-modal InfoNCE between the model's ``{"s1", "s2"}`` embeddings."""

    kind = "contrastive"

    def __init__(self, temperature: float):
        self.temperature = temperature

    def __call__(self, outputs: dict, batch: dict) -> tuple[torch.Tensor, dict]:
        loss, acc = info_nce_loss(outputs["s1"], outputs["s2"], self.temperature)
        return loss, acc

    def new_accumulator(self):
        return None


TARGET_KINDS = {
    "dfc_label": "single_label", "lc_label": "single_label",
    "dfc_multilabel_one_hot": "multi_label", "lc_multilabel_one_hot": "multi_label",
    "dfc": "segmentation", "lc": "segmentation",
}


class SupervisedTask:
    """Loss and metrics for a downstream target (a key of the dataset's samples).

    Single label and segmentation: cross-entropy with ``ignore_index=255``; multi-label:
    BCE on the logits (the original applied a sigmoid then BCE; same maths, stabler).
    """

    def __init__(self, target: str, num_classes: int = 8):
        if target not in TARGET_KINDS:
            raise ValueError(f"unknown target {target!r}; choose from {sorted(TARGET_KINDS)}")
        self.target = target
        self.kind = TARGET_KINDS[target]
        self.num_classes = num_classes

    def targets(self, batch: dict) -> torch.Tensor:
        y = batch[self.target]
        if self.kind == "multi_label":
            return y.float()
        if self.kind == "segmentation" and y.ndim == 4:
            y = y[:, 0]
        return y.long()

    def __call__(self, outputs: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict]:
        y = self.targets(batch)
        if self.kind == "multi_label":
            return F.binary_cross_entropy_with_logits(outputs.float(), y), {}
        if (y == IGNORE_INDEX).all():  # a batch with nothing to learn: zero loss, keeps graph
            return outputs.float().sum() * 0.0, {}
        return F.cross_entropy(outputs.float(), y, ignore_index=IGNORE_INDEX), {}

    def new_accumulator(self) -> MetricAccumulator:
        return MetricAccumulator(self.kind, self.num_classes)
