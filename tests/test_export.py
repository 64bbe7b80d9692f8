"""export_backbone.py: published, own pre-training and downstream checkpoints -> timm folders (reloaded
through ``local-dir:``), TorchGeo .ckpt files and model cards; its one-line errors."""
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from test_models import fill

import export_backbone
from data import normalize_s1, normalize_s2
from data.bands import S1_BANDS, S2_BANDS, S2_WAVELENGTH_NM
from models import create_model, downstream_checkpoint
from models.export import TIMM_NAMES, find_encoders
from models.export_card import normalization_code
from training import cli

FIXTURES = Path(__file__).parent / "fixtures"
ATOL = 1e-5




def published(tmp_path, name):
    """A random-weight checkpoint in the layout of the published ``<name>.pth`` (fixture key lists)."""
    path = tmp_path / f"{name}.pth"
    torch.save({"state_dict": fill.build_state_dict(FIXTURES / f"{name}_keys.json"), "epoch": 100, "arch": name},
               path)
    return path


def export(*argv):
    """Run export_backbone.py in-process; returns its exit code."""
    return cli.run(export_backbone.main, export_backbone.get_args_parser(), [str(a) for a in argv])


def features(model, in_chans, size, seed=3):
    x = torch.rand((2, in_chans, size, size), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.eval()(x)


def check_export(out, name, reference, in_chans, size):
    """timm reloads ``out/name`` exactly (every key, no other) and gives ``reference``'s features; the
    TorchGeo .ckpt holds the same tensors under ``model.``."""
    import timm
    from safetensors.torch import load_file

    folder = out / name
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    model = timm.create_model(f"local-dir:{folder}", pretrained=True)  # strict: a missing key raises
    weights = load_file(folder / "model.safetensors")
    buffers = {k for k, _ in model.named_buffers() if k.endswith(("relative_position_index", "attn_mask"))}
    assert set(weights) == set(model.state_dict()) - buffers
    diff = (features(model, in_chans, size) - features(reference, in_chans, size)).abs().max()
    assert diff <= ATOL, (name, float(diff))
    tg = torch.load(out / f"{name}.torchgeo.ckpt", weights_only=True)
    assert tg["hyper_parameters"]["model"] == TIMM_NAMES[name.rsplit("_", 1)[0]]
    assert tg["hyper_parameters"]["in_channels"] == in_chans
    assert set(tg["state_dict"]) == {f"model.{k}" for k in weights}
    assert all(torch.equal(tg["state_dict"][f"model.{k}"], v) for k, v in weights.items())
    return (folder / "README.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_published_resnet_layouts(tmp_path, arch):
    ckpt = published(tmp_path, arch)
    assert export("--checkpoint", ckpt, "--out", tmp_path / "out") == 0
    ref = create_model("DoubleResNetSimCLRDownstream", base_model=arch, checkpoint=ckpt)  # the project's loader
    for sensor, enc, bands in (("s1", ref.backbone1, 2), ("s2", ref.backbone2, 13)):
        card = check_export(tmp_path / "out", f"{arch}_{sensor}", enc, bands, 64)
        assert "SimCLR projection head" in card and "published checkpoints" in card
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [f"{arch}_s1", f"{arch}_s2", f"{arch}_s1.torchgeo.ckpt", f"{arch}_s2.torchgeo.ckpt"])


@pytest.mark.slow
def test_published_swin_layout(tmp_path):
    ckpt = published(tmp_path, "swin_t")
    assert export("--checkpoint", ckpt, "--out", tmp_path / "out") == 0
    ref = create_model("DoubleSwinTransformer", checkpoint=ckpt)
    for sensor, enc, bands in (("s1", ref.backbone1, 2), ("s2", ref.backbone2, 13)):
        card = check_export(tmp_path / "out", f"swin_t_{sensor}", enc, bands, 224)
        assert "1000-class classifier" in card and "swin_tiny_patch4_window7_224" in card
    cfg = json.loads((tmp_path / "out" / "swin_t_s2" / "config.json").read_text())
    assert cfg["architecture"] == "swin_tiny_patch4_window7_224" and cfg["model_args"]["in_chans"] == 13
    assert "license" not in cfg["pretrained_cfg"]  # not ImageNet's: the card says where the weights come from


def test_own_pretraining_run(sample_root, tmp_path):
    import train_resnet_backbone

    run = tmp_path / "run"
    args = train_resnet_backbone.get_args_parser().parse_args(
        ["--train_dir", str(sample_root), "--arch", "resnet18", "--batch_size", "4", "--image_px_size", "64",
         "--workers", "0", "--epochs", "1", "--output_dir", str(run), "--no-save_optimizer"])
    train_resnet_backbone.main(args)
    ckpt = run / "checkpoint_last.pth"
    assert export("--checkpoint", ckpt, "--out", tmp_path / "out") == 0
    ref = create_model("DoubleResNetSimCLRDownstream", base_model="resnet18", checkpoint=ckpt)
    card = check_export(tmp_path / "out", "resnet18_s2", ref.backbone2, 13, 64)
    check_export(tmp_path / "out", "resnet18_s1", ref.backbone1, 2, 64)
    assert "a run of your own" in card and "`train_resnet_backbone.py` after 1 epoch " in card
    assert "| epochs | 1 |" in card and "| image_px_size | 64 |" in card and "| arch | resnet18 |" in card
    assert "64 px recorded for this run" in card
    assert str(tmp_path) not in card  # local paths: only file / folder names go into a card


@pytest.mark.parametrize("finetuning", [True, False])
def test_downstream_classifier_of_ours_exports_its_encoder(tmp_path, finetuning):
    model = create_model("DoubleResNetSimCLRDownstream", base_model="resnet18", s1_input_channels=0)
    config = {"model": "DoubleResNetSimCLRDownstream", "target": "dfc_label", "finetuning": finetuning,
              "checkpoint": "/somewhere/resnet18.pth", "epochs": 3}
    torch.save(downstream_checkpoint(model, epochs=3, config=config), tmp_path / "classifier.pth")
    assert export("--checkpoint", tmp_path / "classifier.pth", "--out", tmp_path / "out") == 0
    assert not (tmp_path / "out" / "resnet18_s1").exists()  # the model had no S1 branch
    card = check_export(tmp_path / "out", "resnet18_s2", model.backbone2, 13, 64)
    if finetuning:
        assert "**fine-tuned** from `resnet18.pth`" in card and "still a backbone" in card
    else:
        assert "**frozen**: its weights are those of `resnet18.pth`" in card


def test_early_fusion_baseline_exports_one_15_band_encoder(tmp_path):
    model = create_model("resnet18")
    torch.save(downstream_checkpoint(model), tmp_path / "baseline.pth")
    assert export("--checkpoint", tmp_path / "baseline.pth", "--out", tmp_path / "out") == 0
    card = check_export(tmp_path / "out", "resnet18_s1s2", model.backbone, 15, 64)
    assert "trained **from scratch**" in card and "S1 channels first" in card


@pytest.mark.slow
def test_original_segmentation_checkpoint_exports_its_encoders(tmp_path):
    sd = fill.build_state_dict(FIXTURES / "swin_segmentation_keys.json")
    torch.save({"model_weights": sd, "epochs": 10}, tmp_path / "seg.pth")
    assert export("--checkpoint", tmp_path / "seg.pth", "--out", tmp_path / "out", "--sensors", "s2") == 0
    ref = create_model("DoubleSwinTransformerSegmentation", checkpoint=tmp_path / "seg.pth")
    card = check_export(tmp_path / "out", "swin_t_s2", ref.backbone2, 13, 224)
    assert "downstream checkpoint of the original code" in card and "still a backbone" in card
    assert not (tmp_path / "out" / "swin_t_s1").exists()


def test_model_card_facts_and_runnable_code(tmp_path, monkeypatch):
    ckpt = published(tmp_path, "resnet18")
    assert export("--checkpoint", ckpt, "--out", tmp_path / "out", "--sensors", "s2") == 0
    card = (tmp_path / "out" / "resnet18_s2" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: timm\n")
    for band, nm in zip(S2_BANDS, S2_WAVELENGTH_NM):
        assert re.search(rf"\| {band} \| {nm} nm \|", card), band
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() in card
    assert "Level-2A" in card and "RADIO_ADD_OFFSET = -1000" in card and "--allow_l2a" in card
    assert "license:" not in card.split("---")[1]  # no licence invented in the front matter
    cfg = json.loads((tmp_path / "out" / "resnet18_s2" / "config.json").read_text())
    assert [b["name"] for b in cfg["sentinel"]["bands"]] == list(S2_BANDS)
    assert cfg["sentinel"]["normalization"]["s2"]["clip"] == [0.0, 10000.0]

    # the card's Python blocks run as they are, next to the exported folder
    blocks = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    norm, timm_use, tv_use = blocks[0], blocks[1], blocks[2]
    monkeypatch.chdir(tmp_path / "out")
    scope = {}
    exec(norm + timm_use + tv_use, scope)
    assert tuple(scope["features"].shape) == (1, 512)
    x = torch.rand(2, 13, 64, 64)
    with torch.no_grad():
        assert torch.equal(scope["tv"].eval()(x), scope["model"](x))
    patch = np.random.default_rng(0).integers(0, 15000, (2, 13, 32, 32)).astype(np.uint16)
    assert np.array_equal(scope["normalize_s2"](patch), normalize_s2(patch))


def test_card_normalization_code_equals_the_project_functions():
    rng = np.random.default_rng(2)
    s1 = rng.normal(-15, 9, (3, 2, 20, 20)).astype(np.float32)
    s1[1, 0, 4, :5] = np.nan
    scope = {}
    exec(normalization_code("s1s2"), scope)
    assert np.array_equal(scope["normalize_s1"](s1), normalize_s1(s1))
    assert np.array_equal(scope["normalize_s1"](s1[0]), normalize_s1(s1[0]))
    s2 = rng.integers(0, 14000, (13, 20, 20)).astype(np.uint16)
    assert np.array_equal(scope["normalize_s2"](s2), normalize_s2(s2))
    assert len(S1_BANDS) == 2


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(("error:", "export_backbone")), err
    return err[0]


def test_errors_are_one_line(tmp_path, capsys):
    torch.save({"state_dict": {"encoder.conv.weight": torch.zeros(2, 2)}}, tmp_path / "none.pth")
    assert export("--checkpoint", tmp_path / "none.pth", "--out", tmp_path / "o1") == 1
    assert "no recognisable encoder" in _one_error_line(capsys)
    torch.save({"state_dict": {"backbone1.stem.weight": torch.zeros(2, 2)}}, tmp_path / "odd.pth")
    assert export("--checkpoint", tmp_path / "odd.pth", "--out", tmp_path / "o2") == 1
    line = _one_error_line(capsys)
    assert "unknown layout under 'backbone1.'" in line and "odd.pth" in line
    sd = fill.build_state_dict(FIXTURES / "resnet18_keys.json")
    sd["backbone2.conv1.weight"] = torch.zeros(64, 4, 7, 7)
    torch.save({"state_dict": sd}, tmp_path / "bands.pth")
    assert export("--checkpoint", tmp_path / "bands.pth", "--out", tmp_path / "o3") == 1
    assert "takes 4 input bands, expected 13 (S2)" in _one_error_line(capsys)
    (tmp_path / "notackpt.pth").write_text("hello")
    assert export("--checkpoint", tmp_path / "notackpt.pth", "--out", tmp_path / "o4") == 1
    assert "not a PyTorch checkpoint" in _one_error_line(capsys)
    assert export("--checkpoint", tmp_path / "missing.pth", "--out", tmp_path / "o5") == 2
    assert "--checkpoint" in _one_error_line(capsys)
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 6))


def test_existing_out_needs_overwrite_and_keeps_other_files(tmp_path, capsys):
    ckpt = published(tmp_path, "resnet18")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert export("--checkpoint", ckpt, "--out", out, "--sensors", "s1") == 2
    line = _one_error_line(capsys)
    assert f"--out {out}" in line and "--overwrite" in line
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert export("--checkpoint", ckpt, "--out", out, "--sensors", "s1", "--overwrite") == 0
    (out / "resnet18_s1" / "stale.bin").write_text("x")
    assert export("--checkpoint", ckpt, "--out", out, "--sensors", "s1", "--overwrite") == 0
    assert not (out / "resnet18_s1" / "stale.bin").exists() and (out / "notes.txt").read_text() == "mine"
    # the input is never replaced: an --out that would overwrite it is refused
    (out / "resnet18_s1.torchgeo.ckpt").unlink()
    ckpt.rename(out / "resnet18_s1.torchgeo.ckpt")
    assert export("--checkpoint", out / "resnet18_s1.torchgeo.ckpt", "--out", out, "--overwrite") == 2
    assert "would replace the input" in _one_error_line(capsys)


def test_find_encoders_img_size_from_the_stored_attn_mask():
    from models import DoubleSwinTransformer

    sd = DoubleSwinTransformer(img_size=448).published_state_dict()
    sd = {k: v for k, v in sd.items() if k.startswith("backbone2.")}
    record, (enc,) = find_encoders({"state_dict": sd})
    assert (enc.name, enc.img_size, enc.img_size_source) == ("swin_t_s2", 448, "the checkpoint's attn_mask")
    assert record.origin == "published" and enc.timm_kwargs() == {"num_classes": 0, "in_chans": 13, "img_size": 448}
