"""Downstream classifiers under the original CLI names, and the SwinUNet segmentation model.

Dual models keep the S1 encoder as ``backbone1`` and the S2 encoder as ``backbone2`` (the
published checkpoints' names); ``s1_input_channels=0`` / ``s2_input_channels=0`` drops a branch
and shrinks the head. Heads are ``fc`` (classifiers) or ``decoder1/2`` + ``up`` + ``output``
(segmentation).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from .base import SENSORS, SensorModel, concat_sensors, resolve_sensors
from .resnet import ResNet
from .swin import SwinEncoder
from .swin_unet import FinalPatchExpand_X4, SwinUNetDecoder
from .swin_unet import checkpoint_filter as swin_unet_checkpoint_filter

_BRANCH = {"s1": "backbone1", "s2": "backbone2"}


class _DualEncoders(SensorModel):
    """One encoder per used sensor, pooled features concatenated (S1 first), then ``fc``."""

    backbone_names = ("backbone1", "backbone2")
    branch_prefixes = {"s1": ("backbone1.",), "s2": ("backbone2.",)}

    def _build_swin_encoders(self, s1_input_channels: int, s2_input_channels: int, img_size: int,
                             drop_path_rate: float, decoders: bool = False) -> None:
        """One Swin-T encoder per used sensor (``backbone1`` = S1, ``backbone2`` = S2), each
        followed by its SwinUNet decoder (``decoder1/2``) if ``decoders``."""
        self.in_chans = resolve_sensors(s1_input_channels, s2_input_channels)
        self.img_size = img_size
        for s, c in self.in_chans.items():
            setattr(self, _BRANCH[s], SwinEncoder(c, img_size=img_size, drop_path_rate=drop_path_rate))
            if decoders:
                setattr(self, _BRANCH[s].replace("backbone", "decoder"),
                        SwinUNetDecoder(img_size=img_size, drop_path_rate=drop_path_rate))

    def branches(self) -> List[Tuple[str, nn.Module]]:
        return [(s, getattr(self, _BRANCH[s])) for s in SENSORS if s in self.in_chans]

    def forward_features(self, batch: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Unpooled feature map of each used sensor's encoder, ``{sensor: map}`` (timm's meaning)."""
        xs = self.check_inputs(batch)
        return {s: enc.forward_features(xs[s]) for s, enc in self.branches()}

    def forward_head(self, features: Mapping[str, torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """Pool each map, concatenate (S1 first) and classify; ``pre_logits``: the fused features."""
        x = torch.cat([enc.forward_head(features[s], pre_logits=True) for s, enc in self.branches()],
                      dim=1)
        return x if pre_logits else self.fc(x)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_head(self.forward_features(batch))


class DoubleResNetSimCLRDownstream(_DualEncoders):
    """The two SSL ResNet encoders without projection heads; ``fc`` = Linear(2d, num_classes)."""

    def __init__(self, num_classes: int = 8, base_model: str = "resnet50", s1_input_channels: int = 2,
                 s2_input_channels: int = 13) -> None:
        super().__init__()
        self.in_chans = resolve_sensors(s1_input_channels, s2_input_channels)
        self.base_model = base_model
        for s, c in self.in_chans.items():
            setattr(self, _BRANCH[s], ResNet(base_model, c, num_classes=0))
        width = sum(enc.num_features for _, enc in self.branches())
        self.fc = nn.Linear(width, num_classes)


class DualBaseline(DoubleResNetSimCLRDownstream):
    """Late-fusion supervised baseline: same architecture, trained from scratch."""


class _EarlyFusion(SensorModel):
    """One encoder (``backbone``) on the concatenated bands of the used sensors, then ``fc``."""

    backbone_names = ("backbone",)

    def forward_features(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Unpooled feature map of the encoder on the concatenated bands."""
        return self.backbone.forward_features(concat_sensors(self.check_inputs(batch)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.backbone.forward_head(x, pre_logits=True)
        return x if pre_logits else self.fc(x)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_head(self.forward_features(batch))


class ResNetBaseline(_EarlyFusion):
    """Early fusion (CLI ``resnet18`` / ``resnet50``): one ResNet on the concatenated S1+S2 bands."""

    def __init__(self, num_classes: int = 8, base_model: str = "resnet50", s1_input_channels: int = 2,
                 s2_input_channels: int = 13) -> None:
        super().__init__()
        self.in_chans = resolve_sensors(s1_input_channels, s2_input_channels)
        self.base_model = base_model
        self.backbone = ResNet(base_model, sum(self.in_chans.values()), num_classes=0)
        self.fc = nn.Linear(self.backbone.num_features, num_classes)


class SwinBaseline(_EarlyFusion):
    """One Swin-T on the concatenated (or the single selected) sensor bands + linear head."""

    def __init__(self, num_classes: int = 8, s1_input_channels: int = 2, s2_input_channels: int = 13,
                 img_size: int = 224, drop_path_rate: float = 0.1) -> None:
        super().__init__()
        self.in_chans = resolve_sensors(s1_input_channels, s2_input_channels)
        self.img_size = img_size
        self.backbone = SwinEncoder(sum(self.in_chans.values()), img_size=img_size, drop_path_rate=drop_path_rate)
        self.fc = nn.Linear(self.backbone.num_features, num_classes)


class DoubleSwinTransformerDownstream(_DualEncoders):
    """The two SSL Swin-T encoders; pooled 768-d features concatenated (S1, S2); ``fc`` Linear(1536, n)."""

    def __init__(self, num_classes: int = 8, s1_input_channels: int = 2, s2_input_channels: int = 13,
                 img_size: int = 224, drop_path_rate: float = 0.1) -> None:
        super().__init__()
        self._build_swin_encoders(s1_input_channels, s2_input_channels, img_size, drop_path_rate)
        width = sum(enc.num_features for _, enc in self.branches())
        self.fc = nn.Linear(width, num_classes)


class DualSwinBaseline(DoubleSwinTransformerDownstream):
    """Late-fusion Swin baseline: same architecture, trained from scratch."""


class DoubleSwinTransformerSegmentation(_DualEncoders):
    """Two Swin-T encoders, one SwinUNet decoder each, fused by one 4x patch expand + 1x1 conv.

    As the original: each decoder gets its encoder's final *normed* tokens and the skips; the two
    96-d decoder outputs are concatenated S1 first (192), expanded 4x by ``up`` and classified by
    ``output`` (the original kept an unused duplicate ``up``/``output`` in ``decoder2``; ours
    are the ones of ``decoder1``). The original's per-decoder encoder copies are not built.
    """

    branch_prefixes = {"s1": ("backbone1.", "decoder1."), "s2": ("backbone2.", "decoder2.")}
    #: decoder whose ``up``/``output`` the original used (checked against the reference outputs)
    original_head_decoder = "decoder1"

    def __init__(self, num_classes: int = 8, s1_input_channels: int = 2, s2_input_channels: int = 13,
                 img_size: int = 224, drop_path_rate: float = 0.1) -> None:
        super().__init__()
        self._build_swin_encoders(s1_input_channels, s2_input_channels, img_size, drop_path_rate,
                                  decoders=True)
        width = sum(getattr(self, _BRANCH[s].replace("backbone", "decoder")).num_features for s in self.in_chans)
        self.up = FinalPatchExpand_X4(width)
        self.output = nn.Conv2d(width, num_classes, kernel_size=1, bias=False)

    def checkpoint_filter(self, state_dict: Mapping[str, torch.Tensor], prefix: str = "",
                          ignored: Optional[Dict[str, str]] = None) -> Dict[str, torch.Tensor]:
        """The original's decoder keys mapped onto ours (``swin_unet.checkpoint_filter``), then the
        dropped sensor's branch removed; the encoders' keys are left to their own filters."""
        state_dict = swin_unet_checkpoint_filter(state_dict, self.original_head_decoder, prefix, ignored)
        return super().checkpoint_filter(state_dict, prefix, ignored)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        xs = self.check_inputs(batch)
        feats = []
        for s, enc in self.branches():
            _, tokens, skips = enc.forward_unet(xs[s])
            feats.append(getattr(self, _BRANCH[s].replace("backbone", "decoder"))(tokens, skips))
        # = self.output(self.up(x).permute(0, 3, 1, 2)), without the full-resolution (B, H, W, C) tensors
        return self.up.forward_logits(torch.cat(feats, dim=-1), self.output.weight)   # (B, classes, H, W)

    def forward_features(self, batch: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Unpooled final (normed) encoder tokens of each used sensor, ``{sensor: (B, h, w, 768)}``."""
        xs = self.check_inputs(batch)
        return {s: enc.forward_features(xs[s]) for s, enc in self.branches()}
