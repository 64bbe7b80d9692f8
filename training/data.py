"""The datasets and loaders of a run, built from its command-line arguments (one place for
the pre-training and downstream scripts)."""
from __future__ import annotations

import torch

from training import distributed as du
from training import engine


def _require_train_dir(args, what: str) -> None:
    if not args.train_dir:
        raise SystemExit(f"error: --train_dir is required ({what}; "
                         "`python -m data.sample --root sample_data` makes a small one)")


def training_set(args, *, balanced_classes: bool = False):
    """Random crops keyed by ``(seed, epoch, index)`` over ``--train_dir`` / ``--train_mode``."""
    from data import DFCDataset

    return DFCDataset(args.train_dir, mode=args.train_mode,
                      clip_sample_values=args.clip_sample_values,
                      used_data_fraction=args.train_used_data_fraction,
                      image_px_size=args.image_px_size, cover_all_parts=False, random_crop=True,
                      balanced_classes=balanced_classes, seed=args.seed)


def evaluation_set(args, root, *, cover_all_parts: bool = False, balanced_classes: bool = False):
    """Deterministic centre crops (or tiles); the original's random crops with
    ``--reproduce_original``."""
    from data import DFCDataset

    return DFCDataset(root, mode=args.val_mode, clip_sample_values=args.clip_sample_values,
                      used_data_fraction=args.val_used_data_fraction,
                      image_px_size=args.image_px_size, cover_all_parts=cover_all_parts,
                      random_crop=bool(getattr(args, "reproduce_original", False))
                      and not cover_all_parts,
                      balanced_classes=balanced_classes, seed=args.seed)


def loaders(args, train_set, eval_set, *, drop_last: bool = False) -> tuple:
    """(training loader, evaluation loader or None): shuffled shards for training, unpadded
    shards for evaluation (every sample counted once under torchrun)."""
    pin = torch.cuda.is_available()
    train_loader = engine.build_loader(train_set, args.batch_size, shuffle=True,
                                       num_workers=args.workers, seed=args.seed, pin_memory=pin,
                                       drop_last=drop_last)
    eval_loader = None
    if eval_set is not None:
        eval_loader = engine.build_loader(eval_set, args.batch_size, shuffle=False,
                                          num_workers=args.workers, seed=args.seed,
                                          pin_memory=pin, evaluation=True)
    return train_loader, eval_loader


def pretraining_loaders(args) -> tuple:
    """SEN12MS training loader (``drop_last`` as the original: full batches of negatives) and
    the optional contrastive validation loader on ``--val_dir``."""
    _require_train_dir(args, "the SEN12MS root")
    train_set = training_set(args)
    val_set = evaluation_set(args, args.val_dir) if args.val_dir else None
    drop_last = len(train_set) >= args.batch_size * du.get_world_size()
    return loaders(args, train_set, val_set, drop_last=drop_last)


def downstream_sets(args) -> tuple:
    """DFC2020 training set (class-balanced list by default) and the evaluation set."""
    _require_train_dir(args, "a DFC2020 root")
    return (training_set(args, balanced_classes=args.balanced_classes_train),
            evaluation_set(args, args.val_dir or args.train_dir,
                           cover_all_parts=args.cover_all_parts_validation,
                           balanced_classes=args.balanced_classes_val))
