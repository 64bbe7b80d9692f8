"""torchvision ResNet18/50 with an N-band ``conv1`` (state-dict keys exactly torchvision's).

The published SimCLR checkpoints (``resnet18.pth`` / ``resnet50.pth``) have torchvision's keys and
the projection head ``fc.0`` / ``fc.2``; ``checkpoint_filter`` drops that head for an encoder
without one (downstream).
"""
from __future__ import annotations

import re
from typing import Dict, Mapping, Optional

import torch
import torch.nn as nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.models.resnet import ResNet as _TVResNet

from .base import remap_keys

RESNET_DEPTHS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


def projection_head(dim: int, out_dim: int = 128) -> nn.Sequential:
    """SimCLR projection MLP of the original: ``fc.0`` Linear(d, d), ReLU, ``fc.2`` Linear(d, out_dim)."""
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, out_dim))


PROJ_HEAD = "SimCLR projection head (pre-training only)"
_PROJ_KEY = re.compile(r"^fc\.[02]\.(weight|bias)$")


def checkpoint_filter(state_dict: Mapping[str, torch.Tensor], model: "ResNet", prefix: str = "",
                      ignored: Optional[Dict[str, str]] = None) -> Dict[str, torch.Tensor]:
    """Map the keys of one ResNet (those starting with ``prefix``) onto ``model``: if it has no
    projection head (``fc`` is Identity), the checkpoint's ``fc.0`` / ``fc.2`` are dropped and
    reported in ``ignored`` (key -> reason). The other keys are torchvision's in both layouts."""
    if not isinstance(model.fc, nn.Identity):
        return dict(state_dict)
    return remap_keys(state_dict, prefix,
                      lambda rest: (None, PROJ_HEAD) if _PROJ_KEY.match(rest) else (rest, None),
                      ignored)


class ResNet(_TVResNet):
    """torchvision ResNet with ``in_chans`` input bands and a configurable ``fc``.

    ``num_classes=0`` -> ``fc`` is Identity (``forward`` returns pooled features);
    ``proj_dim`` -> ``fc`` is the SimCLR projection MLP (d -> d -> proj_dim).
    """

    def __init__(self, base_model: str = "resnet50", in_chans: int = 13, num_classes: int = 0,
                 proj_dim: Optional[int] = None) -> None:
        if base_model not in RESNET_DEPTHS:
            raise ValueError(f"unknown base_model {base_model!r}; valid: {sorted(RESNET_DEPTHS)}")
        block, layers = RESNET_DEPTHS[base_model]
        super().__init__(block, list(layers), num_classes=1000)
        self.base_model = base_model
        self.in_chans = in_chans
        self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.num_features = 512 * block.expansion
        if proj_dim is not None:
            self.fc = projection_head(self.num_features, proj_dim)
        elif num_classes > 0:
            self.fc = nn.Linear(self.num_features, num_classes)
        else:
            self.fc = nn.Identity()

    def checkpoint_filter(self, state_dict: Mapping[str, torch.Tensor], prefix: str = "",
                          ignored: Optional[Dict[str, str]] = None) -> Dict[str, torch.Tensor]:
        """``checkpoint_filter`` of this encoder's keys (those starting with ``prefix``)."""
        return checkpoint_filter(state_dict, self, prefix, ignored)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> feature map (B, num_features, H/32, W/32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
