"""The patch grid and the spatial blocks that decide train / validation / test.

Patches are cut on each product's own grid (top-left corners every ``stride`` px, whole patches
only). Splits come from square blocks of ``block_size`` px laid on the coordinates of one
reference CRS (the first product's), anchored at that product's top-left corner (so the first
product's blocks line up with its patch grid), so that the same ground falls in
the same block for every product of the region. The blocks are shuffled with the seed and
dealt to the splits by their fractions; a patch takes the split of the blocks it touches, and a
patch touching blocks of two splits is left out. So no test patch overlaps a patch of another
split, whatever the stride, and nothing of the test area is written anywhere else (not even
into the unlabelled pre-training set).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from rasterio.warp import transform_bounds

from inference.sources import Grid

__all__ = ["SPLITS", "patch_origins", "BlockGrid", "assign_blocks", "split_of"]

SPLITS: Tuple[str, ...] = ("train", "validation", "test")
Block = Tuple[int, int]


def patch_origins(size: int, patch: int, stride: int) -> List[int]:
    """Offsets of the whole patches along an axis of ``size`` px."""
    return list(range(0, size - patch + 1, stride)) if size >= patch else []


@dataclass(frozen=True)
class BlockGrid:
    """Square blocks of ``size`` CRS units on ``crs``, anchored at ``origin`` (x, y)."""

    crs: object
    size: float
    origin: Tuple[float, float] = (0.0, 0.0)

    def bounds_of(self, grid: Grid, row: int, col: int, height: int, width: int) -> Tuple[float, ...]:
        """(left, bottom, right, top) of a pixel window of ``grid`` in this grid's CRS."""
        t = grid.transform
        xs, ys = zip(*(t @ (c, r) for c in (col, col + width) for r in (row, row + height)))
        bounds = (min(xs), min(ys), max(xs), max(ys))
        if grid.crs is not None and self.crs is not None and grid.crs != self.crs:
            bounds = transform_bounds(grid.crs, self.crs, *bounds, densify_pts=21)
        return bounds

    def blocks(self, bounds: Sequence[float]) -> FrozenSet[Block]:
        """Every block a box touches (edges shared with a neighbour do not count)."""
        eps = 1e-6 * self.size
        x, y = self.origin
        left, bottom, right, top = bounds[0] - x, bounds[1] - y, bounds[2] - x, bounds[3] - y
        x0, x1 = math.floor((left + eps) / self.size), math.floor((right - eps) / self.size)
        y0, y1 = math.floor((bottom + eps) / self.size), math.floor((top - eps) / self.size)
        return frozenset((i, j) for i in range(x0, x1 + 1) for j in range(y0, y1 + 1))


def assign_blocks(blocks: Iterable[Block], fractions: Sequence[float], seed: int) -> Dict[Block, str]:
    """Deal the blocks (shuffled with ``seed``) to :data:`SPLITS` by ``fractions``.

    Test first, then validation, the rest to training; a split with a positive fraction gets at
    least one block while there are blocks enough for every such split.
    """
    order = sorted(set(blocks))
    np.random.default_rng(seed).shuffle(order)
    n = len(order)
    wanted = [f > 0 for f in fractions]
    test = round(fractions[2] * n)
    val = round(fractions[1] * n)
    if n >= sum(wanted):
        test = max(test, int(wanted[2]))
        val = max(val, int(wanted[1]))
        if wanted[0] and test + val >= n:   # keep one block for training
            if val > int(wanted[1]):
                val -= 1
            else:
                test -= 1
    test, val = min(test, n), min(val, n - min(test, n))
    out: Dict[Block, str] = {}
    for i, block in enumerate(order):
        out[block] = "test" if i < test else "validation" if i < test + val else "train"
    return out


def split_of(blocks: FrozenSet[Block], assignment: Dict[Block, str]) -> Optional[str]:
    """The split of a patch touching ``blocks``, or None when they belong to different splits."""
    splits = {assignment[b] for b in blocks}
    return splits.pop() if len(splits) == 1 else None
