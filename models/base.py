"""Common behaviour of every model: the batch-dict input contract, freezing, parameter groups."""
from __future__ import annotations

from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

SENSORS: Tuple[str, ...] = ("s1", "s2")
DEFAULT_BANDS: Dict[str, int] = {"s1": 2, "s2": 13}


class InputShapeError(ValueError):
    """The batch does not fit the model (missing sensor, wrong number of bands, wrong image size)."""


def resolve_sensors(s1_input_channels: int, s2_input_channels: int) -> Dict[str, int]:
    """Bands per used sensor, in the fixed order s1, s2 (0 drops a sensor)."""
    chans = {"s1": int(s1_input_channels), "s2": int(s2_input_channels)}
    for k, v in chans.items():
        if v < 0:
            raise ValueError(f"{k}_input_channels must be >= 0 (0 drops {k.upper()}), got {v}")
    used = {k: v for k, v in chans.items() if v > 0}
    if not used:
        raise ValueError("s1_input_channels and s2_input_channels are both 0: the model would have no input")
    return used


def remap_keys(state_dict: Mapping[str, torch.Tensor], prefix: str,
               rule: Callable[[str], Tuple[Optional[str], Optional[str]]],
               ignored: Optional[Dict[str, str]] = None) -> Dict[str, torch.Tensor]:
    """The mechanics of every ``checkpoint_filter``: for each key under ``prefix``,
    ``rule(rest)`` returns ``(new rest, None)`` to keep it (renamed) or ``(None, reason)`` to
    drop it, reported in ``ignored`` (key -> reason). Other keys pass unchanged."""
    out: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith(prefix):
            rest, reason = rule(key[len(prefix):])
            if reason is not None:
                if ignored is not None:
                    ignored[key] = reason
                continue
            key = prefix + rest
        out[key] = value
    return out


class SensorModel(nn.Module):
    """Base class: forward takes the batch dict ``{"s1": (B,2,H,W), "s2": (B,13,H,W), ...}``.

    Subclasses set ``self.in_chans`` (bands per used sensor), ``self.img_size`` (None: any size)
    and list their encoders in ``backbone_names``. Everything that is not a backbone is "head".

    ``freeze_backbone()`` sets ``requires_grad=False`` on every backbone parameter AND keeps the
    backbones in eval mode even when ``model.train()`` is called (BatchNorm statistics and
    dropout / drop-path stay fixed: a frozen backbone is a fixed feature extractor; the original
    only switched off gradients and let BN running statistics drift during linear evaluation).
    """

    #: attribute names of the encoders (absent ones are skipped)
    backbone_names: Tuple[str, ...] = ()
    #: sensor -> state-dict prefixes belonging to that sensor's branch (dual models)
    branch_prefixes: Dict[str, Tuple[str, ...]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.in_chans: Dict[str, int] = {}
        self.img_size: Optional[int] = None
        self.backbone_frozen = False
        # filled by models.create_model so that a checkpoint can rebuild the model
        self.model_name: str = type(self).__name__
        self.model_options: Dict[str, object] = {}

    # ---- input contract -------------------------------------------------------------------
    def check_inputs(self, batch: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Return ``{sensor: tensor}`` for the used sensors; raise InputShapeError up front."""
        name = type(self).__name__
        if not isinstance(batch, Mapping):
            raise InputShapeError(
                f"{name}.forward takes the batch dict {{'s1': (B,2,H,W), 's2': (B,13,H,W)}}, "
                f"got {type(batch).__name__}")
        out = {}
        for sensor, bands in self.in_chans.items():
            if sensor not in batch:
                raise InputShapeError(
                    f"{name} uses {sensor.upper()} ({sensor}_input_channels={bands}) but the batch has no "
                    f"'{sensor}' key (keys: {sorted(batch)}); build the model with {sensor}_input_channels=0 "
                    f"to drop {sensor.upper()}")
            x = batch[sensor]
            if not torch.is_tensor(x) or x.dim() != 4:
                shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
                raise InputShapeError(f"{name}: batch['{sensor}'] must be a (B, C, H, W) tensor, got {shape}")
            if x.shape[1] != bands:
                raise InputShapeError(
                    f"{name}: batch['{sensor}'] has {x.shape[1]} bands but the model expects {bands} "
                    f"({sensor}_input_channels={bands}); input shape {tuple(x.shape)}")
            if self.img_size is not None and tuple(x.shape[-2:]) != (self.img_size, self.img_size):
                raise InputShapeError(
                    f"{name} was built for {self.img_size}x{self.img_size} px inputs (img_size={self.img_size}) "
                    f"but batch['{sensor}'] is {x.shape[-2]}x{x.shape[-1]}; crop the patches to "
                    f"{self.img_size} px or build the model with a matching img_size (a multiple of 224)")
            out[sensor] = x
        return out

    # ---- checkpoint loading ------------------------------------------------------------------
    def checkpoint_filter(self, state_dict: Mapping[str, torch.Tensor], prefix: str = "",
                          ignored: Optional[Dict[str, str]] = None) -> Dict[str, torch.Tensor]:
        """Map a checkpoint's keys onto this model's (``models.checkpoint`` then runs the filter of
        every sub-module that has one, e.g. the encoders'): drop the branch of each sensor the model
        does not use (``branch_prefixes``), reporting the keys in ``ignored`` (key -> reason)."""
        dropped = {prefix + p: f"{sensor.upper()} branch, not in this model ({sensor}_input_channels=0)"
                   for sensor, prefixes in self.branch_prefixes.items() if sensor not in self.in_chans
                   for p in prefixes}

        def rule(key: str) -> Tuple[Optional[str], Optional[str]]:
            reason = next((r for p, r in dropped.items() if key.startswith(p)), None)
            return (None, reason) if reason else (key, None)
        return remap_keys(state_dict, "", rule, ignored)

    # ---- backbone / head split ------------------------------------------------------------
    def backbone_modules(self) -> List[Tuple[str, nn.Module]]:
        return [(n, getattr(self, n)) for n in self.backbone_names if getattr(self, n, None) is not None]

    def backbone_prefixes(self) -> List[str]:
        return [n + "." for n, _ in self.backbone_modules()]

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        for _, m in self.backbone_modules():
            yield from m.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        prefixes = tuple(self.backbone_prefixes())
        for n, p in self.named_parameters():
            if not n.startswith(prefixes):
                yield p

    def parameter_groups(self, backbone_lr: float, head_lr: float) -> List[dict]:
        """Optimizer groups: trainable backbone parameters at ``backbone_lr``, the rest at ``head_lr``."""
        groups = []
        bb = [p for p in self.backbone_parameters() if p.requires_grad]
        hd = [p for p in self.head_parameters() if p.requires_grad]
        if bb:
            groups.append({"name": "backbone", "params": bb, "lr": backbone_lr})
        if hd:
            groups.append({"name": "head", "params": hd, "lr": head_lr})
        return groups

    def no_weight_decay(self) -> set:
        """Names of parameters usually trained without weight decay (norms, biases, position tables)."""
        return {n for n, p in self.named_parameters()
                if p.ndim <= 1 or n.endswith("relative_position_bias_table")}

    def freeze_backbone(self, freeze: bool = True) -> "SensorModel":
        """Freeze (or unfreeze) every backbone parameter; frozen backbones stay in eval mode."""
        self.backbone_frozen = bool(freeze)
        for p in self.backbone_parameters():
            p.requires_grad_(not freeze)
        return self.train(self.training)

    def train(self, mode: bool = True) -> "SensorModel":
        super().train(mode)
        if self.backbone_frozen:
            for _, m in self.backbone_modules():
                m.eval()
        return self


def concat_sensors(xs: Mapping[str, torch.Tensor], order: Sequence[str] = SENSORS) -> torch.Tensor:
    """Early fusion: concatenate the used sensors' bands (S1 first, then S2)."""
    return torch.cat([xs[s] for s in order if s in xs], dim=1)
