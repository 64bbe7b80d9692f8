"""The dual Swin-T pre-training config: the original's ``backbone_config.json``, read the way
the original's code read it.

The original passes the *top-level* ``TRAIN`` block to its optimiser and scheduler and
``model_config`` to the model; ``model_config.TRAIN``, ``MOBY`` and ``AUG`` are read by nothing,
and neither are the top-level ``epochs`` (301), ``CLIP_GRAD`` and ``fp16_precision``. So the
effective settings are AdamW at ``TRAIN.BASE_LR`` 5e-4, weight decay ``TRAIN.WEIGHT_DECAY`` 0,
``TRAIN.EPOCHS`` 300 with ``TRAIN.WARMUP_EPOCHS`` 20, drop path
``model_config.MODEL.DROP_PATH_RATE`` 0.1, temperature ``TRAIN.CONTRAST_TEMPERATURE`` 0.2.
:func:`effective_settings` returns exactly these, so the original file and ours (the same file
with null paths) give the same run.
"""
from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "backbone_config.json"

#: flag name -> (where in the config, default when the config lacks it)
SETTINGS = {
    "epochs": ("TRAIN.EPOCHS", 300),
    "warmup_epochs": ("TRAIN.WARMUP_EPOCHS", 20),
    "lr": ("TRAIN.BASE_LR", 5e-4),
    "warmup_lr": ("TRAIN.WARMUP_LR", 5e-7),
    "min_lr": ("TRAIN.MIN_LR", 5e-6),
    "weight_decay": ("TRAIN.WEIGHT_DECAY", 0.0),
    "optimizer_eps": ("TRAIN.OPTIMIZER.EPS", 1e-8),
    "optimizer_betas": ("TRAIN.OPTIMIZER.BETAS", [0.9, 0.999]),
    "temperature": ("TRAIN.CONTRAST_TEMPERATURE", 0.2),
    "drop_path_rate": ("model_config.MODEL.DROP_PATH_RATE", 0.1),
    "img_size": ("model_config.DATA.IMG_SIZE", 224),
    "batch_size": ("batch_size", 50),
    "seed": ("seed", 42),
    "workers": ("dataloader_workers", 8),
    "train_dir": ("train_dir", None),
    "train_mode": ("train_mode", "sen12ms"),
    "val_dir": ("val_dir", None),
    "val_mode": ("val_mode", "validation"),
    "image_px_size": ("image_px_size", 224),
    "clip_sample_values": ("clip_sample_values", True),
    "train_used_data_fraction": ("used_data_fraction", 1.0),
}
#: keys the original file holds but its code never used (reported, not applied)
UNUSED = ("epochs", "fp16_precision", "TRAIN.CLIP_GRAD", "model_config.TRAIN",
          "model_config.MOBY", "model_config.AUG", "log_every_n_steps", "out_dim", "n_views")


class ConfigError(ValueError):
    """The config file is missing, not JSON, or lacks a block the run needs."""


def _get(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def load_config(path: str | Path = DEFAULT_CONFIG) -> dict:
    """The JSON file, with a clear error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"--config {path}: not valid JSON ({e})") from None
    if "TRAIN" not in cfg and "TRAIN" in cfg.get("model_config", {}) \
            and "OPTIMIZER" in cfg["model_config"]["TRAIN"]:
        # an older layout of this project kept the optimiser block under model_config
        cfg["TRAIN"] = cfg["model_config"]["TRAIN"]
    if "model_config" not in cfg:
        raise ConfigError(f"--config {path}: no 'model_config' block (is this a backbone_config.json?)")
    return cfg


def effective_settings(cfg: dict) -> dict:
    """The hyper-parameters the original's code actually used, from its config dict."""
    out = {}
    for name, (where, default) in SETTINGS.items():
        try:
            out[name] = _get(cfg, where)
        except KeyError:
            out[name] = default
    if out["train_used_data_fraction"] is None:
        out["train_used_data_fraction"] = 1.0
    out["optimizer_betas"] = tuple(out["optimizer_betas"])
    return out


def settings_table(settings: dict, overridden: set[str] = frozenset()) -> str:
    """A two-column text table of the effective settings (``*``: set on the command line)."""
    width = max(len(k) for k in settings)
    lines = ["effective pre-training settings (* = command-line override)"]
    for k, v in settings.items():
        lines.append(f"  {k:<{width}}  {v}{'  *' if k in overridden else ''}")
    return "\n".join(lines)
