"""``python -m data.verify``: names exactly the damaged files, and nothing else.

The sample data is damaged deep in its observation lists in every way a download goes wrong
(truncated, garbage header, missing, wrong size, wrong band count, no CRS, linear S1); the check
runs with two processes, as a user runs it, and its list is what ``--exclude_list`` reads.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio
from test_bad_samples import corrupt, patch_path, rows

from data import verify
from data.robust import patch_key, read_exclude_list

REPO = Path(__file__).resolve().parents[1]


PRISTINE_SEED = 1   # the conftest's `pristine` / `root`: this module's sample data


def rewrite(path: Path, *, crs=True, scale=None) -> Path:
    """The same pixels without a CRS, or S1 turned into linear power."""
    with rasterio.open(path) as src:
        array, profile = src.read(), src.profile
    if not crs:
        profile.pop("crs", None)
    if scale is not None:
        array = (10 ** (array / 10)).astype(array.dtype)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
    return path


def damage(root: Path) -> dict:
    """Damage one file per way, away from the first row of every list; {path: expected reason}."""
    sen, val, test = rows(root, "sen12ms"), rows(root, "validation"), rows(root, "test")
    return {
        corrupt(patch_path(root, sen[6], "s2"), "truncate"): "truncated",
        corrupt(patch_path(root, sen[9], "lc"), "truncate"): "truncated",        # deflate-compressed
        corrupt(patch_path(root, sen[11], "s1"), "garbage"): "cannot open",
        corrupt(patch_path(root, sen[14], "s1"), "missing"): "missing",
        corrupt(patch_path(root, val[3], "s2"), "wrong_size"): "200 x 200 px",
        corrupt(patch_path(root, val[6], "dfc"), "bands"): "band(s), expected",
        rewrite(patch_path(root, test[2], "s2"), crs=False): "no CRS",
    }


def bad_of(listing: Path) -> dict:
    lines = [line.split("\t") for line in listing.read_text().splitlines() if not line.startswith("#")]
    return {Path(file): reason for file, reason in lines}


def test_a_clean_dataset_passes(pristine, capsys):
    assert verify.main(["--root", str(pristine), "--workers", "2"]) == 0
    err = capsys.readouterr().err
    assert "112 files of 32 observations (sen12ms, validation, test)" in err and ": 0 bad" in err


def test_names_exactly_the_damaged_files_with_their_reasons(root, tmp_path, capsys):
    expected = damage(root)
    listing = tmp_path / "bad.txt"
    assert verify.main(["--root", str(root), "--workers", "2", "--out", str(listing)]) == 1
    found = bad_of(listing)
    assert set(found) == set(expected)
    for path, reason in expected.items():
        assert reason in found[path], (path, found[path])
    printed = capsys.readouterr().out
    assert all(str(path) in printed for path in expected)
    # the list is what --exclude_list reads: exactly the damaged observations
    assert read_exclude_list(listing) == {patch_key(p) for p in expected}
    # an existing list is not overwritten without --overwrite
    with pytest.raises(SystemExit) as stop:
        verify.main(["--root", str(root), "--out", str(listing)])
    assert stop.value.code == 2 and "--overwrite" in capsys.readouterr().err


def test_full_decode_also_finds_linear_s1_and_corruption_inside_the_pixels(root):
    s1 = rewrite(patch_path(root, rows(root, "sen12ms")[5], "s1"), scale="linear")
    # flipped bytes inside compressed pixels (the lc files are deflate): the header still reads fine
    lc = patch_path(root, rows(root, "test")[6], "lc")
    raw = bytearray(lc.read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 64] = bytes(range(64))
    lc.write_bytes(bytes(raw))
    header = verify.verify(root, workers=2)
    full = verify.verify(root, workers=2, full=True)
    assert {Path(p) for p, _ in header.bad} == set()                  # headers are all fine
    assert {Path(p) for p, _ in full.bad} == {s1, lc}
    reasons = dict((Path(p), r) for p, r in full.bad)
    assert "linear backscatter" in reasons[s1] and "cannot decode" in reasons[lc]


def test_missing_season_folder_and_usage_errors(root, capsys):
    shutil.rmtree(root / "ROIs1970_fall")
    result = verify.verify(root, workers=1)
    assert [reason for _, reason in result.bad] == [
        f"season folder missing: 4 observations of {root / 'sen12ms_observations.csv'} not checked"]
    assert verify.main(["--root", str(root / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert verify.main(["--root", str(root), "--mode", "validation", "--workers", "1"]) == 0


@pytest.mark.slow
def test_command_line_as_a_user_runs_it(root, tmp_path):
    expected = damage(root)
    proc = subprocess.run([sys.executable, "-m", "data.verify", "--root", str(root), "--out", "bad.txt"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 1, proc.stderr
    assert set(bad_of(tmp_path / "bad.txt")) == set(expected)
    assert "7 bad; list written to bad.txt" in proc.stderr
    assert all(str(p) in proc.stdout for p in expected)


@pytest.mark.slow
def test_benchmark_runs_and_projects_sen12ms(pristine, tmp_path):
    """benchmarks/verify.py prints its table and writes its numbers (no timing is asserted)."""
    out = tmp_path / "verify.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "verify.py"), "--data", str(pristine),
                           "--repeats", "1", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SEN12MS (541,986 files)" in proc.stdout and "| --full decode | " in proc.stdout
    import json

    results = json.loads(out.read_text())["results"]
    assert [r["kind"] for r in results] == ["baseline", "header", "header", "full"]
    assert all(r["files"] == 112 and r["files_per_s"] > 0 and r["peak_rss_mb"] > 0 for r in results)
