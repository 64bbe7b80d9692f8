"""What a training script checks before it writes anything: flags, data, run folder, resume.

``check_downstream(args)`` (``train_evaluation.py``) and ``check_pretraining(args, ...)`` (the two
pre-training scripts) run near the top of ``main``, after the output folder is known and before
a dataset, model or file is made. They raise :class:`training.cli.UsageError` (or a
:class:`data.errors.DatasetError`) with a message naming the flag, file or key:

* numeric settings in range, the image size one the model takes, target and model compatible;
* the dataset roots (:func:`data.validate.check_dataset`: lists, seasons, sensors, first patch);
* a run folder that already holds a run (``config.json``, ``results.json``, ``checkpoint_*.pth``)
  is refused unless ``--resume`` (continue it) or ``--overwrite`` (replace it) says what to do;
* ``--resume`` gets a checkpoint of the same kind, model / architecture and meaning-changing
  settings (the differing keys are listed);
* partial ``.tmp-*.pth`` files of an interrupted checkpoint save are removed (with a line saying so).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from training import distributed as du
from training.cli import UsageError
from training.engine import LAST_CHECKPOINT

__all__ = ["check_downstream", "check_pretraining", "prepare_run_folder", "resolve_classes",
           "check_resume", "run_files", "DOWNSTREAM_RESUME_KEYS", "PRETRAINING_RESUME_KEYS",
           "SWIN_RESUME_KEYS"]

SEGMENTATION_TARGETS = ("dfc", "lc")
MULTI_LABEL_TARGETS = ("dfc_multilabel_one_hot", "lc_multilabel_one_hot")
MIN_RESNET_PX = 32  # five stride-2 stages: smaller crops end in a 0 x 0 feature map

#: settings that change what a downstream run means; a resume must keep them
DOWNSTREAM_RESUME_KEYS = ("model", "target", "n_classes", "base_model", "s1_input_channels",
                          "s2_input_channels", "finetuning", "image_px_size", "train_mode",
                          "clip_sample_values", "balanced_classes_train", "train_used_data_fraction",
                          "reproduce_original", "classes")
#: the same for the ResNet pre-training (keys of its stored config, ``vars(args)``)
PRETRAINING_RESUME_KEYS = ("arch", "temperature", "image_px_size", "train_mode", "clip_sample_values",
                           "train_used_data_fraction")
#: the same for the Swin pre-training (its stored config keeps the effective settings)
SWIN_RESUME_KEYS = tuple(f"effective.{k}" for k in (
    "temperature", "image_px_size", "img_size", "drop_path_rate", "train_mode", "clip_sample_values",
    "train_used_data_fraction", "reproduce_original"))


# ------------------------------------------------------------------------------ helpers
def _main_process_decides(check) -> None:
    """Run ``check()`` on rank 0 only (it may remove files); every rank raises its error.

    The broadcast also keeps the other ranks from racing ahead of rank 0's file operations.
    """
    error: Optional[str] = None
    if du.is_main_process():
        try:
            check()
        except UsageError as exc:
            error = str(exc)
    error = du.broadcast_object(error)
    if error is not None:
        raise UsageError(error)


def _flag_error(flag: str, value: Any, problem: str) -> UsageError:
    return UsageError(f"{flag} {value}: {problem}")


def _check_range(flag: str, value: Any, ok, what: str) -> None:
    try:
        good = value is not None and not (isinstance(value, float) and math.isnan(value)) and ok(value)
    except TypeError:
        good = False
    if not good:
        raise _flag_error(flag, value, f"must be {what}")


def _check_amp(args) -> None:
    import torch

    if getattr(args, "amp", "none") == "fp16" and (args.device == "cpu" or not torch.cuda.is_available()):
        raise UsageError("--amp fp16 needs a CUDA device (it needs a loss scaler only CUDA has here); "
                         "use --amp bf16 or --amp none on the CPU")


def _check_swin_size(flag: str, size: int) -> None:
    from models.swin import check_swin_img_size

    try:
        check_swin_img_size(size)
    except ValueError as exc:
        raise _flag_error(flag, size, f"the Swin-T cannot take it: {exc}") from None


def _check_crop(flag: str, size: Any) -> None:
    from data.bands import PATCH_SIZE

    _check_range(flag, size, lambda v: isinstance(v, int) and 1 <= v <= PATCH_SIZE,
                 f"a crop size in px between 1 and {PATCH_SIZE} (the patch size)")


# --------------------------------------------------------------------------- run folder
def run_files(folder: Path) -> List[str]:
    """Names of the files in ``folder`` that make it a run folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    names = [n for n in ("config.json", "results.json") if (folder / n).is_file()]
    return names + sorted(p.name for p in folder.glob("checkpoint_*.pth") if p.is_file())


def _artefacts(folder: Path) -> List[Path]:
    """Every file a run writes into its folder (what ``--overwrite`` removes)."""
    patterns = ("config.json", "results.json", "checkpoint_*.pth", "events.out.tfevents.*",
                "log.txt", "log.jsonl", "confusion_matrix.png", "predictions.png", "bad_samples.txt")
    return sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})


def _check_creatable(folder: Path) -> None:
    """``--output_dir`` must exist as a writable folder or be creatable (nothing is made here)."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        raise UsageError(f"--output_dir {folder}: cannot create the run folder: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "write into the run folder" if existing == folder else "create the run folder"
        raise UsageError(f"--output_dir {folder}: cannot {what}: no write permission in {existing}")


def prepare_run_folder(output_dir, resume: Optional[str], overwrite: bool) -> None:
    """Refuse a folder holding a run unless ``--resume`` / ``--overwrite``; clean partial saves.

    Nothing is changed when the folder is refused.
    """
    folder = Path(output_dir)

    def check() -> None:
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"--output_dir {folder} is a file, not a folder")
        _check_creatable(folder)
        found = run_files(folder)
        if resume and overwrite:
            raise UsageError("--resume and --overwrite exclude each other: --resume continues the run in "
                             f"{folder}, --overwrite replaces it; pass one")
        if found and not resume and not overwrite:
            what = "a finished run" if "results.json" in found else "a run"
            raise UsageError(
                f"--output_dir {folder} already holds {what} ({', '.join(found)}); continue it with "
                "--resume auto, replace it with --overwrite, or choose another --output_dir")
        if found and resume and resume != "auto" and Path(resume).resolve().parent != folder.resolve():
            raise UsageError(
                f"--output_dir {folder} already holds another run ({', '.join(found)}) than --resume "
                f"{resume}; the resumed run writes into --output_dir: choose another one, or "
                "--resume auto to continue the run that is there")
        if overwrite and found:
            removed = _artefacts(folder)
            for path in removed:
                path.unlink()
            print(f"--overwrite: removed {len(removed)} file(s) of the previous run in {folder}")
        for tmp in sorted(folder.glob(".tmp-*.pth")) if folder.is_dir() else []:
            tmp.unlink()
            print(f"removed {tmp}: a partial checkpoint left by an interrupted save")

    _main_process_decides(check)


# ------------------------------------------------------------------------------ resume
def _leaves(config: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_leaves(value, name + "."))
        else:
            out[name] = value
    return out


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def config_differences(stored: Mapping[str, Any], current: Mapping[str, Any],
                       keys: Iterable[str], defaults: Optional[Mapping[str, Any]] = None) -> List[str]:
    """``key: checkpoint X, now Y`` for each of ``keys`` (or leaf under a key prefix) that differs.

    Keys the stored config does not hold (older checkpoints) are not compared. ``defaults``: what a
    stored ``None`` means for a key whose default is resolved at run time (``--n_classes``: the
    dataset's number of classes).
    """
    stored_leaves, current_leaves = _leaves(stored), _leaves(current)
    defaults = defaults or {}
    out = []
    for key in keys:
        names = sorted(n for n in stored_leaves if n == key or n.startswith(key + "."))
        for name in names:
            if name not in current_leaves:
                continue
            a, b = _plain(stored_leaves[name]), _plain(current_leaves[name])
            if a is None and name in defaults:
                a = _plain(defaults[name])
            if a != b and not (isinstance(a, (int, float)) and isinstance(b, (int, float)) and float(a) == float(b)):
                out.append(f"{name}: checkpoint {a!r}, now {b!r}")
    return out


def _pretraining_kind(flag: str, obj: Mapping[str, Any], arch: Optional[str] = None, **_: Any) -> None:
    """A pre-training run resumes only from a pre-training checkpoint of the same architecture."""
    if "model_weights" in obj:
        raise UsageError(f"{flag} is a downstream checkpoint (train_evaluation.py, model "
                         f"{obj.get('model_name', 'unknown')}); pre-training continues only from its own "
                         f"{LAST_CHECKPOINT}")
    if not {"state_dict", "optimizer", "epoch"} <= set(obj):
        raise UsageError(f"{flag} cannot be resumed: it lacks {sorted({'state_dict', 'optimizer', 'epoch'} - set(obj))} "
                         "(a published backbone such as swin_t.pth starts a downstream run: train_evaluation.py "
                         "--checkpoint)")
    if arch is not None and obj.get("arch") not in (None, arch):
        raise UsageError(f"{flag} holds a {obj.get('arch')} backbone, this run trains {arch}; "
                         "use the same architecture, or another --output_dir for a new run")


def _downstream_kind(flag: str, obj: Mapping[str, Any], path: Path, model_name: Optional[str] = None,
                     **_: Any) -> None:
    """A downstream run resumes only from a downstream checkpoint (with optimiser state) of the same model."""
    if "model_weights" not in obj:
        hint = (f"; to start a downstream run from a pre-trained backbone pass --checkpoint {path}"
                if "state_dict" in obj else "")
        raise UsageError(f"{flag} is not a downstream checkpoint (no 'model_weights'){hint}; "
                         "--resume continues a train_evaluation.py run")
    if not {"optim_state", "epochs"} <= set(obj) or obj.get("optim_state") is None:
        raise UsageError(f"{flag} cannot be resumed: it holds no optimiser state / epoch count "
                         "(a model to start from goes to --checkpoint)")
    if model_name is not None and obj.get("model_name") not in (None, model_name):
        raise UsageError(f"{flag} holds a {obj.get('model_name')}, this run trains {model_name}; "
                         "use the same --model, or another --output_dir for a new run")


_KIND_CHECKS = {"pretraining": _pretraining_kind, "downstream": _downstream_kind}


def check_resume(resume: Optional[str], output_dir, *, kind: str, current: Mapping[str, Any],
                 keys: Sequence[str], arch: Optional[str] = None, model_name: Optional[str] = None,
                 defaults: Optional[Mapping[str, Any]] = None) -> None:
    """Refuse a ``--resume`` checkpoint of the wrong kind, model, architecture or settings.

    ``kind`` is ``"pretraining"`` or ``"downstream"`` (its check: :func:`_pretraining_kind`,
    :func:`_downstream_kind`); ``current`` the config this run would save; ``defaults`` as in
    :func:`config_differences`.
    """
    from models.checkpoint import read_checkpoint
    from training.engine import resolve_resume

    path = resolve_resume(resume, output_dir, LAST_CHECKPOINT)
    if path is None:
        return
    obj, _ = read_checkpoint(path)  # weights_only: a file that is not a checkpoint is refused here
    flag = f"--resume {resume}" + ("" if resume != "auto" else f" ({path})")
    _KIND_CHECKS[kind](flag, obj, path=path, arch=arch, model_name=model_name)
    stored = obj.get("config")
    if not isinstance(stored, Mapping):
        if du.is_main_process():
            print(f"note: {path} records no config; only its kind and model were checked")
        return
    diffs = config_differences(stored, current, keys, defaults)
    if diffs:
        raise UsageError(
            f"{flag} was trained with other settings: " + "; ".join(diffs)
            + ". Resume with the checkpoint's settings, or start a new run (another --output_dir, "
            "or --overwrite)")


# -------------------------------------------------------------------------------- data
def _check_data(args, *, train_balanced: bool = False, val_root_flag: str = "--val_dir",
                val_balanced: bool = False, val_required: bool = False) -> None:
    from data.validate import SAMPLE_HINT, check_dataset

    if not args.train_dir:
        raise UsageError(f"--train_dir is required (the dataset root); {SAMPLE_HINT}")
    check_dataset(args.train_dir, args.train_mode, flag="--train_dir", mode_flag="--train_mode",
                  balanced_classes=train_balanced)
    val_dir = args.val_dir or (args.train_dir if val_required else None)
    if val_dir:
        check_dataset(val_dir, args.val_mode, flag=val_root_flag if args.val_dir else "--train_dir",
                      mode_flag="--val_mode", balanced_classes=val_balanced)
    if getattr(args, "exclude_list", None):   # a readable list of patch files (data.robust)
        from data.errors import DatasetError
        from data.robust import read_exclude_list

        try:
            read_exclude_list(args.exclude_list)
        except DatasetError as exc:
            raise UsageError(str(exc)) from None


# --------------------------------------------------------------------------- downstream
def check_downstream(args) -> None:
    """Everything ``train_evaluation.py`` can check before it builds anything.

    Also resolves the classes (:func:`resolve_classes`): ``args.n_classes`` and ``args.classes``.
    """
    from models import list_models, model_info

    model, target = args.model, args.target
    info = model_info(model)
    if info.task == "pretraining":
        script = "train_d_swin_backbone.py" if info.family == "swin" else "train_resnet_backbone.py"
        raise UsageError(f"--model {model} is a pre-training model (outputs embeddings, not classes); "
                         f"pre-train with {script}, then pass its checkpoint to --checkpoint of a downstream model")
    segmentation_model = info.task == "segmentation"
    if target in SEGMENTATION_TARGETS and not segmentation_model:
        raise UsageError(f"--target {target} is a per-pixel map: it needs a segmentation model "
                         f"(--model {' or '.join(list_models(task='segmentation'))}), not {model}")
    if target not in SEGMENTATION_TARGETS and segmentation_model:
        raise UsageError(f"--model {model} predicts maps: use --target dfc (or lc), not {target}")
    if target.startswith("dfc") and args.train_mode == "sen12ms":
        raise UsageError(f"--target {target} needs DFC2020 labels, which --train_mode sen12ms does not "
                         "have: use --train_mode validation, test or dfc (or an lc_* target)")
    if args.s1_input_channels == 0 and args.s2_input_channels == 0:
        raise UsageError("--s1_input_channels 0 and --s2_input_channels 0 drop both inputs")
    # numeric ranges are argparse's (cli.constrain); what depends on the model is checked here
    _check_crop("--image_px_size", args.image_px_size)
    if info.family == "swin":
        _check_swin_size("--image_px_size", args.image_px_size)
    else:
        _check_range("--image_px_size", args.image_px_size, lambda v: v >= MIN_RESNET_PX,
                     f">= {MIN_RESNET_PX} for the ResNet models")
    _check_amp(args)
    if args.checkpoint is not None and not info.baseline:  # baselines ignore it (as the original)
        _check_start_checkpoint(args.checkpoint)
    _check_data(args, train_balanced=args.balanced_classes_train, val_balanced=args.balanced_classes_val,
                val_required=True)
    scheme = resolve_classes(args)
    current = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    keys = [k for k in DOWNSTREAM_RESUME_KEYS if (k != "base_model" or "base_model" in info.uses)
            and (k != "finetuning" or not info.baseline)]
    check_resume(args.resume, args.output_dir, kind="downstream", current=current, keys=keys,
                 model_name=model, defaults={"n_classes": scheme.num_classes})
    prepare_run_folder(args.output_dir, args.resume, getattr(args, "overwrite", False))


def resolve_classes(args):
    """The run's classes: ``args.classes`` (the scheme as JSON, :meth:`data.classes.ClassScheme.to_json`)
    and ``args.n_classes`` (default: the scheme's K).

    ``dfc*`` targets: the scheme of ``--train_dir`` (its ``classes.json``, else the 8 DFC classes),
    which ``--val_dir`` must share; ``lc*`` targets: the 8 DFC classes (MODIS IGBP mapped onto them).
    An explicit ``--n_classes`` must be K for the multi-label target, >= K otherwise.
    Returns the :class:`~data.classes.ClassScheme`.
    """
    from data.classes import DFC8, scheme_origin
    from data.validate import check_same_classes

    if args.target.startswith("dfc"):
        scheme = check_same_classes(args.train_dir, args.val_dir, val_flag="--val_dir")
        origin = scheme_origin(args.train_dir)
    else:
        scheme, origin = DFC8, "the lc layer (MODIS IGBP)"
    k = scheme.num_classes
    if args.n_classes is None:
        args.n_classes = k
    if args.target in MULTI_LABEL_TARGETS and args.n_classes != k:
        raise _flag_error("--n_classes", args.n_classes, f"the multi-label target {args.target} has "
                          f"{k} classes ({origin}); leave --n_classes out to use them")
    _check_range("--n_classes", args.n_classes, lambda v: v >= k,
                 f">= {k} (the targets have {k} classes: {origin})")
    args.classes = scheme.to_json()
    return scheme


def _check_start_checkpoint(path) -> None:
    """``--checkpoint``: a file a safe load reads as a checkpoint (whether it fits comes later)."""
    from models.checkpoint import CheckpointError, extract_state_dict, read_checkpoint

    if not Path(path).is_file():
        raise _flag_error("--checkpoint", path, "no such file")
    try:
        obj, source = read_checkpoint(path)
        extract_state_dict(obj, source)
    except CheckpointError as exc:
        raise UsageError(f"--checkpoint: {exc}") from None


# -------------------------------------------------------------------------- pre-training
def check_pretraining(args, *, arch: str, config: Optional[Mapping[str, Any]] = None) -> None:
    """Everything a pre-training script can check before it builds anything.

    ``config``: the Swin script's effective settings (``--config`` with the flags applied; the
    args hold the same values). A value that came from the config file is named by its key
    there too. ``None`` for the ResNet script.
    """
    swin = config is not None

    def name(flag: str) -> str:
        dest = flag.lstrip("-")
        if swin and dest not in config.get("_overridden", ()):
            from training.swin_config import SETTINGS

            if dest in SETTINGS:
                return f"{flag} ({SETTINGS[dest][0]} of {args.config})"
        return flag

    def whole(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    # flag values passed argparse's checks (cli.constrain); those read from --config did not
    positive, non_negative = (lambda v: 0 < v < math.inf), (lambda v: 0 <= v < math.inf)
    from_config = {
        "epochs": (lambda v: whole(v) and v >= 1, "an integer >= 1"), "lr": (positive, "> 0"),
        "weight_decay": (non_negative, ">= 0"), "temperature": (positive, "> 0"),
        "workers": (lambda v: whole(v) and v >= 0, "an integer >= 0"),
        "train_used_data_fraction": (lambda v: 0 < v <= 1, "in (0, 1]"),
        "val_used_data_fraction": (lambda v: 0 < v <= 1, "in (0, 1]"),
        "warmup_epochs": (non_negative, ">= 0"), "warmup_lr": (non_negative, ">= 0"), "min_lr": (non_negative, ">= 0"),
        "drop_path_rate": (lambda v: 0 <= v < 1, "in [0, 1)"),
    }
    for dest, (ok, what) in from_config.items() if swin else ():
        if dest not in config.get("_overridden", ()):
            _check_range(name(f"--{dest}"), getattr(args, dest), ok, what)
    _check_range(name("--batch_size"), args.batch_size, lambda v: whole(v) and v >= 2,
                 "an integer >= 2 (the contrastive loss needs other pairs in the batch as negatives)")
    _check_crop(name("--image_px_size"), args.image_px_size)
    if swin:
        model_px = config["img_size"]
        if "image_px_size" in config.get("_overridden", ()):
            _check_swin_size(name("--image_px_size"), model_px)
        else:
            _check_swin_size(f"model_config.DATA.IMG_SIZE of {args.config}", model_px)
        if args.image_px_size != model_px:
            raise _flag_error(name("--image_px_size"), args.image_px_size,
                              f"the Swin-T is built for model_config.DATA.IMG_SIZE {model_px} of "
                              f"{args.config}; the crops must have that size")
    else:
        _check_range("--image_px_size", args.image_px_size, lambda v: v >= MIN_RESNET_PX,
                     f">= {MIN_RESNET_PX} for the ResNets")
    _check_amp(args)
    _check_data(args)
    if swin:
        current, keys = {"effective": dict(config)}, SWIN_RESUME_KEYS
    else:
        current = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        keys = PRETRAINING_RESUME_KEYS
    check_resume(args.resume, args.output_dir, kind="pretraining", current=current, keys=keys, arch=arch)
    prepare_run_folder(args.output_dir, args.resume, getattr(args, "overwrite", False))
