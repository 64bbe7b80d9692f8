#!/usr/bin/env python
"""Self-supervised pre-training of a dual Swin-T (S1 + S2) with cross-modal InfoNCE.

Driven by ``configs/backbone_config.json`` — the original's file (null paths), read the way the
original read it: optimiser and schedule from the top-level ``TRAIN`` block (AdamW 5e-4, weight
decay 0, 300 epochs, 20 warm-up epochs), the model from ``model_config`` (drop path 0.1). The
original file itself loads unchanged. Any flag below overrides the config. The loss is taken on
the 768-d pooled features (no projection head), temperature 0.2; AdamW without decay on norms,
biases and relative-position tables; timm's ``CosineLRScheduler`` stepped every iteration.

The original stepped that schedule with the epoch index, so its LR stayed at WARMUP_LR (5e-7)
for all 300 epochs; ``--reproduce_original`` restores that.

    python train_d_swin_backbone.py --train_dir sample_data --epochs 2 --batch_size 8
    torchrun --nproc_per_node 8 train_d_swin_backbone.py --train_dir /data/sen12ms
"""
import argparse
import os
import sys

import torch

from training import cli, engine, preflight
from training import distributed as du
from training.cli import HelpFormatter, IgnoredFlag, add_bool_flag
from training.data import pretraining_loaders
from training.pretrain import add_data_arguments, run_pretraining
from training.schedules import IterationSchedule, no_decay_param_groups
from training.swin_config import DEFAULT_CONFIG, ConfigError, effective_settings, load_config, settings_table

#: command-line flags that override a setting of the config (flag dest == settings key)
OVERRIDES = ("epochs", "warmup_epochs", "lr", "warmup_lr", "min_lr", "weight_decay", "temperature",
             "drop_path_rate", "batch_size", "seed", "workers", "train_dir", "train_mode", "val_dir",
             "val_mode", "image_px_size", "clip_sample_values", "train_used_data_fraction")


def _config_defaults() -> dict:
    try:
        return effective_settings(load_config(DEFAULT_CONFIG))
    except ConfigError:
        return {}


def get_args_parser() -> argparse.ArgumentParser:
    d = _config_defaults()

    def default(key):
        return f"default: from --config, {d.get(key)} in {DEFAULT_CONFIG.name}"

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_CONFIG),
                   help="backbone_config.json (the original's keys; the original file works)")
    o = p.add_argument_group("overrides of the config")
    o.add_argument("--epochs", type=int, help=f"TRAIN.EPOCHS ({default('epochs')})")
    o.add_argument("--lr", "--base_lr", dest="lr", type=float, help=f"TRAIN.BASE_LR ({default('lr')})")
    o.add_argument("--warmup_epochs", type=float, help=f"TRAIN.WARMUP_EPOCHS ({default('warmup_epochs')})")
    o.add_argument("--warmup_lr", type=float, help=f"TRAIN.WARMUP_LR ({default('warmup_lr')})")
    o.add_argument("--min_lr", type=float, help=f"TRAIN.MIN_LR ({default('min_lr')})")
    o.add_argument("--weight_decay", type=float, help=f"TRAIN.WEIGHT_DECAY ({default('weight_decay')})")
    o.add_argument("--temperature", type=float,
                   help=f"TRAIN.CONTRAST_TEMPERATURE ({default('temperature')})")
    o.add_argument("--drop_path_rate", type=float,
                   help=f"model_config.MODEL.DROP_PATH_RATE ({default('drop_path_rate')})")
    add_bool_flag(o, "--reproduce_original", "--original_constant_lr",
                  help="keep the LR at WARMUP_LR for the whole run, as the original did")
    add_data_arguments(p, batch_size=None, image_px_size=None)
    p.add_argument("--fp16_precision", action=IgnoredFlag,
                   note="the original never applied it; use --amp")
    # config-backed flags: None means "the config's value"
    p.set_defaults(**{key: None for key in OVERRIDES})
    cli.constrain(p, epochs=cli.positive_int, lr=cli.positive_float, warmup_epochs=cli.non_negative_float,
                  warmup_lr=cli.non_negative_float, min_lr=cli.non_negative_float,
                  weight_decay=cli.non_negative_float, temperature=cli.positive_float,
                  drop_path_rate=cli.probability)
    return p


def resolve_settings(args) -> tuple[dict, dict]:
    """(the config dict, the effective settings with command-line overrides applied)."""
    cfg = load_config(args.config)
    settings = effective_settings(cfg)
    overridden = set()
    for key in OVERRIDES:
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = value
            overridden.add(key)
        setattr(args, key, settings[key])
    if settings["image_px_size"] != settings["img_size"] and "image_px_size" in overridden:
        settings["img_size"] = settings["image_px_size"]
    if "workers" not in overridden:  # the original's 8 loader workers, capped at the CPU count
        settings["workers"] = args.workers = min(settings["workers"], os.cpu_count() or 1)
    settings["reproduce_original"] = bool(args.reproduce_original)
    settings["_overridden"] = sorted(overridden)
    args.output_dir = args.output_dir or "runs/swin_backbone"
    return cfg, settings


def main(args, callbacks=None):
    try:
        cfg, settings = resolve_settings(args)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    device = du.init_distributed(args.device)
    engine.set_seed(args.seed)
    preflight.check_pretraining(args, arch="swin_t", config=settings)  # flags, data, run folder, resume
    if du.is_main_process():
        print(settings_table({k: v for k, v in settings.items() if not k.startswith("_")},
                             set(settings["_overridden"])))
    train_loader, val_loader = pretraining_loaders(args)  # bad paths fail here, before the model

    from models import create_model
    model = create_model("DoubleSwinTransformer", img_size=settings["img_size"],
                         drop_path_rate=settings["drop_path_rate"]).to(device)
    optimizer = torch.optim.AdamW(no_decay_param_groups(model, settings["weight_decay"]),
                                  lr=settings["lr"], eps=settings["optimizer_eps"],
                                  betas=tuple(settings["optimizer_betas"]), fused=True)
    scheduler = IterationSchedule(optimizer, epochs=settings["epochs"],
                                  warmup_epochs=settings["warmup_epochs"],
                                  steps_per_epoch=len(train_loader), warmup_lr=settings["warmup_lr"],
                                  min_lr=settings["min_lr"], constant=args.reproduce_original)
    config = {"effective": settings, "config_file": str(args.config), "backbone_config": cfg}
    return run_pretraining(args, model, engine.Optimization(optimizer, step_scheduler=scheduler), arch="swin_t",
                           temperature=settings["temperature"], train_loader=train_loader,
                           val_loader=val_loader, device=device, config=config, callbacks=callbacks)


if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser()))
