"""Our encoders as timm models: found in a checkpoint, verified, written for timm / the HF Hub / TorchGeo.

A checkpoint of this project (pre-training or downstream), the original code's downstream
checkpoints and the published ``swin_t.pth`` / ``resnet50.pth`` / ``resnet18.pth`` keep one
encoder per sensor under ``backbone1.`` (S1, 2 bands) and ``backbone2.`` (S2, 13 bands); the
early-fusion models keep one under ``backbone.`` (S1 then S2 bands, 15). ``find_encoders`` reads
each into our own encoder class through the family's ``checkpoint_filter`` (original Swin layout,
1000-class ``head``, SimCLR projection heads: dropped and reported) with the strict loader of
``models.checkpoint``; decoders and classifier heads are not encoders and are left out.

Mapping onto timm (checked with timm 1.0.31): ``SwinEncoder`` *is* timm's ``SwinTransformer``, so
``swin_tiny_patch4_window7_224`` with ``in_chans``, ``img_size`` and ``num_classes=0`` takes its state
dict as it is; our ResNets are torchvision's, whose keys are timm's ``resnet18`` / ``resnet50``
(same blocks, stride on the 3x3 conv), again with ``num_classes=0``. Both then return the same
pooled features as ours (``verify``).

``write_export`` writes, per encoder, the folder timm's ``save_for_hf`` writes (``config.json``,
``model.safetensors``) plus the model card ``README.md`` (``models.export_card``), and beside it
``<name>.torchgeo.ckpt`` = ``{"hyper_parameters": {"model": <timm name>, ...}, "state_dict":
{"model.<key>": tensor}}``, the file TorchGeo's trainers read with ``weights=PATH``.
``load_encoder`` (``hubconf.py``) turns any of these files back into the timm model.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .checkpoint import CheckpointError, LoadReport, extract_state_dict, load_checkpoint, read_checkpoint
from .resnet import ResNet
from .swin import SwinEncoder, is_computed_buffer

#: our architecture name -> timm's
TIMM_NAMES: Dict[str, str] = {"swin_t": "swin_tiny_patch4_window7_224", "resnet50": "resnet50",
                              "resnet18": "resnet18"}
#: state-dict prefix of an encoder -> the sensor(s) it reads (early fusion: by its band count)
ENCODER_PREFIXES: Dict[str, Optional[str]] = {"backbone1.": "s1", "backbone2.": "s2", "backbone.": None}
SENSOR_CHANNELS: Dict[str, int] = {"s1": 2, "s2": 13, "s1s2": 15}
SWIN_PATCH, SWIN_WINDOW = 4, 7
TORCHGEO_SUFFIX = ".torchgeo.ckpt"
VERIFY_ATOL = 1e-5


# ---------------------------------------------------------------------------------------------
# what the source checkpoint is

@dataclass
class SourceRecord:
    """Where a checkpoint comes from, as far as the file (and its run folder) tell."""

    path: str
    sha256: str
    kind: str                          # "backbone" | "downstream" | "state_dict"
    origin: str                        # "published" | "pretraining" | "downstream" | "original_downstream" | "unknown"
    epoch: Optional[int] = None
    config: Optional[Dict[str, Any]] = None   # the run's settings (checkpoint "config" or run folder config.json)
    config_file: Optional[str] = None
    model_name: Optional[str] = None
    model_options: Dict[str, Any] = field(default_factory=dict)

    @property
    def file_name(self) -> str:
        return os.path.basename(self.path)


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fp:
        for block in iter(lambda: fp.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _run_config(path: str, obj: Mapping[str, Any]) -> Tuple[Optional[dict], Optional[str]]:
    """The run's settings: the checkpoint's own ``config``, else ``config.json`` beside it."""
    if isinstance(obj.get("config"), Mapping):
        return dict(obj["config"]), "the checkpoint's 'config'"
    side = Path(path).parent / "config.json"
    if side.is_file():
        try:
            cfg = json.loads(side.read_text())
        except (OSError, ValueError):
            return None, None
        if isinstance(cfg, dict):
            return cfg, str(side)
    return None, None


def describe_source(obj: Mapping[str, Any], path: str, kind: str) -> SourceRecord:
    """``SourceRecord`` of a checkpoint dict read from ``path`` (``kind`` from ``extract_state_dict``)."""
    config, config_file = _run_config(path, obj) if os.path.isfile(path) else (None, None)
    if kind == "downstream":
        origin = "downstream" if obj.get("model_name") else "original_downstream"
    elif kind == "backbone":
        origin = "pretraining" if config is not None else "published"
    else:
        origin = "unknown"
    epoch = obj.get("epoch", obj.get("epochs"))
    return SourceRecord(
        path=path, sha256=sha256_file(path) if os.path.isfile(path) else "", kind=kind, origin=origin,
        epoch=int(epoch) if isinstance(epoch, (int, float)) else None, config=config,
        config_file=config_file, model_name=obj.get("model_name"),
        model_options=dict(obj.get("model_options") or {}))


# ---------------------------------------------------------------------------------------------
# the encoders of a checkpoint

@dataclass
class Encoder:
    """One encoder of a checkpoint, loaded into our class (eval mode)."""

    arch: str                 # "swin_t" | "resnet50" | "resnet18"
    sensor: str               # "s1" | "s2" | "s1s2" (early fusion)
    prefix: str               # its state-dict prefix in the checkpoint, e.g. "backbone2."
    module: nn.Module         # SwinEncoder / ResNet (no head)
    report: LoadReport
    img_size: int             # Swin: its fixed input size; ResNets: the training crop if recorded, else 224
    img_size_source: str = "default"

    @property
    def name(self) -> str:
        return f"{self.arch}_{self.sensor}"

    @property
    def timm_name(self) -> str:
        return TIMM_NAMES[self.arch]

    @property
    def in_chans(self) -> int:
        return SENSOR_CHANNELS[self.sensor]

    @property
    def num_features(self) -> int:
        return int(self.module.num_features)

    def timm_kwargs(self) -> Dict[str, Any]:
        """What ``timm.create_model(timm_name, **kwargs)`` needs to take these weights."""
        kw: Dict[str, Any] = {"num_classes": 0, "in_chans": self.in_chans}
        if self.arch == "swin_t":
            kw["img_size"] = self.img_size
        return kw


def _arch_of(sd: Mapping[str, torch.Tensor]) -> Optional[str]:
    if "patch_embed.proj.weight" in sd:
        return "swin_t"
    if "layer1.0.conv3.weight" in sd:
        return "resnet50"
    if "layer1.0.conv1.weight" in sd:
        return "resnet18"
    return None


def _first_conv(arch: str) -> str:
    return "patch_embed.proj.weight" if arch == "swin_t" else "conv1.weight"


def _sensor_of(prefix: str, in_chans: int, source: str) -> str:
    expected = ENCODER_PREFIXES[prefix]
    if expected is None:  # early fusion: the bands tell
        by_count = {v: k for k, v in SENSOR_CHANNELS.items()}
        if in_chans in by_count:
            return by_count[in_chans]
        expected_text = "2 (S1), 13 (S2) or 15 (S1 + S2)"
    elif in_chans == SENSOR_CHANNELS[expected]:
        return expected
    else:
        expected_text = f"{SENSOR_CHANNELS[expected]} ({expected.upper()})"
    raise CheckpointError(f"unknown layout: the encoder under '{prefix}' takes {in_chans} input bands, "
                          f"expected {expected_text}", source)


def _recorded_img_size(record: SourceRecord, arch: str) -> Tuple[Optional[int], str]:
    """The input size the run recorded: Swin's ``img_size`` (downstream ``model_options``, the
    pre-training config), else the run's crop size."""
    cfg = record.config or {}
    effective = cfg.get("effective") if isinstance(cfg.get("effective"), Mapping) else {}
    swin = arch == "swin_t"  # create_model records img_size for every model; only Swin uses it
    for value, where in ((record.model_options.get("img_size") if swin else None, "model_options.img_size"),
                         (effective.get("img_size"), "config effective.img_size"),
                         (cfg.get("image_px_size"), "config image_px_size")):
        if isinstance(value, int) and value > 0:
            return value, where
    return None, "default"


def _swin_img_size(sd: Mapping[str, torch.Tensor], record: SourceRecord) -> Tuple[int, str]:
    """Swin's input size: from a stored ``attn_mask`` (windows per image), else as recorded, else 224."""
    mask = sd.get("layers.0.blocks.1.attn_mask")
    if mask is not None and mask.dim() == 3:
        side = math.isqrt(int(mask.shape[0]))
        if side * side == mask.shape[0]:
            return side * SWIN_WINDOW * SWIN_PATCH, "the checkpoint's attn_mask"
    size, where = _recorded_img_size(record, "swin_t")
    return (size, where) if size else (224, "default")


def _build(arch: str, in_chans: int, img_size: int) -> nn.Module:
    if arch == "swin_t":
        return SwinEncoder(in_chans, img_size=img_size)
    return ResNet(arch, in_chans, num_classes=0)


def find_encoders(checkpoint, img_size: Optional[int] = None, sensors: Optional[Sequence[str]] = None,
                  source: Optional[str] = None) -> Tuple[SourceRecord, List[Encoder]]:
    """The record of ``checkpoint`` (path or dict) and its encoders, loaded (strict) into our classes.

    ``img_size`` overrides the Swin input size (else: the checkpoint's ``attn_mask``, the run's
    record, 224). ``sensors`` keeps only those (``s1``, ``s2``, ``s1s2``). ``source``: the file a
    dict was read from. Raises ``CheckpointError`` (one line plus keys) for a file without a
    recognisable encoder or with an unknown layout.
    """
    obj, path = read_checkpoint(checkpoint)
    path = source or path
    sd, kind = extract_state_dict(obj, path)
    record = describe_source(obj, path, kind)
    groups = {p: {k[len(p):]: v for k, v in sd.items() if k.startswith(p)} for p in ENCODER_PREFIXES}
    groups = {p: g for p, g in groups.items() if g}
    if not groups:
        raise CheckpointError("no recognisable encoder: no key starts with " + ", ".join(ENCODER_PREFIXES)
                              + " (S1, S2, early fusion); first keys: " + ", ".join(list(sd)[:5]), path)
    encoders = []
    for prefix, sub in groups.items():
        arch = _arch_of(sub)
        if arch is None:
            raise CheckpointError(f"unknown layout under '{prefix}': neither a Swin-T (patch_embed.proj.weight) "
                                  f"nor a ResNet18/50 (layer1.0.conv1.weight); first keys: "
                                  + ", ".join(list(sub)[:5]), path)
        sensor = _sensor_of(prefix, int(sub[_first_conv(arch)].shape[1]), path)
        if sensors is not None and sensor not in sensors:
            continue
        if arch == "swin_t":
            size, where = (img_size, "--img_size") if img_size else _swin_img_size(sub, record)
        else:
            recorded, where = _recorded_img_size(record, arch)
            size = img_size or recorded or 224
            where = "--img_size" if img_size else where
        module = _build(arch, SENSOR_CHANNELS[sensor], size)
        report = load_checkpoint(module, {"state_dict": sub}, source=f"{path} [{prefix}*]")
        encoders.append(Encoder(arch, sensor, prefix, module.eval(), report, size, where))
    if not encoders:
        raise CheckpointError(f"no encoder for sensor(s) {', '.join(sensors or ())} (the checkpoint has "
                              + ", ".join(sorted(groups)) + ")", path)
    return record, encoders


# ---------------------------------------------------------------------------------------------
# onto timm

def encoder_state_dict(module: nn.Module) -> Dict[str, torch.Tensor]:
    """The weights to export: the state dict without the (recomputed) Swin buffers, contiguous."""
    return {k: v.detach().contiguous().clone() for k, v in module.state_dict().items() if not is_computed_buffer(k)}


def to_timm(encoder: Encoder) -> nn.Module:
    """The timm model holding ``encoder``'s weights (strict: no missing or unexpected key)."""
    import timm

    model = timm.create_model(encoder.timm_name, pretrained=False, **encoder.timm_kwargs(),
                              pretrained_cfg_overlay=_data_cfg(encoder.in_chans))
    model.load_state_dict(encoder_state_dict(encoder.module), strict=True)
    return model.eval()


def _data_cfg(in_chans: int) -> Dict[str, Any]:
    """timm's preprocessing fields for our inputs: none beyond our own normalisation (mean 0, std 1;
    replaces the 3-band ImageNet statistics timm would otherwise average over the bands, with a warning)."""
    return {"mean": (0.0,) * in_chans, "std": (1.0,) * in_chans, "crop_pct": 1.0, "interpolation": "bilinear"}


def verify(ours: nn.Module, theirs: nn.Module, in_chans: int, img_size: int, batch: int = 2,
           seed: int = 0) -> float:
    """Max abs difference of the pooled features of two encoders on a seeded random batch in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((batch, in_chans, img_size, img_size), generator=g)
    with torch.no_grad():
        a, b = ours.eval()(x), theirs.eval()(x)
    if a.shape != b.shape:
        raise RuntimeError(f"feature shapes differ: ours {tuple(a.shape)}, timm {tuple(b.shape)}")
    return float((a - b).abs().max())


# ---------------------------------------------------------------------------------------------
# writing

def torchgeo_checkpoint(encoder: Encoder, timm_model: nn.Module) -> Dict[str, Any]:
    """What TorchGeo's trainers read with ``weights=PATH`` (``utils.extract_backbone``): the timm name
    under ``hyper_parameters.model`` and the timm weights under ``state_dict`` as ``model.<key>``."""
    sd = {f"model.{k}": v for k, v in encoder_state_dict(timm_model).items()}
    return {"hyper_parameters": {"model": encoder.timm_name, "in_channels": encoder.in_chans,
                                 "num_classes": 0, **({"img_size": encoder.img_size}
                                                      if encoder.arch == "swin_t" else {})},
            "state_dict": sd}


def _hf_config(folder: Path, encoder: Encoder, record: SourceRecord, max_diff: float) -> None:
    """Replace what ``save_for_hf`` copied from timm's ImageNet weights (tag, licence, paper, mean/std)
    with our facts; add a ``sentinel`` block (bands, normalisation, source) that timm ignores."""
    from .export_card import normalization_record

    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    pre = cfg["pretrained_cfg"]
    for key in ("tag", "license", "origin_url", "paper_ids", "paper_name", "notes", "hf_hub_id",
                "test_input_size", "test_crop_pct", "label_names", "label_descriptions"):
        pre.pop(key, None)
    pre.update({k: list(v) if isinstance(v, tuple) else v for k, v in _data_cfg(encoder.in_chans).items()},
               input_size=[encoder.in_chans, encoder.img_size, encoder.img_size])
    cfg["sentinel"] = {**normalization_record(encoder.sensor),
                       "source_checkpoint": {"file": record.file_name, "sha256": record.sha256,
                                             "origin": record.origin, "prefix": encoder.prefix},
                       "verified_max_abs_diff": max_diff}
    path.write_text(json.dumps(cfg, indent=2) + "\n")


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse an existing, non-empty ``--out`` without ``--overwrite``."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"--out {out}: the folder exists and is not empty; pass --overwrite to replace "
                              "the exported files in it (nothing else there is touched)")


def write_export(encoder: Encoder, record: SourceRecord, out: Path, overwrite: bool = False,
                 inputs: Sequence[str] = ()) -> Dict[str, Any]:
    """Write ``out/<name>/`` (config.json, model.safetensors, README.md) and ``out/<name>.torchgeo.ckpt``.

    Returns a summary (paths, max feature difference). Only these two paths are replaced with
    ``overwrite``; an input file (``inputs``) is never among them.
    """
    from timm.models import save_for_hf

    from .checkpoint import save_checkpoint
    from .export_card import model_card

    folder, ckpt = out / encoder.name, out / (encoder.name + TORCHGEO_SUFFIX)
    for source in map(os.path.realpath, inputs):  # an input is never overwritten
        if source == os.path.realpath(ckpt) or source.startswith(os.path.realpath(folder) + os.sep):
            raise FileExistsError(f"--out {out}: writing {encoder.name} would replace the input {source}; "
                                  "choose another --out")
    for target in (folder, ckpt):
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    model = to_timm(encoder)
    diff = verify(encoder.module, model, encoder.in_chans, encoder.img_size)
    if not diff <= VERIFY_ATOL:
        raise RuntimeError(f"{encoder.name}: the timm model's features differ from ours by {diff:.3g} "
                           f"(> {VERIFY_ATOL}); nothing written")
    if folder.exists():
        shutil.rmtree(folder)
    save_for_hf(model, folder, safe_serialization=True)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder / "model.safetensors", 0o666 & ~umask)  # safetensors writes 0600: an ordinary file
    _hf_config(folder, encoder, record, diff)
    (folder / "README.md").write_text(model_card(encoder, record, diff), encoding="utf-8")
    save_checkpoint(torchgeo_checkpoint(encoder, model), ckpt)
    return {"name": encoder.name, "folder": str(folder), "torchgeo": str(ckpt), "max_abs_diff": diff,
            "img_size": encoder.img_size, "load": encoder.report.summary()}


# ---------------------------------------------------------------------------------------------
# reading any of these back (hubconf.py)

def _timm_from_state_dict(arch: str, sensor: str, sd: Optional[Mapping[str, torch.Tensor]], source: str,
                          img_size: Optional[int], **kwargs: Any) -> nn.Module:
    """timm's model of ``arch`` for ``sensor`` (``kwargs`` to ``timm.create_model``), loaded with ``sd``
    (None: random init); a new classifier (``num_classes`` > 0) may stay fresh, nothing else."""
    import timm

    kwargs.setdefault("num_classes", 0)
    if arch == "swin_t":
        kwargs.setdefault("img_size", img_size or 224)
    kwargs.setdefault("pretrained_cfg_overlay", _data_cfg(SENSOR_CHANNELS[sensor]))
    model = timm.create_model(TIMM_NAMES[arch], pretrained=False, in_chans=SENSOR_CHANNELS[sensor], **kwargs)
    if sd is None:
        return model
    sd = {k: v for k, v in sd.items() if not is_computed_buffer(k)}
    result = model.load_state_dict(sd, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(("fc.", "head.fc."))]
    if missing or result.unexpected_keys:
        raise CheckpointError(f"weights do not fit timm's {TIMM_NAMES[arch]} ({sensor})", source,
                              missing, result.unexpected_keys)
    return model


def _exported_img_size(safetensors_file: str) -> Optional[int]:
    """The Swin input size recorded in an exported folder's ``config.json`` (None if absent)."""
    cfg_file = Path(safetensors_file).parent / "config.json"
    if not cfg_file.is_file():
        return None
    size = (json.loads(cfg_file.read_text()).get("model_args") or {}).get("img_size")
    return int(size[0] if isinstance(size, (list, tuple)) else size) if size else None


def load_encoder(weights, arch: str, sensor: str, img_size: Optional[int] = None, **kwargs: Any) -> nn.Module:
    """The timm model of ``arch`` for ``sensor`` with ``weights``: None (random init), an exported
    folder or its ``model.safetensors``, a ``.torchgeo.ckpt``, or any checkpoint ``find_encoders`` reads
    (published, pre-training, downstream; path or dict). ``kwargs`` go to ``timm.create_model``
    (e.g. ``num_classes`` for a new head)."""
    if arch not in TIMM_NAMES or sensor not in SENSOR_CHANNELS:
        raise ValueError(f"unknown encoder {arch}_{sensor}: arch in {sorted(TIMM_NAMES)}, "
                         f"sensor in {sorted(SENSOR_CHANNELS)}")
    if weights is None:
        return _timm_from_state_dict(arch, sensor, None, "<random init>", img_size, **kwargs)
    if not isinstance(weights, Mapping):
        path = os.fspath(weights)
        if os.path.isdir(path):
            path = os.path.join(path, "model.safetensors")
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            if not os.path.isfile(path):
                raise FileNotFoundError(f"weights: no such file: {path}")
            return _timm_from_state_dict(arch, sensor, load_file(path), path,
                                         img_size or _exported_img_size(path), **kwargs)
        weights = path
    obj, source = read_checkpoint(weights)
    hp = obj.get("hyper_parameters")
    if isinstance(hp, Mapping) and "state_dict" in obj:  # a TorchGeo checkpoint (ours: .torchgeo.ckpt)
        if hp.get("model") != TIMM_NAMES[arch]:
            raise CheckpointError(f"a TorchGeo checkpoint of {hp.get('model')!r}, not {TIMM_NAMES[arch]!r}", source)
        sd = {k[len("model."):]: v for k, v in obj["state_dict"].items() if k.startswith("model.")}
        return _timm_from_state_dict(arch, sensor, sd, source, img_size or hp.get("img_size"), **kwargs)
    _, encoders = find_encoders(obj, img_size=img_size, sensors=[sensor], source=source)
    enc = encoders[0]
    if enc.arch != arch:
        raise CheckpointError(f"the checkpoint's {sensor.upper()} encoder is a {enc.arch}, not a {arch}", source)
    return _timm_from_state_dict(arch, sensor, encoder_state_dict(enc.module), source, enc.img_size, **kwargs)


__all__ = [
    "TIMM_NAMES", "SENSOR_CHANNELS", "TORCHGEO_SUFFIX", "SourceRecord", "Encoder", "describe_source",
    "find_encoders", "encoder_state_dict", "to_timm", "verify", "torchgeo_checkpoint", "check_out_dir",
    "write_export", "load_encoder", "sha256_file",
]
