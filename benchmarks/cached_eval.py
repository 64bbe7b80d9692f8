#!/usr/bin/env python
"""Wall time of linear evaluation on cached features against the uncached run (frozen settings).

Runs ``train_evaluation.py`` in-process with the paper's frozen single-label setting
(``downstream_eval_scripts/classification/single_label/ssl/*_frozen.sh``: Adam 3e-6, batch 32,
224 px; random weights here — the time does not depend on them), uncached and with
``--cache_features``. The uncached run is timed for 1 and ``--epochs`` epochs and projected to
the paper's 201 epochs (time = fixed + per-epoch cost, validation every 2 epochs included);
the cached run is cheap enough to be timed at the full 201 epochs.

    python benchmarks/cached_eval.py --data sample_data                       # Swin-T, 224 px
    python benchmarks/cached_eval.py --data sample_data --model resnet50     # dual ResNet50
    python benchmarks/cached_eval.py --data /data/dfc2020 --device cuda --json out.json
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODELS = {"swin_t": ["--model", "DoubleSwinTransformerDownstream"],
          "resnet50": ["--model", "DoubleResNetSimCLRDownstream", "--base_model", "resnet50"],
          "resnet18": ["--model", "DoubleResNetSimCLRDownstream", "--base_model", "resnet18"]}


def timed_run(args, epochs: int, cached: bool, out: Path) -> float:
    import train_evaluation

    argv = ["--train_dir", str(args.data), *MODELS[args.model], "--no-finetuning",
            "--learning_rate", "3e-6", "--batch_size", str(args.batch_size), "--seed", "44",
            "--image_px_size", str(args.image_px_size), "--epochs", str(epochs),
            "--num_workers", str(args.workers), "--device", args.device,
            "--output_dir", str(out), "--save_every", "1000"]
    if cached:
        argv += ["--cache_features"]
    parsed = train_evaluation.get_args_parser().parse_args(argv)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        train_evaluation.main(parsed)
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="sample_data", help="DFC2020 root (train: validation split, "
                   "evaluation: test split)")
    p.add_argument("--model", default="swin_t", choices=sorted(MODELS))
    p.add_argument("--image_px_size", type=int, default=224)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3, help="measured epochs (>= 2)")
    p.add_argument("--target_epochs", type=int, default=201, help="projected to this many epochs")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--json", default=None, help="also write the numbers here")
    args = p.parse_args(argv)
    if not (Path(args.data) / "validation_observations.csv").exists():
        from data.sample import generate_sample_dataset
        generate_sample_dataset(args.data)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        t1 = timed_run(args, 1, False, Path(tmp) / "uncached1")
        tn = timed_run(args, args.epochs, False, Path(tmp) / f"uncached{args.epochs}")
        per_epoch = max(tn - t1, 0.0) / (args.epochs - 1)
        fixed = max(t1 - per_epoch, 0.0)
        rows["uncached"] = {"t_1_epoch_s": t1, f"t_{args.epochs}_epochs_s": tn,
                            "per_epoch_s": per_epoch, "fixed_s": fixed,
                            "projected_s": fixed + per_epoch * args.target_epochs}
        print(f"uncached  1 epoch {t1:.1f} s, {args.epochs} epochs {tn:.1f} s -> {per_epoch:.2f} "
              f"s/epoch + {fixed:.1f} s; {args.target_epochs} epochs projected "
              f"{rows['uncached']['projected_s'] / 60:.1f} min", flush=True)
        # the cached run is cheap: measured at the full length, not projected
        tc = timed_run(args, args.target_epochs, True, Path(tmp) / "cached")
        rows["cached"] = {"projected_s": tc, "measured": True}
        print(f"cached    {args.target_epochs} epochs measured {tc:.1f} s", flush=True)
    ratio = rows["uncached"]["projected_s"] / max(rows["cached"]["projected_s"], 1e-9)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{args.model} frozen linear evaluation, {args.image_px_size} px, batch "
          f"{args.batch_size}, {args.device}, load {load:.1f}: projected {args.target_epochs} "
          f"epochs uncached / cached = {ratio:.0f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"config": vars(args), "runs": rows, "ratio": ratio,
                                               "load_average": load}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
