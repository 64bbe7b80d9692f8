"""Learning-rate schedules and optimiser parameter groups.

``WarmupCosine`` is stepped once per *iteration* (linear warm-up from ``warmup_lr`` to
each group's base LR, then cosine to ``min_lr``) — what the original Swin pre-training
intended. ``constant=True`` reproduces what it actually did: it stepped a per-iteration
timm schedule with the epoch index, so the LR stayed at ``warmup_lr`` for the whole run.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


class WarmupCosine:
    """Per-iteration warm-up + cosine schedule (state-dict friendly, for resuming)."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                 warmup_lr: float, min_lr: float, constant: bool = False):
        self.optimizer = optimizer
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = max(int(warmup_steps), 0)
        self.warmup_lr = warmup_lr
        self.min_lr = min_lr
        self.constant = constant
        self.base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
        for g, lr in zip(optimizer.param_groups, self.base_lrs):
            g["initial_lr"] = lr
        self.step_count = 0
        self._apply()

    def lr_at(self, step: int, base_lr: float) -> float:
        if self.constant:
            return self.warmup_lr
        if step < self.warmup_steps:
            return self.warmup_lr + (base_lr - self.warmup_lr) * step / self.warmup_steps
        t = min(step - self.warmup_steps, self.total_steps - self.warmup_steps)
        span = max(self.total_steps - self.warmup_steps, 1)
        return self.min_lr + 0.5 * (base_lr - self.min_lr) * (1 + math.cos(math.pi * t / span))

    def _apply(self) -> None:
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = self.lr_at(self.step_count, base)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = state["step_count"]
        self._apply()


def no_decay_param_groups(model: nn.Module, weight_decay: float,
                          skip_keywords=("relative_position_bias_table", "absolute_pos_embed")) -> list[dict]:
    """AdamW groups as the Swin code built them: no decay on norms, biases (1-d tensors)
    and relative-position tables."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(".bias") or any(k in name for k in skip_keywords):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]
