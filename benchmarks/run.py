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
    python benchmarks/run.py --only swin_pretrain --compile      # + torch.compile columns (minutes each)
    python benchmarks/run.py --precisions fp32,bf16              # bf16 even where it is emulated (slow)
    python benchmarks/run.py --only seg_finetune --original /path/to/SSLTransformerRS
    python benchmarks/run.py --only swin_pretrain,resnet_pretrain --fused_optim --threads 1
    python benchmarks/run.py --device cuda        # on a GPU machine (not measured in this repo)

Benchmarks: matmul, loading, loader_scaling, swin_pretrain, resnet_pretrain, seg_finetune,
inference, seg_inference, params. Training steps are forward + loss + backward + optimizer
step; their FLOPs are counted once with ``torch.utils.flop_counter.FlopCounterMode`` and
compared with the machine's 2048^2 fp32 matmul throughput.

The model benchmarks run side by side in one run as *variants*: ``fp32`` (the scripts'
``--amp none``), ``bf16`` (``--amp bf16``: forward and loss under bf16 autocast; by default
only where :mod:`utils.hardware` finds native bf16, since emulated bf16 is 5-30x slower),
with ``--compile`` also ``compile`` and ``bf16+compile`` (``torch.compile``, compile time
excluded), and with ``--original PATH`` the original implementation's models (its code
imported from a checkout of HSG-AIML/SSLTransformerRS, fp32) for the three training steps.
Ratios are taken within the run, so they hold on a busy machine better than absolute rates.
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
         "inference", "seg_inference", "params"]
TRAINING = ("swin_pretrain", "resnet_pretrain", "seg_finetune")
MODELS = TRAINING + ("inference", "seg_inference")      # benchmarks that run as variants
VARIANTS = ("fp32", "bf16", "compile", "bf16+compile", "original")


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
def _matmul_rate(device, dtype, n: int, inner: int, repeats: int) -> dict:
    import torch
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2 if inner > 1 else 1):
        a @ b
    secs = timed(lambda: _drain(a @ b for _ in range(inner)), repeats, device)
    rates = [2 * n ** 3 * inner / s / 1e9 for s in secs]
    return {"gflops": statistics.median(rates), "min": min(rates), "max": max(rates), "runs": len(rates), "n": n}


def bench_matmul(opts) -> dict:
    """fp32 2048^2 matmul GFLOP/s (the reference of "% matmul"), and bf16 beside it."""
    import torch

    from utils.hardware import bf16_support
    device = torch.device(opts.device)
    cpu = device.type == "cpu"
    out = _matmul_rate(device, torch.float32, 2048, 3 if cpu else 50, opts.repeats)
    out["threads"] = torch.get_num_threads()
    support = bf16_support(device)
    # emulated bf16 runs a 2048^2 product at < 1 GFLOP/s on an AVX2 CPU: a smaller one tells the same
    n, inner = (2048, 3 if cpu else 50) if support.native else (512, 1)
    out["bf16"] = _matmul_rate(device, torch.bfloat16, n, inner, opts.repeats)
    out["bf16"].update(native=support.native, reason=support.reason)
    return out


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


def _profile_ops(step: Callable[[], None], rounds: int) -> Dict[str, list]:
    """``torch.profiler`` over ``rounds`` calls of ``step``: per op, the smallest self CPU time (ms) and its
    call count (the minimum over rounds keeps other jobs' interference out of an op-by-op comparison)."""
    from torch.profiler import ProfilerActivity, profile
    best: Dict[str, list] = {}
    for _ in range(rounds):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        for e in prof.key_averages():
            ms = e.self_cpu_time_total / 1e3
            if e.key not in best or ms < best[e.key][0]:
                best[e.key] = [ms, e.count]
    return best


def _count_flops(step: Callable[[], None]) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def _variant(opts) -> tuple:
    """(precision, compiled, original) of this child's variant."""
    v = opts.variant
    return ("bf16" if v.startswith("bf16") else "fp32"), v.endswith("compile"), v == "original"


def _setting_suffix(opts, precision: str, compiled: bool, original: bool) -> str:
    return ((", bf16 autocast" if precision == "bf16" else ", fp32") + (", fused" if opts.fused_optim else "")
            + (", channels_last" if opts.channels_last else "") + (", compiled" if compiled else "")
            + (f", the original's model ({opts.original})" if original else ""))


def _train_step_bench(opts, name: str, build: Callable, batch_size: int, size: int,
                      make_opt: Callable, loss_fn: Callable, seg: bool = False) -> dict:
    import torch

    from utils.hardware import autocast
    precision, compiled, original = _variant(opts)
    torch.manual_seed(0)
    device = torch.device(opts.device)
    model = (original_model(opts.original, name) if original else build()).to(device)
    if opts.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = make_opt(model, {"fused": True} if opts.fused_optim else {})
    batch = _batch(batch_size, size, device, opts.channels_last, seg)
    fwd = model
    compile_s = None

    def step() -> None:
        with autocast(device, precision):      # as training.engine: the forward under autocast,
            out = fwd(batch)
        loss = loss_fn(out, batch)             # the loss in fp32 (training.tasks upcasts)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    flops = _count_flops(step)  # also a warm-up step (eager)
    if compiled:
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
    if opts.profile:
        out["profile"] = _profile_ops(step, opts.profile)
    out.update({
        "gflop_per_step": flops / 1e9,
        "gflops": flops / statistics.median(secs) / 1e9,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "setting": f"batch {batch_size}, {size} px, {type(optimizer).__name__}"
                   + _setting_suffix(opts, precision, compiled, original),
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
        return F.cross_entropy(outputs.float(), batch["dfc"], ignore_index=255)
    return _train_step_bench(
        opts, "seg_finetune", lambda: create_model("DoubleSwinTransformerSegmentation"), 4, 224,
        lambda m, kw: torch.optim.Adam(m.parameters(), lr=1e-5, weight_decay=1e-3, **kw), loss, seg=True)


def _inference_bench(opts, model_name: str, batch_size: int, **options) -> dict:
    import torch

    from models import create_model
    from utils.hardware import autocast
    precision, compiled, _ = _variant(opts)
    device = torch.device(opts.device)
    torch.manual_seed(0)
    model = create_model(model_name, **options).to(device).eval()
    if opts.channels_last:
        model = model.to(memory_format=torch.channels_last)
    batch = _batch(batch_size, 224, device, opts.channels_last)
    fwd = torch.compile(model) if compiled else model
    compile_s = None
    with torch.inference_mode(), autocast(device, precision):
        flops = _count_flops(lambda: model(batch))
        if compiled:
            t0 = time.perf_counter()
            fwd(batch)
            _sync(device)
            compile_s = time.perf_counter() - t0
        for _ in range(1 if opts.quick else 2):
            fwd(batch)
        secs = timed(lambda: fwd(batch), opts.repeats, device)
        profile = _profile_ops(lambda: fwd(batch), opts.profile) if opts.profile else None
    out = summary(secs, batch_size)
    if profile:
        out["profile"] = profile
    opts_text = "".join(f", {k}={v}" for k, v in options.items())
    out.update({"gflop_per_step": flops / 1e9, "gflops": flops / statistics.median(secs) / 1e9,
                "setting": f"{model_name}{opts_text}, batch {batch_size}, 224 px, inference_mode"
                           + _setting_suffix(opts, precision, compiled, False)})
    if compile_s is not None:
        out["compile_s"] = compile_s
    return out


def bench_inference(opts) -> dict:
    return _inference_bench(opts, "DoubleSwinTransformerDownstream", 16)


def bench_seg_inference(opts) -> dict:
    """The model of the scene benchmark and predict.py: S2-only SwinUNet, batch 8 (predict.py's default)."""
    return _inference_bench(opts, "DoubleSwinTransformerSegmentation", 8, s1_input_channels=0)


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


# ------------------------------------------------------------------------- the original's models
def _load_file(path: Path, module_name: str):
    """Import one file of the original repository by path (its package ``__init__`` files import
    MoBY, ViT and data code the benchmark does not need)."""
    import importlib.util
    if not path.is_file():
        raise SystemExit(f"error: --original: {path} not found (expected a checkout of HSG-AIML/SSLTransformerRS)")
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as exc:
        raise SystemExit(f"error: --original: {path} needs the module {exc.name!r} "
                         f"(pip install {exc.name}, or put a folder holding it on PYTHONPATH)") from None
    return module


def original_model(root: str, name: str):
    """The original implementation's model of a training benchmark, built as its scripts built it
    (Swin-T encoders as its ``build_model`` with ``backbone_config.json``: drop path 0.1; ResNets
    with their ``conv1`` replaced by 2- and 13-band convolutions)."""
    import torch
    root = Path(root).resolve()
    if name == "resnet_pretrain":
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))          # resnet_simclr imports its sibling `exceptions`
        mod = _load_file(root / "resnet_simclr.py", "original_resnet_simclr")
        model = mod.DoubleResNetSimCLR(base_model="resnet50", out_dim=128)
        for attr, bands in (("backbone1", 2), ("backbone2", 13)):
            getattr(model, attr).conv1 = torch.nn.Conv2d(bands, 64, kernel_size=(7, 7), stride=(2, 2),
                                                         padding=(3, 3), bias=False)
        return model
    swin = _load_file(root / "Transformer_SSL" / "models" / "swin_transformer.py", "original_swin_transformer")

    def encoder(bands: int):
        return swin.SwinTransformer(img_size=224, patch_size=4, in_chans=bands, num_classes=1000, embed_dim=96,
                                    depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
                                    drop_path_rate=0.1)
    if name == "swin_pretrain":
        return swin.DoubleSwinTransformer(encoder(2), encoder(13))
    if name == "seg_finetune":
        return swin.DoubleSwinTransformerSegmentation(encoder(2), encoder(13), 8, torch.device("cpu"))
    raise ValueError(f"no original counterpart of the {name} benchmark")


# ------------------------------------------------------------------------------------------ driver
def run_child(name: str, opts) -> dict:
    """Run one benchmark (one variant) in this (fresh) process and return its result with peak RSS."""
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
    result["variant"] = opts.variant
    return result


def spawn(name: str, opts, argv: List[str], variant: str = "fp32") -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", name, "--_variant", variant] + argv
    proc = subprocess.run(cmd, cwd=str(REPO), capture_output=True, text=True)
    marker = "@@RESULT@@"
    for line in proc.stdout.splitlines():
        if line.startswith(marker):
            return json.loads(line[len(marker):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def plan_variants(opts) -> tuple:
    """(variants every model benchmark runs, a note on the ones left out) from --precisions/--compile/--original."""
    import torch

    from utils.hardware import bf16_support
    support = bf16_support(torch.device(opts.device))
    wanted = opts.precisions.split(",") if opts.precisions != "auto" else ["fp32"] + (["bf16"] if support.native else [])
    variants = ["fp32"] + (["bf16"] if "bf16" in wanted else [])     # fp32 always: the ratios' baseline
    if opts.compile:
        variants += ["compile" if p == "fp32" else "bf16+compile" for p in variants]
    note = "" if "bf16" in variants else (f"bf16 not run: {support.reason} (--precisions fp32,bf16 runs it anyway)")
    return variants, note


def _fmt(v, digits=1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _delta(r: dict) -> str:
    return f"+{r['peak_rss_mb'] - r['base_rss_mb']:,.0f}" if "base_rss_mb" in r else "-"


def _rate(r: Optional[dict]) -> Optional[float]:
    return None if not r or "error" in r else r.get("samples_per_s")


def render(results: Dict[str, dict], opts, loads: tuple, variants: Optional[Dict[str, Dict[str, dict]]] = None,
           note: str = "") -> str:
    """The fp32 table (targets, memory, % matmul) and, for the model benchmarks, the variants side by side."""
    mm = results.get("matmul", {}).get("gflops")
    lines = [
        f"SSL land-cover benchmarks  device={opts.device}  torch threads="
        f"{next((r.get('torch_threads') for r in results.values() if 'torch_threads' in r), '?')}  "
        f"cpus={os.cpu_count()}  repeats={opts.repeats}" + ("  --quick" if opts.quick else "")
        + ("  --channels_last" if opts.channels_last else "") + ("  --compile" if opts.compile else "")
        + ("  --fused_optim" if opts.fused_optim else ""),
        f"load average (1/5/15 min) at start: {loads[0]}   at end: {loads[1]}",
        "",
        f"{'benchmark (fp32)':<18}{'samples/s':>11}{'(min..max)':>18}{'peak RSS MB':>13}{'(+import)':>10}"
        f"{'GFLOP/step':>12}{'GFLOP/s':>9}{'% matmul':>10}{'target':>18}{'pass':>6}{'original':>10}",
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
            if r.get("bf16"):
                b = r["bf16"]
                lines.append(f"{'matmul bf16':<18}{'':>81}{_fmt(b['gflops']):>9}{_fmt(100 * b['gflops'] / mm, 0):>10}"
                             f"   ({b['n']}^2; {'native' if b['native'] else 'emulated'}: {b['reason']})")
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
        measured = _rate((variants or {}).get(name, {}).get("original"))
        lines.append(
            f"{name:<18}{_fmt(r['samples_per_s'], 2 if r['samples_per_s'] < 20 else 1):>11}"
            f"{'(' + _fmt(r['min'], 2) + '..' + _fmt(r['max'], 2) + ')':>18}{_fmt(r['peak_rss_mb'], 0):>13}{_delta(r):>10}"
            f"{_fmt(r.get('gflop_per_step')):>12}{_fmt(r.get('gflops')):>9}{_fmt(frac, 0):>10}"
            f"{ttext:>18}{verdict:>6}"
            + (f"{_fmt(measured, 2):>10}" if measured else f"{_fmt(ORIGINAL.get(name)):>10}"))
    lines += render_variants(results, variants or {}, note)
    lines += render_profile(variants or {})
    lines.append("")
    for name in ORDER:
        r = results.get(name, {})
        if r.get("setting"):
            extra = f"; cpu-time rate {r['cpu_samples_per_s']:.1f} samples/s" if "cpu_samples_per_s" in r else ""
            extra += f"; compile {r['compile_s']:.0f} s" if "compile_s" in r else ""
            lines.append(f"  {name}: {r['setting']}{extra}")
    lines.append("  samples/s = median over runs; peak RSS = VmHWM of the benchmark's own process (python + torch "
                 "+ model), (+import) = its growth over the RSS right after importing torch;")
    original = ("measured in this run with the code of --original" if opts.original else
                "recorded earlier with the original's code on a 2-core CPU machine like this one (--original PATH "
                "measures it in the same run)")
    lines.append(f"  % matmul = the step's achieved GFLOP/s over the matmul row; original = the original "
                 f"implementation, fp32: {original}")
    return "\n".join(lines)


def _cell(r: dict, fp32: Optional[dict], variant: str) -> str:
    """``rate (ratio x)``; the ratio is the variant over fp32 (the original's column: ours over the
    original), the median of the per-round ratios with their range when there were several rounds."""
    rate = r["samples_per_s"]
    if variant == "fp32" or not _rate(fp32):
        return f"{rate:.2f}"
    ours, theirs = (fp32, r) if variant == "original" else (r, fp32)
    pairs = list(zip(ours.get("round_rates", [ours["samples_per_s"]]), theirs.get("round_rates", [theirs["samples_per_s"]])))
    ratios = sorted(a / b for a, b in pairs)
    text = f"{statistics.median(ratios):.2f}x"
    if len(ratios) > 1:
        text += f" {ratios[0]:.2f}-{ratios[-1]:.2f}"
    return f"{rate:.2f} ({'ours ' if variant == 'original' else ''}{text})"


def combine_rounds(runs: List[dict]) -> dict:
    """Results of the same benchmark and variant from several rounds: the median round, with every
    round's rate in ``round_rates`` (the ratios are taken round by round)."""
    ok = [r for r in runs if "error" not in r and "samples_per_s" in r]
    if len(runs) == 1 or not ok:
        return runs[0]
    ok.sort(key=lambda r: r["samples_per_s"])
    out = dict(ok[len(ok) // 2])
    out["round_rates"] = [r["samples_per_s"] if "error" not in r else None for r in runs]
    out["round_rates"] = [x for x in out["round_rates"] if x is not None]
    return out


def render_profile(variants: Dict[str, Dict[str, dict]], top: int = 25) -> List[str]:
    """Op by op (``--profile``): the fp32 step against the original's (or bf16), largest differences first."""
    lines = []
    for name in MODELS:
        runs = variants.get(name, {})
        ours = runs.get("fp32", {}).get("profile")
        other = next((v for v in ("original", "bf16", "compile") if runs.get(v, {}).get("profile")), None)
        if not ours:
            continue
        theirs = runs[other]["profile"] if other else {}
        tot_a, tot_b = sum(v[0] for v in ours.values()), sum(v[0] for v in theirs.values())
        lines += ["", f"{name}: self CPU ms per op (torch.profiler, min over rounds), fp32 vs {other or '-'}; "
                      f"totals {tot_a:,.0f} / {tot_b:,.0f} ms",
                  f"  {'op':<52}{'fp32 ms':>10}{'calls':>7}{(other or '-') + ' ms':>14}{'calls':>7}{'diff ms':>10}"]
        keys = sorted(set(ours) | set(theirs),
                      key=lambda k: -abs(ours.get(k, [0, 0])[0] - theirs.get(k, [0, 0])[0]))
        for k in keys[:top]:
            a, b = ours.get(k, [0, 0]), theirs.get(k, [0, 0])
            lines.append(f"  {k[:52]:<52}{a[0]:>10.1f}{a[1]:>7d}{b[0]:>14.1f}{b[1]:>7d}{a[0] - b[0]:>+10.1f}")
    return lines


def render_variants(results: Dict[str, dict], variants: Dict[str, Dict[str, dict]], note: str) -> List[str]:
    """Model benchmarks x variants: samples/s and the ratio to fp32 of the same run."""
    cols = [v for v in VARIANTS if any(v in variants.get(n, {}) for n in MODELS)]
    if not cols:
        return []
    heads = {"fp32": "fp32 (--amp none)", "bf16": "bf16 (--amp bf16)", "compile": "fp32 --compile",
             "bf16+compile": "bf16 --compile", "original": "original fp32"}
    lines = ["", "samples/s side by side (x = ratio to fp32 of the same run; original: ours / original; with "
             "--rounds, the median ratio of the rounds and its range)" + (f"; {note}" if note else ""),
             f"{'benchmark':<18}" + "".join(f"{heads[c]:>31}" for c in cols)]
    for name in MODELS:
        runs = variants.get(name, {})
        if not runs:
            continue
        cells = []
        for c in cols:
            r = runs.get(c)
            if r is None:
                cells.append("-")
            elif "error" in r:
                cells.append("error")
            else:
                cells.append(_cell(r, runs.get("fp32"), c))
        lines.append(f"{name:<18}" + "".join(f"{cell:>31}" for cell in cells))
    for name in MODELS:
        for c, r in variants.get(name, {}).items():
            if r and "error" in r:
                lines.append(f"  {name} [{c}]: ERROR {r['error']}")
            elif r and "compile_s" in r:
                lines.append(f"  {name} [{c}]: compile {r['compile_s']:.0f} s (not timed)")
    return lines


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--repeats", type=int, default=None, help="timed runs per benchmark (default 5, --quick 2)")
    p.add_argument("--quick", action="store_true", help="fewer repeats and passes (smoke test)")
    p.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(ORDER)}")
    p.add_argument("--device", default="cpu", help="torch device for the model benchmarks (cpu, cuda, cuda:1)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--precisions", default="auto",
                   help="precisions of the model benchmarks: fp32,bf16 or auto (fp32, and bf16 where the device "
                        "runs it natively; emulated bf16 is 5-30x slower than fp32)")
    p.add_argument("--compile", action="store_true",
                   help="also run each precision under torch.compile (compile time excluded and reported; "
                        "about 4 min per model on 2 CPU cores)")
    p.add_argument("--original", default=None, metavar="PATH",
                   help="a checkout of the original implementation (HSG-AIML/SSLTransformerRS): its models run "
                        "the training benchmarks in fp32 in the same run (needs einops)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also profile N steps of each model benchmark (torch.profiler) and print the ops where "
                        "fp32 and the original (or bf16) differ most")
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat the model benchmarks' variants this many times, alternating (ratios per round)")
    p.add_argument("--channels_last", action="store_true", help="models and inputs in channels_last")
    p.add_argument("--fused_optim", action="store_true", help="Adam/AdamW with fused=True (the scripts use the default)")
    p.add_argument("--data", default=None, help="dataset root for the loading benchmarks "
                                                "(default: the generated sample dataset, cached in the temp dir)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_variant", dest="variant", default="fp32", choices=VARIANTS, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.repeats is None:
        opts.repeats = 2 if opts.quick else 5
    if opts.repeats < 1 or opts.rounds < 1:
        p.error("--repeats and --rounds must be >= 1")
    if opts.precisions != "auto" and not set(opts.precisions.split(",")) <= {"fp32", "bf16"}:
        p.error(f"--precisions {opts.precisions}: expected auto or a comma-separated list of fp32, bf16")
    if opts.original and not Path(opts.original).is_dir():
        p.error(f"--original {opts.original}: not a folder (expected a checkout of HSG-AIML/SSLTransformerRS)")
    return opts, p


def _child_argv(argv: List[str]) -> List[str]:
    """The children's arguments: the parent's without --json PATH (and without its value)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--json":
            skip = True
            continue
        if not a.startswith("--json="):
            out.append(a)
    return out


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
    if any(n in MODELS for n in names) and "matmul" not in names:
        names = ["matmul"] + names  # the fractions need the machine's matmul rate
    child_argv = _child_argv(argv)
    if any(n in ("loading", "loader_scaling") for n in names) and not opts.data:
        sample_data_dir(None)  # generate once, outside the timed children
    model_variants, note = plan_variants(opts)
    start_load = load_average()
    results: Dict[str, dict] = {}
    variants: Dict[str, Dict[str, dict]] = {}
    for name in [n for n in ORDER if n in names]:
        todo = model_variants + (["original"] if opts.original and name in TRAINING else []) \
            if name in MODELS else ["fp32"]
        runs: Dict[str, List[dict]] = {}
        for round_ in range(opts.rounds if name in MODELS else 1):
            for variant in todo:
                print(f"running {name} [{variant}]" + (f" round {round_ + 1}" if opts.rounds > 1 else "") + " ...",
                      file=sys.stderr, flush=True)
                runs.setdefault(variant, []).append(spawn(name, opts, child_argv, variant))
        variants[name] = {v: combine_rounds(r) for v, r in runs.items()}
        results[name] = variants[name]["fp32"]
    loads = (start_load, load_average())
    table = render(results, opts, loads, {n: v for n, v in variants.items() if n in MODELS}, note)
    print(table)
    if opts.json:
        Path(opts.json).write_text(json.dumps({"results": results, "variants": variants, "load_average": list(loads),
                                               "note": note,
                                               "options": {k: v for k, v in vars(opts).items() if k != "_child"}},
                                              indent=2))
    return 1 if any("error" in r for v in variants.values() for r in v.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
