#!/usr/bin/env python
"""Scale experiment: does cross-modal InfoNCE pre-training beat random initialisation, given a
fixed wall-clock budget on one GPU?

A large synthetic SEN12MS (``data/synthetic.py``: tens of thousands of patches generated in
parallel into a pool in memory — no disk, bounded RAM/GPU memory: ``pool x 15 x size^2`` fp16)
pre-trains a dual ResNet18 (64 px) and a dual Swin-T (112-px patches upsampled to its 224 px)
for ``--budget_s`` seconds of training each. The pre-training monitor (``training/monitor.py``:
k-NN, linear probe, S1->S2 retrieval on held-out synthetic DFC2020 validation/test splits) runs
at step 0 (random init; ResNet BatchNorm statistics re-estimated) and ``--points`` times during
the budget (monitor time not counted). For each architecture the fused linear probe and k-NN
at the end are compared with step 0 on the same test patches (paired bootstrap 95 % CI).
Writes ``OUT/ssl_scale.json`` and ``OUT/ssl_scale.png``.

    python benchmarks/ssl_scale.py                      # one GPU: 8-9 minutes (projected)
    python benchmarks/ssl_scale.py --tiny --device cpu  # seconds (the test suite's setting)

Learning rates and temperatures are reasonable defaults, not tuned.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from data.synthetic import SyntheticSEN12MS  # noqa: E402
from training import engine, tasks  # noqa: E402
from training.monitor import KEYS, Monitor  # noqa: E402
from utils import hardware, stats  # noqa: E402

FULL = dict(pool=40000, monitor_train=2000, monitor_test=1000, budget_s=180.0, points=5,
            batch_resnet=256, batch_swin=96, size_resnet=64, size_swin=112, warmup_steps=100)
TINY = dict(pool=16, monitor_train=8, monitor_test=8, budget_s=1.0, points=1,
            batch_resnet=8, batch_swin=2, size_resnet=32, size_swin=32, warmup_steps=0)
MONITOR_CACHE_BYTES = 16 << 30


def build_pool(n: int, size: int, seed: int, workers: int, device) -> dict:
    """``n`` streamed synthetic SEN12MS patches collected into fp16 tensors on ``device``."""
    ds = SyntheticSEN12MS(n, "sen12ms", size=size, seed=seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=256, num_workers=workers)
    s1, s2 = [], []
    for batch in loader:
        s1.append(batch["s1"].half().to(device))
        s2.append(batch["s2"].half().to(device))
    return {"s1": torch.cat(s1), "s2": torch.cat(s2)}


def monitor_sets(args, size: int) -> dict:
    return {"train": SyntheticSEN12MS(args.monitor_train, "validation", size=size, seed=args.seed + 1),
            "test": SyntheticSEN12MS(args.monitor_test, "test", size=size, seed=args.seed + 1)}


def build(arch: str, args, device):
    from models import create_model
    from training.schedules import no_decay_param_groups

    if arch == "resnet18":
        model = create_model("DoubleResNetSimCLR", base_model="resnet18").to(device)
        opt = torch.optim.Adam(model.parameters(), lr=args.lr_resnet, weight_decay=1e-4)
        return model, opt, 0.1, None, args.batch_resnet, args.size_resnet
    model = create_model("DoubleSwinTransformer", img_size=224, drop_path_rate=0.1).to(device)
    opt = torch.optim.AdamW(no_decay_param_groups(model, 0.05), lr=args.lr_swin)
    return model, opt, 0.2, 224, args.batch_swin, args.size_swin


def run_arch(arch: str, args, device) -> dict:
    wall = time.perf_counter()
    engine.set_seed(args.seed)
    model, opt, temperature, input_size, batch_size, size = build(arch, args, device)
    t = time.perf_counter()
    pool = build_pool(args.pool, size, args.seed, args.workers, device)
    pool_s = time.perf_counter() - t
    # the monitor's crops are generated once (by the pool's workers) and kept in RAM: 3,000
    # patches of 112 px are 2.3 GB, regenerated at every point they would cost ~20 s each
    mon = Monitor(None, sets=monitor_sets(args, size), image_px_size=size, device=device,
                  batch_size=256 if device.type == "cuda" else 64, input_size=input_size,
                  workers=args.workers, cache_limit_bytes=MONITOR_CACHE_BYTES)
    task = tasks.ContrastiveTask(temperature)
    amp = getattr(args, "amp", None) or ("bf16" if device.type == "cuda" else "none")   # the demo passes its own
    base_lrs = [g["lr"] for g in opt.param_groups]

    def evaluate(step, seconds, samples, reference=False):
        values = mon.evaluate(model, reestimate_bn=reference)
        values.update(step=step, train_seconds=seconds, samples=samples)
        print(f"  {arch} step {step:6d} ({seconds:6.1f} s): "
              + "  ".join(f"{k}={values[k]:.3f}" for k in KEYS), flush=True)
        return values, {k: v.copy() for k, v in mon.correct.items()}

    ref, ref_correct = evaluate(0, 0.0, 0, reference=True)
    history = [ref]
    step = samples = 0
    trained = 0.0
    marks = [args.budget_s * (i + 1) / args.points for i in range(args.points)]
    gen = torch.Generator(device=device).manual_seed(args.seed)
    model.train()
    last_loss = float("nan")
    while marks:
        start = time.perf_counter()
        idx = torch.randint(0, len(pool["s1"]), (batch_size,), device=device, generator=gen)
        batch = {k: v[idx].float() for k, v in pool.items()}
        if torch.rand(1, generator=gen, device=device).item() < 0.5:   # same flip, both sensors
            batch = {k: v.flip(-1) for k, v in batch.items()}
        if input_size:
            batch = {k: F.interpolate(v, size=input_size, mode="bilinear", align_corners=False)
                     for k, v in batch.items()}
        if step < args.warmup_steps:
            for g, lr in zip(opt.param_groups, base_lrs):
                g["lr"] = lr * (step + 1) / args.warmup_steps
        with hardware.autocast(device, amp):
            out = model(batch)
        loss, _ = task(out, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        step += 1
        samples += batch_size
        trained += time.perf_counter() - start
        if step % 50 == 0 or trained >= marks[0]:
            last_loss = float(loss.detach())
        if trained >= marks[0]:
            marks.pop(0)
            values, correct = evaluate(step, trained, samples)
            values["loss"] = last_loss
            history.append(values)
            model.train()
    comparisons = {}
    for key in ("probe_fused", "knn_fused", "probe_s2", "probe_s1"):
        d = stats.paired_bootstrap_diff(correct[key], ref_correct[key])
        d["verdict"] = stats.verdict(d, "pre-trained", "random init")
        d["mcnemar_p"] = stats.mcnemar(correct[key], ref_correct[key])["p_value"]
        comparisons[key] = d
    return {"arch": arch, "steps": step, "samples": samples, "train_seconds": trained,
            "samples_per_s": samples / max(trained, 1e-9), "pool_seconds": pool_s,
            "pool_patches": args.pool, "patch_px": size, "input_px": input_size or size,
            "batch_size": batch_size, "temperature": temperature,
            "lr": base_lrs, "history": history, "end_vs_random": comparisons,
            "monitor_seconds": sum(h["seconds"] for h in history),
            "wall_seconds": time.perf_counter() - wall}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("knn_fused", "probe_fused", "retrieval_top1")
    fig, axes = plt.subplots(1, len(keys), figsize=(13, 3.6))
    for ax, key in zip(axes, keys):
        for r in results:
            h = r["history"]
            line, = ax.plot([x["train_seconds"] for x in h], [x[key] for x in h], marker="o",
                            label=r["arch"])
            ax.axhline(h[0][key], color=line.get_color(), ls=":", lw=1)
        if key.startswith("retrieval"):
            ax.axhline(results[0]["history"][0]["retrieval_chance_top1"], color="k", ls="--",
                       label="chance")
        ax.set_title(f"{key} (dotted: random init)")
        ax.set_xlabel("training seconds")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="seconds on a CPU (the test's setting)")
    p.add_argument("--archs", default="resnet18,swin_t")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", default="runs/ssl_scale")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=min(15, max((os.cpu_count() or 1) - 1, 0)))
    p.add_argument("--lr_resnet", type=float, default=3e-4)
    p.add_argument("--lr_swin", type=float, default=1e-4)
    for k, v in FULL.items():
        p.add_argument(f"--{k}", type=type(v), default=None, help=f"default {v} (--tiny: {TINY[k]})")
    args = p.parse_args(argv)
    for k, v in (TINY if args.tiny else FULL).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.tiny:
        args.workers = 0
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = []
    for arch in args.archs.split(","):
        print(f"{arch}: pool of {args.pool} synthetic patches, {args.budget_s:.0f} s of training, "
              f"device {device}", flush=True)
        results.append(run_arch(arch, args, device))
    summary = {"config": vars(args), "device": str(device),
               "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
               "seconds": time.perf_counter() - start, "results": results}
    (out / "ssl_scale.json").write_text(json.dumps(summary, indent=2, default=float))
    plot(results, out / "ssl_scale.png")
    for r in results:
        d = r["end_vs_random"]["probe_fused"]
        print(f"{r['arch']}: {r['steps']} steps ({r['samples_per_s']:.0f} samples/s); fused probe "
              f"end - random init = {100 * d['diff']:+.1f} points [{100 * d['low']:+.1f}, "
              f"{100 * d['high']:+.1f}] on {d['n']} test patches: {d['verdict']}")
    print(f"wrote {out / 'ssl_scale.json'} and {out / 'ssl_scale.png'} "
          f"({summary['seconds']:.0f} s in all)")
    return summary


if __name__ == "__main__":
    main()
