#!/usr/bin/env python
"""Speed of ``python -m data.verify``: files/s on the sample data, projected for SEN12MS.

Every configuration runs in a fresh Python subprocess (its own peak memory): the header check
with 1 process and with every core, the ``--full`` decode with every core, and as the baseline a
plain loop that opens each file with rasterio and reads its header attributes (what a hand-written
check would do), one process. Files are in the page cache (a warm-up pass first), so the rates are
CPU rates; the median of ``--repeats`` passes is reported with the spread. The projection for
SEN12MS multiplies its 180,662 S1/S2/label triplets (541,986 files) by the time per file, and for
``--full`` also gives the time to read every byte at ``--disk_mb_s`` (a real disk bounds it).

    python benchmarks/verify.py                          # the sample data (generated in a temp folder)
    python benchmarks/verify.py --data /data/sen12ms --repeats 1 --json verify.json
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

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SEN12MS_TRIPLETS = 180_662
SEN12MS_FILES = 3 * SEN12MS_TRIPLETS


def _status_mb(field: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of this process, MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


_RECORD_DIR: Path | None = None


def _recording_check(item):
    """``data.verify._check`` that also writes this process's RSS at its first call and its peak."""
    from data import verify

    out = verify._ORIGINAL_CHECK(item)
    mark = _RECORD_DIR / str(os.getpid())
    if not mark.exists():
        mark.write_text(f"{_status_mb('VmRSS')}")
    (_RECORD_DIR / f"{os.getpid()}.peak").write_text(f"{_status_mb('VmHWM')}")
    return out


def _worker_memory(data: str, modes, workers: int, full: bool) -> dict:
    """One more pass with every check recording its process's peak RSS (pool workers are forks of
    this process: their RSS includes the pages they share with it, so their growth is reported too)."""
    global _RECORD_DIR
    from data import verify

    _RECORD_DIR = Path(tempfile.mkdtemp())
    verify._ORIGINAL_CHECK, verify._check = verify._check, _recording_check
    try:
        verify.verify(data, modes, workers=workers, full=full)
    finally:
        verify._check = verify._ORIGINAL_CHECK
    marks = list(_RECORD_DIR.glob("*.peak"))
    peaks = [float(p.read_text()) for p in marks]
    starts = [float((_RECORD_DIR / p.stem).read_text()) for p in marks]
    return {"worker_peak_rss_mb": max(peaks), "worker_growth_mb": max(a - b for a, b in zip(peaks, starts))}


def _baseline(files: list[tuple[str, str]]) -> None:
    import rasterio

    for path, _ in files:
        with rasterio.open(path) as src:
            _ = (src.count, src.dtypes, src.width, src.height, src.crs)


def one(data: str, kind: str, workers: int, repeats: int) -> dict:
    """Time one configuration in this process (called in a subprocess by :func:`main`)."""
    from data import verify

    after_import = _status_mb("VmRSS")
    modes = verify.default_modes(Path(data))
    files, _, observations = verify.list_files(Path(data), modes)
    run = {"header": lambda: verify.verify(data, modes, workers=workers),
           "full": lambda: verify.verify(data, modes, workers=workers, full=True),
           "baseline": lambda: _baseline(files)}[kind]
    run()   # warm-up: page cache, imports, PROJ database
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    peak = _status_mb("VmHWM")
    size = sum(os.path.getsize(p) for p, _ in files if os.path.exists(p))
    result = {"kind": kind, "workers": workers, "files": len(files), "observations": observations,
              "bytes": size, "seconds": times, "files_per_s": len(files) / statistics.median(times),
              "peak_rss_mb": peak, "growth_mb": peak - after_import}
    if kind != "baseline" and workers > 1:
        result.update(_worker_memory(data, modes, workers, kind == "full"))
    return result


def _subprocess(data: str, kind: str, workers: int, repeats: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--_one", kind, str(workers), "--data", data,
                          "--repeats", str(repeats)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fmt_time(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="dataset root (default: the sample data, generated)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--patches", type=int, default=32,
                   help="sample data: patches per SEN12MS season and per DFC2020 split (enough files that "
                        "starting the worker processes does not dominate)")
    p.add_argument("--disk_mb_s", type=float, default=500.0,
                   help="disk read rate for the --full projection (every byte must be read)")
    p.add_argument("--json", default=None, help="also write every number here")
    p.add_argument("--_one", nargs=2, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._one:
        print(json.dumps(one(args.data, args._one[0], int(args._one[1]), args.repeats)))
        return 0
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from data.sample import generate_sample_dataset

            data = str(generate_sample_dataset(Path(tmp) / "sample_data", seed=0, patches=args.patches))
        load = os.getloadavg()
        configs = [("baseline", 1), ("header", 1), ("header", cores), ("full", cores)]
        results = [_subprocess(data, kind, workers, args.repeats) for kind, workers in configs]
        load_end = os.getloadavg()
    base = results[0]["files_per_s"]
    bytes_per_file = results[0]["bytes"] / max(results[0]["files"], 1)
    print(f"data.verify on {results[0]['files']} files ({results[0]['observations']} observations) of {data}; "
          f"{cores} cores, load average {load[0]:.2f} -> {load_end[0]:.2f}, files in the page cache")
    print("| check | processes | files/s (min..max) | x baseline | SEN12MS (541,986 files) | "
          "peak RSS MB (+ over import) | worker peak RSS MB (+ own) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        rates = sorted(r["files"] / t for t in r["seconds"])
        projected = SEN12MS_FILES / r["files_per_s"]
        if r["kind"] == "full":
            disk = SEN12MS_FILES * bytes_per_file / (args.disk_mb_s * 2**20)
            projected_text = f"{_fmt_time(projected)} CPU; >= {_fmt_time(disk)} at {args.disk_mb_s:g} MB/s"
        else:
            projected_text = _fmt_time(projected)
        name = {"baseline": "rasterio.open loop (baseline)", "header": "header", "full": "--full decode"}[r["kind"]]
        workers = (f"{r['worker_peak_rss_mb']:.0f} (+{r['worker_growth_mb']:.0f})"
                   if "worker_peak_rss_mb" in r else "")
        print(f"| {name} | {r['workers']} | {r['files_per_s']:.0f} ({rates[0]:.0f}..{rates[-1]:.0f}) | "
              f"{r['files_per_s'] / base:.2f} | {projected_text} | {r['peak_rss_mb']:.0f} "
              f"(+{r['growth_mb']:.0f}) | {workers} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "cores": cores, "load": [load, load_end]},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
