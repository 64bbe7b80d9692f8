"""The one training / evaluation engine behind all three scripts.

The epoch loop, evaluation, AMP, progress bars, atomic checkpoints, resuming, seeding and
samplers live here once; a *task* (``training.tasks``) says what is optimised and a
``training.runlog.Logger`` what is recorded. Scripts stay ``parse → build → run``.
"""
from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from data import robust
from models.checkpoint import save_checkpoint
from training import distributed as du
from training.metrics import headline
from training.runlog import Logger
from utils import hardware
from utils.cli import progress

#: the checkpoint a run rewrites as it goes (``--resume auto`` continues from it)
LAST_CHECKPOINT = "checkpoint_last.pth"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf: the run stops, the last good checkpoint stays on disk."""

    user_facing = True   # utils.cli prints the message as it is


# ------------------------------------------------------------------ reproducibility
def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (each rank offsets the seed by its rank)."""
    seed = seed + du.get_rank()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Python, numpy and torch RNG states in plain types and tensors (``weights_only``-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class ShardSampler(torch.utils.data.Sampler):
    """Evaluation sampler: rank r takes items r, r + W, r + 2W, ... — no padding, no repeats.

    ``DistributedSampler`` pads the set to a multiple of the world size, so some samples would
    be counted twice in the summed metrics; here every sample is evaluated exactly once.
    """

    def __init__(self, dataset: Dataset, num_replicas: int | None = None, rank: int | None = None):
        self.n = len(dataset)
        self.num_replicas = du.get_world_size() if num_replicas is None else num_replicas
        self.rank = du.get_rank() if rank is None else rank

    def __iter__(self):
        return iter(range(self.rank, self.n, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.num_replicas))

    def set_epoch(self, epoch: int) -> None:  # same shards every epoch
        pass


def build_loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int = 0,
                 seed: int = 0, drop_last: bool = False, pin_memory: bool = False,
                 evaluation: bool = False) -> DataLoader:
    """A DataLoader whose order depends only on ``(seed, epoch)``: call ``set_epoch``.

    Training loaders use a :class:`DistributedSampler` (one replica outside torchrun), so a
    resumed run sees exactly the batches the interrupted one would have seen; evaluation
    loaders (``evaluation=True``) a :class:`ShardSampler`, which counts every sample once.
    A :class:`data.robust.RobustDataset` replaces an unreadable training sample by another and
    drops an unreadable evaluation sample; its records reach the loop in ``batch["_skipped"]``.
    """
    collate_fn = None
    if isinstance(dataset, robust.RobustDataset):
        dataset = dataset.view(substitute=not evaluation)
        collate_fn = robust.collate
    if evaluation:
        sampler = ShardSampler(dataset)
    else:
        sampler = DistributedSampler(dataset, num_replicas=du.get_world_size(),
                                     rank=du.get_rank(), shuffle=shuffle, seed=seed,
                                     drop_last=False)
    # Workers hold a copy of the dataset: a dataset with per-epoch state (random crops keyed
    # by set_epoch) needs fresh workers each epoch to see it; others keep theirs.
    persistent = num_workers > 0 and not getattr(dataset, "epoch_dependent", hasattr(dataset, "set_epoch"))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      drop_last=drop_last, pin_memory=pin_memory, worker_init_fn=_seed_worker,
                      persistent_workers=persistent, collate_fn=collate_fn,
                      prefetch_factor=4 if num_workers > 0 else None)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Make the sampler's shuffle (and the dataset's random crops, if any) a function of epoch."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)


# ---------------------------------------------------------------------- batches
def to_device(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    out = {}
    for k, v in batch.items():
        if torch.is_tensor(v):
            v = v.to(device, non_blocking=True)
            if channels_last and v.ndim == 4 and v.is_floating_point():
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


# ------------------------------------------------------------------------ averages
class Averager:
    """Running means of 0-d tensors; synchronises with the host only when read."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, values: dict, n: int = 1) -> None:
        for k, v in values.items():
            v = v.detach().float() if torch.is_tensor(v) else torch.tensor(float(v))
            self.sums[k] = self.sums.get(k, 0.0) + v * n
        self.count += n

    def means(self) -> dict:
        return {k: float(v) / max(self.count, 1) for k, v in self.sums.items()}


# -------------------------------------------------------------------- checkpoints
def resume_state(scheduler=None, scaler=None, config: dict | None = None) -> dict:
    """What an exact resume needs beside the weights and the optimiser (checkpoint extras)."""
    return {"scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_state(), "config": config}


def resolve_resume(resume: str | None, output_dir: str | Path, last_name: str) -> Path | None:
    """``--resume auto`` → ``output_dir/last_name`` if it exists; a path must exist."""
    if not resume:
        return None
    if resume == "auto":
        path = Path(output_dir) / last_name
        return path if path.exists() else None
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume {resume}: no such checkpoint file")
    return path


def restart_from_checkpoint(path: str | Path | None, run_variables: dict | None = None, **objects) -> dict | None:
    """Continue a run from ``path`` (DINO's ``restart_from_checkpoint``): ``None`` does nothing.

    Each ``objects[key]`` is restored from ``checkpoint[key]``: a model through
    :func:`models.checkpoint.load_checkpoint` (``state_dict`` = the published pre-training
    layout, ``model_weights`` = a downstream model, strict), anything else (optimiser, scheduler,
    scaler) with ``load_state_dict``; a missing entry leaves the object as it is, with a note. The
    RNG states are restored when the checkpoint has them, and every key of ``run_variables``
    (e.g. ``{"epoch": 0, "global_step": 0}``) takes the checkpoint's value. Returns the checkpoint.
    """
    from models.checkpoint import load_checkpoint, read_checkpoint

    if path is None:
        return None
    ckpt, _ = read_checkpoint(path)
    for key, obj in objects.items():
        if obj is None:
            continue
        if ckpt.get(key) is None:
            if du.is_main_process():
                print(f"note: {path} holds no {key!r}: it starts afresh (a lean checkpoint, "
                      "--no-save_optimizer, keeps no optimiser state)")
            continue
        if isinstance(obj, nn.Module):
            load_checkpoint(obj, {key: ckpt[key]}, source=str(path))
        else:
            obj.load_state_dict(ckpt[key])
    if ckpt.get("rng"):
        set_rng_state(ckpt["rng"])
    for key in run_variables or {}:
        if key in ckpt:
            run_variables[key] = int(ckpt[key])
    if du.is_main_process():
        print(f"resumed from {path} at epoch {int(ckpt.get('epoch', ckpt.get('epochs', 0)) or 0)}")
    return ckpt


def make_run_folder(output_dir: str | Path) -> Path:
    """Create ``output_dir``; a folder that cannot be made is one line naming ``--output_dir``."""
    folder = Path(output_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from training.cli import UsageError

        raise UsageError(f"--output_dir {folder}: cannot create the run folder ({exc.strerror or exc}"
                         f"{': ' + str(exc.filename) if exc.filename else ''})") from None
    return folder


def save_run_config(output_dir: str | Path, config: dict, name: str = "config.json") -> None:
    if du.is_main_process():
        make_run_folder(output_dir)
        with open(Path(output_dir) / name, "w") as fp:
            json.dump(config, fp, indent=2, default=str)


# -------------------------------------------------------------------- skipped samples
def take_skipped(batch, loader, epoch: int | None = None) -> int:
    """Pop ``batch["_skipped"]`` (unreadable samples the loader skipped), hand the records to
    the dataset's :class:`data.robust.BadSampleLog` (warning, ``bad_samples.txt``, budget) and
    return how many there were."""
    records = batch.pop(robust.SKIPPED_KEY, None) if isinstance(batch, dict) else None
    if not records:
        return 0
    log = getattr(loader.dataset, "log", None)
    if log is not None:
        log.add(records, epoch=epoch)
    return len(records)


def left_out(loader) -> int:
    """Items the loader's dataset could not provide at all (e.g. cached features extracted without
    the unreadable samples): every pass over it is short of them, so they count as skipped."""
    return int(getattr(getattr(loader, "dataset", None), "left_out", 0) or 0)


def bad_sample_total(loader) -> int | None:
    """Distinct unreadable samples recorded for ``loader``'s split so far (None: not tracked)."""
    log = getattr(getattr(loader, "dataset", None), "log", None)
    return None if log is None else log.bad


def _sum_over_ranks(value: int) -> int:
    if not du.is_distributed():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    du.all_reduce_sum([t])
    return int(t.item())


# ----------------------------------------------------------------------- the loop
@dataclass
class Optimization:
    """What steps the weights: the optimiser, an fp16 loss scaler, and the LR schedules (a per-step
    one is stepped after every optimiser step, a per-epoch one after every epoch)."""

    optimizer: torch.optim.Optimizer
    scaler: object | None = None
    step_scheduler: object | None = None
    epoch_scheduler: object | None = None


@dataclass
class FitOptions:
    """How the loop runs (the scripts fill it from their flags)."""

    epochs: int
    output_dir: str | Path | None = None
    start_epoch: int = 0
    global_step: int = 0
    val_every: int = 1              # validate after epoch indices 0, N, 2N, ... and the last
    save_every: int = 1             # write output_dir/last_name every N epochs and at the end
    keep_every: int = 0             # also keep checkpoint_XXXX.pth every N epochs (0: never)
    log_every: int = 10             # step scalars every N steps
    amp: str = "none"
    channels_last: bool = False
    max_grad_norm: float | None = None
    skip_nan_batches: bool = False  # the original's: skip a batch holding a NaN S1 pixel
    last_name: str = LAST_CHECKPOINT


@dataclass
class Callbacks:
    """What the loop calls; every field is optional (tests use ``after_step`` to simulate a kill)."""

    make_checkpoint: Callable[[int, dict], dict] | None = None   # (epochs_done, last val stats) -> dict
    after_step: Callable[[int, int], None] | None = None         # (epoch, step_in_epoch)
    on_validation: Callable[[int, dict], None] | None = None     # (epochs_done, val stats)
    collect_last: Callable[[dict, torch.Tensor], None] | None = None   # every batch of the last validation


@dataclass
class EpochResult:
    stats: dict = field(default_factory=dict)
    samples: int = 0
    seconds: float = 0.0


def _backward_and_step(loss: torch.Tensor, model: nn.Module, opt: Optimization, max_grad_norm) -> None:
    optimizer = opt.optimizer
    optimizer.zero_grad(set_to_none=True)
    if opt.scaler is not None:
        opt.scaler.scale(loss).backward()
        if max_grad_norm:
            opt.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        opt.scaler.step(optimizer)
        opt.scaler.update()
    else:
        loss.backward()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
    if opt.step_scheduler is not None:
        opt.step_scheduler.step()


def _batch_size(batch: dict) -> int:
    for key in ("s2", "s1", "features"):
        if key in batch:
            return batch[key].shape[0]
    raise KeyError(f"batch has none of s2, s1, features: {sorted(batch)}")


def train_one_epoch(model: nn.Module, loader: DataLoader, task, optimization, device: torch.device,
                    epoch: int, *, options: FitOptions | None = None, callbacks: Callbacks | None = None,
                    logger: Logger | None = None, global_step: int = 0, desc: str = "train") -> EpochResult:
    """One pass over ``loader``: forward, task loss, backward, step. Returns mean stats.

    ``optimization``: an :class:`Optimization` or just the optimiser. NaN S1 pixels are repaired
    by the dataset and counted; ``options.skip_nan_batches`` skips every batch that held one
    instead (what the original did). Unreadable samples the loader replaced are recorded
    (:func:`take_skipped`) and counted in ``stats["skipped_samples"]``.
    """
    opt = optimization if isinstance(optimization, Optimization) else Optimization(optimization)
    options = options or FitOptions(epochs=epoch + 1)
    callbacks = callbacks or Callbacks()
    model.train()
    meter = Averager()
    nan_pixels = skipped = unreadable = 0
    start = time.perf_counter()
    bar = progress(loader, desc=f"{desc} {epoch}")
    for step, batch in enumerate(bar):
        unreadable += take_skipped(batch, loader, epoch + 1)
        if robust.is_empty(batch):
            continue
        if "s1_nan_pixels" in batch:
            nan_pixels += int(batch["s1_nan_pixels"].sum())
            if options.skip_nan_batches and batch["s1_nan_pixels"].any():
                skipped += 1
                continue
        batch = to_device(batch, device, options.channels_last)
        with hardware.autocast(device, options.amp):
            outputs = model(batch)
        loss, stats = task(outputs, batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite loss ({loss.item()}) at epoch {epoch}, step {step}: stopping; "
                "the last good checkpoint is kept. Lower the learning rate or try --amp none.")
        _backward_and_step(loss, model, opt, options.max_grad_norm)
        stats = {"loss": loss.detach(), **stats}
        meter.add(stats, _batch_size(batch))
        global_step += 1
        if step % options.log_every == 0 or step == len(loader) - 1:
            values = {k: float(v) for k, v in stats.items()}
            values["lr"] = opt.optimizer.param_groups[0]["lr"]
            bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{values['lr']:.2e}")
            if logger:
                logger.scalars("train_step", values, global_step)
        if callbacks.after_step is not None:
            callbacks.after_step(epoch, step)
    bar.close()
    seconds = time.perf_counter() - start
    result = EpochResult(meter.means(), meter.count, seconds)
    result.stats["samples_per_s"] = meter.count * du.get_world_size() / max(seconds, 1e-9)
    result.stats["s1_nan_pixels"] = nan_pixels
    if options.skip_nan_batches:
        result.stats["skipped_nan_batches"] = skipped
    result.stats["skipped_samples"] = _sum_over_ranks(unreadable + left_out(loader))
    total = bad_sample_total(loader)
    if total is not None:
        result.stats["bad_samples_total"] = total
    return result


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, task, device: torch.device, *,
             amp: str = "none", channels_last: bool = False, desc: str = "eval",
             collect: Callable[[dict, torch.Tensor], None] | None = None,
             skip_nan_batches: bool = False, epoch: int | None = None) -> dict:
    """Loss over the whole loader plus the task's metrics (summed over ranks).

    ``collect(batch, outputs)`` may keep a few predictions (e.g. maps for a figure).
    Unreadable samples are left out and counted: ``skipped_samples`` and ``evaluated_samples``
    go next to the metrics, since a metric over fewer samples must say so.
    """
    model.eval()
    meter = Averager()
    acc = task.new_accumulator()
    unreadable = 0
    for batch in progress(loader, desc=desc):
        unreadable += take_skipped(batch, loader, epoch)
        if robust.is_empty(batch):
            continue
        if skip_nan_batches and "s1_nan_pixels" in batch and batch["s1_nan_pixels"].any():
            continue
        batch = to_device(batch, device, channels_last)
        with hardware.autocast(device, amp):
            outputs = model(batch)
        loss, stats = task(outputs, batch)
        meter.add({"loss": loss, **stats}, _batch_size(batch))
        if acc is not None:
            acc.update(outputs.float(), task.targets(batch))
        if collect is not None:
            collect(batch, outputs)
    # average the per-rank means weighted by counts; sum metric counts
    unreadable += left_out(loader) if du.get_rank() == 0 else 0
    sums = torch.tensor([meter.count, unreadable] + [float(v) * meter.count for v in meter.means().values()],
                        dtype=torch.float64)
    du.all_reduce_sum([sums])
    total = max(sums[0].item(), 1.0)
    result = {k: sums[i + 2].item() / total for i, k in enumerate(meter.means())}
    if acc is not None:
        du.all_reduce_sum(acc.state_tensors())
        result.update(acc.compute())
    result["evaluated_samples"] = int(sums[0].item())
    result["skipped_samples"] = int(sums[1].item())
    return result


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def wrap_ddp(model: nn.Module, device: torch.device, find_unused: bool = False) -> nn.Module:
    """DistributedDataParallel under torchrun, the model itself otherwise."""
    if not du.is_distributed():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                               find_unused_parameters=find_unused)


def describe(stats: dict, keys: Iterable[str] | None = None) -> str:
    """A one-line ``k=v`` summary of the scalar stats."""
    values = headline({k: v for k, v in stats.items() if isinstance(v, float)})
    if keys is not None:
        values = {k: values[k] for k in keys if k in values}
    return "  ".join(f"{k}={v:.4g}" for k, v in values.items())


def skip_counts(stats: dict) -> dict:
    """The unreadable-sample counts of a stats dict (for TensorBoard, next to the metrics)."""
    return {k: stats[k] for k in ("skipped_samples", "evaluated_samples", "bad_samples_total") if k in stats}


def skipped_note(train_stats: dict, val_stats: dict | None, loader) -> str:
    """``(skipped N unreadable samples ...)`` for the end-of-epoch line, empty when none were."""
    parts = []
    if train_stats.get("skipped_samples"):
        total = train_stats.get("bad_samples_total")
        parts.append(f"skipped unreadable training samples: {train_stats['skipped_samples']}"
                     + (f" ({total} distinct so far)" if total is not None else ""))
    if val_stats and val_stats.get("skipped_samples"):
        parts.append(f"val over {val_stats.get('evaluated_samples')} samples, unreadable skipped: "
                     f"{val_stats['skipped_samples']}")
    if not parts:
        return ""
    log = getattr(getattr(loader, "dataset", None), "log", None)
    where = f": {log.path}" if log is not None else ""
    return f"  ({'; '.join(parts)}{where})"


def finish_epoch(record: dict, line: str, *, logger: Logger | None, last: bool, options: FitOptions,
                 callbacks: Callbacks, val_stats: dict, global_step: int) -> None:
    """Rank 0 at the end of an epoch: print and log its line and record, save when due."""
    epoch = record["epoch"]
    tqdm.write(line)
    if logger:
        logger.text(line)
        logger.record(record)
    if callbacks.make_checkpoint is not None and (epoch % options.save_every == 0 or last):
        ckpt = callbacks.make_checkpoint(epoch, val_stats)
        ckpt["global_step"] = global_step
        output_dir = Path(options.output_dir)
        save_checkpoint(ckpt, output_dir / options.last_name)
        if options.keep_every and epoch % options.keep_every == 0:
            save_checkpoint(ckpt, output_dir / f"checkpoint_{epoch:04d}.pth")


def fit(model: nn.Module, train_loader: DataLoader, task, optimization, device: torch.device,
        options: FitOptions, *, val_loader: DataLoader | None = None, callbacks: Callbacks | None = None,
        logger: Logger | None = None) -> list[dict]:
    """The epoch loop: train, step the epoch schedule, validate, checkpoint (rank 0, atomic).

    ``optimization``: an :class:`Optimization` (or just the optimiser). ``callbacks.make_checkpoint
    (epochs_done, last_val_stats)`` returns the dict to save; it is written to
    ``options.output_dir / options.last_name`` every ``options.save_every`` epochs and at the end,
    and also kept as ``checkpoint_XXXX.pth`` every ``options.keep_every`` epochs (0: never).
    ``callbacks.collect_last(batch, outputs)`` sees every batch of the last validation pass.
    Neither ``options`` nor ``callbacks`` is modified.
    """
    opt = optimization if isinstance(optimization, Optimization) else Optimization(optimization)
    callbacks = callbacks or Callbacks()
    warning = hardware.amp_warning(options.amp, device) if du.is_main_process() else None
    if warning:   # said once per run, before the slow first epoch
        print(warning, file=sys.stderr)
        if logger:
            logger.text(warning)
    history: list[dict] = []
    val_stats: dict = {}
    global_step = options.global_step
    epochs = options.epochs
    for epoch in range(options.start_epoch, epochs):
        set_epoch(train_loader, epoch)
        result = train_one_epoch(model, train_loader, task, opt, device, epoch, options=options,
                                 callbacks=callbacks, logger=logger, global_step=global_step)
        global_step += len(train_loader)
        # the LR of each group at the end of this epoch (a per-step schedule may have moved it)
        lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(opt.optimizer.param_groups)}
        if opt.epoch_scheduler is not None:
            opt.epoch_scheduler.step()
        record = {"epoch": epoch + 1, "train": result.stats, "lr": lrs}
        if logger:
            logger.scalars("train", result.stats, epoch + 1)
            logger.scalars("lr", lrs, epoch + 1)
        last = epoch + 1 == epochs
        # as the original: after epoch indices 0, N, 2N, ... (and always after the last)
        if val_loader is not None and (epoch % options.val_every == 0 or last):
            val_stats = evaluate(model, val_loader, task, device, amp=options.amp,
                                 channels_last=options.channels_last, desc=f"val {epoch}",
                                 skip_nan_batches=options.skip_nan_batches,
                                 collect=callbacks.collect_last if last else None, epoch=epoch + 1)
            record["val"] = val_stats
            if logger:
                logger.scalars("val", {**headline(val_stats), **skip_counts(val_stats)}, epoch + 1)
            if callbacks.on_validation is not None:
                callbacks.on_validation(epoch + 1, val_stats)
        if du.is_main_process():
            finish_epoch(record, _epoch_line(record, epochs, train_loader), logger=logger, last=last,
                         options=options, callbacks=callbacks, val_stats=val_stats, global_step=global_step)
        history.append(record)
    return history


def _epoch_line(record: dict, epochs: int, loader) -> str:
    """The one line an epoch prints and logs."""
    stats, val = record["train"], record.get("val")
    line = f"epoch {record['epoch']}/{epochs}  {describe(stats)}"
    if val is not None:
        line += f"  | val {describe(val)}"
    if stats.get("s1_nan_pixels"):
        line += f"  (repaired {int(stats['s1_nan_pixels'])} NaN S1 pixels)"
    return line + skipped_note(stats, val, loader)
