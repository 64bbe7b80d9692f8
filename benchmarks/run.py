#!/usr/bin/env python
"""Performance table of the data path, the training steps and the machine (``make bench``).

Every benchmark runs in a fresh Python subprocess, so its peak RSS (``VmHWM`` of
``/proc/self/status``, interpreter + torch included) is its own. Throughput is the median of
``--repeats`` timed runs after warm-up; the spread (min..max) is printed too because machines
shared with other jobs are noisy -- the load average is printed with the table.

    python benchmarks/run.py                      # everything (several minutes on 2 CPU cores)
    python benchmarks/run.py --quick              # fewer repeats
    python benchmarks/run.py --only loading,matmul --json out.json
    python benchmarks/run.py --only resnet_pretrain --channels_last
    python benchmarks/run.py --only swin_pretrain --compile
    python benchmarks/run.py --only swin_pretrain,resnet_pretrain --fused_optim --threads 1
    python benchmarks/run.py --device cuda        # on a GPU machine (not measured in this repo)

Benchmarks: matmul, loading, loader_scaling, swin_pretrain, resnet_pretrain, seg_finetune,
inference, params. Training steps are forward + loss + backward + optimizer step (fp32);
their FLOPs are counted once with ``torch.utils.flop_counter.FlopCounterMode`` and compared
with the machine's 2048^2 fp32 matmul throughput.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ORIGINAL_SEG_PARAMS = 140e6  # the original DoubleSwinTransformerSegmentation (with unused encoder copies)

# name -> (what, target text, predicate on the result); the project's targets for 2 CPU cores, fp32
TARGETS: Dict[str, tuple] = {
    "loading": ("samples/s", ">= 200", lambda r: r["samples_per_s"] >= 200),
    "swin_pretrain": ("samples/s", ">= 2.5", lambda r: r["samples_per_s"] >= 2.5),
    "resnet_pretrain": ("samples/s", ">= 8", lambda r: r["samples_per_s"] >= 8),
    "seg_finetune": ("samples/s", ">= 1.1", lambda r: r["samples_per_s"] >= 1.1),
    "params": ("seg params", "<= 60 % of 140 M", lambda r: r["seg_fraction_of_original"] <= 0.60),
}
# the original implementation measured on the same machine kind (2 CPU cores), for orientation
ORIGINAL = {"loading": 67, "swin_pretrain": 1.9, "resnet_pretrain": 6.2, "seg_finetune": 0.8}

ORDER = ["matmul", "loading", "loader_scaling", "swin_pretrain", "resnet_pretrain", "seg_finetune",
         "inference", "params"]
TRAINING = ("swin_pretrain", "resnet_pretrain", "seg_finetune")


# ---------------------------------------------------------------------------------------- helpers
def peak_rss_mb(field: str = "VmHWM") -> float:
    """Peak (``VmHWM``) or current (``VmRSS``) resident set size of this process, MB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _drain(iterable) -> None:
    """Consume without keeping the items (their memory would count in the peak RSS)."""
    for _ in iterable:
        pass


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def sample_data_dir(explicit: Optional[str]) -> Path:
    """The dataset to read: ``--data`` or the sample dataset, generated once into the temp dir."""
    if explicit:
        return Path(explicit)
    root = Path(tempfile.gettempdir()) / "ssl_landcover_bench_data_v1"
    if not (root / ".complete").is_file():
        from data.sample import generate_sample_dataset
        generate_sample_dataset(root, seed=0)
        (root / ".complete").write_text("ok\n")
    return root


def _sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], repeats: int, device) -> List[float]:
    out = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def summary(per_run: List[float], items_per_run: float) -> dict:
    rates = [items_per_run / t for t in per_run]
    return {"samples_per_s": statistics.median(rates), "min": min(rates), "max": max(rates),
            "runs": len(rates), "seconds": per_run}


# ------------------------------------------------------------------------------------- benchmarks
def bench_matmul(opts) -> dict:
    import torch
    device = torch.device(opts.device)
    n = 2048
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    inner = 3 if device.type == "cpu" else 50
    for _ in range(2):
        a @ b
    secs = timed(lambda: _drain(a @ b for _ in range(inner)), opts.repeats, device)
    flops = 2 * n ** 3 * inner
    rates = [flops / s / 1e9 for s in secs]
    return {"gflops": statistics.median(rates), "min": min(rates), "max": max(rates), "runs": len(rates),
            "threads": torch.get_num_threads()}


def bench_loading(opts) -> dict:
    from data import DFCDataset
    ds = DFCDataset(sample_data_dir(opts.data), mode="dfc", image_px_size=224)
    n = len(ds)
    for i in range(n):  # warm-up: files into the page cache, lazy imports
        ds[i]
    passes = 2 if opts.quick else 5
    cpu0 = time.process_time()
    secs = timed(lambda: _drain(ds[i] for _ in range(passes) for i in range(n)), opts.repeats, _cpu())
    cpu = time.process_time() - cpu0
    out = summary(secs, n * passes)
    out["cpu_samples_per_s"] = n * passes * len(secs) / max(cpu, 1e-9)
    out["setting"] = f"DFCDataset dfc, 224 crop of 256, 1 process, {n} patches x {passes} passes per run"
    return out


def bench_loader_scaling(opts) -> dict:
    import torch
    from torch.utils.data import DataLoader

    from data import DFCDataset
    # tiles (cover_all_parts): 4 deterministic 224-px items per patch, enough items per epoch
    ds = DFCDataset(sample_data_dir(opts.data), mode="dfc", image_px_size=224, cover_all_parts=True)
    result = {"items_per_epoch": len(ds), "batch_size": 16, "workers": {}}
    for workers in (0, 1, 2):
        loader = DataLoader(ds, batch_size=16, shuffle=False, num_workers=workers,
                            persistent_workers=workers > 0, prefetch_factor=4 if workers else None)
        for _ in loader:  # warm-up epoch (workers start, page cache)
            pass
        epochs = 1 if opts.quick else 2
        secs = timed(lambda loader=loader, epochs=epochs: _drain(b for _ in range(epochs) for b in loader), opts.repeats,
                     torch.device("cpu"))
        result["workers"][str(workers)] = summary(secs, len(ds) * epochs)
        del loader
    result["samples_per_s"] = max(v["samples_per_s"] for v in result["workers"].values())
    return result


def _cpu():
    import torch
    return torch.device("cpu")


def _batch(batch: int, size: int, device, channels_last: bool, seg: bool = False) -> dict:
    import torch
    g = torch.Generator().manual_seed(0)
    out = {"s1": torch.rand(batch, 2, size, size, generator=g), "s2": torch.rand(batch, 13, size, size, generator=g)}
    if seg:
        dfc = torch.randint(0, 8, (batch, size, size), generator=g)
        dfc[:, :8] = 255
        out["dfc"] = dfc
    for k in ("s1", "s2"):
        out[k] = out[k].to(device)
        if channels_last:
            out[k] = out[k].contiguous(memory_format=torch.channels_last)
    if seg:
        out["dfc"] = out["dfc"].to(device)
    return out


def _count_flops(step: Callable[[], None]) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def _train_step_bench(opts, name: str, build: Callable, batch_size: int, size: int,
                      make_opt: Callable, loss_fn: Callable, seg: bool = False) -> dict:
    import torch
    torch.manual_seed(0)
    device = torch.device(opts.device)
    model = build().to(device)
    if opts.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = make_opt(model, {"fused": True} if opts.fused_optim else {})
    batch = _batch(batch_size, size, device, opts.channels_last, seg)
    fwd = model
    compile_s = None

    def step() -> None:
        loss = loss_fn(fwd(batch), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    flops = _count_flops(step)  # also a warm-up step (eager)
    if opts.compile:
        fwd = torch.compile(model)
        t0 = time.perf_counter()
        step()
        _sync(device)
        compile_s = time.perf_counter() - t0
    warmup = 1 if opts.quick else 2
    for _ in range(warmup):
        step()
    secs = timed(step, opts.repeats, device)
    out = summary(secs, batch_size)
    out.update({
        "gflop_per_step": flops / 1e9,
        "gflops": flops / statistics.median(secs) / 1e9,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "setting": f"batch {batch_size}, {size} px, fp32, {type(optimizer).__name__}"
                   + (", fused" if opts.fused_optim else "")
                   + (", channels_last" if opts.channels_last else "") + (", compiled" if opts.compile else ""),
    })
    if compile_s is not None:
        out["compile_s"] = compile_s
    if device.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    return out


def _info_nce(temperature: float):
    from training.losses import info_nce_loss

    def loss(outputs, batch):
        return info_nce_loss(outputs["s1"], outputs["s2"], temperature=temperature, gather=False)[0]
    return loss


def bench_swin_pretrain(opts) -> dict:
    import torch

    from models import create_model
    return _train_step_bench(
        opts, "swin_pretrain", lambda: create_model("DoubleSwinTransformer"), 8, 224,
        lambda m, kw: torch.optim.AdamW(m.parameters(), lr=5e-4, weight_decay=0.05, **kw), _info_nce(0.2))


def bench_resnet_pretrain(opts) -> dict:
    import torch

    from models import create_model
    return _train_step_bench(
        opts, "resnet_pretrain", lambda: create_model("DoubleResNetSimCLR", base_model="resnet50"), 32, 128,
        lambda m, kw: torch.optim.Adam(m.parameters(), lr=3e-5, weight_decay=1e-4, **kw), _info_nce(0.07))


def bench_seg_finetune(opts) -> dict:
    import torch
    import torch.nn.functional as F

    from models import create_model

    def loss(outputs, batch):
        return F.cross_entropy(outputs, batch["dfc"], ignore_index=255)
    return _train_step_bench(
        opts, "seg_finetune", lambda: create_model("DoubleSwinTransformerSegmentation"), 4, 224,
        lambda m, kw: torch.optim.Adam(m.parameters(), lr=1e-5, weight_decay=1e-3, **kw), loss, seg=True)


def bench_inference(opts) -> dict:
    import torch

    from models import create_model
    device = torch.device(opts.device)
    model = create_model("DoubleSwinTransformerDownstream").to(device).eval()
    if opts.channels_last:
        model = model.to(memory_format=torch.channels_last)
    batch = _batch(16, 224, device, opts.channels_last)
    fwd = torch.compile(model) if opts.compile else model
    with torch.inference_mode():
        flops = _count_flops(lambda: model(batch))
        for _ in range(1 if opts.quick else 2):
            fwd(batch)
        secs = timed(lambda: fwd(batch), opts.repeats, device)
    out = summary(secs, 16)
    out.update({"gflop_per_step": flops / 1e9, "gflops": flops / statistics.median(secs) / 1e9,
                "setting": "DoubleSwinTransformerDownstream, batch 16, 224 px, fp32, inference_mode"
                           + (", channels_last" if opts.channels_last else "") + (", compiled" if opts.compile else "")})
    return out


def bench_params(opts) -> dict:
    from models import create_model
    counts = {}
    for name, kw in (("DoubleSwinTransformer", {}), ("DoubleResNetSimCLR", {"base_model": "resnet50"}),
                     ("DoubleSwinTransformerDownstream", {}), ("DoubleSwinTransformerSegmentation", {})):
        model = create_model(name, **kw)
        counts[name] = sum(p.numel() for p in model.parameters())
        del model
    seg = counts["DoubleSwinTransformerSegmentation"]
    return {"params": counts, "seg_fraction_of_original": seg / ORIGINAL_SEG_PARAMS}


BENCHES = {name: globals()[f"bench_{name}"] for name in ORDER}


# ------------------------------------------------------------------------------------------ driver
def run_child(name: str, opts) -> dict:
    """Run one benchmark in this (fresh) process and return its result with peak RSS."""
    import torch
    base = peak_rss_mb("VmRSS")  # python + torch + numpy imported
    if opts.threads:
        torch.set_num_threads(opts.threads)
    t0 = time.perf_counter()
    result = BENCHES[name](opts)
    result["wall_s"] = time.perf_counter() - t0
    result["peak_rss_mb"] = peak_rss_mb()
    result["base_rss_mb"] = base
    result["torch_threads"] = torch.get_num_threads()
    return result


def spawn(name: str, opts, argv: List[str]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", name] + argv
    proc = subprocess.run(cmd, cwd=str(REPO), capture_output=True, text=True)
    marker = "@@RESULT@@"
    for line in proc.stdout.splitlines():
        if line.startswith(marker):
            return json.loads(line[len(marker):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def _fmt(v, digits=1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _delta(r: dict) -> str:
    return f"+{r['peak_rss_mb'] - r['base_rss_mb']:,.0f}" if "base_rss_mb" in r else "-"


def render(results: Dict[str, dict], opts, loads: tuple) -> str:
    mm = results.get("matmul", {}).get("gflops")
    lines = [
        f"SSL land-cover benchmarks  device={opts.device}  torch threads="
        f"{next((r.get('torch_threads') for r in results.values() if 'torch_threads' in r), '?')}  "
        f"cpus={os.cpu_count()}  repeats={opts.repeats}" + ("  --quick" if opts.quick else "")
        + ("  --channels_last" if opts.channels_last else "") + ("  --compile" if opts.compile else "")
        + ("  --fused_optim" if opts.fused_optim else ""),
        f"load average (1/5/15 min) at start: {loads[0]}   at end: {loads[1]}",
        "",
        f"{'benchmark':<18}{'samples/s':>11}{'(min..max)':>18}{'peak RSS MB':>13}{'(+import)':>10}{'GFLOP/step':>12}"
        f"{'GFLOP/s':>9}{'% matmul':>10}{'target':>18}{'pass':>6}{'original':>10}",
    ]
    for name in ORDER:
        if name not in results:
            continue
        r = results[name]
        if "error" in r:
            lines.append(f"{name:<18}ERROR {r['error']}")
            continue
        target = TARGETS.get(name)
        verdict = ("PASS" if target[2](r) else "FAIL") if target else ""
        ttext = f"{target[0]} {target[1]}" if target and name != "params" else (target[1] if target else "")
        if name == "matmul":
            lines.append(f"{'matmul 2048^2 fp32':<18}{'':>11}{'':>18}{_fmt(r['peak_rss_mb'], 0):>13}{_delta(r):>10}{'':>12}"
                         f"{_fmt(r['gflops']):>9}{'100':>10}{'':>18}{'':>6}{'':>10}"
                         f"   ({_fmt(r['min'])}..{_fmt(r['max'])} GFLOP/s)")
            continue
        if name == "params":
            p = r["params"]
            lines.append(f"{'params':<18}" + "  ".join(f"{k} {v / 1e6:.1f} M" for k, v in p.items()))
            lines.append(f"{'':<18}segmentation = {100 * r['seg_fraction_of_original']:.1f} % of the original's "
                         f"140 M{'':>6}{ttext:>18}{verdict:>6}")
            continue
        if name == "loader_scaling":
            for w, s in r["workers"].items():
                lines.append(f"{'loader workers=' + w:<18}{_fmt(s['samples_per_s']):>11}"
                             f"{'(' + _fmt(s['min']) + '..' + _fmt(s['max']) + ')':>18}"
                             f"{_fmt(r['peak_rss_mb'], 0) if w == '0' else '':>13}{_delta(r) if w == '0' else '':>10}")
            continue
        frac = (100 * r["gflops"] / mm) if (mm and r.get("gflops")) else None
        lines.append(
            f"{name:<18}{_fmt(r['samples_per_s'], 2 if r['samples_per_s'] < 20 else 1):>11}"
            f"{'(' + _fmt(r['min'], 2) + '..' + _fmt(r['max'], 2) + ')':>18}{_fmt(r['peak_rss_mb'], 0):>13}{_delta(r):>10}"
            f"{_fmt(r.get('gflop_per_step')):>12}{_fmt(r.get('gflops')):>9}{_fmt(frac, 0):>10}"
            f"{ttext:>18}{verdict:>6}{_fmt(ORIGINAL.get(name)):>10}")
    lines.append("")
    for name in ORDER:
        r = results.get(name, {})
        if r.get("setting"):
            extra = f"; cpu-time rate {r['cpu_samples_per_s']:.1f} samples/s" if "cpu_samples_per_s" in r else ""
            extra += f"; compile {r['compile_s']:.0f} s" if "compile_s" in r else ""
            lines.append(f"  {name}: {r['setting']}{extra}")
    lines.append("  samples/s = median over runs; peak RSS = VmHWM of the benchmark's own process (python + torch "
                 "+ model), (+import) = its growth over the RSS right after importing torch;")
    lines.append("  % matmul = the step's achieved GFLOP/s over the matmul row; original = the original "
                 "implementation measured on the same machine kind (2 CPU cores)")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--repeats", type=int, default=None, help="timed runs per benchmark (default 5, --quick 2)")
    p.add_argument("--quick", action="store_true", help="fewer repeats and passes (smoke test)")
    p.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(ORDER)}")
    p.add_argument("--device", default="cpu", help="torch device for the model benchmarks (cpu, cuda, cuda:1)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--channels_last", action="store_true", help="models and inputs in channels_last")
    p.add_argument("--compile", action="store_true", help="torch.compile the models (compile time excluded)")
    p.add_argument("--fused_optim", action="store_true", help="Adam/AdamW with fused=True (the scripts use the default)")
    p.add_argument("--data", default=None, help="dataset root for the loading benchmarks "
                                                "(default: the generated sample dataset, cached in the temp dir)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.repeats is None:
        opts.repeats = 2 if opts.quick else 5
    if opts.repeats < 1:
        p.error("--repeats must be >= 1")
    return opts, p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts, parser = parse_args(argv)
    if opts._child:
        result = run_child(opts._child, opts)
        print("@@RESULT@@" + json.dumps(result), flush=True)
        return 0
    names = ORDER if not opts.only else [n.strip() for n in opts.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(ORDER)}")
    if any(n in TRAINING or n == "inference" for n in names) and "matmul" not in names:
        names = ["matmul"] + names  # the fractions need the machine's matmul rate
    child_argv = [a for a in argv if not a.startswith("--json")]
    if opts.json:  # drop the value of "--json PATH"
        child_argv = [a for i, a in enumerate(argv) if not (a.startswith("--json") or (i and argv[i - 1] == "--json"))]
    if any(n in ("loading", "loader_scaling") for n in names) and not opts.data:
        sample_data_dir(None)  # generate once, outside the timed children
    start_load = load_average()
    results = {}
    for name in [n for n in ORDER if n in names]:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = spawn(name, opts, child_argv)
    table = render(results, opts, (start_load, load_average()))
    print(table)
    if opts.json:
        Path(opts.json).write_text(json.dumps({"results": results, "load_average": [start_load, load_average()],
                                               "options": {k: v for k, v in vars(opts).items() if k != "_child"}},
                                              indent=2))
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
