"""``SEN12MSReader.read_array`` (direct strip reading, the dataset's fast path) equals rasterio.

Every file layout either goes through the direct reader or falls back to rasterio; both must
return exactly what ``SEN12MSReader.read`` returns (values, dtype, shape, errors).
"""
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from data import Season, SEN12MSReader, Sensor
from data.errors import DatasetError
from data.reader import _read_direct, _Unsupported

WINDOWS = [None, Window(16, 16, 224, 224), Window(3, 70, 100, 61), Window(0, 255, 256, 1), (5, 0, 1, 256)]
BANDS = {"s1": [None, "VH", ["VH", "VV"]], "s2": [None, ["B04", "B03", "B02"], "B8A"],
         "lc": [None, ["IGBP"], ["LCCS_SH", "IGBP"]], "dfc": [None, ["DFC"]]}
COUNT = {"s1": 2, "s2": 13, "lc": 4, "dfc": 1}


def _same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape and b.flags.c_contiguous and b.flags.writeable
    assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def _check_all(reader, season, scene, patch, sensors):
    for sensor in sensors:
        for bands in BANDS[sensor]:
            for window in WINDOWS:
                expected, _ = reader.read(season, scene, patch, sensor, bands=bands, window=window)
                _same(expected, reader.read_array(season, scene, patch, sensor, bands=bands, window=window))


def test_fixture_files_read_directly_and_equal(fixture_dir):
    root = fixture_dir / "dfc_fixture" / "data"
    reader = SEN12MSReader(root)
    for sensor in ("s1", "s2", "lc", "dfc"):  # the original's files: all on the direct path
        _read_direct(reader.path(Season.VALSET, 0, 0, sensor), COUNT[sensor], None, None)
    _check_all(reader, Season.VALSET, 0, 0, ["s1", "s2", "lc", "dfc"])


def test_sample_files_equal(sample_root):
    reader = SEN12MSReader(sample_root)
    rows = [line.split(",") for line in (sample_root / "validation_observations.csv").read_text().split()]
    season, scene, patch = rows[-1][0], int(rows[-1][1]), int(rows[-1][2])
    _check_all(reader, season, scene, patch, ["s1", "s2", "lc", "dfc"])


@pytest.mark.parametrize("options,direct", [
    ({"interleave": "pixel", "blockysize": 1}, True),
    ({"interleave": "band", "blockysize": 16}, True),  # planar, several bands
    ({"compress": "deflate", "blockysize": 4}, True),
    ({"compress": "deflate", "predictor": 2, "blockysize": 8}, False),
    ({"compress": "lzw"}, False),
    ({"tiled": True, "blockxsize": 64, "blockysize": 64}, False),
    ({"ENDIANNESS": "BIG"}, False),
    ({"BIGTIFF": "YES"}, False),
])
def test_layouts_direct_or_fallback_equal(tmp_path, options, direct):
    reader = SEN12MSReader(tmp_path)
    path = reader.path(Season.VALSET, 0, 7, Sensor.s1)
    path.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = rng.normal(-12, 5, (2, 256, 256)).astype(np.float32)
    data[0, 3, :9] = np.nan
    profile = dict(driver="GTiff", width=256, height=256, count=2, dtype="float32", crs="EPSG:32632",
                   transform=Affine(10, 0, 300000, 0, -10, 5600000), **options)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    if direct:
        _same(data, _read_direct(path, 2, None, None))
    else:
        with pytest.raises(_Unsupported):
            _read_direct(path, 2, None, None)
    _check_all(reader, Season.VALSET, 0, 7, ["s1"])


def test_errors_are_rasterio_errors(tmp_path, fixture_dir):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(fixture_dir / "dfc_fixture" / "data", root)
    reader = SEN12MSReader(root)
    path = reader.path(Season.VALSET, 0, 0, Sensor.s2)
    path.write_bytes(path.read_bytes()[:500_000])
    with pytest.raises(DatasetError, match="corrupt or truncated"):
        reader.read_array(Season.VALSET, 0, 0, Sensor.s2)
    with pytest.raises(DatasetError, match="outside"):
        reader.read_array(Season.VALSET, 0, 0, Sensor.s1, window=(200, 0, 100, 100))
    with pytest.raises(ValueError, match="unknown s2 band"):
        reader.read_array(Season.VALSET, 0, 0, Sensor.s2, bands=["B13"])
    path.unlink()
    with pytest.raises(FileNotFoundError, match="patch file not found"):
        reader.read_array(Season.VALSET, 0, 0, Sensor.s2)
