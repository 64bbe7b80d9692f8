"""Learning-rate schedules and optimiser parameter groups.

* :class:`IterationSchedule` — the dual Swin-T pre-training schedule: timm's own
  ``CosineLRScheduler(t_initial=EPOCHS*steps, lr_min=MIN_LR, warmup_lr_init=WARMUP_LR,
  warmup_t=WARMUP_EPOCHS*steps, cycle_limit=1, t_in_epochs=False)`` stepped once per
  *iteration* with ``step_update`` — the schedule the original built. ``constant=True``
  reproduces what it applied: it stepped that per-iteration schedule with the epoch index,
  so the LR stayed at ``WARMUP_LR`` (5e-7) for the whole run.
* :class:`EpochSchedule` — the ResNet pre-training schedule: any torch epoch scheduler
  stepped at the end of each epoch from ``first_epoch`` on (the original:
  ``CosineAnnealingLR(T_max=len(train_loader))`` stepped after epoch 10, so the LR decays
  only slightly over 201 epochs).
Both have ``step()``, ``state_dict()`` and ``load_state_dict()`` for an exact resume.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class IterationSchedule:
    """timm's warm-up + cosine ``CosineLRScheduler``, stepped per iteration."""

    def __init__(self, optimizer: torch.optim.Optimizer, epochs: int, warmup_epochs: float,
                 steps_per_epoch: int, warmup_lr: float, min_lr: float, constant: bool = False):
        from timm.scheduler.cosine_lr import CosineLRScheduler

        self.optimizer = optimizer
        self.constant = constant
        self.warmup_lr = warmup_lr
        self.num_updates = 0
        self.scheduler = CosineLRScheduler(
            optimizer, t_initial=int(epochs * steps_per_epoch), lr_min=min_lr,
            warmup_lr_init=warmup_lr, warmup_t=int(warmup_epochs * steps_per_epoch),
            cycle_limit=1, t_in_epochs=False)
        self._apply()

    def _apply(self) -> None:
        if self.constant:
            for g in self.optimizer.param_groups:
                g["lr"] = self.warmup_lr
        else:
            self.scheduler.step_update(self.num_updates)

    def step(self) -> None:
        """After each optimiser step."""
        self.num_updates += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"num_updates": self.num_updates, "constant": self.constant}

    def load_state_dict(self, state: dict) -> None:
        self.num_updates = int(state["num_updates"])
        self._apply()


class EpochSchedule:
    """A torch epoch scheduler stepped at the end of each epoch with index >= ``first_epoch``."""

    def __init__(self, scheduler, first_epoch: int = 0):
        self.scheduler = scheduler
        self.optimizer = scheduler.optimizer
        self.first_epoch = int(first_epoch)
        self.epochs_done = 0

    def step(self) -> None:
        """At the end of every epoch (the engine calls it); steps the inner scheduler when due."""
        if self.epochs_done >= self.first_epoch:
            self.scheduler.step()
        self.epochs_done += 1

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"epochs_done": self.epochs_done, "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.epochs_done = int(state["epochs_done"])
        self.scheduler.load_state_dict(state["scheduler"])


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
