#!/usr/bin/env python
"""The whole pipeline on the embedded sample data, in minutes on a CPU (``make demo``).

1. self-supervised pre-training of the dual Swin-T and the dual ResNet50 (brief);
2. linear evaluation of the self-supervised backbones *and* of randomly initialised
   frozen backbones (the evidence that pre-training learned something);
3. fine-tuning for single-label, multi-label classification and segmentation;
4. the results table, and a land-cover map of a whole scene with ``predict.py``.

Every step runs the real scripts (the commands are printed) with short schedules and a
head learning rate suited to a handful of epochs. Finished steps are skipped when the
demo runs again (``--resume auto``).

Pre-training uses small learning rates on purpose: with a few dozen steps, larger ones
(e.g. 3e-4 for the Swin-T) first merge the S1 and S2 embeddings into one point (the
InfoNCE loss sits at its collapse level log(2N - 1)), and a linear head on such collapsed
features predicts a single class. What the SSL-vs-random comparison can show at this
scale is discussed in the README ("Quick start").
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run(cmd: list[str]) -> None:
    print("\n$ " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, *cmd], cwd=REPO, check=True)
    print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)


def linear_eval_comparison(arch: str, ssl_dir: Path, random_dir: Path) -> str:
    """One line: SSL vs random-init frozen backbone, with the test split's sampling noise.

    The difference of the two overall accuracies is called noise when it is within two
    standard errors (binomial, ``n`` test patches each).
    """
    scores = {k: json.loads((d / "results.json").read_text())["scores"]
              for k, d in (("ssl", ssl_dir), ("random", random_dir))}
    n = int(sum(scores["ssl"]["support"]))  # evaluable test patches (same split for both)
    oa = {k: v["overall_accuracy"] for k, v in scores.items()}
    se = math.sqrt(sum(p * (1 - p) for p in oa.values()) / max(n, 1))
    diff = oa["ssl"] - oa["random"]
    verdict = ("within the noise of the test split" if abs(diff) <= 2 * se else
               "self-supervised better" if diff > 0 else "random init better")
    return (f"  {arch:9s} self-supervised OA {100 * oa['ssl']:5.1f} % AA "
            f"{100 * scores['ssl']['average_accuracy']:5.1f} %   random init OA {100 * oa['random']:5.1f} % "
            f"AA {100 * scores['random']['average_accuracy']:5.1f} %   ({n} test patches, difference "
            f"{100 * diff:+.1f} +- {200 * se:.1f} points: {verdict})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="sample_data", help="sample dataset root (made if missing)")
    p.add_argument("--out", default="runs/demo", help="folder for every run of the demo")
    p.add_argument("--pretrain_epochs", type=int, default=3,
                   help="pre-training epochs of the Swin-T and of the ResNet50")
    p.add_argument("--epochs", type=int, default=4, help="linear-evaluation epochs per run")
    p.add_argument("--finetune_epochs", type=int, default=1,
                   help="epochs of fine-tuning and of segmentation runs")
    p.add_argument("--fresh", action="store_true", help="delete OUT first instead of resuming")
    args = p.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    if not (data / "validation_observations.csv").exists():
        run(["-m", "data.sample", "--root", str(data)])
    start = time.perf_counter()
    # on 2 cores, loading in the training process beats worker processes competing for them
    common = ["--train_dir", str(data), "--resume", "auto", "--workers", "0", "--save_every",
              str(args.pretrain_epochs)]

    print("\n=== 1. self-supervised pre-training ===")
    swin_dir, resnet_dir = out / "swin_backbone", out / "resnet50_backbone"
    run(["train_d_swin_backbone.py", *common, "--epochs", str(args.pretrain_epochs),
         "--batch_size", "8", "--warmup_epochs", "1", "--lr", "2e-5", "--output_dir", str(swin_dir)])
    run(["train_resnet_backbone.py", *common, "--arch", "resnet50", "--epochs",
         str(args.pretrain_epochs), "--batch_size", "8", "--lr", "1e-4", "--temperature", "0.2",
         "--output_dir", str(resnet_dir)])
    swin_ckpt, resnet_ckpt = swin_dir / "checkpoint_last.pth", resnet_dir / "checkpoint_last.pth"

    print("\n=== 2./3. linear evaluation and fine-tuning on DFC2020 (sample) ===")
    downstream = ["--train_dir", str(data), "--val_dir", str(data), "--batch_size", "16",
                  "--num_workers", "0", "--resume", "auto"]

    def schedule(epochs: int) -> list[str]:  # validate and save once, at the end; no LR drop
        return ["--epochs", str(epochs), "--validation_every", str(epochs), "--save_every",
                str(epochs), "--lr_step_epochs", str(epochs + 1)]
    swin_cls = ["--model", "DoubleSwinTransformerDownstream"]
    resnet_cls = ["--model", "DoubleResNetSimCLRDownstream", "--base_model", "resnet50",
                  "--image_px_size", "128"]
    runs = {
        "swin_frozen_ssl": [*swin_cls, "--checkpoint", str(swin_ckpt), "--no-finetuning"],
        "swin_frozen_random": [*swin_cls, "--no-finetuning"],
        "resnet50_frozen_ssl": [*resnet_cls, "--checkpoint", str(resnet_ckpt), "--no-finetuning"],
        "resnet50_frozen_random": [*resnet_cls, "--no-finetuning"],
        "swin_finetuned_ssl": [*swin_cls, "--checkpoint", str(swin_ckpt), "--finetuning"],
        "swin_multilabel_frozen_ssl": [*swin_cls, "--target", "dfc_multilabel_one_hot",
                                       "--checkpoint", str(swin_ckpt), "--no-finetuning"],
        "swin_multilabel_finetuned_ssl": [*swin_cls, "--target", "dfc_multilabel_one_hot",
                                          "--checkpoint", str(swin_ckpt), "--finetuning"],
        "swin_segmentation_frozen_ssl": ["--model", "DoubleSwinTransformerSegmentation", "--target",
                                         "dfc", "--checkpoint", str(swin_ckpt), "--no-finetuning"],
        "swin_segmentation_finetuned_ssl": ["--model", "DoubleSwinTransformerSegmentation",
                                            "--target", "dfc", "--checkpoint", str(swin_ckpt),
                                            "--finetuning"],
    }
    for name, extra in runs.items():
        # fine-tuning and the SwinUNet decoders cost ~5x a linear head per epoch
        slow = "--finetuning" in extra or "dfc" in extra
        epochs = args.finetune_epochs if slow else args.epochs
        # backpropagating through Swin-T at 224 px costs ~1 GB per sample on a CPU
        cost = ["--batch_size", "4" if "dfc" in extra else "8"] if slow else []
        if "dfc" in extra:  # segmentation: every patch has many labelled pixels; half the patches do
            cost += ["--train_used_data_fraction", "0.5"]
        # a linear head (or frozen-encoder decoders) learns at --learning_rate; fine-tuning puts
        # the backbone at --learning_rate and the head at --classifier_lr
        lrs = (["--learning_rate", "1e-3"] if "--no-finetuning" in extra
               else ["--learning_rate", "1e-4", "--classifier_lr", "1e-3"])
        run(["train_evaluation.py", *downstream, *schedule(epochs), *extra, *cost, *lrs,
             "--run_name", name, "--output_dir", str(out / name)])

    print("\n=== 4. results ===")
    from utils.results import find_results, results_tables
    table = results_tables(find_results([str(out)]))
    (out / "results.md").write_text(table)
    print(table)
    print("Linear evaluation (frozen backbone), single-label test accuracy:")
    for arch in ("swin", "resnet50"):
        print(linear_eval_comparison(arch, out / f"{arch}_frozen_ssl", out / f"{arch}_frozen_random"))
    print("  (seconds of pre-training on a few dozen synthetic patches: see the README on what this "
          "comparison can and cannot show)")
    seg = out / "swin_segmentation_finetuned_ssl"

    print("\n=== 5. a land-cover map of a whole scene ===")
    scene_s2, scene_s1 = data / "scene_s2.tif", data / "scene_s1.tif"
    if not scene_s2.exists():
        from data.sample import generate_scene
        generate_scene(data)
    run(["predict.py", "--checkpoint", str(seg / "checkpoint_last.pth"), "--s2", str(scene_s2),
         "--s1", str(scene_s1), "--out", str(out / "scene_map.tif"), "--preview",
         str(out / "scene_map.png"), "--summary", str(out / "scene_areas.json"), "--no_progress",
         "--s2_offset", "0"])   # the sample scene is SEN12MS-like: no processing-baseline offset
    print(f"\nfigures: {seg / 'predictions.png'}, {out / 'swin_finetuned_ssl' / 'confusion_matrix.png'}, "
          f"{out / 'scene_map.png'}")
    print(f"TensorBoard: {Path(sys.executable).parent / 'tensorboard'} --logdir {out}")
    print(f"demo finished in {(time.perf_counter() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
