"""Checkpoint I/O: published SSL checkpoints, the original code's downstream checkpoints, ours.

Formats read (``load_checkpoint``; path or already-loaded dict, ``module.`` prefixes stripped):

* backbone / published SSL: ``{"state_dict": ...}`` (+ ``epoch``, ``arch``, ``optimizer``) in the
  layout of the published ``swin_t.pth`` / ``resnet50.pth`` / ``resnet18.pth``: original Swin layout
  (``layers.{i}.downsample`` at stage end, 1000-class ``head``, buffers present or not) or timm
  layout; torchvision ResNets with the projection heads ``fc.0`` / ``fc.2``. Into a downstream model
  only the backbones load; its heads stay freshly initialised.
* downstream: ``{"model_weights": ...}`` (+ ``optim_state``, ``val_stats``, ``epochs``) written by the
  original code or by us (ours add ``model_name`` and ``model_options``): the whole model loads.
* a bare state dict (all values tensors): treated like ``state_dict``.

Ignored on load, always reported (``LoadReport.ignored``): the Swin 1000-class ``head``; the SimCLR
projection heads ``backboneN.fc.0/2`` when the model has none; the branch of a sensor the model drops
(``s1_input_channels=0`` / ``s2_input_channels=0``); for the segmentation model, the original's
unused duplicate ``decoder2.up`` / ``decoder2.output`` and its decoders' encoder copies / aliases.
The computed buffers ``relative_position_index`` / ``attn_mask`` are checked against ours
(``LoadReport.verified_buffers``) and never loaded. Anything else that does not fit raises
``CheckpointError`` listing missing / unexpected / mis-shaped keys.

This module is the generic part (reading, checking, reporting, writing). The mapping of each
family's foreign layout onto ours lives with the family, timm style, as ``checkpoint_filter``
functions that ``apply_checkpoint_filters`` runs through the model's modules:
``models.swin`` (original Swin layout, 1000-class head), ``models.resnet`` (projection head),
``models.swin_unet`` (the original segmentation decoders), ``models.base.SensorModel`` (a dropped
sensor's branch). After an accepted load the model's ``after_checkpoint_load(state_dict)`` runs
(``DoubleSwinTransformer`` keeps the published heads there); the published layout is written by
the pre-training models' ``published_state_dict()`` (``models.pretrain``).

Formats written: ``backbone_checkpoint`` -> ``{"epoch", "arch", "state_dict", "optimizer"}`` with
``state_dict`` in the PUBLISHED layout (``to_published_state_dict``), readable by the original code;
``downstream_checkpoint`` -> ``{"model_weights", "optim_state", "val_stats", "epochs", "model_name",
"model_options"}`` so that ``models.load_model`` can rebuild the model, plus ``classes`` (the class
scheme the model was trained on, :meth:`data.classes.ClassScheme.to_json`: names, colours and
label-file values, read by ``predict.py``) when given; checkpoints without it stay valid.
"""
from __future__ import annotations

import errno
import logging
import os
import pickle
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .swin import is_computed_buffer

_logger = logging.getLogger(__name__)

CheckpointLike = Union[str, os.PathLike, Mapping[str, Any]]
MAX_LISTED = 10
_STRIP_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(RuntimeError):
    """A checkpoint that does not fit the model (or cannot be read); lists the offending keys."""

    user_facing = True   # utils.cli prints the message as it is

    def __init__(self, message: str, source: str = "<dict>", missing: Sequence[str] = (),
                 unexpected: Sequence[str] = (), mismatched: Sequence[str] = ()) -> None:
        self.source = source
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)
        lines = [f"{message} [checkpoint: {source}]"]
        for title, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                            ("mis-shaped", self.mismatched)):
            if keys:
                more = f" ... and {len(keys) - MAX_LISTED} more" if len(keys) > MAX_LISTED else ""
                lines.append(f"  {title} keys ({len(keys)}): " + ", ".join(keys[:MAX_LISTED]) + more)
        super().__init__("\n".join(lines))


@dataclass
class LoadReport:
    """What ``load_checkpoint`` did."""

    source: str
    kind: str  # "backbone" ({"state_dict"}), "downstream" ({"model_weights"}) or "state_dict" (bare)
    loaded: List[str] = field(default_factory=list)
    ignored: Dict[str, str] = field(default_factory=dict)  # checkpoint key -> reason
    fresh: List[str] = field(default_factory=list)  # model keys left at their initialisation (new heads)
    verified_buffers: int = 0

    def summary(self) -> str:
        reasons: Dict[str, int] = {}
        for r in self.ignored.values():
            reasons[r] = reasons.get(r, 0) + 1
        parts = [f"loaded {len(self.loaded)} tensors from {self.source} ({self.kind})"]
        if self.verified_buffers:
            parts.append(f"{self.verified_buffers} computed buffers verified")
        parts += [f"ignored {n}: {r}" for r, n in reasons.items()]
        if self.fresh:
            parts.append(f"{len(self.fresh)} fresh (not in checkpoint): " + ", ".join(self.fresh[:MAX_LISTED]))
        return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# reading

def _numpy_globals() -> list:
    """numpy's array / scalar / dtype constructors: plain data, allowed in a ``weights_only`` load
    (the original code's downstream checkpoints keep numpy values in ``val_stats``)."""
    import numpy as np

    multiarray = getattr(np, "_core", None) or np.core
    names = [np.dtype, np.ndarray, multiarray.multiarray._reconstruct, multiarray.multiarray.scalar]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        names += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return names


def _unreadable(path: str, exc: BaseException) -> CheckpointError:
    """Why ``torch.load(path, weights_only=True)`` failed, as a one-line ``CheckpointError``."""
    if isinstance(exc, pickle.UnpicklingError) and "weights only load failed" in str(exc).lower():
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001  (not a torch.save zip: an old or foreign pickle)
            unsafe = []
        if unsafe:
            return CheckpointError(
                "refused: the file holds pickled Python objects besides tensors and plain values ("
                + ", ".join(unsafe[:MAX_LISTED]) + "); unpickling them could run arbitrary code, so it "
                "is not loaded. If you trust the file, re-save it with plain values only", path)
    return CheckpointError(f"not a PyTorch checkpoint ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:200] if str(exc) else 'unreadable'})", path)


def read_checkpoint(checkpoint: CheckpointLike) -> Tuple[Mapping[str, Any], str]:
    """Return (checkpoint dict, source name). Paths load on CPU.

    Files are read with ``torch.load(weights_only=True)`` only (tensors, plain Python values
    and numpy arrays / scalars): a file holding other pickled objects, or no checkpoint at
    all, raises ``CheckpointError`` naming it; nothing is ever unpickled unrestricted.
    """
    if isinstance(checkpoint, Mapping):
        return checkpoint, "<dict>"
    path = os.fspath(checkpoint)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (any failure of a safe load: not a readable checkpoint)
        raise _unreadable(path, exc) from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"expected a dict checkpoint, got {type(obj).__name__}", path)
    return obj, path


def extract_state_dict(obj: Mapping[str, Any], source: str = "<dict>") -> Tuple[Dict[str, torch.Tensor], str]:
    """(state dict without DDP / compile prefixes, kind)."""
    if "model_weights" in obj:
        sd, kind = obj["model_weights"], "downstream"
    elif "state_dict" in obj:
        sd, kind = obj["state_dict"], "backbone"
    elif obj and all(torch.is_tensor(v) for v in obj.values()):
        sd, kind = obj, "state_dict"
    else:
        raise CheckpointError(
            "unrecognised checkpoint: expected {'state_dict': ...} (backbone / published SSL), "
            "{'model_weights': ...} (downstream) or a bare state dict; top-level keys: "
            + ", ".join(map(str, list(obj)[:MAX_LISTED])), source)
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"'{'model_weights' if kind == 'downstream' else 'state_dict'}' is not a dict", source)
    sd = dict(sd)
    for p in _STRIP_PREFIXES:
        if sd and all(k.startswith(p) for k in sd):
            sd = {k[len(p):]: v for k, v in sd.items()}
    return sd, kind


# ---------------------------------------------------------------------------------------------
# converting foreign layouts onto ours: each model family's ``checkpoint_filter``

def apply_checkpoint_filters(model: nn.Module, sd: Mapping[str, torch.Tensor],
                             ignored: Optional[Dict[str, str]] = None) -> Dict[str, torch.Tensor]:
    """Run the ``checkpoint_filter(state_dict, prefix, ignored)`` of ``model`` and of each of its
    sub-modules that has one (parents first), each mapping its own keys (those under its prefix)
    onto ours and reporting what it drops in ``ignored``. The filters live with the families:
    ``SensorModel`` (dropped sensor branch), ``DoubleSwinTransformerSegmentation`` (original decoder
    keys, ``swin_unet``), ``SwinEncoder`` (original Swin layout, ``swin``), ``ResNet`` (projection
    head, ``resnet``)."""
    out = dict(sd)
    for name, module in model.named_modules():
        fn = getattr(module, "checkpoint_filter", None)
        if callable(fn):
            out = fn(out, prefix=name + "." if name else "", ignored=ignored)
    return out


def convert_state_dict(model: nn.Module, sd: Mapping[str, torch.Tensor], source: str = "<dict>",
                       report: Optional[LoadReport] = None) -> Tuple[Dict[str, torch.Tensor], LoadReport]:
    """Map a checkpoint state dict onto ``model``'s keys (``apply_checkpoint_filters``); check the
    computed buffers against ours; fill ``report.ignored`` / ``verified_buffers``."""
    report = report or LoadReport(source, "state_dict")
    buffers = {n: b for n, b in model.named_buffers() if b is not None}
    bad_buffers: List[str] = []
    out: Dict[str, torch.Tensor] = {}
    for key, value in apply_checkpoint_filters(model, sd, report.ignored).items():
        if is_computed_buffer(key):  # recomputed by the model (Swin attention): verified, never loaded
            ours = buffers.get(key)
            if ours is None or ours.shape != value.shape:
                report.ignored[key] = "computed buffer for another window / image size (recomputed)"
            elif torch.equal(ours.to(value.dtype), value):
                report.verified_buffers += 1
            else:
                bad_buffers.append(f"{key} (values differ from the recomputed buffer)")
            continue
        out[key] = value
    if bad_buffers:
        raise CheckpointError(f"checkpoint does not fit {type(model).__name__}", source, mismatched=bad_buffers)
    order = {k: i for i, k in enumerate(sd)}  # report in the checkpoint's key order
    report.ignored = dict(sorted(report.ignored.items(), key=lambda kv: order.get(kv[0], len(order))))
    return out, report


def _family(keys) -> str:
    keys = list(keys)
    if any(".patch_embed." in "." + k for k in keys):
        return "swin_t"
    if any(k.endswith("layer1.0.conv3.weight") for k in keys):
        return "resnet50"
    if any(k.endswith("layer1.0.conv1.weight") for k in keys):
        return "resnet18"
    return "unknown"


def _family_hint(sd: Mapping[str, torch.Tensor], model: nn.Module) -> str:
    """A hint like " (the checkpoint holds resnet18 backbones, the model expects swin_t)", or ""."""
    ours, theirs = _family(model.state_dict()), _family(sd)
    if "unknown" in (ours, theirs) or ours == theirs:
        return ""
    return f" (the checkpoint holds {theirs} backbones, the model expects {ours})"


# ---------------------------------------------------------------------------------------------
# loading

def load_checkpoint(model: nn.Module, checkpoint: CheckpointLike, strict: bool = True,
                    source: Optional[str] = None) -> LoadReport:
    """Load a published / original / own checkpoint into ``model``; see the module docstring.

    A backbone checkpoint (``state_dict`` or bare, with no head keys) may leave the model's heads
    fresh; a downstream checkpoint must provide every key. ``strict=False`` loads what fits and
    reports the rest in ``LoadReport.fresh`` / ``ignored`` instead of raising.
    """
    obj, name = read_checkpoint(checkpoint)
    source = source or name
    sd, kind = extract_state_dict(obj, source)
    report = LoadReport(source, kind)
    out, report = convert_state_dict(model, sd, source, report)
    model_sd = model.state_dict()
    missing = [k for k in model_sd if k not in out]
    unexpected = [k for k in out if k not in model_sd]
    mismatched = [f"{k}: checkpoint {tuple(out[k].shape)} vs model {tuple(model_sd[k].shape)}"
                  for k in out if k in model_sd and out[k].shape != model_sd[k].shape]
    bb = tuple(model.backbone_prefixes()) if hasattr(model, "backbone_prefixes") else ()
    if kind != "downstream" and bb and all(k.startswith(bb) for k in out):
        report.fresh = [k for k in missing if not k.startswith(bb)]  # backbone-only checkpoint: new heads
        missing = [k for k in missing if k.startswith(bb)]
    if not out:
        raise CheckpointError(f"no tensor of the checkpoint fits {type(model).__name__}", source,
                              missing=missing, unexpected=list(sd))
    if strict and (missing or unexpected or mismatched):
        raise CheckpointError(f"checkpoint ({kind}) does not fit {type(model).__name__}"
                              f"{_family_hint(sd, model)}", source, missing, unexpected, mismatched)
    if not strict:
        for k in unexpected:
            report.ignored[k] = "not in the model (strict=False)"
        for k in mismatched:
            report.ignored[k.split(":")[0]] = "shape differs from the model (strict=False)"
        report.fresh += missing
        out = {k: v for k, v in out.items() if k in model_sd and v.shape == model_sd[k].shape}
    model.load_state_dict(out, strict=False)
    report.loaded = list(out)
    hook = getattr(model, "after_checkpoint_load", None)  # accepted: e.g. keep the published Swin heads
    if callable(hook):
        hook(sd)
    _logger.info("%s", report.summary())
    return report


# ---------------------------------------------------------------------------------------------
# writing

def to_published_state_dict(model: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """Pre-training model weights in the layout of the published checkpoints (original code's keys):
    the model's ``published_state_dict()`` (``models.pretrain``)."""
    fn = getattr(model, "published_state_dict", None)
    if not callable(fn):
        raise TypeError(f"the published layout exists for DoubleResNetSimCLR / DoubleSwinTransformer, "
                        f"not {type(model).__name__}")
    return fn()


def from_published_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                              source: str = "<dict>") -> LoadReport:
    """Inverse of ``to_published_state_dict``: load a published-layout state dict (strict)."""
    return load_checkpoint(model, {"state_dict": state_dict}, source=source)


load_published_state_dict = from_published_state_dict


def load_downstream_checkpoint(model: nn.Module, checkpoint: CheckpointLike) -> Mapping[str, Any]:
    """Resume: load a downstream checkpoint's ``model_weights`` (strict) and return the whole dict
    (``optim_state``, ``epochs``, ...)."""
    obj, source = read_checkpoint(checkpoint)
    if "model_weights" not in obj:
        raise CheckpointError("not a downstream checkpoint (no 'model_weights'); top-level keys: "
                              + ", ".join(map(str, list(obj)[:MAX_LISTED])), source)
    load_checkpoint(model, obj, source=source)
    return obj


def backbone_checkpoint(model: nn.Module, epoch: int, optimizer: Optional[torch.optim.Optimizer] = None,
                        **extra: Any) -> Dict[str, Any]:
    """Pre-training checkpoint ``{"epoch", "arch", "state_dict", "optimizer"}`` in the published layout."""
    return {"epoch": epoch, "arch": getattr(model, "arch", type(model).__name__),
            "state_dict": to_published_state_dict(model),
            "optimizer": optimizer.state_dict() if optimizer is not None else None, **extra}


def downstream_checkpoint(model: nn.Module, model_name: Optional[str] = None,
                          model_options: Optional[Mapping[str, Any]] = None,
                          optimizer: Optional[torch.optim.Optimizer] = None, val_stats: Any = None,
                          epochs: Optional[int] = None, classes: Optional[Mapping[str, Any]] = None,
                          **extra: Any) -> Dict[str, Any]:
    """Downstream checkpoint: the original's keys plus ``model_name`` / ``model_options``
    (default: what ``create_model`` recorded on the model), so ``load_model`` can rebuild it, and
    ``classes`` (a class scheme as JSON: ``{"scheme", "classes": [{"name", "color", "value"}, ...]}``)
    when given."""
    if model_options is None:
        model_options = getattr(model, "model_options", {})
    out = {"model_weights": model.state_dict(),
           "optim_state": optimizer.state_dict() if optimizer is not None else None,
           "val_stats": val_stats, "epochs": epochs,
           "model_name": model_name or getattr(model, "model_name", type(model).__name__),
           "model_options": dict(model_options), **extra}
    if classes is not None:
        out["classes"] = dict(classes)
    return out


def save_checkpoint(obj: Mapping[str, Any], path: Union[str, os.PathLike]) -> None:
    """``torch.save`` atomically (temporary file in the same folder, then rename)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pth", dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
    try:
        torch.save(dict(obj), tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        # torch's zip writer reports a full disk as a RuntimeError; say so, naming the file
        code = getattr(exc, "errno", None)
        if code not in (errno.ENOSPC, errno.EDQUOT) and _disk_full(folder):
            code = errno.ENOSPC
        if code in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(code, os.strerror(code), path) from exc
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _disk_full(folder: str, slack: int = 1 << 20) -> bool:
    """True if the disk holding ``folder`` has (almost) no space left."""
    try:
        return shutil.disk_usage(folder).free < slack
    except OSError:
        return False


__all__ = [
    "CheckpointError", "LoadReport", "read_checkpoint", "extract_state_dict", "apply_checkpoint_filters",
    "convert_state_dict",
    "load_checkpoint", "to_published_state_dict", "from_published_state_dict", "load_published_state_dict",
    "load_downstream_checkpoint", "backbone_checkpoint", "downstream_checkpoint", "save_checkpoint",
]
