"""A larger synthetic SEN12MS / DFC2020 look-alike, generated in memory (no files), for the demo
and the scale experiment.

Same physics as :mod:`data.sample` (one latent land-cover map per patch; per-class S2 spectra
and S1 backscatter; 20/60 m S2 bands at their native resolution; gamma speckle), generated
directly at the crop size (spatial scales as a ``size``-px crop of a 256-px patch), normalised
with the dataset's own :func:`data.transforms.preprocess_s1` / ``preprocess_s2``, and returned as
the dataset's sample dicts (``s1``, ``s2``, ``dfc``, ``dfc_label``, ``dfc_multilabel_one_hot``,
``index``, ``s1_nan_pixels``). Patch ``i`` of a split is a function of ``(seed, split, i)`` alone,
so a split can be streamed (generated on access, any length, bounded memory and no disk) or
cached in memory (:meth:`SyntheticSEN12MS.materialise`).

Modality-specific nuisances (``nuisances=True``, default), each physically plausible and
independent between S1 and S2, so that the only content the two sensors share is the land
cover (no label information enters the pixels beyond the class spectra / backscatter):

* S2: atmospheric haze (additive path radiance, strongest in the blue, varies per patch),
  illumination (a per-patch factor 0.75-1.25: sun elevation, topography), per-band
  calibration gain (+-4 %), cumulus clouds (bright, nearly flat spectrum, in ~30 % of patches)
  with their shadows (darker, shifted), sensor noise;
* S1: incidence-angle ramp (backscatter falls by 1-4 dB across the swath, random direction),
  an absolute calibration offset (+-1 dB), texture, multiplicative speckle (ENL ~4.5).

About 5 ms per 64-px patch on one core (``python -m data.synthetic --n 1000`` times it).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.data import Dataset

from .labels import dfc10_to_dfc8
from .sample import CLASS_WEIGHTS, DOWNSTREAM_DFC, S1_DB, S2_NATIVE, S2_SPECTRA, _interp_matrix, dominated_latent
from .transforms import preprocess_s1, preprocess_s2

SPLITS = {"sen12ms": 0, "validation": 1, "test": 2}


def _field(rng, count: int, grid: int, size: int) -> np.ndarray:
    noise = rng.standard_normal((count, grid, grid)).astype(np.float32)
    w = _interp_matrix(size, grid)
    return w @ noise @ w.T


def _grid(grid_at_256: float, size: int) -> int:
    """Interpolation nodes giving the spatial scale of a ``size``-px crop of a 256-px patch."""
    return max(2, int(round(grid_at_256 * size / 256)) + 1)


def latent_map(rng, dominant: int, size: int) -> np.ndarray:
    """(size, size) DFC classes 1-10, coherent regions, ``dominant`` the most frequent."""
    others = [c for c in range(1, 11) if c != dominant]
    p = CLASS_WEIGHTS[np.array(others) - 1]
    chosen = rng.choice(others, size=int(rng.integers(1, 4)), replace=False, p=p / p.sum())
    classes = np.concatenate([[dominant], chosen])
    fields = _field(rng, len(classes), _grid(rng.uniform(4, 8), size), size)
    fields += 0.35 * _field(rng, len(classes), _grid(rng.uniform(10, 16), size), size)
    return dominated_latent(classes, fields)


def _native(image: np.ndarray, block: int) -> np.ndarray:
    if block == 1:
        return image
    c, h, w = image.shape
    hb, wb = -(-h // block), -(-w // block)
    pad = np.pad(image, ((0, 0), (0, hb * block - h), (0, wb * block - w)), mode="edge")
    means = pad.reshape(c, hb, block, wb, block).mean(axis=(2, 4))
    return np.repeat(np.repeat(means, block, 1), block, 2)[:, :h, :w]


def s2_image(rng, latent: np.ndarray, nuisances: bool = True) -> np.ndarray:
    """(13, H, W) uint16 L1C-like reflectance x 10000."""
    size = latent.shape[0]
    spectra = S2_SPECTRA * rng.normal(1.0, 0.07, (10, 1)) * rng.normal(1.0, 0.03, (10, 13))
    texture = 1.0 + 0.06 * _field(rng, 1, _grid(24, size), size)[0]
    image = np.moveaxis(spectra.astype(np.float32)[latent - 1], -1, 0) * texture
    if nuisances:
        image *= rng.uniform(0.75, 1.25)                                   # illumination
        image *= rng.normal(1.0, 0.04, (13, 1, 1)).astype(np.float32)      # per-band gain
        if rng.random() < 0.3:                                             # cumulus + shadow
            cloud = _field(rng, 1, _grid(12, size), size)[0]
            cover = np.clip((cloud - rng.uniform(0.6, 1.4)) * 2.0, 0, 1)
            shift = int(rng.integers(2, max(3, size // 8)))
            shadow = np.roll(cover, (shift, shift), axis=(0, 1))
            image *= 1.0 - 0.5 * shadow
            image += cover * rng.uniform(3000, 6000) * np.linspace(1.0, 0.8, 13, dtype=np.float32)[:, None, None]
        haze = rng.uniform(0, 600)                                         # path radiance
    else:
        haze = rng.uniform(0, 200)
    image += np.float32(haze) * np.linspace(1.0, 0.0, 13, dtype=np.float32)[:, None, None]
    for block in (6, 2):
        res = {6: 60, 2: 20}[block]
        idx = [i for i, r in enumerate(S2_NATIVE) if r == res]
        image[idx] = _native(image[idx], block)
    sigma = image * np.float32(0.015) + np.float32(12.0)
    image += sigma * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(np.rint(image), 1, 65535).astype(np.uint16)


def s1_image(rng, latent: np.ndarray, nuisances: bool = True) -> np.ndarray:
    """(2, H, W) float32 dB with speckle (ENL ~4.5)."""
    size = latent.shape[0]
    means = S1_DB + rng.normal(0.0, 1.0, (10, 1)).astype(np.float32)
    db = np.moveaxis(means[latent - 1], -1, 0)
    db = db + 1.2 * _field(rng, 2, _grid(32, size), size)
    if nuisances:
        drop = rng.uniform(1.0, 4.0) * size / 256 * 4       # dB across this crop's share of swath
        ramp = np.linspace(drop / 2, -drop / 2, size, dtype=np.float32)
        db = db + (ramp[None, None, :] if rng.random() < 0.5 else ramp[None, :, None])
        db = db + rng.normal(0.0, 1.0)                       # calibration offset
    looks = 4.5
    linear = 10.0 ** (db / 10.0) * rng.standard_gamma(looks, db.shape).astype(np.float32) / looks
    return (10.0 * np.log10(np.maximum(linear, 1e-6))).astype(np.float32)


def make_patch(seed: int, split: str, index: int, size: int = 64, nuisances: bool = True) -> dict:
    """One sample dict (as ``DFCDataset`` returns), a function of ``(seed, split, index)``."""
    rng = np.random.default_rng([seed, SPLITS[split], index])
    if split == "sen12ms":
        p = CLASS_WEIGHTS / CLASS_WEIGHTS.sum()
        dominant = int(rng.choice(np.arange(1, 11), p=p))
    else:
        w = CLASS_WEIGHTS[np.array(DOWNSTREAM_DFC) - 1]
        dominant = int(rng.choice(DOWNSTREAM_DFC, p=w / w.sum()))
    latent = latent_map(rng, dominant, size)
    s1, s2 = s1_image(rng, latent, nuisances), s2_image(rng, latent, nuisances)
    dfc = dfc10_to_dfc8(latent).astype(np.uint8)
    counts = np.bincount(dfc.ravel(), minlength=256)
    return {"s1": torch.from_numpy(preprocess_s1(s1)), "s2": torch.from_numpy(preprocess_s2(s2)),
            "dfc": torch.from_numpy(dfc[None].astype(np.float32)),
            "dfc_label": torch.tensor(float(np.argmax(counts))),
            "dfc_multilabel_one_hot": torch.from_numpy((counts[:8] / dfc.size >= 0.1).astype(np.float32)),
            "s1_nan_pixels": 0, "index": index}


class SyntheticSEN12MS(Dataset):
    """``n`` synthetic patches of ``split`` (``sen12ms``, ``validation`` or ``test``) at ``size`` px.

    Streamed: every access generates the patch (deterministic), so memory and disk stay bounded
    whatever ``n``; :meth:`materialise` keeps them in memory instead (~15 x size^2 x 4 bytes each).
    """

    def __init__(self, n: int, split: str = "sen12ms", size: int = 64, seed: int = 0,
                 nuisances: bool = True):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        self.n, self.split, self.size, self.seed, self.nuisances = int(n), split, int(size), seed, nuisances
        self.image_px_size = self.size
        self._items: list | None = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.n:
            raise IndexError(index)
        if self._items is not None:
            return self._items[index]
        return make_patch(self.seed, self.split, int(index), self.size, self.nuisances)

    def materialise(self) -> "SyntheticSEN12MS":
        self._items = [make_patch(self.seed, self.split, i, self.size, self.nuisances)
                       for i in range(self.n)]
        return self


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="time the in-memory synthetic generator")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--size", type=int, default=64)
    args = p.parse_args(argv)
    start = time.perf_counter()
    ds = SyntheticSEN12MS(args.n, "test", args.size).materialise()
    labels = np.bincount([int(s["dfc_label"]) for s in ds._items], minlength=256)[:8]
    print(f"{args.n} test patches of {args.size} px in {time.perf_counter() - start:.1f} s; "
          f"labels per class {labels.tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
