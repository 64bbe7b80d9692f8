"""Generate a small synthetic SEN12MS + DFC2020 dataset in the exact on-disk layout.

Each patch starts from one latent land-cover map (spatially coherent regions of the
10 DFC classes: argmax of smooth random fields, one class dominant). From it come
13-band L1C-like S2 spectra (uint16, per-class spectra, within-class variation,
20/60 m bands blurred, noise), S1 VV/VH in dB (per-class backscatter, texture,
multiplicative gamma speckle, a few NaN pixels in some patches), a MODIS-like ``lc``
(4 bands, IGBP in band 1, constant over 50x50 px = 500 m blocks) and, for the DFC2020
folders, the fine ``dfc`` map (classes 1-10). Observation CSVs are written to the root.

CLI: ``python -m data.sample --root DIR [--seed 0] [--patches sen12ms=8 validation=16 test=16]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from affine import Affine

from .bands import DFC2020_SEASONS, PATCH_SIZE, PIXEL_SIZE_M, SEN12MS_SEASONS, SENSORS, Season, Sensor
from .labels import dfc10_to_dfc8, single_label
from .layout import BALANCED_HEADER, balanced_rows, patch_path, write_observations, write_patch

__all__ = ["generate_sample_dataset", "DEFAULT_PATCHES", "main"]

DEFAULT_PATCHES: Dict[str, int] = {"sen12ms": 8, "validation": 16, "test": 16}
"""Patches per SEN12MS season, and in the DFC2020 validation and test splits."""

MODIS_BLOCK = 50  # 500 m MODIS pixels at 10 m

# Mean L1C reflectance x 10000 per DFC class 1-10 for B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B10 B11 B12.
S2_SPECTRA = np.array([
    [1250, 950, 800, 550, 900, 1900, 2300, 2500, 2650, 800, 15, 1500, 750],  # forest
    [1350, 1100, 1050, 1100, 1450, 1900, 2100, 2250, 2400, 800, 18, 2500, 1700],  # shrubland
    [1350, 1100, 1050, 1000, 1450, 2000, 2300, 2450, 2600, 850, 18, 2600, 1700],  # savanna
    [1300, 1050, 1000, 850, 1350, 2300, 2700, 2900, 3050, 950, 17, 2400, 1400],  # grassland
    [1300, 1000, 900, 700, 1000, 1500, 1700, 1800, 1900, 600, 14, 1300, 800],  # wetlands
    [1350, 1100, 1100, 900, 1500, 2600, 3100, 3300, 3450, 1000, 18, 2300, 1300],  # croplands
    [1600, 1500, 1450, 1500, 1650, 1800, 1950, 2050, 2150, 750, 20, 2300, 2000],  # urban
    [3500, 7500, 7300, 7100, 6900, 6500, 6200, 6000, 5700, 2500, 30, 700, 500],  # snow / ice
    [1600, 1500, 1700, 2100, 2400, 2600, 2750, 2850, 3000, 1100, 22, 3600, 3000],  # barren
    [1250, 950, 700, 450, 400, 330, 300, 280, 260, 120, 10, 120, 80],  # water
], dtype=np.float32)

# Mean backscatter in dB per DFC class 1-10: (VV, VH).
S1_DB = np.array([
    [-7.5, -14.0], [-9.5, -17.0], [-9.0, -16.0], [-10.5, -18.0], [-9.0, -17.0],
    [-9.5, -16.5], [-4.5, -11.0], [-13.0, -21.0], [-14.0, -23.0], [-20.0, -27.0],
], dtype=np.float32)

# IGBP codes (MODIS band 1) that map back to each DFC class 1-10.
IGBP_FOR_DFC: Tuple[Tuple[int, ...], ...] = (
    (1, 2, 3, 4, 5), (6, 7), (8, 9), (10,), (11,), (12, 14), (13,), (15,), (16,), (17,),
)
# MODIS LCCS land cover / land use / surface hydrology codes per DFC class 1-10 (bands 2-4).
LCCS = np.array([
    [14, 10, 10], [41, 40, 40], [21, 20, 20], [31, 30, 30], [31, 30, 50],
    [31, 36, 30], [1, 9, 1], [2, 2, 2], [1, 1, 1], [3, 3, 3],
], dtype=np.uint16)

DOWNSTREAM_DFC = (1, 2, 4, 5, 6, 7, 9, 10)  # DFC codes of the 8 target classes
CLASS_WEIGHTS = np.array([3, 2, 1, 3, 1, 3, 2, 0.5, 1.5, 2], dtype=np.float64)  # background frequency
S2_BLOCK = {60: 6, 20: 2, 10: 1}  # native resolution -> block size at 10 m
S2_NATIVE = (60, 10, 10, 10, 20, 20, 20, 10, 20, 60, 60, 20, 20)


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) linear interpolation weights (smooth upsampling by matrix product)."""
    pos = np.linspace(0, n_in - 1, n_out)
    low = np.floor(pos).astype(int)
    high = np.minimum(low + 1, n_in - 1)
    frac = pos - low
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), low] += 1 - frac
    m[np.arange(n_out), high] += frac
    return m


def _smooth_field(rng: np.random.Generator, count: int, grid: int, size: int = PATCH_SIZE,
                  shape: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """``count`` smooth random fields of shape (size, size), roughly N(0, 1).

    ``shape`` (H, W) crops a field of side ``max(H, W)`` (scenes that are not square)."""
    if shape is not None:
        size = max(shape)
    noise = rng.standard_normal((count, grid, grid)).astype(np.float32)
    w = _interp_matrix(size, grid)
    field = w @ noise @ w.T
    return field if shape is None else field[:, : shape[0], : shape[1]]


def _latent_map(rng: np.random.Generator, dominant: int) -> np.ndarray:
    """(H, W) uint16 DFC classes 1-10 with coherent regions; ``dominant`` is the most frequent."""
    others = [c for c in range(1, 11) if c != dominant]
    p = CLASS_WEIGHTS[np.array(others) - 1]
    chosen = rng.choice(others, size=int(rng.integers(2, 5)), replace=False, p=p / p.sum())
    classes = np.concatenate([[dominant], chosen])
    fields = _smooth_field(rng, len(classes), int(rng.integers(4, 8)))
    fields += 0.35 * _smooth_field(rng, len(classes), int(rng.integers(10, 16)))
    return dominated_latent(classes, fields)


def dominated_latent(classes: np.ndarray, fields: np.ndarray) -> np.ndarray:
    """The class map ``argmax(fields)`` with ``classes[0]`` boosted until it dominates (>= 40 %)."""
    dominant = classes[0]
    bias = 0.6
    for _ in range(8):
        shifted = fields.copy()
        shifted[0] += bias
        latent = classes[np.argmax(shifted, axis=0)].astype(np.uint16)
        counts = np.bincount(latent.ravel(), minlength=11)
        if counts.argmax() == dominant and counts[dominant] >= 0.4 * latent.size:
            break
        bias += 0.4
    return latent


def _block_mean(image: np.ndarray, block: int) -> np.ndarray:
    """Average (..., H, W) over block x block cells and expand back (a coarser native resolution)."""
    if block == 1:
        return image
    h, w = image.shape[-2:]
    ph, pw = -h % block, -w % block
    padded = np.pad(image, [(0, 0)] * (image.ndim - 2) + [(0, ph), (0, pw)], mode="edge")
    shape = padded.shape[:-2] + (padded.shape[-2] // block, block, padded.shape[-1] // block, block)
    means = padded.reshape(shape).mean(axis=(-3, -1))
    return np.repeat(np.repeat(means, block, axis=-2), block, axis=-1)[..., :h, :w]


def _s2(rng: np.random.Generator, latent: np.ndarray) -> np.ndarray:
    """(13, H, W) uint16 L1C-like reflectance x 10000."""
    spectra = S2_SPECTRA * rng.normal(1.0, 0.07, (10, 1)) * rng.normal(1.0, 0.03, (10, 13))
    spectra += rng.uniform(0, 200) * np.linspace(1.0, 0.0, 13)  # haze, strongest in the blue
    hw = latent.shape
    texture = 1.0 + 0.06 * _smooth_field(rng, 1, 24, shape=hw)[0] + 0.03 * _smooth_field(rng, 1, 64, shape=hw)[0]
    image = np.moveaxis(spectra.astype(np.float32)[latent - 1], -1, 0) * texture  # (13, H, W)
    for resolution, block in S2_BLOCK.items():
        idx = [i for i, r in enumerate(S2_NATIVE) if r == resolution]
        image[idx] = _block_mean(image[idx], block)
    sigma = image * np.float32(0.015) + np.float32(12.0)  # multiplicative + additive noise
    image += sigma * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(np.rint(image), 1, 65535).astype(np.uint16)


def _s1(rng: np.random.Generator, latent: np.ndarray, nan_pixels: int) -> np.ndarray:
    """(2, H, W) float32 dB with gamma speckle (ENL ~4.5) and ``nan_pixels`` NaN pixels."""
    means = S1_DB + rng.normal(0.0, 1.0, (10, 1)).astype(np.float32)
    db = np.moveaxis(means[latent - 1], -1, 0)
    db = db + 1.2 * _smooth_field(rng, 2, 32, shape=latent.shape) \
        + np.linspace(1.0, -1.0, latent.shape[1], dtype=np.float32)
    looks = 4.5
    linear = 10.0 ** (db / 10.0) * rng.standard_gamma(looks, db.shape, dtype=np.float32) / looks
    out = (10.0 * np.log10(np.maximum(linear, 1e-6))).astype(np.float32)
    if nan_pixels:
        row = int(rng.integers(0, latent.shape[0]))
        col = int(rng.integers(0, latent.shape[1] - nan_pixels))
        bands = [0, 1] if rng.random() < 0.5 else [int(rng.integers(0, 2))]
        out[np.ix_(bands, [row], np.arange(col, col + nan_pixels))] = np.nan
    return out


def _lc(rng: np.random.Generator, latent: np.ndarray) -> np.ndarray:
    """(4, H, W) uint16 MODIS-like map: majority class of each 500 m block, band 1 IGBP."""
    h, w = latent.shape
    oy, ox = (int(v) for v in rng.integers(0, MODIS_BLOCK, 2))
    by = (np.arange(h) + oy) // MODIS_BLOCK
    bx = (np.arange(w) + ox) // MODIS_BLOCK
    nbx = int(bx[-1]) + 1
    block = by[:, None] * nbx + bx[None, :]
    counts = np.bincount((block * 11 + latent).ravel(), minlength=(block.max() + 1) * 11).reshape(-1, 11)
    majority = counts.argmax(axis=1)
    present = np.unique(latent)
    flip = rng.random(majority.shape) < 0.08  # MODIS is coarse and sometimes wrong
    majority = np.where(flip, rng.choice(present, majority.shape), majority)
    coarse = majority[block]
    igbp_of = np.zeros(11, np.uint16)
    for dfc, codes in enumerate(IGBP_FOR_DFC, start=1):
        igbp_of[dfc] = codes[int(rng.integers(0, len(codes)))]
    lccs = np.vstack([np.zeros((1, 3), np.uint16), LCCS])
    return np.concatenate([igbp_of[coarse][None], np.moveaxis(lccs[coarse], -1, 0)]).astype(np.uint16)


def _resolve_patches(patches: Optional[Union[int, Mapping[str, int]]]) -> Dict[str, int]:
    counts = dict(DEFAULT_PATCHES)
    if isinstance(patches, int):
        counts = {key: patches for key in counts}
    elif patches is not None:
        unknown = set(patches) - set(counts)
        if unknown:
            raise ValueError(f"unknown split(s) {sorted(unknown)}; expected {sorted(counts)}")
        counts.update({k: int(v) for k, v in patches.items()})
    if any(v < 1 for v in counts.values()):
        raise ValueError(f"patch counts must be >= 1, got {counts}")
    return counts


def generate_sample_dataset(
    root: Union[str, Path],
    seed: int = 0,
    patches: Optional[Union[int, Mapping[str, int]]] = None,
) -> Path:
    """Write the sample dataset under ``root`` and return ``root``.

    ``patches``: an int for every split, or a mapping with keys ``sen12ms`` (per season),
    ``validation``, ``test`` (defaults :data:`DEFAULT_PATCHES`).
    """
    root = Path(root)
    counts = _resolve_patches(patches)
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    csv_rows: Dict[str, List[Tuple[str, int, int]]] = {"sen12ms": [], "validation": [], "test": []}
    dfc_labels: Dict[str, List[int]] = {"validation": [], "test": []}
    origin_slot = 0

    jobs: List[Tuple[str, Season, int, int, int]] = []  # (split, season, scene, patch, dominant)
    for season in SEN12MS_SEASONS:
        n = counts["sen12ms"]
        scenes = rng.choice(np.arange(1, 150), size=2, replace=False)
        ids = rng.choice(np.arange(0, max(800, 2 * n)), size=n, replace=False)
        p = CLASS_WEIGHTS / CLASS_WEIGHTS.sum()
        for i, (patch, dominant) in enumerate(zip(ids, rng.choice(np.arange(1, 11), size=n, p=p))):
            jobs.append(("sen12ms", season, int(scenes[i % 2]), int(patch), int(dominant)))
    for split, season in zip(("validation", "test"), DFC2020_SEASONS):
        n = counts[split]
        ids = rng.choice(np.arange(0, max(1000, 2 * n)), size=n, replace=False)
        # every target class dominates at least one patch (if n >= 8), the rest is imbalanced
        weights = CLASS_WEIGHTS[np.array(DOWNSTREAM_DFC) - 1]
        extra = rng.choice(DOWNSTREAM_DFC, size=max(0, n - 8), p=weights / weights.sum())
        cycle = rng.permutation(np.concatenate([rng.permutation(DOWNSTREAM_DFC)[:n], extra]))
        jobs.extend((split, season, 0, int(patch), int(d)) for patch, d in zip(ids, cycle))

    for split, season, scene, patch, dominant in jobs:
        zone = 32 + scene % 3
        crs = f"EPSG:326{zone:02d}"
        x0 = 300000 + (origin_slot % 64) * PATCH_SIZE * PIXEL_SIZE_M
        y0 = 5600000 - (origin_slot // 64) * PATCH_SIZE * PIXEL_SIZE_M
        origin_slot += 1
        transform = Affine(PIXEL_SIZE_M, 0.0, x0, 0.0, -PIXEL_SIZE_M, y0)
        latent = _latent_map(rng, dominant)
        nan_pixels = int(rng.integers(1, 12)) if rng.random() < 0.25 else 0
        arrays = {Sensor.s1: _s1(rng, latent, nan_pixels), Sensor.s2: _s2(rng, latent), Sensor.lc: _lc(rng, latent)}
        if season.is_dfc2020:
            arrays[Sensor.dfc] = latent[None]
            dfc_labels[split].append(single_label(dfc10_to_dfc8(latent)))
        for sensor, array in arrays.items():
            assert array.dtype == np.dtype(SENSORS[sensor].dtype) and array.shape[0] == SENSORS[sensor].count
            write_patch(patch_path(root, season, scene, patch, sensor), array, crs, transform)
        csv_rows[split].append((season.csv_name, scene, patch))

    for split, rows in csv_rows.items():
        write_observations(root / f"{split}_observations.csv", rows)
    write_observations(root / "validation_observations_balanced_classes.csv",
                       balanced_rows(csv_rows["validation"], dfc_labels["validation"]), header=BALANCED_HEADER)
    return root


def generate_scene(root: Union[str, Path], height: int = 1280, width: int = 1280, seed: int = 0,
                   crs: str = "EPSG:32632") -> Dict[str, Path]:
    """Write one larger scene (``scene_s2.tif`` 13 bands, ``scene_s1.tif`` VV/VH dB and the
    reference ``scene_dfc.tif``) for whole-scene prediction (``predict.py``) and, as a user's own
    region, for ``prepare_dataset.py`` (the default 1280 x 1280 px holds 25 blocks of 256 px).

    The land cover has coherent regions of every class over the whole scene (no patch
    seams), synthesised exactly as the patches are. Returns the three paths.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (height, width)
    grid = max(4, max(shape) // 48)
    fields = _smooth_field(rng, 10, grid, shape=shape) + 0.35 * _smooth_field(rng, 10, 2 * grid, shape=shape)
    fields += np.log(CLASS_WEIGHTS / CLASS_WEIGHTS.sum()).astype(np.float32)[:, None, None] * 0.5
    latent = (np.argmax(fields, axis=0) + 1).astype(np.uint16)
    transform = Affine(PIXEL_SIZE_M, 0.0, 400000.0, 0.0, -PIXEL_SIZE_M, 5500000.0)
    paths = {"s2": root / "scene_s2.tif", "s1": root / "scene_s1.tif", "dfc": root / "scene_dfc.tif"}
    write_patch(paths["s2"], _s2(rng, latent), crs, transform)
    write_patch(paths["s1"], _s1(rng, latent, nan_pixels=0), crs, transform)
    write_patch(paths["dfc"], latent[None], crs, transform)
    return paths


def _parse_patches(values: Optional[List[str]]) -> Optional[Union[int, Dict[str, int]]]:
    if not values:
        return None
    if len(values) == 1 and values[0].isdigit():
        return int(values[0])
    out: Dict[str, int] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not value.isdigit():
            raise argparse.ArgumentTypeError(f"--patches expects SPLIT=N or one N, got {item!r}")
        out[key] = int(value)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data.sample",
        description=(
            "Write a small synthetic SEN12MS + DFC2020 dataset in the original layout "
            "<root>/<season>/<sensor>_<scene>/<season>_<sensor>_<scene>_p<patch>.tif: the four "
            "SEN12MS seasons (s1, s2, lc) and ROIs0000_validation / ROIs0000_test (s1, s2, lc, dfc), "
            "256x256 px, 10 m, UTM, plus sen12ms_/validation_/test_observations.csv and "
            "validation_observations_balanced_classes.csv in the root. Every patch derives from one "
            "latent land-cover map, so S1, S2 and the labels agree; every one of the 8 target classes "
            "dominates some validation and test patches (with >= 8 patches per split)."
        ),
    )
    parser.add_argument("--root", required=True, type=Path, help="output folder (created; files are overwritten)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    parser.add_argument(
        "--patches", nargs="+", metavar="SPLIT=N",
        help=("patch counts: one N for every split, or any of sen12ms=N (per season), validation=N, "
              "test=N (default: sen12ms=%(sen12ms)d validation=%(validation)d test=%(test)d)"
              % DEFAULT_PATCHES).replace("%", "%%"),
    )
    parser.add_argument("--scene", metavar="HxW", default="1280x1280",
                        help="also write one larger scene (scene_s2.tif, scene_s1.tif, scene_dfc.tif) "
                             "for predict.py; 'none' to skip (default: %(default)s)")
    args = parser.parse_args(argv)
    scene_shape = None
    if args.scene.lower() != "none":
        try:
            scene_shape = tuple(int(v) for v in args.scene.lower().split("x"))
            assert len(scene_shape) == 2 and min(scene_shape) > 0
        except (ValueError, AssertionError):
            parser.error(f"--scene expects HxW such as 600x500 or 'none', got {args.scene!r}")
    try:
        patches = _parse_patches(args.patches)
        counts = _resolve_patches(patches)
    except (argparse.ArgumentTypeError, ValueError) as err:
        parser.error(str(err))
    start = time.perf_counter()
    root = generate_sample_dataset(args.root, seed=args.seed, patches=patches)
    total = 4 * counts["sen12ms"] + counts["validation"] + counts["test"]
    print(f"sample dataset: {total} patches (SEN12MS {counts['sen12ms']}/season x 4, validation "
          f"{counts['validation']}, test {counts['test']}) written to {root} in {time.perf_counter() - start:.1f} s")
    if scene_shape is not None:
        paths = generate_scene(root, *scene_shape, seed=args.seed)
        print(f"scene {scene_shape[0]}x{scene_shape[1]} px: {paths['s2']}, {paths['s1']} (reference {paths['dfc']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
