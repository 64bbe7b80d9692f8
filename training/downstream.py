"""Which parameters a downstream run trains, and at which learning rate.

The original's optimiser construction (its ``train_evaluation.py``), per model family:

=================================  ==============================  =============================
model                              ``--no-finetuning``             ``--finetuning``
=================================  ==============================  =============================
SSL classifiers                    head only, at LEARNING_RATE     backbones at LEARNING_RATE,
(DoubleResNetSimCLRDownstream,                                     head at CLASSIFIER_LR
DoubleSwinTransformerDownstream)
baselines (resnet18/50,            everything at LEARNING_RATE     same (the flag is ignored)
DualBaseline, SwinBaseline,
DualSwinBaseline)
DoubleSwinTransformerSegmentation  encoders frozen, decoders and   encoders at LEARNING_RATE,
(ours)                             head at LEARNING_RATE           the rest at CLASSIFIER_LR
DoubleSwinTransformerSegmentation  everything at LEARNING_RATE     everything at CLASSIFIER_LR
(``--reproduce_original``)         (nothing was frozen)
=================================  ==============================  =============================

Frozen backbones stay in eval mode here (fixed BatchNorm statistics and no drop path); the
original left them in train mode — ``--reproduce_original`` restores that.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn


def family(model_name: str) -> str:
    """``ssl``, ``segmentation`` or ``baseline`` (from the model registry's metadata)."""
    from models import list_models, model_info

    info = model_info(model_name)
    if info.task == "pretraining":
        downstream = [n for n in list_models() if model_info(n).task != "pretraining"]
        raise ValueError(f"{model_name!r} is not a downstream model; choose one of {', '.join(downstream)}")
    if info.baseline:
        return "baseline"
    return "segmentation" if info.task == "segmentation" else "ssl"


@dataclass
class TrainingPlan:
    """What trains: ``freeze_backbone`` and the LR of the backbone and of the rest."""

    freeze_backbone: bool
    backbone_lr: float | None   # None: the backbone is frozen
    head_lr: float
    description: str
    single_group: bool = False  # one group "all" (the original passed model.parameters())


def plan_training(model_name: str, *, finetuning: bool, learning_rate: float,
                  classifier_lr: float, reproduce_original: bool = False) -> TrainingPlan:
    """The table above as data."""
    kind = family(model_name)
    if kind == "baseline":
        return TrainingPlan(False, learning_rate, learning_rate,
                            f"baseline: every parameter at {learning_rate:g} (--finetuning ignored)",
                            single_group=True)
    if kind == "segmentation" and reproduce_original:
        lr = classifier_lr if finetuning else learning_rate
        return TrainingPlan(False, lr, lr, f"segmentation (original): every parameter at {lr:g}",
                            single_group=True)
    if finetuning:
        return TrainingPlan(False, learning_rate, classifier_lr,
                            f"fine-tuning: backbones at {learning_rate:g}, "
                            f"{'decoders and head' if kind == 'segmentation' else 'head'} "
                            f"at {classifier_lr:g}")
    rest = "decoders and head" if kind == "segmentation" else "head"
    return TrainingPlan(True, None, learning_rate,
                        f"frozen backbones: {rest} only, at {learning_rate:g}")


def apply_plan(model: nn.Module, plan: TrainingPlan, *, frozen_in_train_mode: bool = False
               ) -> list[dict]:
    """Freeze as planned and return the optimiser's parameter groups (named, with LRs)."""
    model.freeze_backbone(plan.freeze_backbone)
    if plan.freeze_backbone and frozen_in_train_mode:
        model.backbone_frozen = False   # the original: BatchNorm / drop path stay active
    if plan.single_group:
        return [{"name": "all", "params": [p for p in model.parameters() if p.requires_grad],
                 "lr": plan.head_lr}]
    return model.parameter_groups(backbone_lr=plan.backbone_lr or 0.0, head_lr=plan.head_lr)
