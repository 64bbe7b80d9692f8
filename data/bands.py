"""Band and season metadata for SEN12MS / DFC2020, kept as data.

Every sensor of a patch is one GeoTIFF; :data:`SENSORS` says how many bands it
has, their names and order, the on-disk dtype, a typical value range and the
clip range the dataset applies (``None``: no clipping).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional, Tuple

__all__ = [
    "Season",
    "Sensor",
    "SensorSpec",
    "S1_BANDS",
    "S2_BANDS",
    "LC_BANDS",
    "DFC_BANDS",
    "S2_WAVELENGTH_NM",
    "S2_RESOLUTION_M",
    "S2_RGB",
    "SENSORS",
    "SEN12MS_SEASONS",
    "DFC2020_SEASONS",
    "PATCH_SIZE",
    "PIXEL_SIZE_M",
    "parse_season",
]

PATCH_SIZE = 256
"""Height and width of every SEN12MS / DFC2020 patch in pixels."""

PIXEL_SIZE_M = 10.0
"""Ground sampling distance of the patches (all sensors resampled to 10 m)."""


class Season(Enum):
    """Top-level folders of the data root; ``value`` is the folder name.

    The observation CSVs name them ``Seasons.<MEMBER>`` (the original's enum
    was called ``Seasons``). The original also had ``*_DFC`` members for
    ``ROIs0000_{autumn,spring,summer,winter}`` folders, which the public
    DFC2020 release does not contain; here the DFC2020 data is the
    ``VALSET`` and ``TESTSET`` folders only.
    """

    SPRING = "ROIs1158_spring"
    SUMMER = "ROIs1868_summer"
    FALL = "ROIs1970_fall"
    WINTER = "ROIs2017_winter"
    VALSET = "ROIs0000_validation"
    TESTSET = "ROIs0000_test"

    @property
    def is_dfc2020(self) -> bool:
        """True for the DFC2020 folders, which also hold a ``dfc`` map."""
        return self in DFC2020_SEASONS

    @property
    def csv_name(self) -> str:
        """How an observation CSV writes this season, e.g. ``Seasons.VALSET``."""
        return f"Seasons.{self.name}"


SEN12MS_SEASONS: Tuple[Season, ...] = (Season.SPRING, Season.SUMMER, Season.FALL, Season.WINTER)
DFC2020_SEASONS: Tuple[Season, ...] = (Season.VALSET, Season.TESTSET)


def parse_season(text: "str | Season") -> Season:
    """Parse ``Seasons.VALSET``, ``VALSET``, ``ROIs0000_validation`` or a :class:`Season`."""
    if isinstance(text, Season):
        return text
    name = str(text).strip()
    if name.startswith("Seasons.") or name.startswith("Season."):
        name = name.split(".", 1)[1]
    if name in Season.__members__:
        return Season[name]
    for season in Season:
        if season.value == name:
            return season
    valid = ", ".join(s.csv_name for s in Season)
    raise ValueError(f"unknown season {text!r}; expected one of {valid} or a folder name")


class Sensor(Enum):
    """Sensors of a patch; ``value`` is the folder / file-name prefix."""

    s1 = "s1"
    s2 = "s2"
    lc = "lc"
    dfc = "dfc"


@dataclass(frozen=True)
class SensorSpec:
    """On-disk description of one sensor's GeoTIFF."""

    sensor: Sensor
    bands: Tuple[str, ...]
    dtype: str
    typical_range: Tuple[float, float]
    clip_range: Optional[Tuple[float, float]]
    description: str
    may_contain_nan: bool = False

    @property
    def count(self) -> int:
        """Number of bands the file must have."""
        return len(self.bands)

    def index(self, band: str) -> int:
        """Zero-based position of ``band`` in the file."""
        try:
            return self.bands.index(band)
        except ValueError:
            raise ValueError(
                f"unknown {self.sensor.value} band {band!r}; expected one of {', '.join(self.bands)}"
            ) from None


S1_BANDS: Tuple[str, ...] = ("VV", "VH")
S2_BANDS: Tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07",
    "B08", "B8A", "B09", "B10", "B11", "B12",
)
LC_BANDS: Tuple[str, ...] = ("IGBP", "LCCS_LC", "LCCS_LU", "LCCS_SH")
DFC_BANDS: Tuple[str, ...] = ("DFC",)

S2_WAVELENGTH_NM: Tuple[int, ...] = (443, 490, 560, 665, 705, 740, 783, 842, 865, 945, 1375, 1610, 2190)
"""Central wavelength of each S2 band (same order as :data:`S2_BANDS`)."""

S2_RESOLUTION_M: Tuple[int, ...] = (60, 10, 10, 10, 20, 20, 20, 10, 20, 60, 60, 20, 20)
"""Native resolution of each S2 band before SEN12MS resampled all to 10 m."""

S2_RGB: Tuple[str, str, str] = ("B04", "B03", "B02")

SENSORS = {
    Sensor.s1: SensorSpec(
        Sensor.s1, S1_BANDS, "float32", (-50.0, 10.0), (-25.0, 0.0),
        "Sentinel-1 GRD backscatter in dB", may_contain_nan=True,
    ),
    Sensor.s2: SensorSpec(
        Sensor.s2, S2_BANDS, "uint16", (0.0, 12000.0), (0.0, 10000.0),
        "Sentinel-2 L1C top-of-atmosphere reflectance x 10000",
    ),
    Sensor.lc: SensorSpec(
        Sensor.lc, LC_BANDS, "uint16", (1.0, 17.0), None,
        "MODIS land cover (500 m): band 1 IGBP 1-17, then LCCS land cover / land use / hydrology",
    ),
    Sensor.dfc: SensorSpec(
        Sensor.dfc, DFC_BANDS, "uint16", (1.0, 10.0), None,
        "DFC2020 high-resolution land cover, classes 1-10",
    ),
}
"""Per-sensor :class:`SensorSpec`."""
