"""Model registry: ``create_model(name, ...)`` is the one way scripts build models."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch.nn as nn

from . import downstream
from .base import SensorModel
from .checkpoint import CheckpointLike, load_checkpoint, read_checkpoint
from .pretrain import DoubleResNetSimCLR, DoubleSwinTransformer
from .resnet import RESNET_DEPTHS
from .swin import check_swin_img_size

_logger = logging.getLogger(__name__)

#: options every model accepts (those that do not apply to a model are accepted and ignored)
COMMON_OPTIONS: Dict[str, Any] = {
    "base_model": "resnet50",
    "s1_input_channels": 2,
    "s2_input_channels": 13,
    "freeze_backbone": False,
    "img_size": 224,
}


@dataclass(frozen=True)
class ModelInfo:
    """What a registered model is; scripts ask this instead of looking at its name.

    ``family``: ``resnet`` or ``swin``; ``task``: ``pretraining``, ``classification`` or
    ``segmentation``; ``sensors``: the inputs it takes (each may be dropped with
    ``s1_input_channels=0`` / ``s2_input_channels=0``); ``encoders``: ``dual`` (one encoder per
    sensor, the pre-trained layout) or ``early`` (one encoder on the stacked bands); ``baseline``:
    trained from scratch (ignores ``--checkpoint``, every parameter at ``--learning_rate``);
    ``cacheable``: a frozen-backbone classifier whose pooled features can be cached
    (``--cache_features``).
    """

    name: str
    builder: Callable[..., SensorModel]
    uses: Tuple[str, ...]
    family: str
    task: str
    sensors: Tuple[str, ...] = ("s1", "s2")
    encoders: str = "dual"
    baseline: bool = False
    cacheable: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    doc: str = ""


_REGISTRY: Dict[str, ModelInfo] = {}
FAMILIES = ("resnet", "swin")
TASKS = ("pretraining", "classification", "segmentation")


def register_model(name: str, uses: tuple, *, family: str, task: str, encoders: str = "dual",
                   baseline: bool = False, cacheable: bool = False, extra: Optional[Dict[str, Any]] = None,
                   doc: str = ""):
    """Register ``builder(num_classes, **options)`` under a CLI name; ``uses``: options it reads."""
    if family not in FAMILIES or task not in TASKS:
        raise ValueError(f"register_model({name!r}): family must be one of {FAMILIES}, task one of {TASKS}")

    def deco(fn: Callable[..., SensorModel]) -> Callable[..., SensorModel]:
        _REGISTRY[name] = ModelInfo(name, fn, uses, family, task, encoders=encoders, baseline=baseline,
                                    cacheable=cacheable, extra=dict(extra or {}),
                                    doc=doc or (fn.__doc__ or "").strip())
        return fn
    return deco


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name`` (``ValueError`` listing the valid names otherwise)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    return _REGISTRY[name]


def list_models(**where: Any) -> List[str]:
    """Every name ``create_model`` accepts, optionally those whose info matches ``where``
    (e.g. ``list_models(task="segmentation")``, ``list_models(baseline=True)``)."""
    return sorted(n for n, info in _REGISTRY.items() if all(getattr(info, k) == v for k, v in where.items()))


_CH = ("s1_input_channels", "s2_input_channels")
_SWIN = _CH + ("img_size",)
_RES = _CH + ("base_model",)
_DPR = {"drop_path_rate": 0.1}  # model_config.MODEL.DROP_PATH_RATE of the original config


@register_model("resnet18", _CH, family="resnet", task="classification", encoders="early",
                baseline=True, doc="early fusion ResNet18 (15-band conv1)")
def _resnet18(num_classes, **o):
    return downstream.ResNetBaseline(num_classes, "resnet18", **o)


@register_model("resnet50", _CH, family="resnet", task="classification", encoders="early",
                baseline=True, doc="early fusion ResNet50 (15-band conv1)")
def _resnet50(num_classes, **o):
    return downstream.ResNetBaseline(num_classes, "resnet50", **o)


@register_model("DualBaseline", _RES, family="resnet", task="classification", baseline=True,
                doc="late fusion: two ResNets, concat, fc")
def _dual_baseline(num_classes, **o):
    return downstream.DualBaseline(num_classes, **o)


@register_model("DoubleResNetSimCLRDownstream", _RES, family="resnet", task="classification", cacheable=True,
                doc="SSL ResNet backbones, concat, fc")
def _double_resnet_downstream(num_classes, **o):
    return downstream.DoubleResNetSimCLRDownstream(num_classes, **o)


@register_model("SwinBaseline", _SWIN, family="swin", task="classification", encoders="early", baseline=True,
                extra=_DPR, doc="one Swin-T on the concatenated bands, linear head")
def _swin_baseline(num_classes, **o):
    return downstream.SwinBaseline(num_classes, **o)


@register_model("DualSwinBaseline", _SWIN, family="swin", task="classification", baseline=True, extra=_DPR,
                doc="two Swin-T, concat, linear head")
def _dual_swin_baseline(num_classes, **o):
    return downstream.DualSwinBaseline(num_classes, **o)


@register_model("DoubleSwinTransformerDownstream", _SWIN, family="swin", task="classification", cacheable=True,
                extra=_DPR, doc="SSL Swin-T backbones, concat, linear head")
def _double_swin_downstream(num_classes, **o):
    return downstream.DoubleSwinTransformerDownstream(num_classes, **o)


@register_model("DoubleSwinTransformerSegmentation", _SWIN, family="swin", task="segmentation", extra=_DPR,
                doc="SSL Swin-T backbones + SwinUNet decoders")
def _double_swin_segmentation(num_classes, **o):
    return downstream.DoubleSwinTransformerSegmentation(num_classes, **o)


@register_model("DoubleResNetSimCLR", _RES, family="resnet", task="pretraining", extra={"out_dim": 128},
                doc="pre-training: two ResNets + projection MLPs")
def _double_resnet_simclr(num_classes, **o):
    return DoubleResNetSimCLR(**o)


@register_model("DoubleSwinTransformer", _SWIN, family="swin", task="pretraining", extra=_DPR,
                doc="pre-training: two Swin-T, pooled features")
def _double_swin(num_classes, **o):
    return DoubleSwinTransformer(**o)


def create_model(name: str, num_classes: int = 8, checkpoint: Optional[CheckpointLike] = None,
                 **options: Any) -> nn.Module:
    """Build a model by CLI name, optionally load a checkpoint, optionally freeze the backbone.

    Options: ``base_model`` ("resnet18" | "resnet50", ResNet models; the early-fusion names fix it),
    ``s1_input_channels`` (2; 0 drops S1), ``s2_input_channels`` (13; 0 drops S2),
    ``freeze_backbone`` (False), ``img_size`` (224, Swin models: a multiple of 224); extras:
    ``drop_path_rate`` (Swin), ``out_dim`` (DoubleResNetSimCLR). Options a model does not use are
    accepted and ignored. The load report is kept as ``model.load_report``.
    """
    entry = model_info(name)
    unknown = sorted(set(options) - set(COMMON_OPTIONS) - set(entry.extra))
    if unknown:
        raise TypeError(f"create_model({name!r}) got unknown option(s) {unknown}; accepted: "
                        f"{sorted(set(COMMON_OPTIONS) | set(entry.extra))}")
    opts = {**COMMON_OPTIONS, **entry.extra, **options}
    if name in RESNET_DEPTHS:
        opts["base_model"] = name
    if "base_model" in entry.uses and opts["base_model"] not in RESNET_DEPTHS:
        raise ValueError(f"unknown base_model {opts['base_model']!r}; valid: {sorted(RESNET_DEPTHS)}")
    if "img_size" in entry.uses:
        check_swin_img_size(opts["img_size"])
    kwargs = {k: opts[k] for k in entry.uses + tuple(entry.extra)}
    model = entry.builder(num_classes, **kwargs)
    model.model_name = name
    model.model_options = {"num_classes": num_classes, **opts}
    model.load_report = None
    if checkpoint is not None:
        model.load_report = load_checkpoint(model, checkpoint)
    if opts["freeze_backbone"]:
        model.freeze_backbone(True)
    return model


def model_args_from_checkpoint(obj: Mapping[str, Any], model_name: Optional[str] = None,
                               num_classes: Optional[int] = None, **overrides: Any) -> Tuple[str, int, Dict[str, Any]]:
    """``(name, num_classes, options)`` that rebuild the model of a downstream checkpoint dict.

    ``name``: ``model_name``, else the recorded ``model_name`` (ValueError if neither);
    ``options``: the recorded ``model_options`` (only when ``name`` is the recorded model), then
    ``overrides``; ``num_classes``: the argument, else ``overrides`` / recorded, else 8.
    """
    recorded = obj.get("model_name")
    name = model_name or recorded
    if not name:
        raise ValueError("the checkpoint records no 'model_name'")
    options = dict(obj.get("model_options") or {}) if name == recorded else {}
    options.update(overrides)
    recorded_classes = options.pop("num_classes", None)
    if num_classes is None:
        num_classes = recorded_classes if recorded_classes is not None else 8
    return name, int(num_classes), options


def load_model(checkpoint: CheckpointLike, **overrides: Any) -> nn.Module:
    """Rebuild and load a model from a downstream checkpoint written by this project."""
    obj, source = read_checkpoint(checkpoint)
    if "model_name" not in obj:
        raise ValueError(f"{source} has no 'model_name' (not written by this project); build the model with "
                         f"create_model(name, checkpoint=...) instead")
    name, num_classes, opts = model_args_from_checkpoint(obj, **overrides)
    return create_model(name, num_classes=num_classes, checkpoint=obj, **opts)
