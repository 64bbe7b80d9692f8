"""The model card (``README.md``) of an exported encoder, generated from the checkpoint's own record.

Facts come from the code, never typed twice: bands from ``data.bands``, the normalisation from
``data.transforms`` (clip ranges, 1e-5), the run's settings from its ``config``, the encoder from
``models.export.Encoder``. The card's Python blocks are runnable (the tests execute them).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from typing import Any, Dict, List, Mapping

from data.bands import PIXEL_SIZE_M, S1_BANDS, S2_BANDS, S2_RESOLUTION_M, S2_WAVELENGTH_NM
from data.transforms import EPS, S1_CLIP, S2_CLIP

#: Sentinel-1 C-band SAR centre frequency (GHz)
S1_FREQUENCY_GHZ = 5.405
ARCH_TITLES = {"swin_t": "Swin-T", "resnet50": "ResNet-50", "resnet18": "ResNet-18"}
SENSOR_TITLES = {"s1": "Sentinel-1", "s2": "Sentinel-2", "s1s2": "Sentinel-1 + Sentinel-2 (early fusion)"}
#: settings shown from a run's config (first found wins; Swin pre-training keeps them under "effective")
RUN_SETTINGS = ("arch", "model", "target", "finetuning", "epochs", "batch_size", "lr", "learning_rate",
                "classifier_lr", "weight_decay", "temperature", "warmup_epochs", "drop_path_rate",
                "image_px_size", "img_size", "train_mode", "train_dir", "train_used_data_fraction",
                "clip_sample_values", "lr_schedule", "seed", "checkpoint")
#: settings that hold a local path: only the file or folder name goes into the card
PATH_SETTINGS = ("train_dir", "checkpoint")
PAPER = ("Scheibenreif, Hanna, Mommert, Borth: *Self-supervised Vision Transformers for Land-cover "
         "Segmentation and Classification*, CVPR EarthVision workshop 2022")
BIBTEX = """@inproceedings{scheibenreif2022self,
  title     = {Self-supervised Vision Transformers for Land-cover Segmentation and Classification},
  author    = {Scheibenreif, Linus and Hanna, Jo{\\"e}lle and Mommert, Michael and Borth, Damian},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR) Workshops},
  pages     = {1422--1431},
  year      = {2022}
}"""


def _sensors(sensor: str) -> List[str]:
    return ["s1", "s2"] if sensor == "s1s2" else [sensor]


def normalization_record(sensor: str) -> Dict[str, Any]:
    """Bands and normalisation as data (the ``sentinel`` block of the exported ``config.json``)."""
    bands: List[Dict[str, Any]] = []
    norm: Dict[str, Any] = {}
    for s in _sensors(sensor):
        if s == "s1":
            bands += [{"name": b, "sensor": "S1", "polarisation": b, "units": "dB",
                       "frequency_ghz": S1_FREQUENCY_GHZ} for b in S1_BANDS]
            norm["s1"] = {"input": "Sentinel-1 GRD backscatter (sigma0) in dB", "nan_to": S1_CLIP[0],
                          "clip": list(S1_CLIP), "add": -S1_CLIP[0], "divide_by": "per patch, per band max + eps",
                          "eps": float(EPS), "dtype": "float32", "function": "data.transforms.normalize_s1"}
        else:
            bands += [{"name": b, "sensor": "S2", "central_wavelength_nm": w, "native_resolution_m": r}
                      for b, w, r in zip(S2_BANDS, S2_WAVELENGTH_NM, S2_RESOLUTION_M)]
            norm["s2"] = {"input": "Sentinel-2 Level-1C top-of-atmosphere reflectance x 10000 (DN, no offset)",
                          "clip": list(S2_CLIP), "add": 0.0, "divide_by": "per patch, per band max + eps",
                          "eps": float(EPS), "dtype": "float32", "function": "data.transforms.normalize_s2"}
    return {"sensor": sensor, "bands": bands, "pixel_size_m": PIXEL_SIZE_M, "normalization": norm}


# ---------------------------------------------------------------------------------------------
# sections

def _front_matter(encoder, record) -> str:
    tags = ["timm", "image-feature-extraction", "remote-sensing", "earth-observation"]
    tags += {"s1": ["sentinel-1"], "s2": ["sentinel-2"], "s1s2": ["sentinel-1", "sentinel-2"]}[encoder.sensor]
    if record.origin in ("published", "pretraining"):
        tags.append("self-supervised-learning")
    lines = ["---", "library_name: timm", "pipeline_tag: image-feature-extraction", "tags:"]
    lines += [f"- {t}" for t in tags]
    lines.append("---")
    return "\n".join(lines)


def _summary(encoder, record, diff: float) -> str:
    what = {"published": "self-supervised (cross-modal contrastive, SimCLR-style) on SEN12MS",
            "pretraining": "self-supervised (cross-modal contrastive, SimCLR-style) in a run of this project",
            "downstream": "taken from a downstream model (see *Training*: a fine-tuned backbone is still a backbone)",
            "original_downstream": "taken from a downstream checkpoint of the original code",
            "unknown": "from a bare state dict"}[record.origin]
    return (f"# {encoder.name}: {ARCH_TITLES[encoder.arch]} encoder for {SENSOR_TITLES[encoder.sensor]}\n\n"
            f"The {SENSOR_TITLES[encoder.sensor]} encoder ({encoder.in_chans} bands) of `{record.file_name}`, "
            f"{what}, as a timm model without classifier: it returns pooled {encoder.num_features}-d "
            f"features. From a reimplementation of {PAPER}, whose `export_backbone.py` exported it; "
            f"the timm model's features equal the original encoder's (max abs difference {diff:.1e} "
            f"on a random batch at export).")


def _details(encoder, record) -> str:
    import timm
    import torch

    kwargs = ", ".join(f"{k}={v!r}" for k, v in encoder.timm_kwargs().items())
    params = sum(p.numel() for p in encoder.module.parameters())
    size = (f"{encoder.img_size} x {encoder.img_size} px, fixed (Swin; timm's `img_size`)" if encoder.arch == "swin_t"
            else f"any size, a multiple of 32 px ({encoder.img_size} px recorded for this run)"
            if encoder.img_size_source != "default" else "any size, a multiple of 32 px")
    dropped: Dict[str, int] = {}
    for reason in encoder.report.ignored.values():
        dropped[reason] = dropped.get(reason, 0) + 1
    dropped_text = "; ".join(f"{n} keys: {r}" for r, n in dropped.items()) or "none"
    rows = [("architecture", f"{ARCH_TITLES[encoder.arch]}: timm `{encoder.timm_name}({kwargs})`"),
            ("parameters", f"{params / 1e6:.1f} M"),
            ("input", f"(B, {encoder.in_chans}, H, W) float32, normalised as below; {size}"),
            ("output", f"`model(x)`: pooled features (B, {encoder.num_features}); `model.forward_features(x)`: "
                       + ("final normed tokens (B, H/32, W/32, 768), channels last" if encoder.arch == "swin_t"
                          else f"feature map (B, {encoder.num_features}, H/32, W/32)")),
            ("source checkpoint", f"`{record.file_name}`, keys `{encoder.prefix}*`"),
            ("source SHA-256", f"`{record.sha256 or 'unknown (not read from a file)'}`"),
            ("not exported", f"{dropped_text}"),
            ("exported", f"{_dt.date.today().isoformat()} with timm {timm.__version__}, torch {torch.__version__}")]
    return "## Model details\n\n| | |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


def _bands(encoder) -> str:
    lines = ["## Bands, in this order", "",
             f"All bands on one {PIXEL_SIZE_M:g} m grid (SEN12MS resampled every band to {PIXEL_SIZE_M:g} m).", "",
             "| channel | sensor | band | central wavelength | native resolution |", "|---|---|---|---|---|"]
    ch = 0
    for s in _sensors(encoder.sensor):
        if s == "s1":
            for b in S1_BANDS:
                lines.append(f"| {ch} | S1 GRD (IW) | {b} (dB) | C-band, {S1_FREQUENCY_GHZ} GHz (5.55 cm) | 10 m pixels |")
                ch += 1
        else:
            for b, w, r in zip(S2_BANDS, S2_WAVELENGTH_NM, S2_RESOLUTION_M):
                lines.append(f"| {ch} | S2 MSI L1C | {b} | {w} nm | {r} m |")
                ch += 1
    return "\n".join(lines)


def normalization_code(sensor: str) -> str:
    """Self-contained numpy code of the normalisation (equal to ``data.transforms.normalize_*``)."""
    parts = ["import numpy as np", ""]
    if "s2" in _sensors(sensor):
        parts += [
            "def normalize_s2(x):",
            '    """(13, H, W) or (B, 13, H, W) Level-1C DN -> float32 in [0, 1], per patch and band."""',
            f"    x = np.clip(np.asarray(x, dtype=np.float32), {S2_CLIP[0]:g}, {S2_CLIP[1]:g})",
            f"    return x / (x.max(axis=(-2, -1), keepdims=True) + np.float32({float(EPS):g}))", ""]
    if "s1" in _sensors(sensor):
        parts += [
            "def normalize_s1(x):",
            '    """(2, H, W) or (B, 2, H, W) VV, VH in dB -> float32 in [0, 1], per patch and band."""',
            "    x = np.array(x, dtype=np.float32)",
            f"    x[np.isnan(x)] = {S1_CLIP[0]:g}",
            f"    x = np.clip(x, {S1_CLIP[0]:g}, {S1_CLIP[1]:g}) + np.float32({-S1_CLIP[0]:g})",
            f"    return x / (x.max(axis=(-2, -1), keepdims=True) + np.float32({float(EPS):g}))", ""]
    return "\n".join(parts).rstrip() + "\n"


def _normalization(encoder) -> str:
    lines = ["## Input normalisation", "",
             "Exactly what the training data loader did, per patch (the crop the model sees) and per band; "
             "there is no dataset mean or standard deviation:", ""]
    if "s2" in _sensors(encoder.sensor):
        lines += [f"- **Sentinel-2**: Level-1C digital numbers (top-of-atmosphere reflectance x 10000, uint16, "
                  f"13 bands as above); clip to [{S2_CLIP[0]:g}, {S2_CLIP[1]:g}]; divide each band by its "
                  f"own maximum over the patch plus {float(EPS):g} (float32). Result in [0, 1]."]
    if "s1" in _sensors(encoder.sensor):
        lines += [f"- **Sentinel-1**: GRD backscatter in dB (VV, VH); NaN pixels set to {S1_CLIP[0]:g} dB; "
                  f"clip to [{S1_CLIP[0]:g}, {S1_CLIP[1]:g}] dB; add {-S1_CLIP[0]:g}; divide each band by its "
                  f"own maximum over the patch plus {float(EPS):g} (float32). Result in [0, 1]."]
    if encoder.sensor == "s1s2":
        lines += ["- Normalise each sensor on its own, then concatenate: S1 channels first, then S2."]
    lines += ["", "As code (numpy; in this project: `from data import normalize_s1, normalize_s2`, which also take "
              "torch tensors, and `data.transforms.SentinelNormalize` for torchvision-v2 pipelines):", "",
              "```python", normalization_code(encoder.sensor).rstrip(), "```"]
    if "s2" in _sensors(encoder.sensor):
        lines += ["", "### Level-1C, not Level-2A", "",
                  "The encoder saw Level-1C top-of-atmosphere reflectance (SEN12MS, 2016-2017 scenes). Two things "
                  "to get right with newer products:", "",
                  "- **Processing baseline 04.00 and later** (products processed since 25 January 2022) store "
                  "`DN = 10000 * reflectance - RADIO_ADD_OFFSET` with `RADIO_ADD_OFFSET = -1000` (in "
                  "`MTD_MSIL1C.xml`): add the offset (`x = x.astype(np.float32) - 1000`) before the clip. "
                  "This project's `predict.py` reads it from the metadata (`--s2_offset`).",
                  "- **Level-2A** holds surface (bottom-of-atmosphere) reflectance and has no B10 (cirrus) band. "
                  "Use the L1C product. If only L2A exists, the approximation `predict.py --allow_l2a` makes: "
                  "fill B10 from B09, remove `BOA_ADD_OFFSET`, and treat surface reflectance as top-of-atmosphere; "
                  "expect lower accuracy."]
    return "\n".join(lines)


def _settings_table(cfg: Mapping[str, Any]) -> List[str]:
    flat = dict(cfg)
    if isinstance(cfg.get("effective"), Mapping):
        flat = {**cfg, **cfg["effective"]}
    rows = []
    for key in RUN_SETTINGS:
        if key in flat and flat[key] is not None:
            value = flat[key]
            if key in PATH_SETTINGS and isinstance(value, str):
                value = f"{os.path.basename(os.path.normpath(value))} (name only)"
            rows.append(f"| {key} | {json.dumps(value) if not isinstance(value, str) else value} |")
    return ["| setting | value |", "|---|---|"] + rows if rows else []


def _downstream_text(record) -> str:
    from models.factory import model_info

    cfg = record.config or {}
    name = record.model_name
    start = os.path.basename(str(cfg.get("checkpoint") or "")) or "no recorded checkpoint"
    try:
        info = model_info(name)
    except ValueError:
        info = None
    if info is not None and info.baseline:
        return (f"Taken from `{name}`, a supervised baseline trained **from scratch** with labels "
                f"(target `{cfg.get('target', '?')}`), not self-supervised.")
    head = "SwinUNet decoders" if info is not None and info.task == "segmentation" else "a linear classifier"
    if cfg.get("finetuning"):
        return (f"Taken from `{name}` ({head}, target `{cfg.get('target', '?')}`), **fine-tuned** from `{start}`: "
                "the encoder kept training with labels. A fine-tuned backbone is still a backbone: use it as "
                "any encoder; its features lean towards that task's classes.")
    if "finetuning" in cfg:
        return (f"Taken from `{name}` ({head}, target `{cfg.get('target', '?')}`) trained with the encoder "
                f"**frozen**: its weights are those of `{start}` (with `--reproduce_original` BatchNorm "
                "statistics still moved, and the original's segmentation trained everything).")
    return (f"Taken from `{name}` ({head}); the run's settings are not recorded, so whether the encoder was "
            "fine-tuned or frozen is unknown. A fine-tuned backbone is still a backbone.")


def _training(encoder, record) -> str:
    lines = ["## Training", ""]
    epoch = f" The file records epoch {record.epoch}." if record.epoch is not None else ""
    if record.origin == "published":
        lines.append("A checkpoint in the layout of the paper authors' published files (`swin_t.pth`, "
                     "`resnet50.pth`, `resnet18.pth`) without a run record of this project, so presumably one of "
                     "them: self-supervised on SEN12MS S1/S2 pairs (the S1 and S2 encoders of the same place "
                     "are the positive pair of a cross-modal InfoNCE loss). The settings are not recorded in "
                     f"the file; see the paper.{epoch}")
    elif record.origin == "pretraining":
        script = "train_d_swin_backbone.py" if encoder.arch == "swin_t" else "train_resnet_backbone.py"
        done = (f" after {record.epoch} epoch{'' if record.epoch == 1 else 's'}"
                if record.epoch is not None else "")
        lines.append(f"Self-supervised pre-training by this project's `{script}`{done} (cross-modal InfoNCE "
                     "between the S1 and S2 encoders of the same place"
                     + ("" if encoder.arch == "swin_t" else "; the projection heads are not exported")
                     + f"). Settings, from {record.config_file}:")
    elif record.origin == "downstream":
        lines.append(_downstream_text(record) + epoch)
    elif record.origin == "original_downstream":
        lines.append("A downstream checkpoint of the original code (no run record): whether the encoder was "
                     "fine-tuned or frozen is not recorded. A fine-tuned backbone is still a backbone." + epoch)
    else:
        lines.append("A bare state dict: its training is not recorded." + epoch)
    table = _settings_table(record.config or {})
    if table:
        lines += [""] + table
    return "\n".join(lines)


def _usage(encoder) -> str:
    n, c, s = encoder.name, encoder.in_chans, encoder.img_size
    norm = "normalize_s2" if encoder.sensor == "s2" else "normalize_s1"
    prep = (f"x = torch.from_numpy({norm}(patch))[None]" if encoder.sensor != "s1s2" else
            "x = torch.from_numpy(np.concatenate([normalize_s1(patch[:2]), normalize_s2(patch[2:])]))[None]")
    dtype = {"s1": "np.float32", "s2": "np.uint16", "s1s2": "np.float32"}[encoder.sensor]
    blocks = ["## Usage", "", "**timm** (with the normalisation function above; run beside the folder, or use "
              '`"hf-hub:<user>/<repo>"` once uploaded):', "", "```python", "import numpy as np, timm, torch",
              f'model = timm.create_model("local-dir:{n}", pretrained=True).eval()',
              f"patch = np.zeros(({c}, {s}, {s}), {dtype})  # your patch: bands in the order above",
              prep, "with torch.no_grad():", f"    features = model(x)  # (1, {encoder.num_features})", "```"]
    if encoder.arch != "swin_t":
        blocks += ["", "**torchvision** (the ResNet keys are torchvision's):", "", "```python",
                   "import torch, torchvision", "from safetensors.torch import load_file",
                   f"tv = torchvision.models.{encoder.arch}()",
                   f"tv.conv1 = torch.nn.Conv2d({c}, 64, kernel_size=7, stride=2, padding=3, bias=False)",
                   "tv.fc = torch.nn.Identity()",
                   f'tv.load_state_dict(load_file("{n}/model.safetensors"))', "```"]
    tg, ckpt = encoder.timm_name, f"{n}.torchgeo.ckpt"
    blocks += ["", f"**TorchGeo** (checked with 0.8.1), with `{ckpt}` written beside this folder:", "",
               "```python", "from torchgeo.trainers import ClassificationTask"]
    if encoder.arch == "swin_t":  # TorchGeo 0.8.1's weights=PATH fails on timm's Swin head (ClassifierHead)
        blocks += ["from torchgeo.trainers.utils import extract_backbone",
                   f'task = ClassificationTask(model="{tg}", in_channels={c}, num_classes=8)',
                   f'task.model.load_state_dict(extract_backbone("{ckpt}")[1], strict=False)  # missing: head.fc only',
                   "```", "",
                   "(`weights=` fails for Swin in TorchGeo 0.8.1: its loader reads `out_features` of the last module, "
                   "which timm's Swin head does not have; the two lines above load the same tensors."
                   + (f" TorchGeo builds the Swin for 224 px; weights trained at {s} px load all the same.)"
                      if s != 224 else ")")]
    else:
        blocks += [f'task = ClassificationTask(model="{tg}", weights="{ckpt}", in_channels={c}, num_classes=8)',
                   "```"]
    blocks += ["", "**torch.hub** (the `hubconf.py` of this project; nothing is downloaded):", "", "```python",
               "import torch",
               f'model = torch.hub.load("path/to/the/repository", "{n}", source="local", weights="{n}")', "```"]
    return "\n".join(blocks)


def _licence(record) -> str:
    if record.origin == "published":
        src = (f"`{record.file_name}`, in the layout of the paper's authors' published checkpoints and presumably "
               "one of them (they distribute them as Google Drive files linked from their repository, "
               "SSLTransformerRS; compare the SHA-256 with your download)")
    elif record.origin == "original_downstream":
        src = f"`{record.file_name}`, a downstream checkpoint of the original code (its origin is not recorded)"
    elif record.origin in ("pretraining", "downstream"):
        src = f"a run of your own (`{record.file_name}`)"
    else:
        src = f"`{record.file_name}`, origin not recorded"
    return ("## Source and licence\n\n"
            f"Source: {src}; SHA-256 `{record.sha256 or 'unknown'}`. The weights keep the licence of their source "
            "(and the terms of the data they were trained on: SEN12MS, and DFC2020 for downstream models, plus "
            "any checkpoint a run started from). This export adds no licence and claims none: set the `license` "
            "field of this card before publishing it.")


def model_card(encoder, record, diff: float) -> str:
    """The whole ``README.md`` (Hugging Face model card: YAML front matter, then Markdown)."""
    sections = [_front_matter(encoder, record), _summary(encoder, record, diff), _details(encoder, record),
                _bands(encoder), _normalization(encoder), _training(encoder, record), _usage(encoder),
                _licence(record), "## Citation\n\n```bibtex\n" + BIBTEX + "\n```"]
    return "\n\n".join(sections) + "\n"


__all__ = ["model_card", "normalization_record", "normalization_code"]
