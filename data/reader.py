"""Read SEN12MS / DFC2020 patches from the original on-disk layout with rasterio.

Layout: ``<root>/<season>/<sensor>_<scene>/<season>_<sensor>_<scene>_p<patch>.tif``,
e.g. ``ROIs0000_validation/s2_0/ROIs0000_validation_s2_0_p649.tif``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import rasterio
from affine import Affine
from rasterio.coords import BoundingBox
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from .bands import SENSORS, Season, Sensor, parse_season
from .errors import DatasetError, DatasetNotFoundError

__all__ = ["PatchGeo", "SEN12MSReader", "WindowLike"]

WindowLike = Union[Window, Tuple[int, int, int, int]]
"""A rasterio ``Window`` or ``(col_off, row_off, width, height)``."""


@dataclass(frozen=True)
class PatchGeo:
    """Georeferencing of what was read (window-aware)."""

    crs: Optional[CRS]
    transform: Affine
    bounds: BoundingBox
    shape: Tuple[int, int]


def _as_window(window: Optional[WindowLike]) -> Optional[Window]:
    if window is None or isinstance(window, Window):
        return window
    col_off, row_off, width, height = (int(v) for v in window)
    return Window(col_off, row_off, width, height)


def _bounds(transform: Affine, width: float, height: float) -> BoundingBox:
    """Bounding box of a ``width`` x ``height`` pixel grid with the given transform."""
    xs, ys = zip(*(transform @ (col, row) for col in (0, width) for row in (0, height)))
    return BoundingBox(min(xs), min(ys), max(xs), max(ys))


class SEN12MSReader:
    """Random access to patches under a SEN12MS / DFC2020 ``root``.

    Raises :class:`~data.errors.DatasetNotFoundError` if ``root`` is not a folder.
    Every read opens the file once; errors name the path and the problem.
    """

    def __init__(self, root: Union[str, Path]) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"dataset root not found: {self.root} (expected a folder with "
                                       f"season folders such as {Season.VALSET.value}/)")

    def __repr__(self) -> str:
        return f"SEN12MSReader(root={str(self.root)!r})"

    def season_dir(self, season: "Season | str") -> Path:
        """``<root>/<season>``."""
        return self.root / parse_season(season).value

    def path(self, season: "Season | str", scene: int, patch: int, sensor: "Sensor | str") -> Path:
        """Path of one patch file (whether it exists or not)."""
        season = parse_season(season)
        sensor = Sensor(sensor if not isinstance(sensor, Sensor) else sensor.value)
        name = f"{season.value}_{sensor.value}_{int(scene)}_p{int(patch)}.tif"
        return self.root / season.value / f"{sensor.value}_{int(scene)}" / name

    def check_season(self, season: "Season | str") -> Path:
        """Return the season folder or raise naming it."""
        folder = self.season_dir(season)
        if not folder.is_dir():
            raise DatasetNotFoundError(f"season folder not found: {folder}")
        return folder

    def _missing(self, path: Path) -> DatasetNotFoundError:
        """Explain which part of ``path`` (season folder, sensor folder, file) is missing."""
        season_dir, sensor_dir = path.parent.parent, path.parent
        if not self.root.is_dir():
            return DatasetNotFoundError(f"dataset root not found: {self.root}")
        if not season_dir.is_dir():
            return DatasetNotFoundError(f"season folder not found: {season_dir} (needed for {path})")
        if not sensor_dir.is_dir():
            return DatasetNotFoundError(f"sensor folder not found: {sensor_dir} (needed for {path})")
        return DatasetNotFoundError(f"patch file not found: {path}")

    def read(
        self,
        season: "Season | str",
        scene: int,
        patch: int,
        sensor: "Sensor | str",
        bands: Optional[Union[str, Sequence[str]]] = None,
        window: Optional[WindowLike] = None,
    ) -> Tuple[np.ndarray, PatchGeo]:
        """Read ``(C, H, W)`` in file units (dtype as on disk) and its georeferencing.

        ``bands``: band names (see :data:`data.bands.SENSORS`), default all, in file order.
        ``window``: only this part of the patch is read; the returned transform and
        bounds are those of the window.
        """
        sensor = Sensor(sensor if not isinstance(sensor, Sensor) else sensor.value)
        spec = SENSORS[sensor]
        path = self.path(season, scene, patch, sensor)
        if isinstance(bands, str):
            bands = [bands]
        indexes = None if bands is None else [spec.index(b) + 1 for b in bands]
        win = _as_window(window)
        if not path.is_file():
            raise self._missing(path)
        try:
            with rasterio.open(path) as src:
                if src.count != spec.count:
                    raise DatasetError(
                        f"{path}: expected {spec.count} band(s) for {sensor.value} "
                        f"({', '.join(spec.bands)}), found {src.count}"
                    )
                if win is not None:
                    if (win.col_off < 0 or win.row_off < 0 or win.width <= 0 or win.height <= 0
                            or win.col_off + win.width > src.width
                            or win.row_off + win.height > src.height):
                        raise DatasetError(
                            f"{path}: window {win} outside the {src.height}x{src.width} raster"
                        )
                    transform = src.transform @ Affine.translation(win.col_off, win.row_off)
                    bounds = _bounds(transform, win.width, win.height)
                else:
                    transform, bounds = src.transform, src.bounds
                array = src.read(indexes if indexes is not None else None, window=win)
                geo = PatchGeo(src.crs, transform, bounds, (int(array.shape[1]), int(array.shape[2])))
        except DatasetError:
            raise
        except (RasterioError, OSError) as err:
            raise DatasetError(f"{path}: cannot read GeoTIFF, corrupt or truncated file ({err})") from err
        return array, geo
