"""Whole-scene inference on Sentinel-1/2 products as users have them.

* :mod:`inference.products`: Sentinel-2 SAFE products (folder or ``.zip``), folders of band
  files and GeoTIFFs; the processing-baseline offset (``RADIO_ADD_OFFSET`` /
  ``BOA_ADD_OFFSET``), Level-2A detection, cloud masks (``MSK_CLASSI_B00``, ``MSK_CLOUDS_B00.gml``,
  ``QA60``), Sentinel-1 in dB or linear units from one or two files.
* :mod:`inference.writer`: Cloud-Optimised GeoTIFF outputs with overviews, class names as GDAL
  category names and a raster attribute table, provenance tags.

The sliding-window prediction itself is :func:`utils.scene.predict_scene`; ``predict.py`` ties
the pieces together.
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
