"""Whole-scene inference on Sentinel-1/2 products as users have them, one job per module.

Inputs
  * :mod:`inference.sources`: :class:`~inference.sources.Grid`, the source interface (read
    window by window), in-memory arrays, raster files, folders of S2 band files.
  * :mod:`inference.products`: Sentinel-2 SAFE products (folder or ``.zip``), band folders and
    GeoTIFFs; Level-2A detection; :func:`~inference.products.open_s2` (any S2 input, offset
    removed).
  * :mod:`inference.offset`: the processing-baseline offset (``RADIO_ADD_OFFSET`` /
    ``BOA_ADD_OFFSET``).
  * :mod:`inference.clouds`: cloud masks (``MSK_CLASSI_B00``, ``MSK_CLOUDS_B00.gml``, ``QA60``).
  * :mod:`inference.sentinel1`: Sentinel-1 in dB or linear units, one or two files, put on the
    S2 grid.

Prediction
  * :mod:`inference.windows`: window placement, stride cells, blend weights.
  * :mod:`inference.scene`: :func:`~inference.scene.predict_scene` (strip by strip, bounded memory).
  * :mod:`inference.outputs`: finished rows to maps, probabilities, counts and areas.

Outputs
  * :mod:`inference.writer`: the tiled GeoTIFF writer, Cloud-Optimised GeoTIFFs, class names as
    GDAL category names and a raster attribute table.
  * :mod:`inference.classes`: class names and colours (from :mod:`data.labels`).
  * :mod:`inference.areas`: pixel areas, the per-class area summary.
  * :mod:`inference.preview`: the PNG preview with a legend.

``predict.py`` ties the pieces together.
"""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

__all__ = ["software_version"]

REPO = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def software_version() -> str:
    """``git describe`` of this repository (``git:<sha>[-dirty]``), or ``unknown`` outside a checkout."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty", "--abbrev=10"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return "git:" + out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"
