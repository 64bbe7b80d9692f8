"""Linear evaluation on cached features: run the frozen backbone once, train the head many times.

``train_evaluation.py --no-finetuning --cache_features`` computes the frozen backbone's pooled
features once (:func:`cache_features`) — for ``--fixed_crops K`` fixed crops per training patch
(K >= 1; 0: the centre crop) and for the evaluation crops (centre crops) — and then the one
engine (``engine.fit``) trains the linear head (:class:`HeadOnFeatures`) on those features
(:class:`CachedFeatures`) with the run's own optimiser (Adam, the same parameter group and LR),
LR schedule, epochs, batch size, shuffle order (``DistributedSampler(seed)``) and metrics.
With the same fixed crops the result equals an uncached run (``--fixed_crops K`` without
``--cache_features``) up to float rounding.

An approximation, not the ``--reproduce_original`` path: the original drew a new random crop of
every training patch every epoch (and left the frozen backbone in train mode); cached runs see K
fixed crops per patch for all epochs.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from data import robust
from data.errors import DatasetError
from training import distributed as du
from training import engine
from training.cli import add_bool_flag, progress
from utils import hardware

HELP = ("linear evaluation on cached features: the frozen backbone runs once over fixed crops "
        "(--fixed_crops K per training patch; evaluation on centre crops), then the head trains "
        "on the cached features with the same optimiser, LR schedule, epochs and metrics. An "
        "approximation: the original re-crops every training patch randomly every epoch, so a "
        "cached run is not the --reproduce_original path")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cache_features`` and ``--fixed_crops`` (in their own group)."""
    g = parser.add_argument_group("cached-feature linear evaluation")
    add_bool_flag(g, "--cache_features", default=False, help=HELP)
    g.add_argument("--fixed_crops", type=int, default=None, metavar="K",
                   help="K fixed random crops per training patch, the same every epoch (K >= 1), "
                        "or 0 for the centre crop; default: 0 with --cache_features, else off "
                        "(a new random crop every epoch, as the original)")


class FixedCrops(Dataset):
    """``K`` fixed crops of every item of a random-crop ``DFCDataset``: item ``k * n + i`` is
    crop ``k`` of item ``i``, the crop the dataset draws after ``set_epoch(k)`` (a function of
    ``(seed, k, i)`` alone, so every epoch, process and worker sees the same crops).

    No ``set_epoch`` of its own: the engine cannot re-crop it.
    """

    def __init__(self, dataset, crops: int):
        if crops < 1:
            raise ValueError(f"crops must be >= 1, got {crops}")
        if not getattr(dataset, "random_crop", False):
            raise ValueError("FixedCrops needs a dataset built with random_crop=True")
        self.dataset, self.crops = dataset, int(crops)
        self.n = len(dataset)

    def __len__(self) -> int:
        return self.n * self.crops

    def __getitem__(self, index: int) -> dict:
        k, i = divmod(int(index), self.n)
        self.dataset.set_epoch(k)
        sample = self.dataset[i]
        sample["crop"] = k
        return sample


def prepare_train_set(train_set, args):
    """The training set the run uses: as built, K fixed crops, or centre crops (``--fixed_crops``)."""
    crops = getattr(args, "fixed_crops", None)
    if crops is None and getattr(args, "cache_features", False):
        crops = 0
    if crops is None:
        return train_set
    if crops < 0:
        raise SystemExit(f"error: --fixed_crops must be >= 0, got {crops}")
    if crops == 0:
        from data import DFCDataset
        return DFCDataset(train_set.base_dir, mode=train_set.mode,
                          clip_sample_values=train_set.clip_sample_values,
                          used_data_fraction=train_set.used_data_fraction,
                          image_px_size=train_set.image_px_size, cover_all_parts=False,
                          random_crop=False, balanced_classes=train_set.balanced_classes,
                          seed=train_set.seed)
    return FixedCrops(train_set, crops)


def check_supported(args) -> None:
    """Cached features need a frozen SSL classifier (a backbone whose output does not change)."""
    if not getattr(args, "cache_features", False):
        return
    problems = []
    if args.finetuning:
        problems.append("--finetuning trains the backbone")
    from models import list_models, model_info

    if not model_info(args.model).cacheable:
        problems.append(f"{args.model} is not a frozen-backbone classifier ({', '.join(list_models(cacheable=True))})")
    if args.reproduce_original:
        problems.append("--reproduce_original re-crops randomly every epoch and keeps the frozen "
                        "backbone in train mode, which cached features cannot reproduce")
    if du.is_distributed():
        problems.append("cached features run in one process (no torchrun)")
    if problems:
        raise SystemExit("error: --cache_features: " + "; ".join(problems))


# ---------------------------------------------------------------------------- features
@torch.no_grad()
def extract_features(model, loader, target: str, device, *, amp: str = "none",
                     channels_last: bool = False, desc: str = "features",
                     counts: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, targets)`` of every item of ``loader`` in its order: the fused pooled
    features the head sees (``forward_head(..., pre_logits=True)``), backbone in eval mode.

    Unreadable items are left out (recorded in the run's ``bad_samples.txt``); ``counts``
    (a dict, optional) receives ``skipped_samples`` and ``evaluated_samples``."""
    model.eval()
    feats, ys = [], []
    skipped = 0
    for batch in progress(loader, desc=desc):
        skipped += engine.take_skipped(batch, loader)
        if robust.is_empty(batch):
            continue
        y = batch[target]
        batch = engine.to_device(batch, device, channels_last)
        with hardware.autocast(device, amp):
            f = model.forward_head(model.forward_features(batch), pre_logits=True)
        feats.append(f.float())
        ys.append(y.to(device))
    if counts is not None:
        counts.update(skipped_samples=skipped, evaluated_samples=sum(len(y) for y in ys))
    if not feats:
        raise DatasetError(f"{desc}: every sample was unreadable (see bad_samples.txt)")
    return torch.cat(feats), torch.cat(ys)


class CachedFeatures(Dataset):
    """Features computed once (:func:`extract_features`) as a dataset of ``{"features", target}``
    items, so that the one engine trains and evaluates the head on them. ``left_out``: samples
    that could not be read when the features were computed (reported as skipped every pass);
    ``log``: the split's :class:`data.robust.BadSampleLog`, for the distinct total."""

    def __init__(self, feats: torch.Tensor, ys: torch.Tensor, target: str, left_out: int = 0, log=None):
        self.feats, self.ys, self.target = feats, ys, target
        self.left_out, self.log = int(left_out), log

    def __len__(self) -> int:
        return len(self.ys)

    def __getitem__(self, i: int) -> dict:
        return {"features": self.feats[i], self.target: self.ys[i]}


class HeadOnFeatures(nn.Module):
    """What the engine trains on cached features: the classifier's linear head (``fc``)."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head(batch["features"])


def cache_features(model, train_loader, val_loader, task, device, *, amp: str = "none",
                   channels_last: bool = False, seed: int = 0, logger=None):
    """The frozen backbone run once: ``(train loader, val loader or None)`` over the cached
    features, in the engine's training order (``DistributedSampler(seed)``, ``set_epoch``)."""
    net = engine.unwrap(model)
    t0 = time.perf_counter()
    in_order = engine.build_loader(train_loader.dataset, train_loader.batch_size, shuffle=False,
                                   num_workers=train_loader.num_workers, seed=seed, evaluation=True)
    train_counts: dict = {}
    val_counts: dict = {}
    train_f, train_y = extract_features(net, in_order, task.target, device, amp=amp, counts=train_counts,
                                        channels_last=channels_last, desc="train features")
    log = getattr(train_loader.dataset, "log", None)
    shuffle = isinstance(train_loader.sampler, DistributedSampler) and train_loader.sampler.shuffle
    train = engine.build_loader(CachedFeatures(train_f, train_y, task.target, train_counts["skipped_samples"], log),
                                train_loader.batch_size, shuffle=shuffle, seed=seed)
    val = None
    if val_loader is not None:
        val_f, val_y = extract_features(net, val_loader, task.target, device, amp=amp, counts=val_counts,
                                        channels_last=channels_last, desc="eval features")
        val = engine.build_loader(CachedFeatures(val_f, val_y, task.target, val_counts["skipped_samples"]),
                                  val_loader.batch_size, shuffle=False, evaluation=True)
    if du.is_main_process():
        line = (f"cached features: {tuple(train_f.shape)} training, "
                f"{None if val is None else tuple(val.dataset.feats.shape)} evaluation, "
                f"{time.perf_counter() - t0:.1f} s")
        if train_counts.get("skipped_samples") or val_counts.get("skipped_samples"):
            line += (f" (unreadable samples left out: {train_counts['skipped_samples']} training, "
                     f"{val_counts.get('skipped_samples', 0)} evaluation)")
        tqdm.write(line)
        if logger:
            logger.text(line)
    return train, val
