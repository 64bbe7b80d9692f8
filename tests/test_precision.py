"""bf16 where the hardware runs it natively (``utils.hardware``), ``predict.py --precision``, the demo's
and the training scripts' precision choices, and the SwinUNet head's faster formulation (same outputs).

No timings are asserted: speed lives in ``benchmarks/`` (docs/performance.md).
"""
import argparse
import contextlib

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from rasterio.crs import CRS
from rasterio.transform import Affine

from utils import hardware

X86_AVX2 = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\nmodel name\t: AMD EPYC\n"
X86_BF16 = "flags\t\t: fpu avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
X86_AMX = "flags\t\t: fpu avx2 avx512f amx_tile amx_bf16 amx_int8\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
ARM_OLD = "Features\t: fp asimd evtstrm aes crc32\n"


# ----------------------------------------------------------------------------- detection


def test_cpu_flags_are_read_from_cpuinfo_lines():
    assert {"avx2", "fma"} <= hardware.cpu_flags(X86_AVX2) and "avx512_bf16" not in hardware.cpu_flags(X86_AVX2)
    assert "bf16" in hardware.cpu_flags(ARM_BF16)
    assert hardware.cpu_flags("model name : something\n") == frozenset()


@pytest.mark.parametrize("cpuinfo, machine, native", [
    (X86_AVX2, "x86_64", False), (X86_BF16, "x86_64", True), (X86_AMX, "x86_64", True),
    (ARM_BF16, "aarch64", True), (ARM_OLD, "aarch64", False),
    (ARM_BF16, "x86_64", False),      # an x86 CPU needs an x86 flag: "bf16" alone says nothing there
])
def test_cpu_bf16_is_decided_by_the_instruction_set_flags(cpuinfo, machine, native):
    support = hardware.cpu_bf16(hardware.cpu_flags(cpuinfo), machine=machine)
    assert support.native is native
    if native:
        assert any(f in support.reason for f in ("avx512_bf16", "amx_bf16", "bf16"))
    else:
        assert "emulated" in support.reason


def test_this_cpu_is_native_only_with_a_bf16_flag():
    """Never a guess: on this machine, native bf16 implies a bf16 flag in /proc/cpuinfo (or torch's own query)."""
    support = hardware.cpu_bf16()
    flags = hardware.cpu_flags()
    has_flag = bool({"avx512_bf16", "amx_bf16", "bf16"} & flags)
    if support.native:
        assert has_flag or "torch.cpu" in support.reason
    if flags and not has_flag:
        assert not support.native


def _fake_cuda(monkeypatch, capability):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: capability)
    monkeypatch.setattr(torch.cuda, "device", lambda i: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: capability[0] >= 8 or including_emulation)


@pytest.mark.parametrize("capability, native", [((8, 0), True), ((9, 0), True), ((7, 5), False)])
def test_cuda_bf16_native_from_compute_capability_8(monkeypatch, capability, native):
    _fake_cuda(monkeypatch, capability)
    support = hardware.bf16_support(torch.device("cuda:0"))
    assert support.native is native and f"{capability[0]}.{capability[1]}" in support.reason
    precision, line = hardware.resolve_precision("auto", "cuda")
    assert precision == ("bf16" if native else "fp32") and "Fake GPU" in line


@pytest.mark.parametrize("native", [True, False])
def test_resolve_precision(monkeypatch, native):
    monkeypatch.setattr(hardware, "bf16_support", lambda device: hardware.Bf16Support(native, "test CPU"))
    assert hardware.resolve_precision("auto", "cpu") == (
        "bf16" if native else "fp32", f"precision {'bf16 autocast' if native else 'fp32'} (--precision auto: test CPU)")
    assert hardware.resolve_precision("fp32", "cpu")[0] == "fp32"
    precision, line = hardware.resolve_precision("bf16", "cpu")
    assert precision == "bf16" and (("warning" in line) is not native)
    with pytest.raises(ValueError, match="fp16"):
        hardware.resolve_precision("fp16", "cpu")


# ----------------------------------------------------------------------------- predict.py


class _AutocastProbe(torch.nn.Module):
    """A 1x1 segmenter that records whether it ran under bf16 autocast."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(13, 8, 1)
        self.seen = []

    def forward(self, batch):
        self.seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return self.conv(batch["s2"])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_predict_scene_runs_the_model_under_the_precision_asked_for(precision):
    from inference.scene import predict_scene
    from inference.sources import ArraySource
    s2 = np.random.default_rng(0).integers(1, 5000, (13, 100, 260)).astype(np.uint16)
    model = _AutocastProbe()
    timings = {}
    res = predict_scene(model, ArraySource(s2), window=100, overlap=0.25, batch_size=2, progress=False,
                        precision=precision, timings=timings)
    assert res.labels.shape == (100, 260) and model.seen and all(s is (precision == "bf16") for s in model.seen)
    assert set(timings) == {"read", "normalise", "inference", "blend", "write"}
    assert all(v >= 0 for v in timings.values())
    with pytest.raises(ValueError, match="precision"):
        predict_scene(model, ArraySource(s2), window=100, precision="fp16", progress=False)


UTM = CRS.from_epsg(32632)


def _trained_segmentation(tmp_path):
    """An S2-only SwinUNet whose head is trained for a few seconds (on cached decoder features) on a
    synthetic scene: a map of several classes that follows the scene, not random weights.
    Returns (checkpoint path, scene path, reference labels of the scene)."""
    from data.labels import dfc10_to_dfc8
    from data.synthetic import latent_map, s2_image
    from data.transforms import preprocess_s2
    from models import create_model, downstream_checkpoint, save_checkpoint

    rng = np.random.default_rng(0)
    latent = latent_map(rng, 1, 256)
    s2, labels = s2_image(rng, latent, nuisances=False), dfc10_to_dfc8(latent).astype(np.int64)
    torch.manual_seed(0)
    model = create_model("DoubleSwinTransformerSegmentation", num_classes=8, s1_input_channels=0).eval()
    offsets = [(0, 0), (32, 32)]
    x = torch.from_numpy(np.stack([preprocess_s2(s2[:, r:r + 224, c:c + 224]) for r, c in offsets]))
    y = torch.from_numpy(np.stack([labels[r:r + 224, c:c + 224] for r, c in offsets]))
    with torch.no_grad():
        _, tokens, skips = model.backbone2.forward_unet(x)
        feats = model.decoder2(tokens, skips)
    head = [*model.up.parameters(), model.output.weight]
    opt = torch.optim.AdamW(head, lr=1e-2)
    for _ in range(40):
        loss = F.cross_entropy(model.up.forward_logits(feats, model.output.weight), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ckpt = tmp_path / "seg.pth"
    save_checkpoint(downstream_checkpoint(model, epochs=1), ckpt)
    scene = tmp_path / "scene_B.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=256, height=224, count=13, dtype="uint16", crs=UTM,
                       transform=Affine(10, 0, 600000, 0, -10, 5200000)) as ds:
        ds.write(s2[:, :224])
    return ckpt, scene, labels[:224]


def test_bf16_and_fp32_maps_of_a_trained_model_agree(tmp_path, capsys):
    """predict.py --precision bf16 and fp32 on the same scene: >= 99 % of the pixels get the same class;
    the precision is in the map's tags and in the log."""
    import predict
    ckpt, scene, reference = _trained_segmentation(tmp_path)
    maps = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"map_{precision}.tif"
        assert predict.main(["--checkpoint", str(ckpt), "--s2", str(scene), "--out", str(out), "--device", "cpu",
                             "--s2_offset", "0", "--no-progress", "--batch_size", "2",
                             "--precision", precision]) == 0
        err = capsys.readouterr().err
        assert f"precision {'bf16 autocast' if precision == 'bf16' else 'fp32'} (--precision {precision})" in err
        with rasterio.open(out) as ds:
            assert ds.tags()["PRECISION"] == precision
            maps[precision] = ds.read(1)
    fp32, bf16 = maps["fp32"], maps["bf16"]
    classes, counts = np.unique(fp32, return_counts=True)
    assert len(classes) >= 2 and counts.max() < 0.9 * fp32.size          # a map, not one class
    majority = np.bincount(reference.ravel()).max() / reference.size
    assert (fp32 == reference).mean() > majority + 0.03                   # it learned something of the scene
    assert (fp32 == bf16).mean() >= 0.99


def test_predict_auto_precision_is_the_hardware_decision(tmp_path, capsys, monkeypatch):
    """--precision auto (the default) asks utils.hardware; the decision goes into the tags."""
    import predict
    calls = []

    def fake(requested, device):
        calls.append((requested, str(device)))
        return "fp32", "precision fp32 (--precision auto: test)"
    monkeypatch.setattr(hardware, "resolve_precision", fake)
    from inference.sources import ArraySource  # noqa: F401  (imports before the patch takes effect)
    s2 = np.random.default_rng(1).integers(1, 5000, (13, 60, 70)).astype(np.uint16)
    scene = tmp_path / "s.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=70, height=60, count=13, dtype="uint16", crs=UTM,
                       transform=Affine(10, 0, 600000, 0, -10, 5200000)) as ds:
        ds.write(s2)
    from models import create_model, downstream_checkpoint, save_checkpoint
    torch.manual_seed(0)
    save_checkpoint(downstream_checkpoint(create_model("resnet18", num_classes=8, s1_input_channels=0)),
                    tmp_path / "c.pth")
    assert predict.main(["--checkpoint", str(tmp_path / "c.pth"), "--s2", str(scene), "--out",
                         str(tmp_path / "m.tif"), "--device", "cpu", "--s2_offset", "0", "--no-progress"]) == 0
    assert calls == [("auto", "cpu")] and "precision fp32 (--precision auto: test)" in capsys.readouterr().err
    with rasterio.open(tmp_path / "m.tif") as ds:
        assert ds.tags()["PRECISION"] == "fp32"


# ----------------------------------------------------------------------------- training and demo


@pytest.mark.parametrize("reproduce, amp, expected", [
    (True, "bf16", "none"), (True, "none", "none"), (False, "bf16", "bf16"), (False, "none", "none")])
def test_reproduce_original_trains_in_fp32(capsys, reproduce, amp, expected):
    from training.pretrain import original_precision
    args = argparse.Namespace(reproduce_original=reproduce, amp=amp)
    original_precision(args)
    assert args.amp == expected
    assert ("--reproduce_original trains in fp32" in capsys.readouterr().out) is (reproduce and amp != "none")


def test_amp_help_says_what_bf16_does_on_a_cpu(capsys):
    import train_evaluation
    with pytest.raises(SystemExit):
        train_evaluation.get_args_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "native bf16" in text and "emulated" in text and "--reproduce_original forces none" in text


def test_demo_records_bf16_in_its_evidence_settings():
    from demo import evidence
    assert "precision" not in evidence.settings(False, 150.0, 0)             # earlier demos' evidence stays valid
    assert evidence.settings(False, 150.0, 0, "bf16")["precision"] == "bf16"


# ----------------------------------------------------------------------------- SwinUNet head


def _reference_logits(up, weight, x):
    """The straightforward formulation (the original's order): expand, rearrange, norm, permute, 1x1 conv."""
    return F.conv2d(up(x).permute(0, 3, 1, 2), weight)


def test_fused_head_equals_expand_norm_permute_conv_with_gradients():
    from models.swin_unet import FinalPatchExpand_X4
    torch.manual_seed(0)
    up = FinalPatchExpand_X4(48)
    torch.nn.init.normal_(up.norm.weight, 1.0, 0.3)
    torch.nn.init.normal_(up.norm.bias, 0.0, 0.3)
    weight = torch.randn(5, 48, 1, 1, requires_grad=True)
    x = torch.randn(2, 7, 9, 48, requires_grad=True)        # not square: rows and columns are not swapped
    outs, grads = [], []
    for fn in (lambda: up.forward_logits(x, weight), lambda: _reference_logits(up, weight, x)):
        out = fn()
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))   # same values whatever the strides
        params = [x, weight, up.expand.weight, up.norm.weight, up.norm.bias]
        outs.append(out.detach())
        grads.append(torch.autograd.grad(out, params, g))
    assert outs[0].shape == (2, 5, 28, 36)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_segmentation_model_output_is_the_reference_composition():
    """DoubleSwinTransformerSegmentation.forward (fused head) = output(up(decoders).permute) of the same weights."""
    from models import create_model
    torch.manual_seed(0)
    model = create_model("DoubleSwinTransformerSegmentation", num_classes=8).eval()
    g = torch.Generator().manual_seed(2)
    batch = {"s1": torch.rand(1, 2, 224, 224, generator=g), "s2": torch.rand(1, 13, 224, 224, generator=g)}
    with torch.no_grad():
        out = model(batch)
        feats = [model.decoder1(*model.backbone1.forward_unet(batch["s1"])[1:]),
                 model.decoder2(*model.backbone2.forward_unet(batch["s2"])[1:])]
        ref = model.output(model.up(torch.cat(feats, dim=-1)).permute(0, 3, 1, 2))
    assert out.shape == (1, 8, 224, 224)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("native", [False, True])
def test_training_with_bf16_warns_once_where_it_is_emulated(monkeypatch, capsys, tmp_path, native):
    """engine.fit with --amp bf16 says, before the first epoch and in log.txt, when the CPU only emulates bf16."""
    from training import engine, runlog, tasks

    monkeypatch.setattr(hardware, "cpu_bf16", lambda *a, **k: hardware.Bf16Support(
        native, "avx512_bf16" if native else "CPU without native bf16: bf16 would be emulated"))

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(13, 8)

        def forward(self, batch):
            return self.fc(batch["s2"].mean((2, 3)))

    data = [{"s2": torch.rand(13, 4, 4), "dfc_label": torch.tensor(i % 8), "s1_nan_pixels": torch.tensor(0)}
            for i in range(8)]
    model = Head()
    logger = runlog.Logger(tmp_path)
    engine.fit(model, torch.utils.data.DataLoader(data, batch_size=4), tasks.SupervisedTask("dfc_label"),
               torch.optim.SGD(model.parameters(), lr=0.1), torch.device("cpu"),
               engine.FitOptions(epochs=2, amp="bf16"), logger=logger)
    logger.close()
    err = capsys.readouterr().err
    log = (tmp_path / "log.txt").read_text() if (tmp_path / "log.txt").exists() else ""
    if native:
        assert "--amp bf16" not in err and "--amp bf16" not in log
    else:
        assert err.count("warning: --amp bf16 on cpu") == 1 and "emulated" in err and "5-30x slower" in err
        assert "warning: --amp bf16" in log
