#!/usr/bin/env python
"""Self-supervised pre-training of a dual Swin-T (S1 + S2) with cross-modal InfoNCE.

Driven by ``configs/backbone_config.json`` (the original's keys); any command-line flag
overrides the config. The loss is taken on the 768-d pooled features (no projection
head), temperature 0.2; AdamW without decay on norms, biases and relative-position
tables; linear warm-up then cosine, stepped every iteration.

The original stepped its per-iteration schedule with the epoch index, so its LR stayed at
WARMUP_LR (5e-7) for the whole run; ``--original_constant_lr`` reproduces that.

    python train_d_swin_backbone.py --train_dir sample_data --epochs 2 --batch_size 8
    torchrun --nproc_per_node 8 train_d_swin_backbone.py --train_dir /data/sen12ms
"""
import argparse
import json

import torch

from utils import distributed as du
from utils import engine
from utils.pretrain import add_data_arguments, build_data, run_pretraining
from utils.schedules import WarmupCosine, no_decay_param_groups

DEFAULT_CONFIG = "configs/backbone_config.json"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default=DEFAULT_CONFIG, help="JSON config with the original's keys")
    o = p.add_argument_group("overrides of the config (default: the config's value)")
    o.add_argument("--epochs", type=int, default=None, help="TRAIN.EPOCHS")
    o.add_argument("--lr", "--base_lr", dest="lr", type=float, default=None, help="TRAIN.BASE_LR")
    o.add_argument("--warmup_epochs", type=float, default=None, help="TRAIN.WARMUP_EPOCHS")
    o.add_argument("--weight_decay", type=float, default=None, help="TRAIN.WEIGHT_DECAY")
    o.add_argument("--temperature", type=float, default=None)
    o.add_argument("--drop_path_rate", type=float, default=None, help="MODEL.DROP_PATH_RATE")
    o.add_argument("--original_constant_lr", action=argparse.BooleanOptionalAction, default=False,
                   help="keep the LR at WARMUP_LR for the whole run, as the original did")
    add_data_arguments(p, batch_size=None, image_px_size=None)
    # flags backed by the config default to None: "not given" means "the config's value"
    p.set_defaults(**{key: None for key in CONFIG_KEYS}, workers=None)
    return p


CONFIG_KEYS = ("train_dir", "val_dir", "train_mode", "val_mode", "image_px_size", "batch_size",
               "seed", "temperature", "train_used_data_fraction", "val_used_data_fraction",
               "clip_sample_values", "save_every", "val_every")
FALLBACKS = {"train_mode": "sen12ms", "val_mode": "validation", "image_px_size": 224,
             "batch_size": 50, "seed": 42, "temperature": 0.2, "train_used_data_fraction": 1.0,
             "val_used_data_fraction": 1.0, "clip_sample_values": True, "save_every": 1,
             "val_every": 1}


def load_config(args) -> dict:
    """The JSON config with every command-line override applied (and args filled from it)."""
    with open(args.config) as fp:
        cfg = json.load(fp)
    train = cfg["model_config"]["TRAIN"]
    for flag, key in (("epochs", "EPOCHS"), ("lr", "BASE_LR"), ("warmup_epochs", "WARMUP_EPOCHS"),
                      ("weight_decay", "WEIGHT_DECAY")):
        if getattr(args, flag) is not None:
            train[key] = getattr(args, flag)
    if args.drop_path_rate is not None:
        cfg["model_config"]["MODEL"]["DROP_PATH_RATE"] = args.drop_path_rate
    for key in CONFIG_KEYS:
        if getattr(args, key, None) is not None:
            cfg[key] = getattr(args, key)          # an explicit flag wins
        setattr(args, key, cfg.get(key, FALLBACKS.get(key)))
    if args.workers is not None:
        cfg["num_workers"] = args.workers
    args.workers = cfg.get("num_workers", 2)
    args.output_dir = args.output_dir or cfg.get("checkpoint_dir", "runs/swin_backbone")
    args.epochs = train["EPOCHS"]
    cfg["original_constant_lr"] = args.original_constant_lr
    return cfg


def main(args, hooks=None):
    cfg = load_config(args)
    device = du.init_distributed(args.device)
    engine.set_seed(args.seed)
    train_loader, val_loader = build_data(args)  # bad paths fail here, before the model

    from models import create_model
    mcfg = cfg["model_config"]
    model = create_model("DoubleSwinTransformer", img_size=mcfg["DATA"]["IMG_SIZE"],
                         drop_path_rate=mcfg["MODEL"]["DROP_PATH_RATE"]).to(device)
    train = mcfg["TRAIN"]
    opt = train["OPTIMIZER"]
    optimizer = torch.optim.AdamW(no_decay_param_groups(model, train["WEIGHT_DECAY"]),
                                  lr=train["BASE_LR"], eps=opt["EPS"], betas=tuple(opt["BETAS"]),
                                  fused=True)
    steps_per_epoch = len(train_loader)
    scheduler = WarmupCosine(optimizer, total_steps=train["EPOCHS"] * steps_per_epoch,
                             warmup_steps=train["WARMUP_EPOCHS"] * steps_per_epoch,
                             warmup_lr=train["WARMUP_LR"], min_lr=train["MIN_LR"],
                             constant=args.original_constant_lr)
    try:
        return run_pretraining(args, model, optimizer, arch="swin_t", temperature=cfg["temperature"],
                               train_loader=train_loader, val_loader=val_loader, device=device,
                               step_scheduler=scheduler, config=cfg, hooks=hooks)
    finally:
        du.cleanup()


if __name__ == "__main__":
    main(get_args_parser().parse_args())
