#!/usr/bin/env python
"""``make demo``: evidence that each stage learns, then the flagship path as a smoke run.

1. **Evidence** (``demo/evidence.py``; in-memory synthetic SEN12MS/DFC2020, >= 400 test patches,
   generated in seconds, nothing written but results): (A) a supervised dual ResNet18 against
   chance, (B) the pre-training monitor (held-out S1->S2 retrieval, k-NN) at step 0 and at the
   end of a few CPU minutes of InfoNCE, with a PNG of the curves, (C) linear probes of the
   pre-trained vs the randomly initialised network (BatchNorm re-estimated) with a paired CI
   and the verdict it supports. Every accuracy is printed with its 95 % CI.
2. **Smoke run of the flagship path** on the embedded sample data (64 patches): dual Swin-T
   pre-training, linear evaluation (on cached features), fine-tuning, SwinUNet segmentation and
   a land-cover map of a whole scene, each through the real scripts. Seconds of training on 16
   test patches: it shows that the path runs, not that it learns.
3. **Your own data**: the sample scene (``scene_s2.tif``, ``scene_s1.tif``, ``scene_dfc.tif`` as
   the label map) taken as a user's region with their own classes (``demo/own_classes.csv``):
   ``prepare_dataset.py`` -> ``train_evaluation.py`` -> ``predict.py``, then the map's accuracy
   on the held-out test blocks with a 95 % CI, next to chance.

Checkpoints are lean (``--no-save_optimizer``) and the smoke run's classification checkpoints are
removed once their results are written, so the demo stays under 1 GB. Finished steps are skipped
when the demo runs again (``--fresh`` starts over).
"""
from __future__ import annotations

import argparse
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


def disk_mb(*paths: Path) -> float:
    total = 0
    for p in paths:
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return total / 1e6


def evidence_block(out: Path, budget_s: float, quick: bool, seed: int = 0, precision: str = "fp32") -> None:
    from demo import evidence

    print("\n=== 1. Evidence: does each stage learn? (synthetic data in memory, 95 % CIs) ===",
          flush=True)
    text_file = out / "evidence.txt"
    if text_file.exists():
        wanted, saved = evidence.settings(quick, budget_s, seed, precision), evidence.saved_settings(out)
        if saved != wanted:
            raise SystemExit(f"error: {out} holds evidence of other settings ({saved or 'unknown'}; "
                             f"asked for {wanted}); pass --fresh to replace it or another --out")
        print("(finished earlier)")
        text = text_file.read_text()
    else:
        text = evidence.run(out, quick=quick, budget_s=budget_s, seed=seed, precision=precision)
    print(text)
    print(f"monitor curves: {out / 'monitor.png'}")


def restart_flags(folder: Path, done: str) -> list[str]:
    """``["--overwrite"]`` for a demo run folder left unfinished (no ``done`` file) by an
    interrupted demo, so that the step starts again instead of stopping at the scripts' refusal
    to write into a folder that holds a run; ``[]`` for a new folder."""
    if folder.is_dir() and any(folder.iterdir()) and not (folder / done).exists():
        print(f"\n({folder.name}: unfinished run of an earlier demo, started again)", flush=True)
        return ["--overwrite"]
    return []


def smoke_block(data: Path, out: Path, quick: bool) -> None:
    print("\n=== 2. Smoke run of the flagship path (dual Swin-T; 16 sample test patches; "
          "shows that it runs, not that it learns) ===", flush=True)
    swin_dir = out / "swin_backbone"
    swin_ckpt = swin_dir / "checkpoint_last.pth"
    if not swin_ckpt.exists():
        run(["train_d_swin_backbone.py", "--train_dir", str(data), "--workers", "0", "--epochs", "1",
             "--batch_size", "8", "--warmup_epochs", "1", "--lr", "2e-5", "--no-save_optimizer",
             "--output_dir", str(swin_dir), *restart_flags(swin_dir, swin_ckpt.name)]
            + (["--train_used_data_fraction", "0.25"] if quick else []))
    common = ["--train_dir", str(data), "--val_dir", str(data), "--num_workers", "0", "--epochs", "1",
              "--validation_every", "1", "--lr_step_epochs", "2", "--no-save_optimizer",
              "--checkpoint", str(swin_ckpt)]
    classifier = ["--model", "DoubleSwinTransformerDownstream"]
    if quick:
        common += ["--train_used_data_fraction", "0.25", "--val_used_data_fraction", "0.5"]
    runs = {
        "swin_frozen_cached": [*classifier, "--no-finetuning", "--cache_features", "--learning_rate", "1e-3",
                               "--batch_size", "16"],
        "swin_finetuned": [*classifier, "--finetuning", "--learning_rate", "1e-4", "--classifier_lr", "1e-3",
                           "--batch_size", "8"],
        "swin_segmentation_finetuned": ["--model", "DoubleSwinTransformerSegmentation", "--target",
                                        "dfc", "--finetuning", "--learning_rate", "1e-4",
                                        "--classifier_lr", "1e-3", "--batch_size", "4",
                                        "--train_used_data_fraction", "0.5"],
    }
    for name, extra in runs.items():
        folder = out / name
        if (folder / "results.json").exists():
            print(f"\n({name}: finished earlier)")
            continue
        run(["train_evaluation.py", *common, *extra, "--run_name", f"{name} (smoke)",
             "--output_dir", str(folder), *restart_flags(folder, "results.json")])
        if "segmentation" not in name:   # only the map needs its checkpoint; keeps the demo < 1 GB
            (folder / "checkpoint_last.pth").unlink(missing_ok=True)
    from utils.results import find_results, results_tables
    table = results_tables(find_results([str(out / n) for n in runs]))
    (out / "smoke_results.md").write_text(table)
    print("\nSmoke-run results (16 test patches, one epoch each: not evidence):\n" + table)
    seg = out / "swin_segmentation_finetuned"
    scene_s2, scene_s1 = data / "scene_s2.tif", data / "scene_s1.tif"
    if not scene_s2.exists():
        from data.sample import generate_scene
        generate_scene(data)
    if not (out / "scene_map.png").exists():
        run(["predict.py", "--checkpoint", str(seg / "checkpoint_last.pth"), "--s2", str(scene_s2),
             "--s1", str(scene_s1), "--out", str(out / "scene_map.tif"), "--preview",
             str(out / "scene_map.png"), "--summary", str(out / "scene_areas.json"), "--no_progress",
             "--s2_offset", "0"])   # the sample scene is SEN12MS-like: no processing-baseline offset


def own_data_block(data: Path, out: Path, quick: bool, seed: int) -> None:
    """prepare_dataset.py -> train_evaluation.py -> predict.py on the sample scene, then the map's
    accuracy on the held-out test area (``preparation.assess``)."""
    from preparation.assess import format_accuracy, map_accuracy

    print("\n=== 3. Your own data: the sample scene as your region, your own classes "
          "(prepare -> fine-tune -> map) ===", flush=True)
    scene = {k: data / f"scene_{k}.tif" for k in ("s2", "s1", "dfc")}
    if not all(p.exists() for p in scene.values()):
        from data.sample import generate_scene
        generate_scene(data, *((768, 768) if quick else ()))
    own, dataset, run_dir = out / "own_data", out / "own_data" / "dataset", out / "own_data" / "classifier"
    run(["prepare_dataset.py", "--s2", str(scene["s2"]), "--s1", str(scene["s1"]), "--labels", str(scene["dfc"]),
         "--classes", str(REPO / "demo" / "own_classes.csv"), "--out", str(dataset), "--block_size", "256",
         "--stride", "128", "--split_fractions", "0.6", "0.15", "0.25", "--seed", str(seed), "--no-progress",
         "--s2_offset", "0"])   # the sample scene is SEN12MS-like: no processing-baseline offset
    if not (run_dir / "results.json").exists():
        run(["train_evaluation.py", "--train_dir", str(dataset), "--val_dir", str(dataset), "--model", "resnet18",
             "--image_px_size", "64", "--epochs", "2" if quick else "20", "--batch_size", "16",
             "--learning_rate", "1e-3", "--lr_step_epochs", "15", "--validation_every", "5", "--num_workers", "1",
             "--seed", str(seed), "--no-save_optimizer", "--run_name", "own data: resnet18 (from scratch)",
             "--output_dir", str(run_dir), *restart_flags(run_dir, "results.json")])
    map_tif = own / "map.tif"
    if not map_tif.exists():
        run(["predict.py", "--checkpoint", str(run_dir / "checkpoint_last.pth"), "--s2", str(scene["s2"]),
             "--s1", str(scene["s1"]), "--window", "64", "--overlap", "0.5", "--out", str(map_tif),
             "--preview", str(own / "map.png"), "--summary", str(own / "areas.json"), "--no_progress",
             "--s2_offset", "0"])
    result = map_accuracy(dataset, map_tif)
    text = format_accuracy(result)
    (own / "accuracy.txt").write_text(text + "\n")
    print(f"\n{text}\n   map: {map_tif} (preview {own / 'map.png'}); splits: {dataset / 'footprints.png'}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="sample_data", help="sample dataset root (made if missing)")
    p.add_argument("--out", default="runs/demo", help="folder for every run of the demo")
    p.add_argument("--ssl_budget_s", type=float, default=150.0,
                   help="seconds of InfoNCE pre-training in the evidence block")
    p.add_argument("--seed", type=int, default=0, help="seed of the evidence block's data and runs")
    p.add_argument("--skip_smoke", action="store_true", help="only the evidence block")
    p.add_argument("--skip_evidence", action="store_true", help="no evidence block")
    p.add_argument("--skip_own_data", action="store_true", help="no 'your own data' block")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a test of the demo itself)")
    p.add_argument("--fresh", action="store_true", help="delete OUT first instead of resuming")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="training steps of the evidence block's pre-training: auto = bf16 autocast where this "
                        "CPU runs bf16 natively (more steps in the same budget), else fp32")
    args = p.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if not args.skip_evidence:
        from utils.hardware import resolve_precision
        precision, line = resolve_precision(args.precision, "cpu")
        print(f"evidence block pre-training: {line}", flush=True)
        evidence_block(out / "evidence", args.ssl_budget_s, args.quick, args.seed, precision)
    if not args.skip_smoke:
        if not (data / "validation_observations.csv").exists():
            run(["-m", "data.sample", "--root", str(data)])
        smoke_block(data, out, args.quick)
    if not args.skip_own_data:
        own_data_block(data, out, args.quick, args.seed)
    print(f"\nTensorBoard: {Path(sys.executable).parent / 'tensorboard'} --logdir {out}")
    print(f"disk: {disk_mb(out):.0f} MB in {out}, {disk_mb(data):.0f} MB in {data}")
    print(f"demo finished in {(time.perf_counter() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
