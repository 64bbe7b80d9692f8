"""Self-supervised pre-training models: two encoders, S1 (``backbone1``) and S2 (``backbone2``)."""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import torch

from .base import SensorModel, resolve_sensors
from .resnet import ResNet
from .swin import SwinEncoder


class _DualPretrain(SensorModel):
    backbone_names = ("backbone1", "backbone2")

    def _check_both(self, s1: int, s2: int) -> None:
        resolve_sensors(s1, s2)
        if s1 == 0 or s2 == 0:
            raise ValueError(f"{type(self).__name__} contrasts S1 with S2 and needs both sensors "
                             f"(got s1_input_channels={s1}, s2_input_channels={s2})")
        self.in_chans = {"s1": s1, "s2": s2}

    def forward(self, batch: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        xs = self.check_inputs(batch)
        return {"s1": self.backbone1(xs["s1"]), "s2": self.backbone2(xs["s2"])}


class DoubleResNetSimCLR(_DualPretrain):
    """Two torchvision ResNets, each ending in the projection MLP ``fc`` (d -> d -> ``out_dim``)."""

    def __init__(self, base_model: str = "resnet50", s1_input_channels: int = 2, s2_input_channels: int = 13,
                 out_dim: int = 128) -> None:
        super().__init__()
        self._check_both(s1_input_channels, s2_input_channels)
        self.base_model = base_model
        self.backbone1 = ResNet(base_model, s1_input_channels, proj_dim=out_dim)
        self.backbone2 = ResNet(base_model, s2_input_channels, proj_dim=out_dim)
        self.num_features = self.backbone1.num_features
        self.out_dim = out_dim

    @property
    def arch(self) -> str:
        return self.base_model


class DoubleSwinTransformer(_DualPretrain):
    """Two Swin-T encoders; outputs the pooled 768-d features (no projection head, as the original)."""

    def __init__(self, s1_input_channels: int = 2, s2_input_channels: int = 13, img_size: int = 224,
                 drop_path_rate: float = 0.1) -> None:
        super().__init__()
        self._check_both(s1_input_channels, s2_input_channels)
        self.img_size = img_size
        self.backbone1 = SwinEncoder(s1_input_channels, img_size=img_size, drop_path_rate=drop_path_rate)
        self.backbone2 = SwinEncoder(s2_input_channels, img_size=img_size, drop_path_rate=drop_path_rate)
        self.num_features = self.backbone1.num_features
        # the original's unused 1000-class ``head`` per backbone, kept only to write published checkpoints
        self.published_heads: Dict[str, Optional[Dict[str, torch.Tensor]]] = {"backbone1": None, "backbone2": None}

    @property
    def arch(self) -> str:
        return "swin_t"
