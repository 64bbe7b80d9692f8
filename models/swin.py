"""Swin-Tiny encoder with any number of input bands, on timm's ``SwinTransformer``.

Layouts. The original (Microsoft / MoBY) Swin puts the patch-merging ``downsample`` at the END
of stage i (``layers.{i}.downsample``, i = 0..2), has a classifier ``head`` and stores the
``relative_position_index`` / ``attn_mask`` buffers. timm puts it at the START of stage i+1
(``layers.{i+1}.downsample``) and recomputes the buffers. Blocks have the same names in both.
``original_to_timm`` / ``timm_to_original`` map between the two; ``checkpoint_filter`` maps a
checkpoint in either layout onto ours (timm's), ``to_original_state_dict`` writes the original one.
"""
from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from timm.models.swin_transformer import SwinTransformer, WindowAttention

from .base import remap_keys

COMPUTED_BUFFERS: Tuple[str, ...] = ("relative_position_index", "attn_mask")

def valid_swin_img_size(img_size: int, patch_size: int = 4, window_size: int = 7, num_stages: int = 4) -> bool:
    """True if every stage grid halves exactly and is a multiple of the window (or fits in one)."""
    if img_size <= 0 or img_size % (patch_size * 2 ** (num_stages - 1)):
        return False
    grid = img_size // patch_size
    for i in range(num_stages):
        r = grid // 2 ** i
        if r > window_size and r % window_size:
            return False
    return True


def check_swin_img_size(img_size: int, patch_size: int = 4, window_size: int = 7, num_stages: int = 4) -> None:
    """Raise ValueError naming the sizes that work."""
    if not isinstance(img_size, int) or not valid_swin_img_size(img_size, patch_size, window_size, num_stages):
        ok = [s for s in range(32, 1025, 32) if valid_swin_img_size(s, patch_size, window_size, num_stages)]
        raise ValueError(
            f"Swin (patch {patch_size}, window {window_size}, {num_stages} stages) cannot take img_size={img_size!r}: "
            f"the patch grid must halve {num_stages - 1} times and each stage's grid must be a multiple of the "
            f"window {window_size} (or at most {window_size}); sizes that work: {', '.join(map(str, ok[:6]))}, ... "
            f"(multiples of {patch_size * 2 ** (num_stages - 1) * window_size})")


def enable_fused_attn(module: nn.Module, enable: bool = True) -> None:
    """Switch timm's window attention to ``F.scaled_dot_product_attention`` (off by default in timm)."""
    for m in module.modules():
        if isinstance(m, WindowAttention):
            m.fused_attn = enable


class SwinEncoder(SwinTransformer):
    """Swin Transformer encoder without classifier (timm layout, NHWC tokens).

    ``forward(x)`` -> pooled features (B, 768) = the original ``forward_features`` (final norm +
    average pool); ``forward_features(x)`` -> final normed tokens (B, h, w, 768), unpooled (timm);
    ``forward_head(tokens, pre_logits=True)`` pools them;
    ``forward_unet(x)`` -> (final tokens, final normed tokens, four skips) for the SwinUNet decoder.
    """

    def __init__(
            self,
            in_chans: int = 13,
            img_size: int = 224,
            embed_dim: int = 96,
            depths: Sequence[int] = (2, 2, 6, 2),
            num_heads: Sequence[int] = (3, 6, 12, 24),
            window_size: int = 7,
            patch_size: int = 4,
            drop_path_rate: float = 0.1,
            fused_attn: bool = True,
    ) -> None:
        check_swin_img_size(img_size, patch_size, window_size, len(depths))
        super().__init__(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=0, global_pool="avg",
            embed_dim=embed_dim, depths=tuple(depths), num_heads=tuple(num_heads), window_size=window_size,
            drop_path_rate=drop_path_rate,
        )
        self.img_size = img_size
        self.window_size = window_size
        enable_fused_attn(self, fused_attn)

    def checkpoint_filter(self, state_dict: Mapping[str, torch.Tensor], prefix: str = "",
                          ignored: Optional[Dict[str, str]] = None) -> Dict[str, torch.Tensor]:
        """``checkpoint_filter`` of this encoder's keys (those starting with ``prefix``)."""
        return checkpoint_filter(state_dict, prefix, ignored)

    def forward_unet(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
        """Return (final tokens, final normed tokens, skips), all NHWC.

        The skips are the inputs of the original's four stages: the patch-embed output, then each
        stage's output after its patch merging (timm: output of stage i+1's ``downsample``).
        """
        x = self.patch_embed(x)
        skips = []
        for stage in self.layers:
            x = stage.downsample(x)
            skips.append(x)
            x = stage.blocks(x)
        return x, self.norm(x), skips


# ---------------------------------------------------------------------------------------------
# key layouts

_ORIG_DS = re.compile(r"^layers\.(\d+)\.downsample\.")
_TIMM_DS = re.compile(r"^layers\.(\d+)\.downsample\.")


def is_original_layout(state_dict: Mapping[str, torch.Tensor], prefix: str = "") -> bool:
    """Original layout has a downsample in stage 0; timm's stage 0 has none."""
    return any(k.startswith(prefix + "layers.0.downsample.") for k in state_dict)


def original_to_timm_key(key: str) -> str:
    """``layers.{i}.downsample.*`` -> ``layers.{i+1}.downsample.*`` (key relative to the encoder)."""
    return _ORIG_DS.sub(lambda m: f"layers.{int(m.group(1)) + 1}.downsample.", key)


def timm_to_original_key(key: str) -> str:
    return _TIMM_DS.sub(lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", key)


def is_computed_buffer(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in COMPUTED_BUFFERS


def original_buffers(encoder: nn.Module, prefix: str = "") -> Dict[str, torch.Tensor]:
    """The ``relative_position_index`` / ``attn_mask`` buffers (names are layout-independent)."""
    return {prefix + n: b for n, b in encoder.named_buffers() if b is not None and is_computed_buffer(n)}


SWIN_HEAD = "unused 1000-class classifier `head` of the original Swin"


def checkpoint_filter(state_dict: Mapping[str, torch.Tensor], prefix: str = "",
                      ignored: Optional[Dict[str, str]] = None) -> Dict[str, torch.Tensor]:
    """Map the keys of one Swin encoder (those starting with ``prefix``) onto ours (timm's layout).

    The original layout (detected per encoder) moves each ``downsample`` to the next stage; the
    original's 1000-class ``head`` is dropped and reported in ``ignored`` (key -> reason). Other
    keys pass unchanged; the computed buffers are left for the loader to verify.
    """
    original = is_original_layout(state_dict, prefix)

    def rule(rest: str) -> Tuple[Optional[str], Optional[str]]:
        if rest.startswith("head."):
            return None, SWIN_HEAD
        return (original_to_timm_key(rest) if original else rest), None
    return remap_keys(state_dict, prefix, rule, ignored)


def to_original_state_dict(
        encoder: SwinEncoder,
        head: Optional[Mapping[str, torch.Tensor]] = None,
        num_classes: int = 1000,
        prefix: str = "",
) -> Dict[str, torch.Tensor]:
    """Encoder weights in the original layout and key order, with buffers and a ``head``.

    ``head``: ``{"weight", "bias"}`` to write as the (unused) classifier; zeros of
    ``num_classes`` x ``num_features`` if None.
    """
    sd = encoder.state_dict()
    bufs = dict(encoder.named_buffers())
    out: Dict[str, torch.Tensor] = {}

    def put(name: str) -> None:
        out[prefix + name] = sd[name]

    for n in sd:
        if n.startswith("patch_embed."):
            put(n)
    for i, stage in enumerate(encoder.layers):
        for j, block in enumerate(stage.blocks):
            bp = f"layers.{i}.blocks.{j}."
            if block.attn_mask is not None:
                out[prefix + bp + "attn_mask"] = block.attn_mask
            for n in sd:
                if n.startswith(bp):
                    put(n)
                    if n.endswith("relative_position_bias_table"):
                        out[prefix + bp + "attn.relative_position_index"] = bufs[bp + "attn.relative_position_index"]
        if i + 1 < len(encoder.layers):
            # the original PatchMerging registers ``reduction`` before ``norm``
            ds = [n for n in sd if n.startswith(f"layers.{i + 1}.downsample.")]
            for n in sorted(ds, key=lambda n: ".norm." in n):
                out[prefix + timm_to_original_key(n)] = sd[n]
    for n in sd:
        if n.startswith("norm."):
            put(n)
    if head is None:
        head = {"weight": torch.zeros(num_classes, encoder.num_features), "bias": torch.zeros(num_classes)}
    out[prefix + "head.weight"] = head["weight"]
    out[prefix + "head.bias"] = head["bias"]
    if len(out) != len(sd) + len(original_buffers(encoder)) + 2:  # every weight, every buffer, the head
        raise RuntimeError("to_original_state_dict: unexpected encoder structure")
    return out


__all__ = [
    "SwinEncoder", "check_swin_img_size", "valid_swin_img_size", "enable_fused_attn",
    "is_original_layout", "original_to_timm_key", "timm_to_original_key", "is_computed_buffer",
    "original_buffers", "to_original_state_dict", "checkpoint_filter",
    "COMPUTED_BUFFERS", "SWIN_HEAD",
]
