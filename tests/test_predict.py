"""Whole-scene prediction (predict.py, inference/) on small generated UTM scenes.

Toy models make the expected map a known function of the input: class ``k`` is encoded by
three "bit" bands that are either 0 or one constant value, so after the per-window,
per-band max normalisation they are exactly 0 or 1 in every window, and a 1x1 convolution
with weights ``2 bit - 1`` and bias ``-popcount(k)`` scores ``-hamming(k, bits)``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from data.bands import S2_BANDS  # noqa: E402
from inference import areas, products, scene, sentinel1, sources, windows  # noqa: E402

UTM = CRS.from_epsg(32632)


def from_origin(west, north, xres, yres):
    """North-up transform (rasterio's helper, without its Affine-product deprecation warning)."""
    return Affine(xres, 0.0, west, 0.0, -yres, north)


ORIGIN = (600000.0, 5200000.0)
H, W = 500, 600
NODATA_BOX = (slice(10, 40), slice(500, 560))
BIT_BANDS = (1, 2, 3)  # B02, B03, B04 carry the class bits


# ----------------------------------------------------------------------------- helpers


def label_pattern(h=H, w=W):
    """Classes 0-7 in blocks and diagonals that cross every window border."""
    y, x = np.mgrid[:h, :w]
    return (((y // 37) * 3 + (x // 53) + ((x + y) // 97)) % 8).astype(np.uint8)


def bit_scene(labels, seed=0):
    """A 13-band uint16 S2 array whose bit bands encode ``labels``; other bands are noise."""
    rng = np.random.default_rng(seed)
    s2 = rng.integers(100, 3000, (13,) + labels.shape).astype(np.uint16)
    s2[0] = 1000
    for j, b in enumerate(BIT_BANDS):
        s2[b] = 5000 * ((labels.astype(np.uint16) >> j) & 1)
    return s2


class BitSegmenter(torch.nn.Module):
    """Per-pixel logits -hamming(k, bits of the bit bands) (+ optionally S1 VV as bit 2)."""

    def __init__(self, s1_bit=False):
        super().__init__()
        self.s1_bit = s1_bit
        self.conv = torch.nn.Conv2d(15, 8, 1)
        w = torch.zeros(8, 15)
        for k in range(8):
            for j in range(3):
                band = 2 + BIT_BANDS[j] if not (s1_bit and j == 2) else 0  # S1 VV is channel 0
                w[k, band] = 2 * ((k >> j) & 1) - 1
        self.conv.weight.data = w[:, :, None, None]
        self.conv.bias.data = torch.tensor([-float(bin(k).count("1")) for k in range(8)])

    def forward(self, batch):
        return self.conv(torch.cat([batch["s1"], batch["s2"]], dim=1))


class CentreClassifier(torch.nn.Module):
    """Classification logits = the BitSegmenter logits of the window's centre pixel."""

    def __init__(self):
        super().__init__()
        self.seg = BitSegmenter()

    def forward(self, batch):
        out = self.seg(batch)
        return out[:, :, out.shape[2] // 2, out.shape[3] // 2]


def write_tif(path, array, transform, crs=UTM, nodata=None):
    """GeoTIFF, or lossless JPEG2000 (as in Sentinel-2 SAFE products) for a ``.jp2`` path."""
    array = np.asarray(array)
    jp2 = str(path).endswith(".jp2")
    options = dict(driver="JP2OpenJPEG", QUALITY="100", REVERSIBLE="YES") if jp2 else dict(driver="GTiff")
    with rasterio.open(path, "w", width=array.shape[2], height=array.shape[1],
                       count=array.shape[0], dtype=array.dtype, crs=crs, transform=transform,
                       nodata=nodata, **options) as ds:
        ds.write(array)
    return str(path)


def grid(h=H, w=W, res=10.0):
    return sources.Grid(UTM, from_origin(*ORIGIN, res, res), w, h)


def expected_map(labels):
    exp = labels.copy()
    exp[NODATA_BOX] = 255
    return exp


@pytest.fixture(scope="module")
def s2_scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("scene")
    labels = label_pattern()
    s2 = bit_scene(labels)
    s2[(slice(None),) + NODATA_BOX] = 0
    path = write_tif(d / "S2.tif", s2, from_origin(*ORIGIN, 10, 10))
    return {"dir": d, "labels": labels, "s2": s2, "path": path}


# ----------------------------------------------------------------------------- windows & weights


def test_window_layout():
    assert windows.window_stride(224, 0.5) == 112
    assert windows.window_starts(500, 224, 112) == [0, 112, 224, 276]   # last one shifted inward
    assert windows.window_starts(448, 224, 224) == [0, 224]
    assert windows.window_starts(100, 224, 112) == [0]
    for size, stride in [(600, 112), (500, 112), (1000, 224), (225, 1), (224, 100)]:
        starts = windows.window_starts(size, 224, stride)
        covered = np.zeros(size, bool)
        for s in starts:
            covered[s:s + 224] = True
        assert covered.all() and starts[-1] + 224 == size
        b = windows.cell_bounds(starts, 224, size)
        assert b[0] == 0 and b[-1] == size and np.all(np.diff(b) > 0)
        for j, s in enumerate(starts):                               # each cell inside its window
            assert s <= b[j] and b[j + 1] <= s + 224
    with pytest.raises(ValueError):
        windows.window_stride(224, 1.0)
    w = windows.blend_weights(224)
    assert w.min() > 0 and np.isclose(w.max(), 1.0, atol=1e-3)
    np.testing.assert_allclose(w, w.T)


# ----------------------------------------------------------------------------- segmentation


def test_known_function_is_reproduced_seam_free_and_aligned(s2_scene, tmp_path):
    out, probs = tmp_path / "map.tif", tmp_path / "probs.tif"
    with products.open_s2(s2_scene["path"]) as s2:
        res = scene.predict_scene(BitSegmenter(), s2, out_path=out, probabilities_path=probs,
                                  batch_size=3, progress=False)
    assert res.mode == "segmentation" and res.windows == 4 * 5   # rows 0,112,224,276; cols 0,112,224,336,376
    exp = expected_map(s2_scene["labels"])
    with rasterio.open(s2_scene["path"]) as src, rasterio.open(out) as ds:
        assert (ds.crs, ds.transform, ds.width, ds.height) == (src.crs, src.transform, src.width, src.height)
        assert ds.count == 1 and ds.dtypes[0] == "uint8" and ds.nodata == 255
        assert ds.profile["tiled"] and ds.profile["compress"] == "deflate"
        tags = ds.tags()
        names = json.loads(tags["CLASS_NAMES"])
        assert len(names) == 8 and tags["CLASS_0"] == names[0]
        cmap = ds.colormap(1)
        assert all(cmap[i][3] == 255 for i in range(8))
        got = ds.read(1)
    # everywhere -- window borders (multiples of 112 px) and scene edges included
    np.testing.assert_array_equal(got, exp)
    with rasterio.open(probs) as ds:
        assert ds.count == 8 and ds.dtypes[0] == "float32" and ds.transform == src.transform
        p = ds.read()
    assert np.isnan(p[(slice(None),) + NODATA_BOX]).all()
    valid = exp != 255
    np.testing.assert_allclose(p[:, valid].sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(p[:, valid].argmax(0), exp[valid])
    # per-class area: 10 m pixels are 1e-4 km²
    counts = np.bincount(exp[valid], minlength=8)
    np.testing.assert_array_equal(res.pixel_counts, counts)
    np.testing.assert_allclose(res.area_m2 / 1e6, counts * 1e-4)
    assert res.nodata_pixels == 30 * 60


class ConstantLogits(torch.nn.Module):
    """Logits that depend only on the window's content statistics -> every window differs."""

    def forward(self, batch):
        s2 = batch["s2"]
        b, _, h, w = s2.shape
        base = torch.arange(8.0).view(1, 8, 1, 1) * 0.1
        # a per-window offset (mean of band B05) so neighbouring windows disagree
        off = s2[:, 4].mean(dim=(1, 2)).view(b, 1, 1, 1) * torch.linspace(-1, 1, 8).view(1, 8, 1, 1)
        return (base + off).expand(b, 8, h, w)


def test_blending_is_a_normalised_smooth_mean(s2_scene):
    g = grid()
    s2 = s2_scene["s2"].astype(np.float32)
    s2[4] = np.linspace(0, 1, W)[None, :] * np.linspace(1, 3, H)[:, None] * 1000 + 500
    res = scene.predict_scene(ConstantLogits(), sources.ArraySource(s2, g), progress=False,
                              return_probabilities=True)
    p = res.probabilities
    valid = expected_map(s2_scene["labels"]) != 255
    np.testing.assert_allclose(np.nansum(p, 0)[valid], 1.0, atol=1e-5)
    # windows disagree, yet the blended field has no jumps: neighbouring pixels differ by far
    # less than the difference between the window outputs themselves
    q = np.nan_to_num(p[0])
    jumps = max(np.abs(np.diff(q, axis=0))[1:-1, :].max(), np.abs(np.diff(q, axis=1))[:, 1:-1].max())
    assert q[valid].max() - q[valid].min() > 0.002
    assert jumps < 0.25 * (q[valid].max() - q[valid].min())


def test_small_scene_is_padded_and_masked():
    labels = label_pattern(150, 130)
    s2 = bit_scene(labels)
    res = scene.predict_scene(BitSegmenter(), sources.ArraySource(s2, grid(150, 130)), progress=False)
    assert res.windows == 1 and res.labels.shape == (150, 130)
    np.testing.assert_array_equal(res.labels, labels)


def test_predict_scene_settings_are_checked_before_anything_runs(tmp_path):
    """Window and output keywords are validated up front (WindowOptions, OutputOptions); a typo is an error."""
    src = sources.ArraySource(bit_scene(label_pattern(150, 130)), grid(150, 130))
    with pytest.raises(TypeError, match="overlapp"):
        scene.predict_scene(BitSegmenter(), src, overlapp=0.25, progress=False)
    for bad, match in (({"precision": "fp16"}, "precision"), ({"blend": "mean"}, "blend"),
                       ({"probabilities_dtype": "int8"}, "probabilities_dtype"), ({"batch_size": 0}, "positive")):
        with pytest.raises(ValueError, match=match):
            scene.predict_scene(BitSegmenter(), src, out_path=tmp_path / "m.tif", progress=False, **bad)
    assert not (tmp_path / "m.tif").exists()
    window, outputs = scene.split_settings({"overlap": 0.25, "out_path": "m.tif", "tags": None})
    assert window.overlap == 0.25 and outputs.keep_in_memory is False and outputs.tags == {}


def test_s1_nan_and_zero_s2_are_nodata(s2_scene):
    s1 = np.full((2, H, W), -10.0, np.float32)
    s1[0, 300:320, 5:25] = np.nan
    res = scene.predict_scene(BitSegmenter(), sources.ArraySource(s2_scene["s2"], grid()),
                              sources.ArraySource(s1, grid()), progress=False)
    exp = expected_map(s2_scene["labels"])
    exp[300:320, 5:25] = 255
    np.testing.assert_array_equal(res.labels, exp)
    assert res.nodata_pixels == 30 * 60 + 20 * 20


# ----------------------------------------------------------------------------- classification


def test_classification_model_paints_stride_cells(s2_scene, tmp_path):
    out = tmp_path / "cls.tif"
    with products.open_s2(s2_scene["path"]) as s2:
        res = scene.predict_scene(CentreClassifier(), s2, out_path=out, progress=False)
    assert res.mode == "classification"
    with rasterio.open(out) as ds:
        got = ds.read(1)
        assert ds.tags()["PREDICTION_MODE"] == "classification" and ds.transform == grid().transform
    labels = s2_scene["labels"]
    rows, cols = windows.window_starts(H, 224, 112), windows.window_starts(W, 224, 112)

    def nearest(size, starts):  # independent of cell_bounds: nearest window centre, ties -> later
        centres = np.asarray(starts) + 112.0
        d = np.abs(np.arange(size)[:, None] + 0.5 - centres[None, :])
        return len(starts) - 1 - np.argmin(d[:, ::-1], axis=1)

    ri, ci = nearest(H, rows), nearest(W, cols)
    r0, c0 = np.asarray(rows)[ri] + 112, np.asarray(cols)[ci] + 112
    exp = labels[r0[:, None], c0[None, :]]
    exp[NODATA_BOX] = 255
    np.testing.assert_array_equal(got, exp)


# ----------------------------------------------------------------------------- S2 band folder


with rasterio.Env() as _env:
    HAS_JP2 = "JP2OpenJPEG" in _env.drivers()

RES = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10,
       "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20}


def write_band_folder(folder, h=480, w=600, seed=1, skip=()):
    """Per-band files at 10/20/60 m from a 13-band stack that is constant on 4x4 blocks of
    each band's own pixels (so nearest resampling is exact everywhere, bilinear in the interior)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    stack = np.empty((13, h, w), np.uint16)
    for i, band in enumerate(S2_BANDS):
        f = RES[band] // 10
        ch, cw = h // f, w // f
        blocks = rng.integers(1, 10000, (-(-ch // 4), -(-cw // 4))).astype(np.uint16)
        coarse = np.kron(blocks, np.ones((4, 4), np.uint16))[:ch, :cw]
        stack[i] = np.kron(coarse, np.ones((f, f), np.uint16))
        if band not in skip:
            ext = "jp2" if band in ("B8A", "B03") and HAS_JP2 else "tif"   # a mix, like user folders
            write_tif(folder / f"T32TMT_20200601T103031_{band}.{ext}", coarse[None],
                      from_origin(*ORIGIN, RES[band], RES[band]))
    return stack


def test_band_folder_reproduces_the_stacked_array(tmp_path):
    stack = write_band_folder(tmp_path / "IMG_DATA")
    with products.open_s2(tmp_path / "IMG_DATA", resampling="nearest") as src:
        assert src.grid.same_as(grid(480, 600)) and src.reference_band == "B02"
        np.testing.assert_array_equal(src.read(0, 0, 480, 600), stack)
        np.testing.assert_array_equal(src.read(101, 37, 224, 224), stack[:, 101:325, 37:261])
    # bilinear (the default): exact wherever a band's 3x3 coarse neighbourhood is constant
    with products.open_s2(tmp_path) as src:   # found recursively below tmp_path
        got = src.read(0, 0, 480, 600)
    for i, band in enumerate(S2_BANDS):
        f = RES[band] // 10
        if f == 1:
            np.testing.assert_array_equal(got[i], stack[i])
            continue
        c = stack[i, ::f, ::f].astype(np.int64)
        pad = np.pad(c, 1, mode="edge")
        win = np.stack([pad[dy:dy + c.shape[0], dx:dx + c.shape[1]] for dy in range(3) for dx in range(3)])
        flat = np.kron((win.min(0) == win.max(0)), np.ones((f, f), bool))
        assert flat.mean() > 0.15
        np.testing.assert_allclose(got[i][flat], stack[i][flat], atol=0.5)


def test_band_folder_missing_band_is_named(tmp_path):
    write_band_folder(tmp_path / "bands", h=120, w=120, skip=("B10",))
    with pytest.raises(FileNotFoundError, match=r"B10") as err:
        products.open_s2(tmp_path / "bands")
    assert str(tmp_path / "bands") in str(err.value)


# ----------------------------------------------------------------------------- S1 grids & errors


def test_s1_on_another_grid_is_reprojected(s2_scene, tmp_path):
    labels = s2_scene["labels"]
    # S1 at 20 m, origin shifted by 2 coarse pixels, covering only part of the S2 scene;
    # its VV carries bit 2 of the classes (0 dB = 1, -25 dB = 0), B04 is zeroed
    s2 = s2_scene["s2"].copy()
    s2[BIT_BANDS[2]] = 0
    s2[0] = 1000  # keep pixels valid
    s2[(slice(None),) + NODATA_BOX] = 0
    s2_path = write_tif(tmp_path / "S2_bits01.tif", s2, from_origin(*ORIGIN, 10, 10))
    ch, cw = 230, 280                                     # 460 x 560 px at 10 m, rows/cols 40..
    coarse_labels = labels[40:40 + 2 * ch:2, 40:40 + 2 * cw:2]
    vv = np.where((coarse_labels >> 2) & 1, 0.0, -25.0).astype(np.float32)
    s1 = np.stack([vv, np.full_like(vv, -15.0)])
    s1_path = write_tif(tmp_path / "S1_20m.tif", s1, from_origin(ORIGIN[0] + 400, ORIGIN[1] - 400, 20, 20))
    with products.open_s2(s2_path) as s2src, sentinel1.open_s1(s1_path, s2src.grid, resampling="nearest") as s1src:
        assert s1src.warped and s1src.grid == grid()      # the S2 grid, not S1's own 20 m grid
        up = s1src.read(0, 0, H, W)
        inside = (slice(40, 500), slice(40, 600))
        np.testing.assert_array_equal(up[(0,) + inside], np.kron(vv, np.ones((2, 2), np.float32))[:460, :560])
        assert np.isnan(up[:, :40]).all() and np.isnan(up[:, :, :40]).all()
        res = scene.predict_scene(BitSegmenter(s1_bit=True), s2src, s1src, progress=False)
    exp = np.full((H, W), 255, np.uint8)
    ref = labels.copy()
    # bit 2 of the class comes from the 20 m S1 pixel (nearest) -> block-wise
    s1_bit = np.kron((coarse_labels >> 2) & 1, np.ones((2, 2), np.uint8))[:460, :560]
    ref[inside] = (ref[inside] & 3) | (s1_bit << 2)
    exp[inside] = ref[inside]
    exp[NODATA_BOX] = 255
    np.testing.assert_array_equal(res.labels, exp)


def test_s1_in_another_crs_with_overlap_is_accepted(s2_scene, tmp_path):
    from rasterio.warp import transform_bounds
    l, b, r, t = transform_bounds(UTM, "EPSG:4326", *grid().bounds)
    s1 = np.full((2, 60, 80), -12.0, np.float32)
    s1_path = write_tif(tmp_path / "S1_wgs84.tif", s1,
                        from_origin(l - 0.001, t + 0.001, (r - l + 0.002) / 80, (t - b + 0.002) / 60),
                        crs=CRS.from_epsg(4326))
    with sentinel1.open_s1(s1_path, grid()) as s1src:
        v = s1src.read(0, 0, H, W)
    assert np.isfinite(v).all() and np.allclose(v, -12.0)


def test_errors_name_the_file(s2_scene, tmp_path):
    g = grid()
    far = write_tif(tmp_path / "S1_far.tif", np.zeros((2, 50, 50), np.float32),
                    from_origin(300000, 4000000, 10, 10), crs=CRS.from_epsg(32633))
    with pytest.raises(ValueError, match="S1_far.tif.*does not overlap"):
        sentinel1.open_s1(far, g)
    three = write_tif(tmp_path / "S1_three.tif", np.zeros((3, 50, 50), np.float32), from_origin(*ORIGIN, 10, 10))
    with pytest.raises(ValueError, match=r"S1_three.tif: expected 2 bands.*found 3"):
        sentinel1.open_s1(three, g)
    twelve = write_tif(tmp_path / "S2_l2a.tif", np.ones((12, 50, 50), np.uint16), from_origin(*ORIGIN, 10, 10))
    with pytest.raises(ValueError, match=r"S2_l2a.tif: expected 13 bands, found 12"):
        products.open_s2(twelve)
    with pytest.raises(FileNotFoundError, match="nope.tif"):
        products.open_s2(tmp_path / "nope.tif")


# ----------------------------------------------------------------------------- CLI


def _toy_factory(name, num_classes=8, checkpoint=None, **options):
    assert name == "ToyBits" and num_classes == 8
    model = BitSegmenter()
    model.load_state_dict(checkpoint["model_weights"])
    return model


def test_cli_writes_map_probabilities_preview_summary(s2_scene, tmp_path, monkeypatch, capsys):
    """predict.main end to end with a toy model registered in the factory (in-process)."""
    import models
    import predict
    monkeypatch.setattr(models, "create_model", _toy_factory, raising=False)
    ckpt = tmp_path / "toy.pt"
    torch.save({"model_name": "ToyBits", "model_options": {"s1_input_channels": 0},
                "model_weights": BitSegmenter().state_dict(), "epochs": 3}, ckpt)
    out = tmp_path / "out" / "map.tif"
    argv = ["--checkpoint", str(ckpt), "--s2", s2_scene["path"], "--out", str(out),
            "--probabilities", str(tmp_path / "out" / "p.tif"), "--preview", str(tmp_path / "out" / "map.png"),
            "--summary", str(tmp_path / "out" / "summary.json"), "--device", "auto", "--batch_size", "5",
            "--no_progress"]
    timings = {}
    assert predict.predict(predict.get_args_parser().parse_args(argv), timings=timings) == 0
    assert set(timings) == {"read", "normalise", "inference", "blend", "write", "cog"}   # benchmarks/scene.py
    assert all(v >= 0 for v in timings.values()) and timings["cog"] > 0
    printed = capsys.readouterr().out
    assert "Forest" in printed and "km²" in printed
    with rasterio.open(out) as ds:
        np.testing.assert_array_equal(ds.read(1), expected_map(s2_scene["labels"]))
        assert ds.tags()["MODEL"] == "ToyBits"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["crs"] == "EPSG:32632" and summary["width"] == W and summary["height"] == H
    counts = np.bincount(s2_scene["labels"][expected_map(s2_scene["labels"]) != 255], minlength=8)
    assert [c["pixels"] for c in summary["classes"]] == counts.tolist()
    assert abs(summary["valid_area_km2"] - counts.sum() * 1e-4) < 1e-9
    assert (tmp_path / "out" / "map.png").stat().st_size > 1000
    # a model that uses S1 needs --s1
    torch.save({"model_name": "ToyBits", "model_options": {},
                "model_weights": BitSegmenter().state_dict()}, ckpt)
    with pytest.raises(SystemExit, match="--s1"):
        predict.main(argv + ["--overwrite"])
    # an original-style checkpoint without model_name needs --model
    torch.save({"model_weights": BitSegmenter().state_dict()}, ckpt)
    with pytest.raises(SystemExit, match="--model"):
        predict.main(argv + ["--overwrite"])


def _run_cli(tmp_path, ckpt, h, w, extra=()):
    labels = label_pattern(h, w)
    s2 = bit_scene(labels, seed=5)
    s2[:, :7, :9] = 0                                            # a no-data corner
    s1 = np.random.default_rng(6).uniform(-30, 3, (2, h, w)).astype(np.float32)
    s2_path = write_tif(tmp_path / "S2.tif", s2, from_origin(*ORIGIN, 10, 10))
    s1_path = write_tif(tmp_path / "S1.tif", s1, from_origin(*ORIGIN, 10, 10))
    out = tmp_path / "map.tif"
    cmd = [sys.executable, str(ROOT / "predict.py"), "--checkpoint", str(ckpt), "--s2", s2_path, "--s1", s1_path,
           "--out", str(out), "--summary", str(tmp_path / "s.json"), "--device", "cpu", *extra]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    with rasterio.open(out) as ds:
        assert (ds.width, ds.height, ds.transform, ds.crs) == (w, h, from_origin(*ORIGIN, 10, 10), UTM)
        m = ds.read(1)
    assert (m[:7, :9] == 255).all() and m[7:, 9:].max() < 8
    return proc, m, s1, s2, json.loads((tmp_path / "s.json").read_text())


@pytest.mark.slow
def test_cli_subprocess_segmentation_checkpoint(tmp_path):
    """`python predict.py` as a user runs it, on a DoubleSwinTransformerSegmentation checkpoint
    written by models.downstream_checkpoint (model name and options read from it)."""
    from models import create_model, downstream_checkpoint, save_checkpoint
    torch.manual_seed(0)
    model = create_model("DoubleSwinTransformerSegmentation", num_classes=8)
    save_checkpoint(downstream_checkpoint(model, epochs=1), tmp_path / "seg.pth")
    del model
    proc, m, *_, summary = _run_cli(tmp_path, tmp_path / "seg.pth", 224, 250,
                                    ["--batch_size", "2", "--preview", str(tmp_path / "map.png")])
    assert "segmentation map written" in proc.stdout and summary["mode"] == "segmentation"
    assert summary["windows"] == 2 and (tmp_path / "map.png").is_file()


@pytest.mark.slow
def test_cli_subprocess_classification_checkpoint_matches_direct_forward(tmp_path):
    """A ResNet18 (early fusion) classifier checkpoint: per-window labels; with a single window
    the label equals argmax(model(preprocess(window))), i.e. the training normalisation."""
    from data.transforms import preprocess_s1, preprocess_s2
    from models import create_model, downstream_checkpoint, load_model, save_checkpoint
    torch.manual_seed(0)
    save_checkpoint(downstream_checkpoint(create_model("resnet18", num_classes=8)), tmp_path / "cls.pth")
    proc, m, s1, s2, summary = _run_cli(tmp_path, tmp_path / "cls.pth", 224, 224)
    assert "classification map written" in proc.stdout and summary["mode"] == "classification"
    model = load_model(tmp_path / "cls.pth").eval()
    with torch.no_grad():
        logits = model({"s1": torch.from_numpy(preprocess_s1(s1))[None],
                        "s2": torch.from_numpy(preprocess_s2(s2))[None]})
    assert (m[7:, 9:] == int(logits.argmax(1))).all()


def test_pixel_area_projected_and_geographic():
    assert areas.pixel_area_m2(from_origin(*ORIGIN, 10, 10), UTM, 0, 3).tolist() == [100.0] * 3
    # 0.001° cells at the equator: ~111.2 m x 111.2 m; at 60° N half as wide
    eq = areas.pixel_area_m2(from_origin(10.0, 0.0005, 0.001, 0.001), CRS.from_epsg(4326), 0, 1)[0]
    n60 = areas.pixel_area_m2(from_origin(10.0, 60.0005, 0.001, 0.001), CRS.from_epsg(4326), 0, 1)[0]
    assert abs(eq - 111.2 ** 2) / eq < 0.01 and abs(n60 / eq - 0.5) < 0.01


def test_device_choice():
    import predict
    assert predict.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert predict.resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="CUDA is not available"):
            predict.resolve_device("cuda")


# ----------------------------------------------------------------------------- outputs never destroy inputs


def _inputs(tmp_path, s2_scene):
    """Copies of the inputs: S2 GeoTIFF, S1 GeoTIFF, a band folder, a toy checkpoint."""
    s2 = tmp_path / "in" / "S2.tif"
    s2.parent.mkdir()
    s2.write_bytes(Path(s2_scene["path"]).read_bytes())
    s1 = write_tif(tmp_path / "in" / "S1.tif", np.full((2, H, W), -10.0, np.float32), from_origin(*ORIGIN, 10, 10))
    write_band_folder(tmp_path / "in" / "bands", h=120, w=120)
    ckpt = tmp_path / "in" / "toy.pt"
    torch.save({"model_name": "ToyBits", "model_options": {}, "model_weights": BitSegmenter().state_dict()}, ckpt)
    return {"s2": s2, "s1": Path(s1), "checkpoint": ckpt, "bands": tmp_path / "in" / "bands"}


def _snapshot(folder):
    return {p: p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@pytest.mark.parametrize("flag,onto", [("--out", "s2"), ("--probabilities", "s1"), ("--preview", "checkpoint"),
                                       ("--summary", "s2"), ("--out", "band_file"), ("--out", "bands")])
def test_cli_refuses_to_write_onto_an_input(s2_scene, tmp_path, flag, onto):
    """Even with --overwrite: one line naming the flag and the file, every input byte-identical."""
    import predict
    inp = _inputs(tmp_path, s2_scene)
    s2 = inp["bands"] if onto in ("band_file", "bands") else inp["s2"]
    target = sorted(inp["bands"].glob("*_B04.*"))[0] if onto == "band_file" else inp.get(onto, s2)
    before = _snapshot(tmp_path / "in")
    argv = ["--checkpoint", inp["checkpoint"], "--s2", s2, "--s1", inp["s1"], "--out", tmp_path / "map.tif",
            "--device", "cpu", "--no-progress", "--overwrite", flag, target]
    with pytest.raises(SystemExit) as err:
        predict.main([str(a) for a in argv])
    msg = str(err.value)
    assert msg.startswith("error: ") and "\n" not in msg
    assert f"{flag} {target}" in msg and "input" in msg
    assert _snapshot(tmp_path / "in") == before
    assert not (tmp_path / "map.tif").exists()


@pytest.mark.parametrize("flag", ["--out", "--probabilities", "--preview", "--summary"])
def test_cli_refuses_an_existing_output_without_overwrite(s2_scene, tmp_path, flag):
    import predict
    inp = _inputs(tmp_path, s2_scene)
    outs = {f: tmp_path / "out" / n for f, n in (("--out", "map.tif"), ("--probabilities", "p.tif"),
                                                 ("--preview", "map.png"), ("--summary", "s.json"))}
    outs[flag].parent.mkdir()
    outs[flag].write_bytes(b"an earlier result")
    argv = ["--checkpoint", inp["checkpoint"], "--s2", inp["s2"], "--s1", inp["s1"], "--device", "cpu",
            "--no-progress"] + [a for f, p in outs.items() for a in (f, p)]
    with pytest.raises(SystemExit) as err:
        predict.main([str(a) for a in argv])
    msg = str(err.value)
    assert msg.startswith("error: ") and "\n" not in msg
    assert f"{flag} {outs[flag]}" in msg and "--overwrite" in msg
    assert outs[flag].read_bytes() == b"an earlier result"
    assert [p for f, p in outs.items() if f != flag and p.exists()] == []


def test_cli_overwrite_replaces_an_existing_output(s2_scene, tmp_path, monkeypatch):
    import models
    import predict
    monkeypatch.setattr(models, "create_model", _toy_factory, raising=False)
    ckpt = tmp_path / "toy.pt"
    torch.save({"model_name": "ToyBits", "model_options": {"s1_input_channels": 0},
                "model_weights": BitSegmenter().state_dict()}, ckpt)
    out = tmp_path / "map.tif"
    out.write_bytes(b"an earlier result")
    argv = ["--checkpoint", str(ckpt), "--s2", s2_scene["path"], "--out", str(out), "--device", "cpu",
            "--no_progress", "--overwrite"]
    assert predict.main(argv) == 0
    with rasterio.open(out) as ds:
        np.testing.assert_array_equal(ds.read(1), expected_map(s2_scene["labels"]))


def test_cli_error_is_one_line_with_an_exit_code_from_another_folder(s2_scene, tmp_path):
    """`python /path/predict.py` started in another folder: a refused output is one stderr line, exit 2."""
    s2 = tmp_path / "S2.tif"
    s2.write_bytes(Path(s2_scene["path"]).read_bytes())
    before = s2.read_bytes()
    proc = subprocess.run([sys.executable, str(ROOT / "predict.py"), "--checkpoint", "missing.pt", "--s2", "S2.tif",
                           "--out", "S2.tif"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --out S2.tif is the --s2 input"), proc.stderr
    assert s2.read_bytes() == before


def test_help_shows_real_defaults_and_both_spellings(capsys):
    import predict
    with pytest.raises(SystemExit):
        predict.main(["--help"])
    text = capsys.readouterr().out
    assert "Example::" in text                                   # the description keeps its layout
    assert "(default: 0.25)" in text and "(default: 8)" in text and "(default: None)" not in text
    assert "--no-progress" in text and "--n_classes" in text and "--num_classes" in text
    args = predict.get_args_parser().parse_args(["--checkpoint", "c", "--s2", "s", "--out", "o", "--no_progress",
                                              "--num_classes", "3"])
    assert args.progress is False and args.num_classes == 3
    assert predict.get_args_parser().parse_args(["--checkpoint", "c", "--s2", "s", "--out", "o"]).progress is True


@pytest.mark.parametrize("script", ["predict", "prepare_dataset"])
def test_s2_offset_is_parsed_the_same_way_by_both_scripts(script, capsys):
    """One --s2_offset parser (utils.cli.s2_offset): 'auto' -> None, DN -> float, bad values name the flag."""
    import importlib

    from utils import cli
    parser = importlib.import_module(script).get_args_parser()
    base = ["--checkpoint", "c", "--s2", "s", "--out", "o"] if script == "predict" else ["--s2", "s", "--out", "o"]
    assert parser.parse_args(base + ["--s2_offset", "AUTO"]).s2_offset is None
    assert parser.parse_args(base + ["--s2_offset", "-1000"]).s2_offset == -1000.0
    for bad in ("minus", "20000", "nan"):
        assert cli.run(lambda args: None, parser, base + ["--s2_offset", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "argument --s2_offset" in err[0] and bad in err[0], err
