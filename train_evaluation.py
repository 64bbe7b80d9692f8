#!/usr/bin/env python
"""Downstream training and evaluation on DFC2020: classification and segmentation.

Linear evaluation (``--no-finetuning``: frozen backbone, the head trains at ``--learning_rate``)
or fine-tuning (``--finetuning``: backbone at ``--learning_rate``, head at ``--classifier_lr``);
baselines train every parameter at ``--learning_rate`` (training/downstream.py has the table).
Defaults are the original's: resnet18, 201 epochs, Adam (lr 1e-5, head 3e-6, wd 1e-3), batch
100, LR x0.1 at epoch 100, train on the class-balanced DFC2020 validation split, evaluate on the
test split after epochs 0, 2, ..., 200, seed 42. The original's command lines work unchanged
(``--finetuning=True``, ``--dataloader_workers``, ``--wandb_project``, ``--base_mode``).
``--reproduce_original`` restores every original behaviour that we changed (see README).
At the end the test metrics (ours and the original's definitions) are printed and written,
with the whole configuration, to ``OUTPUT_DIR/results.json`` (plus figures).

    python train_evaluation.py --model DoubleSwinTransformerDownstream \\
        --checkpoint swin_t.pth --target dfc_label --train_dir $DFC --val_dir $DFC
"""
import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from data.classes import ClassScheme
from training import cli, engine, features, preflight, runlog, tasks
from training import distributed as du
from training.cli import HelpFormatter, IgnoredFlag, add_bool_flag
from training.data import add_bad_sample_arguments, downstream_sets, loaders
from training.downstream import apply_plan, plan_training
from training.engine import LAST_CHECKPOINT
from training.pretrain import original_precision
from utils.report import plot_confusion_matrix, plot_segmentation_examples, scores_table

TARGETS = ["dfc_label", "dfc_multilabel_one_hot", "dfc", "lc_label", "lc_multilabel_one_hot", "lc"]


def get_args_parser() -> argparse.ArgumentParser:
    from models import list_models
    from training.pretrain import AMP_HELP, DEFAULT_WORKERS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    m = p.add_argument_group("model")
    m.add_argument("--model", default="resnet18", choices=list_models())
    m.add_argument("--base_model", "--base_mode", dest="base_model", default="resnet18",
                   choices=["resnet18", "resnet50"], help="ResNet depth for the ResNet models")
    m.add_argument("--checkpoint", default=None,
                   help="published SSL checkpoint (swin_t.pth, resnet50.pth, ...) or a downstream "
                        "one; baselines ignore it, as the original did")
    m.add_argument("--target", default="dfc_label", choices=TARGETS)
    m.add_argument("--num_classes", "--n_classes", dest="n_classes", type=int, default=None,
                   help="model outputs (default: the classes of --train_dir: its classes.json, else "
                        "the 8 DFC classes; lc targets: 8)")
    add_bool_flag(m, "--finetuning", default=False,
                  help="train the backbone too (else: linear evaluation, backbone frozen)")
    m.add_argument("--s1_input_channels", type=int, default=2, choices=[0, 2],
                   help="0 drops the Sentinel-1 input (S2-only setting)")
    m.add_argument("--s2_input_channels", type=int, default=13, choices=[0, 13],
                   help="0 drops the Sentinel-2 input (S1-only setting)")
    m.add_argument("--drop_path_rate", type=float, default=0.1,
                   help="stochastic depth of the Swin models (the config's 0.1)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, default=201)
    o.add_argument("--learning_rate", "--lr", dest="learning_rate", type=float, default=1e-5,
                   help="backbone LR when fine-tuning; head LR when frozen; every LR of a baseline")
    o.add_argument("--classifier_lr", type=float, default=3e-6, help="head LR when fine-tuning")
    o.add_argument("--weight_decay", type=float, default=1e-3)
    o.add_argument("--adam_betas", type=float, nargs=2, default=(0.9, 0.999))
    o.add_argument("--lr_step_epochs", type=int, nargs="*", default=[100],
                   help="epochs at which every LR is multiplied by --lr_step_gamma")
    o.add_argument("--lr_step_gamma", type=float, default=0.1)
    d = p.add_argument_group("data")
    d.add_argument("--train_dir", help="DFC2020 root used for training")
    d.add_argument("--train_mode", default="validation", choices=["validation", "test", "dfc", "sen12ms"])
    d.add_argument("--val_dir", default=None, help="DFC2020 root for evaluation (default: --train_dir)")
    d.add_argument("--val_mode", default="test", choices=["validation", "test", "dfc"])
    add_bool_flag(d, "--balanced_classes_train", default=True)
    add_bool_flag(d, "--balanced_classes_val", "--balanced_classes_validation", default=False)
    d.add_argument("--train_used_data_fraction", type=float, default=1.0,
                   help="keep this fraction of the training patches (the original's pandas subset)")
    d.add_argument("--val_used_data_fraction", type=float, default=1.0)
    d.add_argument("--image_px_size", type=int, default=224)
    add_bool_flag(d, "--cover_all_parts_validation", default=False,
                  help="evaluate every tile of each 256 px patch (else the centre crop; at 224 px "
                       "the original evaluated one random crop per patch)")
    add_bool_flag(d, "--clip_sample_values", default=True)
    add_bad_sample_arguments(d)
    d.add_argument("-b", "--batch_size", "--batch-size", dest="batch_size", type=int, default=100)
    d.add_argument("-j", "--workers", "--num_workers", "--dataloader_workers", dest="workers",
                   type=int, default=DEFAULT_WORKERS,
                   help="DataLoader workers (the original's 8, capped at the CPU count)")
    r = p.add_argument_group("run")
    r.add_argument("--output_dir", default=None, help="run folder (default: runs/<model>_<target>_<setting>)")
    r.add_argument("--run_name", default=None, help="label of this run in the results table")
    r.add_argument("--resume", default=None, help="checkpoint path, or 'auto' for OUTPUT_DIR/checkpoint_last.pth")
    cli.add_safety_arguments(r)
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--val_every", "--validation_every", dest="val_every", type=int, default=2,
                   help="evaluate after epoch indices 0, N, 2N, ... and the last")
    r.add_argument("--save_every", type=int, default=2)
    r.add_argument("--log_every", type=int, default=10)
    add_bool_flag(r, "--save_optimizer", default=True,
                  help="keep the optimiser state in checkpoints (the original's layout); "
                       "--no-save_optimizer writes lean checkpoints")
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    r.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help=AMP_HELP)
    add_bool_flag(r, "--channels_last", default=False)
    add_bool_flag(r, "--compile", default=False)
    r.add_argument("--example_maps", type=int, default=4,
                   help="test patches drawn in the segmentation figure")
    add_bool_flag(r, "--reproduce_original", default=False,
                  help="every original behaviour we changed: random evaluation crops, NaN batches "
                       "skipped, frozen backbones in train mode, the original segmentation groups, "
                       "the run stops at the first unreadable sample")
    c = p.add_argument_group("the original's flags without effect here")
    c.add_argument("--wandb_project", action=IgnoredFlag, note="runs log to TensorBoard and log files")
    for flag in ("--cover_all_parts_train", "--s1_normalization_fixed", "--only_rgb", "--rgb_plus_s1",
                 "--simclr_dataset", "--create_validation_set", "--transforms", "--embedding_size",
                 "--out_dim"):
        c.add_argument(flag, action=IgnoredFlag, note="no effect in the paper's settings")
    features.add_arguments(p)
    p.set_defaults(ignored_flags={})
    cli.constrain(p, n_classes=cli.positive_int, epochs=cli.positive_int, learning_rate=cli.positive_float,
                  classifier_lr=cli.positive_float, weight_decay=cli.non_negative_float,
                  adam_betas=cli.probability, lr_step_epochs=cli.non_negative_int,
                  lr_step_gamma=cli.positive_float, train_used_data_fraction=cli.fraction,
                  val_used_data_fraction=cli.fraction, image_px_size=cli.positive_int,
                  batch_size=cli.positive_int, workers=cli.non_negative_int, val_every=cli.positive_int,
                  save_every=cli.positive_int, log_every=cli.positive_int, example_maps=cli.non_negative_int,
                  drop_path_rate=cli.probability)
    return p


def setting_name(args) -> str:
    from models import model_info

    if args.s1_input_channels == 0:
        inputs = "s2"
    elif args.s2_input_channels == 0:
        inputs = "s1"
    else:
        inputs = "s1s2"
    if model_info(args.model).baseline:
        mode = "baseline"   # trained from scratch, every parameter (--finetuning is ignored)
    else:
        mode = "finetuned" if args.finetuning else "frozen"
    return f"{args.model}_{args.target}_{inputs}_{mode}"


def build_model(args, device):
    """The model (checkpoint loaded), its training plan and the optimiser's parameter groups."""
    from models import create_model, model_info

    info = model_info(args.model)
    plan = plan_training(args.model, finetuning=args.finetuning, learning_rate=args.learning_rate,
                         classifier_lr=args.classifier_lr, reproduce_original=args.reproduce_original)
    if info.baseline and args.checkpoint:
        if du.is_main_process():
            print(f"note: {args.model} is a baseline trained from scratch; --checkpoint "
                  f"{args.checkpoint} is ignored, as the original did")
        args.checkpoint_ignored, args.checkpoint = args.checkpoint, None
    options = dict(base_model=args.base_model, s1_input_channels=args.s1_input_channels,
                   s2_input_channels=args.s2_input_channels)
    if "drop_path_rate" in info.extra:
        options["drop_path_rate"] = args.drop_path_rate
    if "img_size" in info.uses and args.image_px_size != 224:
        options["img_size"] = args.image_px_size
    model = create_model(args.model, num_classes=args.n_classes, checkpoint=args.checkpoint,
                         **options).to(device)
    if model.load_report is not None and du.is_main_process():
        print(f"checkpoint: {model.load_report.summary()}")
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, plan, apply_plan(model, plan, frozen_in_train_mode=args.reproduce_original)


def main(args, callbacks=None) -> dict:
    device = du.init_distributed(args.device)
    engine.set_seed(args.seed)
    args.output_dir = Path(args.output_dir or Path("runs") / setting_name(args))
    preflight.check_downstream(args)  # flags, data, run folder, resume: before anything is written
    original_precision(args)          # --reproduce_original: fp32
    features.check_supported(args)
    train_set, val_set = downstream_sets(args)   # bad paths fail here, before the model
    train_set = features.prepare_train_set(train_set, args)  # --fixed_crops / --cache_features
    train_loader, val_loader = loaders(args, train_set, val_set)

    from models.checkpoint import downstream_checkpoint

    model, plan, groups = build_model(args, device)
    optimizer = torch.optim.Adam(groups, lr=args.learning_rate, betas=tuple(args.adam_betas),
                                 weight_decay=args.weight_decay, fused=True)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=args.lr_step_epochs,
                                                     gamma=args.lr_step_gamma)
    task = tasks.SupervisedTask(args.target, args.n_classes)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    engine.save_run_config(args.output_dir, config)
    to_restore = {"epochs": 0, "global_step": 0}
    engine.restart_from_checkpoint(engine.resolve_resume(args.resume, args.output_dir, LAST_CHECKPOINT),
                                   to_restore, model_weights=model, optim_state=optimizer, scheduler=scheduler)

    def make_checkpoint(epochs_done: int, val_stats: dict) -> dict:
        return downstream_checkpoint(model, optimizer=optimizer if args.save_optimizer else None,
                                     val_stats=val_stats, epochs=epochs_done, classes=args.classes,
                                     **engine.resume_state(scheduler, None, config))

    logger = runlog.Logger(args.output_dir)
    if du.is_main_process():
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"{setting_name(args)}: {len(train_set)} training / {len(val_set)} evaluation samples, "
              f"{trainable / 1e6:.2f} M trainable parameters, device {device}")
        print(f"classes: {ClassScheme.from_json(args.classes).describe()}")
        print(f"optimiser: Adam, {plan.description}; "
              + ", ".join(f"{g.get('name', 'group')} lr {g['lr']:g}" for g in groups))
    maps = (ExampleMaps(task, args.example_maps)
            if task.kind == "segmentation" and args.example_maps > 0 else None)
    options = engine.FitOptions(epochs=args.epochs, output_dir=args.output_dir, start_epoch=to_restore["epochs"],
                                global_step=to_restore["global_step"], val_every=args.val_every,
                                save_every=args.save_every, log_every=args.log_every, amp=args.amp,
                                channels_last=args.channels_last, skip_nan_batches=args.reproduce_original)
    callbacks = dataclasses.replace(callbacks or engine.Callbacks(), make_checkpoint=make_checkpoint,
                                    collect_last=maps)
    start = time.perf_counter()
    try:
        if args.cache_features:   # the frozen backbone once, then the head on its features
            train_model = features.HeadOnFeatures(engine.unwrap(model).fc)
            fit_train, fit_val = features.cache_features(model, train_loader, val_loader, task, device,
                                                         amp=args.amp, channels_last=args.channels_last,
                                                         seed=args.seed, logger=logger)
        else:
            train_model = engine.wrap_ddp(torch.compile(model) if args.compile else model, device)
            fit_train, fit_val = train_loader, val_loader
        history = engine.fit(train_model, fit_train, task, engine.Optimization(optimizer, epoch_scheduler=scheduler),
                             device, options, val_loader=fit_val, callbacks=callbacks, logger=logger)
        final = history[-1].get("val") if history else None  # the last epoch always validates
        results = final_evaluation(args, model, val_loader, task, device, logger, config,
                                   time.perf_counter() - start, scores=final, maps=maps)
    finally:
        logger.close()
        du.cleanup()
    return results


class ExampleMaps:
    """``evaluate(collect=...)`` callback: S2, true and predicted maps of the first ``count``
    evaluation patches (for the segmentation figure), gathered during the last validation."""

    def __init__(self, task, count: int):
        self.task, self.count, self.items = task, count, []

    def __call__(self, batch: dict, outputs: torch.Tensor) -> None:
        if len(self.items) >= self.count:
            return
        pred, true = outputs.argmax(1).cpu(), self.task.targets(batch).cpu()
        for i in range(min(len(pred), self.count - len(self.items))):
            self.items.append({"s2": batch["s2"][i].cpu().numpy(), "true": true[i].numpy(),
                               "pred": pred[i].numpy()})


def final_evaluation(args, model, loader, task, device, logger, config, seconds,
                     scores: dict | None = None, maps: ExampleMaps | None = None) -> dict:
    """Test-split metrics of the finished model: printed, JSON, figures."""
    if scores is None:  # a resumed run that had nothing left to train
        scores = engine.evaluate(model, loader, task, device, amp=args.amp,
                                 channels_last=args.channels_last, desc="test", collect=maps)
    if not du.is_main_process():
        return scores
    examples = maps.items if maps is not None else []
    scheme = ClassScheme.from_json(args.classes)
    names, colors = scheme.output_names(args.n_classes), scheme.output_colors(args.n_classes)
    out = Path(args.output_dir)
    title = f"{args.run_name or setting_name(args)} on {args.val_mode}"
    results = {"run_name": args.run_name or setting_name(args), "model": args.model,
               "target": args.target, "task": task.kind, "setting": setting_name(args),
               "finetuning": args.finetuning, "checkpoint": args.checkpoint,
               "eval_split": args.val_mode, "train_seconds": seconds, "scores": scores,
               "classes": args.classes, "config": config}
    with open(out / "results.json", "w") as fp:
        json.dump(results, fp, indent=2, default=str)
    print(f"\n## {title}\n\n{scores_table(scores, task.kind, names)}\n")
    if "confusion_matrix" in scores:
        fig = plot_confusion_matrix(scores["confusion_matrix"], names, title=title)
        fig.savefig(out / "confusion_matrix.png", dpi=120)
        logger.figure("test/confusion_matrix", fig, args.epochs)
    if examples:
        fig = plot_segmentation_examples(examples, names, colors)
        fig.savefig(out / "predictions.png", dpi=100)
        logger.figure("test/predictions", fig, args.epochs)
    print(f"results: {out / 'results.json'}")
    return results


if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser()))
