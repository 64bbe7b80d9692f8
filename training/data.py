"""The datasets and loaders of a run, built from its command-line arguments (one place for
the pre-training and downstream scripts).

Every loader reads through :class:`data.robust.RobustDataset`: an unreadable sample is skipped,
recorded in ``OUTPUT_DIR/bad_samples.txt`` and counted against ``--max_bad_samples``
(training: replaced by another sample; evaluation: dropped and counted next to the metrics);
``--exclude_list`` leaves the files it names out.
"""
from __future__ import annotations

from pathlib import Path

import torch

from training import distributed as du
from training import engine

BUDGET_HELP = ("unreadable samples (corrupt, truncated, missing files) a split may skip before the run "
               "stops with an error: a count (0 = stop at the first), a fraction of the split (0.01) or "
               "a percentage (1%%); default: 10 or 0.1 %% of the split, whichever is larger, and 0 with "
               "--reproduce_original (the original died on the first). Skipped files are listed in "
               "OUTPUT_DIR/bad_samples.txt")
EXCLUDE_HELP = ("leave out the observations whose files this list names (one path per line, first "
                "tab-separated field; `python -m data.verify --out` writes one, a run's bad_samples.txt "
                "works too)")


def add_bad_sample_arguments(group) -> None:
    """``--max_bad_samples`` and ``--exclude_list`` (every training script)."""
    from data.robust import parse_budget

    group.add_argument("--max_bad_samples", type=parse_budget, default=None, metavar="N|FRACTION",
                       help=BUDGET_HELP)
    group.add_argument("--exclude_list", default=None, metavar="FILE", help=EXCLUDE_HELP)


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


def robust(args, dataset, split: str, *, substitute: bool):
    """``dataset`` read through :class:`data.robust.RobustDataset`, its :class:`BadSampleLog` attached
    (``split``: ``training`` or ``evaluation``; ``bad_samples.txt`` in ``--output_dir``)."""
    from data.robust import RECORD_NAME, BadSampleLog, RobustDataset, read_exclude_list, resolve_budget

    if isinstance(dataset, RobustDataset):
        return dataset
    exclude = read_exclude_list(args.exclude_list) if getattr(args, "exclude_list", None) else set()
    wrapped = RobustDataset(dataset, split=split, substitute=substitute, seed=args.seed, exclude=exclude)
    budget, text = resolve_budget(getattr(args, "max_bad_samples", None), wrapped.observations,
                                  reproduce_original=bool(getattr(args, "reproduce_original", False)))
    output_dir = Path(args.output_dir) if getattr(args, "output_dir", None) else Path(".")
    wrapped.log = BadSampleLog(output_dir / RECORD_NAME, split, budget, text, resume=bool(args.resume),
                               exclude=exclude, checkpoint=output_dir / engine.LAST_CHECKPOINT,
                               root=getattr(wrapped.base, "base_dir", None))
    if wrapped.excluded and du.is_main_process():
        print(f"--exclude_list {args.exclude_list}: {wrapped.excluded} of {len(dataset)} {split} items left out")
    return wrapped


def loaders(args, train_set, eval_set, *, drop_last: bool = False) -> tuple:
    """(training loader, evaluation loader or None): shuffled shards for training, unpadded
    shards for evaluation (every sample counted once under torchrun); both skip unreadable
    samples (:func:`robust`)."""
    pin = torch.cuda.is_available()
    train_set = robust(args, train_set, "training", substitute=True)
    eval_set = robust(args, eval_set, "evaluation", substitute=False) if eval_set is not None else None
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
    train_set = robust(args, training_set(args), "training", substitute=True)
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
