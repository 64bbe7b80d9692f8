"""The Sentinel-2 processing-baseline offset: which one to apply, and a source that applies it.

Products of processing baseline 04.00 and later (processed since 25 January 2022) store
``DN = 10000 * reflectance - RADIO_ADD_OFFSET`` with ``RADIO_ADD_OFFSET = -1000``
(``BOA_ADD_OFFSET`` in L2A). The training data (SEN12MS) has no offset, so
:func:`decide_offset` takes the offset from the product metadata (or from ``--s2_offset``)
and :class:`OffsetSource` adds it to every band before the per-window clipping and
normalisation -- exactly once (wrapping an already corrected source is refused). When the
baseline cannot be known (GeoTIFF or band folder without metadata) no offset is applied and
one warning says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from inference.sources import WrappedSource

__all__ = ["OffsetDecision", "decide_offset", "OffsetSource"]


@dataclass
class OffsetDecision:
    """The offset added to every S2 band (DN), where it came from, and what to tell the user."""

    offsets: Tuple[float, ...]      # 13 values, DN added before clipping
    scale: float                    # 10000 / quantification (1 for every product so far)
    source: str                     # "metadata", "flag", "none (baseline unknown)"
    message: str
    warning: Optional[str] = None

    @property
    def is_identity(self) -> bool:
        return all(o == 0 for o in self.offsets) and self.scale == 1.0

    def tag(self) -> str:
        """Compact text for the output metadata: one value when all bands agree."""
        vals = set(self.offsets)
        v = f"{self.offsets[0]:g}" if len(vals) == 1 else "[" + ",".join(f"{o:g}" for o in self.offsets) + "]"
        return v if self.scale == 1.0 else f"{v} then x{self.scale:g}"


def decide_offset(product, flag: Optional[float] = None) -> OffsetDecision:
    """Choose the S2 offset: ``--s2_offset`` if given, else the product metadata, else none (with a warning)."""
    scale = 10000.0 / product.quantification if product.quantification else 1.0
    what = f"processing baseline {product.baseline}" if product.baseline else "processing baseline unknown"
    if flag is not None:
        offsets = (float(flag),) * 13
        warning = None
        if product.offsets is not None and tuple(product.offsets) != offsets:
            warning = (f"--s2_offset {flag:g} overrides the offset {OffsetDecision(product.offsets, 1, '', '').tag()} "
                       f"of {product.metadata_file} ({what})")
        return OffsetDecision(offsets, scale, "flag", f"S2 offset {flag:g} DN on every band (--s2_offset)", warning)
    if product.offsets is not None:
        dec = OffsetDecision(tuple(product.offsets), scale, "metadata", "")
        kind = "BOA_ADD_OFFSET" if product.level == "L2A" else "RADIO_ADD_OFFSET"
        dec.message = (f"S2 offset {dec.tag()} DN ({kind} of {Path(product.metadata_file.split('!')[-1]).name}, "
                       f"{what})")
        return dec
    return OffsetDecision(
        (0.0,) * 13, 1.0, "none (baseline unknown)", "S2 offset: none applied (processing baseline unknown)",
        warning=(f"the processing baseline of {product.path} cannot be known (no MTD_MSIL1C.xml); no offset "
                 "applied, as for products processed before 25 January 2022. For a product of baseline 04.00 or "
                 "later pass --s2_offset -1000 (its values are 10000 x reflectance + 1000); --s2_offset 0 "
                 "confirms no offset and silences this warning"))


class OffsetSource(WrappedSource):
    """Wraps an S2 source and adds the per-band offset (then scales) to its values.

    Returns float32; a band value of 0 (no data in L1C/L2A) stays 0 and a pixel whose bands are
    all 0 becomes NaN (no data for :func:`inference.scene.predict_scene`), so that pixels darker than
    the offset still count as data. Clipping to [0, 10000] happens afterwards, in the per-window
    normalisation. Wrapping a source twice is refused: the offset is applied exactly once.
    """

    offset_applied = True

    def __init__(self, src, offsets: Sequence[float], scale: float = 1.0):
        if getattr(src, "offset_applied", False):
            raise ValueError(f"{getattr(src, 'name', src)}: the S2 offset is already applied")
        if len(offsets) != 13:
            raise ValueError(f"expected 13 offsets, got {len(offsets)}")
        self.src = src
        self.grid = src.grid
        self.count = 13
        self.name = getattr(src, "name", "<s2>")
        self.offsets = np.asarray(offsets, np.float32)
        self.scale = np.float32(scale)

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        raw = self.src.read(row_off, col_off, height, width)
        out = raw.astype(np.float32)
        if out.shape[0] != 13:
            return out            # predict_scene names the wrong band count
        empty = np.ones(raw.shape[1:], bool)
        for b in range(13):
            band = out[b]
            zero = raw[b] == 0
            empty &= zero
            band += self.offsets[b]
            if self.scale != 1:
                band *= self.scale
            band[zero] = 0.0
        out[:, empty] = np.nan
        return out
