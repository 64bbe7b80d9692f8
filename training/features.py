"""Linear evaluation on cached features: run the frozen backbone once, train the head many times.

``train_evaluation.py --no-finetuning --cache_features`` computes the frozen backbone's pooled
features once — for ``--fixed_crops K`` fixed crops per training patch (K >= 1; 0: the centre
crop) and for the evaluation crops (centre crops) — and then trains the linear head on those
features with the run's own optimiser (Adam, the same parameter group and LR), LR schedule
(MultiStepLR, stepped per epoch), epochs, batch size, shuffle order (the engine's
``DistributedSampler(seed)``, ``set_epoch(e)``) and metrics (``MetricAccumulator``, with the
original's definitions under ``scores["original"]``). With the same fixed crops the result equals
an uncached run (``--fixed_crops K`` without ``--cache_features``) up to float rounding.

An approximation, not the ``--reproduce_original`` path: the original drew a new random crop of
every training patch every epoch (and left the frozen backbone in train mode); cached runs see K
fixed crops per patch for all epochs.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from data import robust
from data.errors import DatasetError
from training import distributed as du
from training import engine
from training.cli import add_bool_flag
from training.metrics import headline

CACHED_MODELS = ("DoubleResNetSimCLRDownstream", "DoubleSwinTransformerDownstream")

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
    if args.model not in CACHED_MODELS:
        problems.append(f"{args.model} is not a frozen-backbone classifier ({', '.join(CACHED_MODELS)})")
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
    for batch in tqdm(loader, desc=desc, disable=not du.is_main_process(), dynamic_ncols=True,
                      leave=False):
        skipped += engine.take_skipped(batch, loader)
        if robust.is_empty(batch):
            continue
        y = batch[target]
        batch = engine.to_device(batch, device, channels_last)
        with engine.autocast(device, amp):
            f = model.forward_head(model.forward_features(batch), pre_logits=True)
        feats.append(f.float())
        ys.append(y.to(device))
    if counts is not None:
        counts.update(skipped_samples=skipped, evaluated_samples=sum(len(y) for y in ys))
    if not feats:
        raise DatasetError(f"{desc}: every sample was unreadable (see bad_samples.txt)")
    return torch.cat(feats), torch.cat(ys)


class _Indices(Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        return i


def _head_batches(feats, ys, target, batch_size, sampler=None):
    order = list(sampler) if sampler is not None else range(len(ys))
    order = torch.as_tensor(list(order), dtype=torch.long, device=feats.device)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        yield feats[idx], {target: ys[idx]}


@torch.no_grad()
def evaluate_cached(head, feats, ys, task, device, batch_size: int, amp: str = "none") -> dict:
    """``engine.evaluate`` on cached features: mean loss plus the task's metrics."""
    head.eval()
    meter = engine.Averager()
    acc = task.new_accumulator()
    for f, batch in _head_batches(feats, ys, task.target, batch_size):
        with engine.autocast(device, amp):
            out = head(f)
        loss, stats = task(out, batch)
        meter.add({"loss": loss, **stats}, f.shape[0])
        acc.update(out.float(), task.targets(batch))
    result = meter.means()
    result.update(acc.compute())
    return result


def fit_cached(model, train_loader, task, optimizer, device, *, epochs: int, output_dir,
               val_loader=None, make_checkpoint: Callable[[int, dict], dict],
               last_name: str = engine.LAST_CHECKPOINT, start_epoch: int = 0, global_step: int = 0,
               val_every: int = 1, save_every: int = 1, amp: str = "none",
               logger=None, epoch_scheduler=None,
               channels_last: bool = False, seed: int = 0, timings: dict | None = None) -> list[dict]:
    """``engine.fit`` for a frozen backbone with a linear ``fc`` head, on cached features.

    Same records, log lines, checkpoints and return value as ``engine.fit``. ``timings``
    (a dict, optional) receives ``extract_s`` and ``head_s`` (seconds).
    """
    net = engine.unwrap(model)
    head = net.fc
    t0 = time.perf_counter()
    in_order = engine.build_loader(train_loader.dataset, train_loader.batch_size, shuffle=False,
                                   num_workers=train_loader.num_workers, seed=seed, evaluation=True)
    train_counts: dict = {}
    val_counts: dict = {}
    train_f, train_y = extract_features(net, in_order, task.target, device, amp=amp, counts=train_counts,
                                        channels_last=channels_last, desc="train features")
    val_f = val_y = None
    if val_loader is not None:
        val_f, val_y = extract_features(net, val_loader, task.target, device, amp=amp, counts=val_counts,
                                        channels_last=channels_last, desc="eval features")
    extract_s = time.perf_counter() - t0
    if du.is_main_process():
        line = (f"cached features: {tuple(train_f.shape)} training, "
                f"{None if val_f is None else tuple(val_f.shape)} evaluation, {extract_s:.1f} s")
        if train_counts.get("skipped_samples") or val_counts.get("skipped_samples"):
            line += (f" (unreadable samples left out: {train_counts['skipped_samples']} training, "
                     f"{val_counts.get('skipped_samples', 0)} evaluation)")
        tqdm.write(line)
        if logger:
            logger.text(line)
    # the engine's training order: DistributedSampler(seed) over the same number of items
    sampler = DistributedSampler(_Indices(len(train_y)), num_replicas=1, rank=0,
                                 shuffle=isinstance(train_loader.sampler, DistributedSampler)
                                 and train_loader.sampler.shuffle, seed=seed, drop_last=False)
    batch_size = train_loader.batch_size
    history: list[dict] = []
    val_stats: dict = {}
    output_dir = Path(output_dir)
    t1 = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        sampler.set_epoch(epoch)
        net.train()
        meter = engine.Averager()
        start = time.perf_counter()
        steps = 0
        for f, batch in _head_batches(train_f, train_y, task.target, batch_size, sampler):
            with engine.autocast(device, amp):
                out = head(f)
            loss, stats = task(out, batch)
            if not torch.isfinite(loss):
                raise engine.NonFiniteLossError(f"non-finite loss ({loss.item()}) at epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            meter.add({"loss": loss.detach(), **stats}, f.shape[0])
            steps += 1
        global_step += steps
        seconds = time.perf_counter() - start
        train_stats = meter.means()
        train_stats["samples_per_s"] = meter.count / max(seconds, 1e-9)
        train_stats["skipped_samples"] = train_counts["skipped_samples"]   # left out of the cache
        if engine.bad_sample_total(train_loader) is not None:
            train_stats["bad_samples_total"] = engine.bad_sample_total(train_loader)
        lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(optimizer.param_groups)}
        if epoch_scheduler is not None:
            epoch_scheduler.step()
        record = {"epoch": epoch + 1, "train": train_stats, "lr": lrs}
        if logger:
            logger.scalars("train", train_stats, epoch + 1)
            logger.scalars("lr", lrs, epoch + 1)
        last = epoch + 1 == epochs
        if val_f is not None and (epoch % val_every == 0 or last):
            val_stats = evaluate_cached(head, val_f, val_y, task, device, batch_size, amp)
            val_stats.update(val_counts)
            record["val"] = val_stats
            if logger:
                logger.scalars("val", {**headline(val_stats), **engine.skip_counts(val_stats)}, epoch + 1)
        if du.is_main_process():
            line = f"epoch {epoch + 1}/{epochs} (cached)  {engine.describe(train_stats)}"
            if "val" in record:
                line += f"  | val {engine.describe(val_stats)}"
            line += engine.skipped_note(train_stats, val_stats if "val" in record else None, train_loader)
            engine.finish_epoch(record, line, logger=logger, last=last, save_every=save_every,
                                keep_every=0, make_checkpoint=make_checkpoint, val_stats=val_stats,
                                global_step=global_step, output_dir=output_dir, last_name=last_name)
        history.append(record)
    if timings is not None:
        timings.update(extract_s=extract_s, head_s=time.perf_counter() - t1)
    return history
