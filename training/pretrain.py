"""What the two pre-training scripts share: data, resume, the run itself.

``train_resnet_backbone.py`` and ``train_d_swin_backbone.py`` differ only in the model,
the optimiser and the schedule; they parse their arguments, build those, and hand over
to :func:`run_pretraining`.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import torch

from training import cli, engine, runlog, tasks
from training import distributed as du
from training.engine import LAST_CHECKPOINT

#: the original's 8 loader workers, capped at this machine's cores
DEFAULT_WORKERS = min(8, os.cpu_count() or 1)

#: --amp help of the three training scripts
AMP_HELP = ("autocast precision. none: fp32, as the original trained (default). bf16: the speed option on CPUs "
            "with native bf16 (avx512_bf16/amx_bf16; measured 1.7-2.1x the samples/s there) and on CUDA >= 8.0; "
            "on a CPU without it bf16 is emulated and 5-30x SLOWER. Changes the numerics (8-bit mantissa in "
            "matmuls/convolutions; weights, optimiser, loss reductions stay fp32). fp16: CUDA only, with a loss "
            "scaler. --reproduce_original forces none. docs/performance.md")


def original_precision(args) -> None:
    """``--reproduce_original`` trains in fp32 as the original did: any other ``--amp`` becomes none (with a note)."""
    if getattr(args, "reproduce_original", False) and getattr(args, "amp", "none") != "none":
        print(f"note: --reproduce_original trains in fp32, as the original did; --amp {args.amp} is not used")
        args.amp = "none"


def add_data_arguments(parser: argparse.ArgumentParser, *, batch_size: int, image_px_size: int) -> None:
    """Data/run flags common to both pre-training scripts (same names as the originals)."""
    g = parser.add_argument_group("data")
    g.add_argument("--train_dir", help="SEN12MS root (folders ROIs1158_spring, ...)")
    g.add_argument("--train_mode", default="sen12ms", choices=["sen12ms", "validation", "test", "dfc"])
    g.add_argument("--val_dir", default=None,
                   help="DFC2020 root for the contrastive validation pass (default: none)")
    g.add_argument("--val_mode", default="validation", choices=["validation", "test", "dfc"])
    g.add_argument("--train_used_data_fraction", type=float, default=1.0)
    g.add_argument("--val_used_data_fraction", type=float, default=1.0)
    g.add_argument("--image_px_size", type=int, default=image_px_size,
                   help="crop size in px (random crops for training, centre crops for validation)")
    cli.add_bool_flag(g, "--clip_sample_values", default=True)
    from training.data import add_bad_sample_arguments
    add_bad_sample_arguments(g)
    g.add_argument("-b", "--batch_size", "--batch-size", dest="batch_size", type=int, default=batch_size,
                   help="batch size per process")
    g.add_argument("-j", "--workers", "--num_workers", "--dataloader_workers", dest="workers",
                   type=int, default=DEFAULT_WORKERS,
                   help="DataLoader worker processes (the original's 8, capped at the CPU count)")
    r = parser.add_argument_group("run")
    r.add_argument("--output_dir", default=None, help="run folder: checkpoints, TensorBoard, config")
    r.add_argument("--resume", default=None,
                   help="checkpoint to continue from, or 'auto' for OUTPUT_DIR/checkpoint_last.pth")
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--save_every", type=int, default=1, help="write checkpoint_last.pth every N epochs")
    r.add_argument("--keep_every", type=int, default=0,
                   help="also keep checkpoint_XXXX.pth every N epochs (0: only the last)")
    r.add_argument("--val_every", "--validation_every", dest="val_every", type=int, default=1,
                   help="validation pass after epoch indices 0, N, 2N, ... and the last")
    r.add_argument("--log_every", type=int, default=10, help="TensorBoard step scalars every N steps")
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    r.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help=AMP_HELP)
    cli.add_bool_flag(r, "--channels_last", default=False,
                      help="channels-last memory format (faster ResNets on GPU)")
    cli.add_bool_flag(r, "--compile", default=False,
                      help="torch.compile the model")
    cli.add_safety_arguments(r)
    cli.constrain(parser, train_used_data_fraction=cli.fraction, val_used_data_fraction=cli.fraction,
                  image_px_size=cli.positive_int, batch_size=cli.positive_int, workers=cli.non_negative_int,
                  save_every=cli.positive_int, keep_every=cli.non_negative_int, val_every=cli.positive_int,
                  log_every=cli.positive_int)
    cli.add_bool_flag(r, "--save_optimizer", default=True,
                      help="keep the optimiser state in checkpoints (the published layout); "
                           "--no-save_optimizer writes lean checkpoints (a resume restarts Adam's moments)")
    from training import monitor
    monitor.add_arguments(parser)


def run_pretraining(args, model: torch.nn.Module, optimization: engine.Optimization, *, arch: str,
                    temperature: float, train_loader, val_loader, device: torch.device,
                    config: dict | None = None, callbacks: engine.Callbacks | None = None) -> list[dict]:
    """Resume if asked, train for ``args.epochs`` and write checkpoints in the published layout.

    ``optimization``: the optimiser and the LR schedule (per step or per epoch). Checkpoints hold
    ``{"epoch", "arch", "state_dict", "optimizer"}`` exactly as the published files
    (``state_dict`` in the published key layout, so the original code reads them) plus
    ``scheduler``, ``scaler``, ``rng``, ``global_step`` and ``config`` for an exact resume.
    """
    from models.checkpoint import backbone_checkpoint

    output_dir = Path(args.output_dir)
    original_precision(args)
    config = config if config is not None else vars(args)
    engine.save_run_config(output_dir, config)
    optimization.scaler = torch.amp.GradScaler("cuda") if args.amp == "fp16" else None
    schedule = optimization.step_scheduler or optimization.epoch_scheduler
    to_restore = {"epoch": 0, "global_step": 0}   # kind and config checked by training.preflight
    engine.restart_from_checkpoint(engine.resolve_resume(args.resume, output_dir, LAST_CHECKPOINT), to_restore,
                                   state_dict=model, optimizer=optimization.optimizer, scheduler=schedule,
                                   scaler=optimization.scaler)

    train_model = torch.compile(model) if args.compile else model
    train_model = engine.wrap_ddp(train_model, device)

    def make_checkpoint(epochs_done: int, val_stats: dict) -> dict:
        lean = not getattr(args, "save_optimizer", True)   # --no-save_optimizer: no Adam state
        return backbone_checkpoint(model, epochs_done, None if lean else optimization.optimizer,
                                   val_stats=val_stats,
                                   **engine.resume_state(schedule, optimization.scaler, config))

    callbacks = dataclasses.replace(callbacks or engine.Callbacks(), make_checkpoint=make_checkpoint)
    options = engine.FitOptions(
        epochs=args.epochs, output_dir=output_dir, start_epoch=to_restore["epoch"],
        global_step=to_restore["global_step"], val_every=args.val_every, save_every=args.save_every,
        keep_every=args.keep_every, log_every=args.log_every, amp=args.amp, channels_last=args.channels_last)
    logger = runlog.Logger(output_dir)
    task = tasks.ContrastiveTask(temperature)
    from training import monitor
    watch = monitor.from_args(args, device, logger)   # --monitor_every N: k-NN, probe, retrieval
    try:
        if watch is not None:
            if options.start_epoch == 0:
                watch.run(model, 0)   # the reference line: random init
            callbacks = watch.callbacks(model, callbacks, steps_per_epoch=len(train_loader), epochs=args.epochs)
        if du.is_main_process():
            print(f"pre-training {arch} on {len(train_loader.dataset)} samples for epochs "
                  f"{options.start_epoch + 1}..{args.epochs} (batch {args.batch_size} x {du.get_world_size()} "
                  f"processes, device {device})")
        history = engine.fit(train_model, train_loader, task, optimization, device, options,
                             val_loader=val_loader, callbacks=callbacks, logger=logger)
    finally:
        logger.close()
    if du.is_main_process():
        print(f"done: {output_dir / LAST_CHECKPOINT}")
    return history
