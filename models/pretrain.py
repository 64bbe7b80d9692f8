"""Self-supervised pre-training models: two encoders, S1 (``backbone1``) and S2 (``backbone2``).

Their checkpoints are written in the layout of the published ``resnet18.pth`` / ``resnet50.pth`` /
``swin_t.pth`` (``published_state_dict()``), readable by the original code, and read back by
``load_published_state_dict()``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Mapping, Optional

import torch

from .base import SensorModel, resolve_sensors
from .checkpoint import LoadReport, from_published_state_dict
from .resnet import ResNet
from .swin import SwinEncoder, to_original_state_dict


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

    def published_state_dict(self) -> "OrderedDict[str, torch.Tensor]":
        """The weights in the layout of the published checkpoints (the original code's keys), detached
        copies; each pre-training model family defines its layout."""
        raise TypeError(f"{type(self).__name__} has no published checkpoint layout")

    def load_published_state_dict(self, state_dict: Mapping[str, torch.Tensor],
                                  source: str = "<dict>") -> LoadReport:
        """Inverse of ``published_state_dict``: load a published-layout state dict (strict)."""
        return from_published_state_dict(self, state_dict, source)


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

    def published_state_dict(self) -> "OrderedDict[str, torch.Tensor]":
        """Our keys are the published ones (torchvision's, projection heads ``fc.0`` / ``fc.2``)."""
        return OrderedDict((k, v.detach().clone()) for k, v in self.state_dict().items())


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

    def after_checkpoint_load(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Keep the checkpoint's ``backboneN.head.*`` (ignored by the load) as ``published_heads``;
        ``models.checkpoint`` calls this only once the load has been accepted."""
        for name in self.published_heads:
            p = name + ".head."
            head = {k[len(p):]: v for k, v in state_dict.items() if k.startswith(p)}
            if head:
                self.published_heads[name] = dict(self.published_heads[name] or {}, **head)

    def published_state_dict(self) -> "OrderedDict[str, torch.Tensor]":
        """Both encoders in the original Swin layout and key order, buffers and 1000-class heads
        included (the heads of the loaded checkpoint if any, zeros otherwise)."""
        out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        for name in self.backbone_names:
            head = self.published_heads.get(name)
            if head is not None and set(head) != {"weight", "bias"}:
                head = None
            part = to_original_state_dict(getattr(self, name), head=head, prefix=name + ".")
            out.update((k, v.detach().clone()) for k, v in part.items())
        return out
