"""The three evidence blocks of ``make demo`` (in-memory synthetic data, no files):

A. **downstream learning**: a dual ResNet18 (``DualBaseline``, late fusion) trained with labels
   from scratch on the synthetic DFC2020 validation split, tested on >= 400 synthetic test
   patches (overall and average accuracy with 95 % CIs; chance AA = 1/8);
B. **pre-training learning**: a dual ResNet18 pre-trained with cross-modal InfoNCE for a fixed
   CPU budget on synthetic SEN12MS (``benchmarks/ssl_scale.py``'s loop; its training steps in
   ``precision``: bf16 autocast where the CPU runs bf16 natively, so more steps fit), with the monitor's
   held-out S1->S2 retrieval and k-NN accuracy at step 0 and at the end, and a PNG of the curves;
C. **SSL vs random**: linear probes (logistic regression on standardised fused features) of the
   pre-trained encoders and of the same network at random initialisation (BatchNorm statistics
   re-estimated) on the same test patches, with a paired bootstrap CI of the difference, an
   exact McNemar test, and the verdict the CI supports.
"""
from __future__ import annotations

import json
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import torch


def supervised(out: Path, *, n_train: int, n_test: int, size: int, epochs: int, seed: int = 0,
               batch_size: int = 32, lr: float = 1e-3) -> dict:
    """Block A: DualBaseline ResNet18 from scratch through the engine, lean checkpoint."""
    from data.synthetic import SyntheticSEN12MS
    from models import create_model
    from models.checkpoint import downstream_checkpoint
    from training import engine, runlog, tasks
    from utils import stats

    engine.set_seed(seed)
    device = torch.device("cpu")
    train = SyntheticSEN12MS(n_train, "validation", size=size, seed=seed + 1).materialise()
    test = SyntheticSEN12MS(n_test, "test", size=size, seed=seed + 1).materialise()
    train_loader = engine.build_loader(train, batch_size, shuffle=True, seed=seed)
    test_loader = engine.build_loader(test, 128, shuffle=False, seed=seed, evaluation=True)
    model = create_model("DualBaseline", base_model="resnet18").to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    task = tasks.SupervisedTask("dfc_label", 8)
    logger = runlog.Logger(out)
    try:
        engine.fit(model, train_loader, task, optimizer, device,
                   engine.FitOptions(epochs=epochs, output_dir=out, save_every=epochs), logger=logger,
                   callbacks=engine.Callbacks(make_checkpoint=lambda e, v: downstream_checkpoint(model, val_stats=v,
                                                                                                 epochs=e)))
    finally:
        logger.close()
    (out / "checkpoint_last.pth").unlink(missing_ok=True)   # not needed later; keeps the demo lean
    preds, ys = [], []
    engine.evaluate(model, test_loader, task, device,
                    collect=lambda b, o: (preds.append(o.argmax(1)), ys.append(task.targets(b))))
    pred, y = torch.cat(preds).numpy(), torch.cat(ys).numpy()
    keep = y != 255
    correct, y = pred[keep] == y[keep], y[keep]
    aa = stats.average_accuracy(correct, y)
    aa_ci = stats.bootstrap_ci(np.arange(len(y)), lambda i: stats.average_accuracy(correct[i], y[i]),
                               n_boot=1000)
    return {"n_train": n_train, "n_test": int(len(y)), "epochs": epochs, "size": size,
            "oa": float(correct.mean()), "oa_ci": stats.wilson(int(correct.sum()), len(y)),
            "aa": aa, "aa_ci": aa_ci, "chance_aa": 1 / 8}


def pretraining(out: Path, *, pool: int, n_train: int, n_test: int, size: int, budget_s: float,
                points: int, seed: int = 0, batch_size: int = 64, lr: float = 3e-4,
                precision: str = "fp32") -> dict:
    """Blocks B and C: ssl_scale's loop for a dual ResNet18 on the CPU (training steps in ``precision``)."""
    from benchmarks import ssl_scale
    from training.monitor import plot_monitor

    args = Namespace(pool=pool, monitor_train=n_train, monitor_test=n_test, budget_s=budget_s,
                     points=points, batch_resnet=batch_size, size_resnet=size, warmup_steps=0,
                     seed=seed, workers=0, lr_resnet=lr, amp="bf16" if precision == "bf16" else "none")
    result = ssl_scale.run_arch("resnet18", args, torch.device("cpu"))
    result["precision"] = precision
    write_monitor_records(result["history"], out)
    plot_monitor(result["history"], out / "monitor.png", x="step",
                 title=f"dual ResNet18 pre-training monitor ({result['steps']} steps of batch "
                       f"{batch_size}, {budget_s:.0f} s on the CPU, {precision})")
    (out / "pretraining.json").write_text(json.dumps(result, indent=2, default=float))
    return result


def write_monitor_records(history: list, out: Path) -> None:
    """The monitor curves as the training scripts record them: TensorBoard (``monitor/...`` and
    ``train/loss`` against the step, so ``tensorboard --logdir runs/demo`` shows them) and one
    ``log.txt`` line per evaluation point."""
    from training import runlog

    logger = runlog.Logger(out)
    try:
        for point in history:
            step = int(point["step"])
            values = {k: v for k, v in point.items() if k not in ("step", "train_seconds", "samples", "loss")}
            logger.scalars("monitor", values, step)
            if "loss" in point:
                logger.scalars("train", {"loss": point["loss"]}, step)
            logger.text(f"step {step:6d} ({point.get('train_seconds', 0.0):6.1f} s): "
                        + "  ".join(f"{k}={v:.3f}" for k, v in values.items() if isinstance(v, (int, float))))
    finally:
        logger.close()


def _pct(x) -> str:
    return f"{100 * x:5.1f} %"


def _ci(lo, hi) -> str:
    return f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def report(sup: dict, pre: dict) -> str:
    """The three blocks as printed text."""
    from utils import stats

    lines = ["A. Downstream learning (supervised dual ResNet18 from scratch, "
             f"{sup['size']} px, {sup['epochs']} epochs on {sup['n_train']} synthetic patches)",
             f"   test: {sup['n_test']} patches   OA {_pct(sup['oa'])} {_ci(*sup['oa_ci'])}   "
             f"AA {_pct(sup['aa'])} {_ci(*sup['aa_ci'])}   (chance AA {_pct(sup['chance_aa'])}; "
             f"AA / chance = {sup['aa'] / sup['chance_aa']:.1f}x)"]
    first, last = pre["history"][0], pre["history"][-1]
    n = last["n_test"]

    def acc(v):  # accuracy with its Wilson CI on n items
        return f"{_pct(v)} {_ci(*stats.wilson(round(v * n), n))}"
    on = "the CPU" + (", bf16 autocast" if pre.get("precision") == "bf16" else "")
    lines += ["", f"B. Pre-training learning (dual ResNet18, InfoNCE, {pre['steps']} steps of batch "
              f"{pre['batch_size']}, {pre['train_seconds']:.0f} s on {on})",
              f"   held-out S1->S2 retrieval top-1 among {first['n_test'] if 'n_test' in first else n}"
              f" test patches: step 0 {acc(first['retrieval_top1'])}  ->  end "
              f"{acc(last['retrieval_top1'])}   (chance {_pct(first['retrieval_chance_top1'])})",
              f"   retrieval top-5: step 0 {acc(first['retrieval_top5'])}  ->  end {acc(last['retrieval_top5'])}",
              f"   k-NN (k=20) fused: step 0 {acc(first['knn_fused'])}  ->  end {acc(last['knn_fused'])}",
              f"   InfoNCE loss at the end: {last.get('loss', float('nan')):.3f} "
              f"(uniform similarities would give log(2B-1) = {np.log(2 * pre['batch_size'] - 1):.3f})"]
    lines += ["", "C. SSL vs random init (same network, BatchNorm re-estimated; linear probe = "
              "logistic regression on standardised features; paired bootstrap 95 % CI, exact McNemar)"]
    for key, name in (("probe_fused", "linear probe, fused"), ("probe_s1", "linear probe, S1"),
                      ("probe_s2", "linear probe, S2"), ("knn_fused", "k-NN, fused")):
        d = pre["end_vs_random"][key]
        lines.append(f"   {name:20s} SSL {acc(last[key])}  random {acc(first[key])}  difference "
                     f"{100 * d['diff']:+.1f} points {_ci(d['low'], d['high'])}, McNemar p = "
                     f"{d.get('mcnemar_p', float('nan')):.3g}: {d['verdict']}")
    return "\n".join(lines)


def settings(quick: bool, budget_s: float, seed: int, precision: str = "fp32") -> dict:
    """What decides the evidence (recorded in ``evidence.json``; a resumed demo must match it).
    ``precision`` is recorded only when it is not fp32 (evidence of earlier versions stays valid)."""
    out = {"quick": bool(quick), "budget_s": float(budget_s), "seed": int(seed)}
    if precision != "fp32":
        out["precision"] = precision
    return out


def saved_settings(out: Path) -> dict | None:
    """The settings of the evidence already in ``out``, or None if unknown."""
    try:
        return json.loads((out / "evidence.json").read_text()).get("settings")
    except (OSError, ValueError, AttributeError):
        return None


def run(out: Path, *, quick: bool = False, budget_s: float = 150.0, seed: int = 0, precision: str = "fp32") -> str:
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if quick:   # the test's setting: seconds
        sup = supervised(out / "supervised", n_train=32, n_test=24, size=32, epochs=1, seed=seed)
        pre = pretraining(out, pool=32, n_train=16, n_test=16, size=32, budget_s=1.0, points=1,
                          batch_size=8, seed=seed, precision=precision)
    else:
        sup = supervised(out / "supervised", n_train=600, n_test=500, size=64, epochs=4, seed=seed)
        pre = pretraining(out, pool=1200, n_train=400, n_test=500, size=64, budget_s=budget_s,
                          points=3, seed=seed, precision=precision)
    text = report(sup, pre)
    (out / "evidence.json").write_text(json.dumps({"settings": settings(quick, budget_s, seed, precision),
                                                   "supervised": sup, "pretraining": pre,
                                                   "seconds": time.perf_counter() - start},
                                                  indent=2, default=float))
    (out / "evidence.txt").write_text(text + "\n")
    return text
