"""SwinUNet decoder (the up-sampling half of Swin-Unet's ``SwinTransformerSys``), NHWC tokens.

Key names follow the original (``layers_up``, ``concat_back_dim``, ``norm_up``, ``up``); the Swin
blocks are timm's ``SwinTransformerBlock`` whose parameter names equal the original's, so an
original checkpoint loads after dropping the recomputed buffers. The original's encoder copy inside
each decoder (``decoderN.layers``, ``patch_embed``, ``norm``) is not built: the real encoders are
the model's backbones; ``checkpoint_filter`` drops it (and maps the original's fused head) on load.
"""
from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.swin_transformer import SwinTransformerBlock

from .base import remap_keys
from .swin import enable_fused_attn


def _pixel_rearrange(x: torch.Tensor, p: int) -> torch.Tensor:
    """``rearrange(x, 'b h w (p1 p2 c) -> b (h p1) (w p2) c', p1=p, p2=p)``."""
    b, h, w, c = x.shape
    x = x.view(b, h, w, p, p, c // (p * p)).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * p, w * p, c // (p * p))


class PatchExpand(nn.Module):
    """2x up-sampling: Linear(dim, 2*dim) then pixel rearrangement to (2H, 2W, dim/2), LayerNorm."""

    def __init__(self, dim: int, norm_layer: type = nn.LayerNorm) -> None:
        super().__init__()
        self.dim = dim
        self.expand = nn.Linear(dim, 2 * dim, bias=False)
        self.norm = norm_layer(dim // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(_pixel_rearrange(self.expand(x), 2))


class FinalPatchExpand_X4(nn.Module):
    """4x up-sampling: Linear(dim, 16*dim) then pixel rearrangement to (4H, 4W, dim), LayerNorm."""

    def __init__(self, dim: int, dim_scale: int = 4, norm_layer: type = nn.LayerNorm) -> None:
        super().__init__()
        self.dim = dim
        self.dim_scale = dim_scale
        self.expand = nn.Linear(dim, dim_scale ** 2 * dim, bias=False)
        self.norm = norm_layer(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(_pixel_rearrange(self.expand(x), self.dim_scale))

    def forward_logits(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``conv1x1(forward(x).permute(0, 3, 1, 2), weight)`` as (B, K, 4H, 4W) logits, computed faster.

        The LayerNorm and a 1x1 convolution (``weight``: (K, dim, 1, 1), no bias) act on each expanded
        vector alone, so they commute with the pixel rearrangement: normalise and classify the
        (B, H, W, 4, 4, dim) view of the expansion, then rearrange only the K-channel result. The
        original's order (rearrange, norm, permute, convolve) wrote and read back three
        (B, 4H, 4W, dim) tensors; in the SwinUNet training step this made the step 0.9x the
        original's speed (benchmarks/README.md). Same values up to float rounding.
        """
        b, h, w, _ = x.shape
        p = self.dim_scale
        e = self.norm(self.expand(x).view(b, h, w, p, p, self.dim))
        y = F.linear(e, weight.reshape(weight.shape[0], -1))            # (B, H, W, p, p, K)
        return y.permute(0, 5, 1, 3, 2, 4).reshape(b, -1, h * p, w * p)


class BasicLayerUp(nn.Module):
    """Swin blocks at one decoder resolution (shifted windows on odd blocks), then PatchExpand."""

    def __init__(self, dim: int, resolution: int, depth: int, num_heads: int, window_size: int = 7,
                 drop_path: Sequence[float] = (), upsample: bool = True) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[
            SwinTransformerBlock(
                dim=dim, input_resolution=(resolution, resolution), num_heads=num_heads,
                window_size=window_size, shift_size=0 if i % 2 == 0 else window_size // 2,
                drop_path=drop_path[i] if len(drop_path) else 0.0,
            )
            for i in range(depth)])
        self.upsample = PatchExpand(dim) if upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(x)
        return self.upsample(x) if self.upsample is not None else x


class SwinUNetDecoder(nn.Module):
    """Decoder of one encoder: final tokens (B, h, w, 8C) + skips -> (B, 8h, 8w, C) tokens after ``norm_up``.

    ``layers_up.0`` = PatchExpand(8C); ``layers_up.i`` (i = 1..3) = BasicLayerUp at dim 8C/2^i with
    depth ``depths[3-i]``; before ``layers_up.i`` the skip ``skips[3-i]`` is concatenated on the
    channel dim (tokens first) and reduced by ``concat_back_dim[i]`` = Linear(2*dim, dim).
    """

    def __init__(self, img_size: int = 224, patch_size: int = 4, embed_dim: int = 96,
                 depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 window_size: int = 7, drop_path_rate: float = 0.1, fused_attn: bool = True) -> None:
        super().__init__()
        n = len(depths)
        self.num_layers = n
        grid = img_size // patch_size
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers_up = nn.ModuleList()
        self.concat_back_dim = nn.ModuleList()
        for i in range(n):
            dim = embed_dim * 2 ** (n - 1 - i)
            self.concat_back_dim.append(nn.Linear(2 * dim, dim) if i > 0 else nn.Identity())
            if i == 0:
                self.layers_up.append(PatchExpand(dim))
            else:
                k = n - 1 - i
                self.layers_up.append(BasicLayerUp(
                    dim=dim, resolution=grid // 2 ** k, depth=depths[k], num_heads=num_heads[k],
                    window_size=window_size, drop_path=dpr[sum(depths[:k]):sum(depths[:k + 1])],
                    upsample=i < n - 1))
        self.norm_up = nn.LayerNorm(embed_dim)
        self.num_features = embed_dim
        self.apply(_init_weights)
        enable_fused_attn(self, fused_attn)

    def forward(self, x: torch.Tensor, skips: List[torch.Tensor]) -> torch.Tensor:
        for i, layer_up in enumerate(self.layers_up):
            if i > 0:
                x = self.concat_back_dim[i](torch.cat([x, skips[self.num_layers - 1 - i]], dim=-1))
            x = layer_up(x)
        return self.norm_up(x)


def _init_weights(m: nn.Module) -> None:
    """Swin-Unet's init: truncated normal (std .02) linears, zero biases, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------
# the original DoubleSwinTransformerSegmentation's decoder keys

_DEC_HEAD = re.compile(r"^(decoder\d+)\.(up|output)\.(.*)$")
_DEC_ENCODER_COPY = re.compile(r"^decoder\d+\.(layers|patch_embed|norm|absolute_pos_embed|head)(\.|$)")
_DEC_ALIAS = re.compile(r"^decoder\d+\.([^.]+)\.(.*)$")
_DEC_OWN = ("layers_up", "concat_back_dim", "norm_up", "up", "output")


def checkpoint_filter(state_dict: Mapping[str, torch.Tensor], head_decoder: str = "decoder1", prefix: str = "",
                      ignored: Optional[Dict[str, str]] = None) -> Dict[str, torch.Tensor]:
    """Map the original segmentation model's decoder keys (``{prefix}decoderN.*``) onto ours.

    The original built ``up`` / ``output`` in every decoder and used those of ``head_decoder``:
    they become the model's ``up`` / ``output``, the other decoders' are dropped. Each original
    decoder also held a copy of (or an alias to) an encoder: dropped. Dropped keys are reported in
    ``ignored`` (key -> reason); other keys pass unchanged.
    """
    return remap_keys(state_dict, prefix, lambda rest: _decoder_key(rest, head_decoder), ignored)


def _decoder_key(key: str, head_decoder: str):
    """(new key, None) or (None, why it is dropped)."""
    m = _DEC_HEAD.match(key)
    if m:
        dec, mod, rest = m.groups()
        if dec == head_decoder:
            return f"{mod}.{rest}", None
        return None, f"unused duplicate `{dec}.{mod}` of the original (its forward uses {head_decoder}.{mod})"
    if _DEC_ENCODER_COPY.match(key):
        return None, "unused encoder copy inside the original SwinUNet decoder"
    m = _DEC_ALIAS.match(key)
    if m and m.group(1) not in _DEC_OWN and m.group(2).split(".")[0] in ("patch_embed", "layers", "norm", "head"):
        return None, "alias of an encoder inside the original SwinUNet decoder"
    return key, None
