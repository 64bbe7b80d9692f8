"""Models: equivalence with the original implementation, factory, freezing, checkpoints, errors.

The reference outputs (tests/fixtures/expected_salt0.pt) come from the original code run on
weights filled by tests/fixtures/fill.py (see the fixtures' README in the planning repo).
"""
import functools
import importlib.util
import json
from pathlib import Path

import numpy
import pytest
import torch

from models import (
    CheckpointError,
    InputShapeError,
    backbone_checkpoint,
    create_model,
    downstream_checkpoint,
    list_models,
    load_checkpoint,
    load_downstream_checkpoint,
    load_model,
    save_checkpoint,
    to_published_state_dict,
)

FIXTURES = Path(__file__).parent / "fixtures"
SEG_ATOL = 1e-3
TOL = dict(atol=1e-4, rtol=1e-4)


def _load_fill():
    spec = importlib.util.spec_from_file_location("reference_fill", FIXTURES / "fill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fill = _load_fill()


@functools.lru_cache(maxsize=None)
def manifest(name):
    return json.loads((FIXTURES / f"{name}_keys.json").read_text())["keys"]


@functools.lru_cache(maxsize=None)
def _filled(name):
    return fill.build_state_dict(FIXTURES / f"{name}_keys.json")


def filled(name):
    """``fill.build_state_dict`` of a manifest (cached; a fresh dict each call, shared tensors)."""
    return dict(_filled(name))


@pytest.fixture(scope="module")
def expected():
    return torch.load(FIXTURES / "expected_salt0.pt")


@pytest.fixture(scope="module")
def inputs():
    return fill.inputs()


@pytest.fixture(scope="module")
def built():
    """``built(name, **options)``: a model built once per module (Swin-T builds are slow on 2 cores).

    Tests that use it load their own weights (``load_checkpoint`` is strict, so nothing of a
    previous test survives) and must not freeze or otherwise change the module structure.
    """
    cache = {}

    def get(name, **options):
        key = (name, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = create_model(name, **options).eval()
        return cache[key]
    return get


# ---- the original Swin's buffers, computed as the original code does (independent of timm) ----
def original_relative_position_index(ws):
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij"))
    flat = torch.flatten(coords, 1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += ws - 1
    rel[:, :, 1] += ws - 1
    rel[:, :, 0] *= 2 * ws - 1
    return rel.sum(-1)


def original_attn_mask(resolution, ws, shift):
    img_mask = torch.zeros((1, resolution, resolution, 1))
    cnt = 0
    for h in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for w in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            img_mask[:, h, w, :] = cnt
            cnt += 1
    n = resolution // ws
    win = img_mask.view(1, n, ws, n, ws, 1).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws)
    mask = win.unsqueeze(1) - win.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


def with_buffers(sd, name):
    """The filled state dict plus the computed buffers, in the manifest's order (as a real checkpoint)."""
    out = {}
    for k in manifest(name):
        key, shape = k["name"], k["shape"]
        if key.endswith("relative_position_index"):
            out[key] = original_relative_position_index(7)
        elif key.endswith("attn_mask"):
            out[key] = original_attn_mask(int(round(shape[0] ** 0.5)) * 7, 7, 3)
        else:
            out[key] = sd[key]
        assert list(out[key].shape) == shape
    return out


def fill_fc(sd, in_features):
    sd = dict(sd)
    sd["fc.weight"] = fill.fill("fc.weight", (8, in_features))
    sd["fc.bias"] = fill.fill("fc.bias", (8,))
    return sd


def first(x):
    """Sample 0 of a batch (or of each entry of a dict): the second checkpoint variant of each
    equivalence test runs on one sample to halve its cost (eval mode: samples are independent)."""
    return {k: v[:1] for k, v in x.items()} if isinstance(x, dict) else x[:1]


def assert_close(out, ref, **tol):
    if isinstance(ref, dict):
        assert set(out) == set(ref)
        for k in ref:
            torch.testing.assert_close(out[k], ref[k], **tol)
    else:
        torch.testing.assert_close(out, ref, **tol)


# ---------------------------------------------------------------------------------------------
# equivalence with the original implementation

PRETRAIN = [("swin_pretrain", "DoubleSwinTransformer", "swin_t", {}),
            ("resnet50_pretrain", "DoubleResNetSimCLR", "resnet50", {"base_model": "resnet50"}),
            ("resnet18_pretrain", "DoubleResNetSimCLR", "resnet18", {"base_model": "resnet18"})]
CLASSIFIER = [("swin_classifier", "DoubleSwinTransformerDownstream", "swin_t", {}, 1536),
              ("resnet50_classifier", "DoubleResNetSimCLRDownstream", "resnet50", {"base_model": "resnet50"}, 4096),
              ("resnet18_classifier", "DoubleResNetSimCLRDownstream", "resnet18", {"base_model": "resnet18"}, 1024)]


@pytest.mark.parametrize("buffers", [False, True], ids=["no-buffers", "buffers"])
@pytest.mark.parametrize("key,name,man,opts", PRETRAIN, ids=[p[0] for p in PRETRAIN])
def test_pretrain_equivalence(key, name, man, opts, buffers, expected, inputs, built):
    sd = filled(man)
    if buffers:
        sd = {"module." + k: v for k, v in with_buffers(sd, man).items()}  # DDP-saved, as published
    model = built(name, **opts)
    report = load_checkpoint(model, {"state_dict": sd, "epoch": 1, "arch": man})
    if man == "swin_t":
        assert set(report.ignored) == {f"backbone{i}.head.{w}" for i in (1, 2) for w in ("weight", "bias")}
        assert report.verified_buffers == (sum(fill.is_computed_buffer(k["name"]) for k in manifest(man))
                                           if buffers else 0)
    else:
        assert report.ignored == {} and report.fresh == []
    x, ref = (first(inputs), first(expected[key])) if buffers else (inputs, expected[key])
    with torch.no_grad():
        assert_close(model(x), ref, **TOL)


@pytest.mark.parametrize("fmt", ["published+fc", "original-downstream"])
@pytest.mark.parametrize("key,name,man,opts,width", CLASSIFIER, ids=[c[0] for c in CLASSIFIER])
def test_classifier_equivalence(key, name, man, opts, width, fmt, expected, inputs, built):
    sd = filled(man)
    if fmt == "published+fc":
        # the published SSL checkpoint: backbones load, projection / 1000-class heads are ignored
        model = built(name, **opts)
        torch.nn.init.zeros_(model.fc.weight)
        report = load_checkpoint(model, {"state_dict": sd})
        assert report.fresh == ["fc.weight", "fc.bias"]
        assert not model.fc.weight.any()  # fresh: not touched by the load
        ignored = set(report.ignored)
        assert ignored and all(".head." in k or ".fc.0." in k or ".fc.2." in k for k in ignored)
        model.load_state_dict(fill_fc(model.state_dict(), width))
    else:
        # a downstream checkpoint of the original code: every key loads (buffers present for Swin)
        if man == "swin_t":
            sd = with_buffers(sd, man)
        else:
            sd = {k: v for k, v in sd.items() if ".fc." not in k}
        model = built(name, **opts)
        report = load_checkpoint(model, {"model_weights": fill_fc(sd, width), "epochs": 3})
        assert report.fresh == []
        assert all(".head." in k for k in report.ignored)
        inputs, expected = first(inputs), {key: first(expected[key])}
    with torch.no_grad():
        assert_close(model(inputs), expected[key], **TOL)


@pytest.fixture(scope="module")
def segmentation_model():
    return create_model("DoubleSwinTransformerSegmentation").eval()


@pytest.mark.parametrize("buffers", [False, True], ids=["no-buffers", "buffers"])
def test_segmentation_equivalence(buffers, segmentation_model, expected, inputs):
    sd = filled("swin_segmentation")
    if buffers:
        sd = with_buffers(sd, "swin_segmentation")
    report = load_checkpoint(segmentation_model, {"model_weights": sd})
    expected_ignored = {f"backbone{i}.head.{w}" for i in (1, 2) for w in ("weight", "bias")}
    expected_ignored |= {"decoder2.up.expand.weight", "decoder2.up.norm.weight", "decoder2.up.norm.bias",
                         "decoder2.output.weight"}
    assert set(report.ignored) == expected_ignored
    assert report.fresh == []
    n_buffers = sum(fill.is_computed_buffer(k["name"]) for k in manifest("swin_segmentation"))
    assert report.verified_buffers == (n_buffers if buffers else 0)
    x, ref = (first(inputs), first(expected["swin_segmentation"])) if buffers else \
        (inputs, expected["swin_segmentation"])
    with torch.no_grad():
        out = segmentation_model(x)
    assert out.shape == ref.shape and ref.shape[1:] == (8, 224, 224)
    torch.testing.assert_close(out, ref, atol=SEG_ATOL, rtol=1e-4)


def test_segmentation_loads_full_original_state_dict(segmentation_model):
    """The original's state dict also holds each decoder's unused encoder copy: ignored, reported."""
    sd = filled("swin_segmentation")
    for i in (1, 2):
        sd[f"decoder{i}.patch_embed.proj.weight"] = torch.zeros(96, 3, 4, 4)
        sd[f"decoder{i}.layers.0.blocks.0.norm1.weight"] = torch.zeros(96)
        sd[f"decoder{i}.norm.weight"] = torch.zeros(768)
    report = load_checkpoint(segmentation_model, {"model_weights": sd})
    copies = [k for k, r in report.ignored.items() if "encoder copy" in r]
    assert len(copies) == 6


def test_segmentation_single_sensor_and_frozen():
    model = create_model("DoubleSwinTransformerSegmentation", s1_input_channels=0, freeze_backbone=True)
    assert model.up.expand.in_features == 96 and model.output.in_channels == 96
    assert not hasattr(model, "decoder1") and not hasattr(model, "backbone1")
    assert sum(p.numel() for p in model.parameters()) < 45e6  # one encoder (27.5 M) + one decoder
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"decoder2", "up", "output"}  # frozen encoder; decoder and fusion head train


# ---------------------------------------------------------------------------------------------
# factory: every name builds and runs

SMALL = {"resnet18", "resnet50", "DualBaseline", "DoubleResNetSimCLRDownstream", "DoubleResNetSimCLR"}


def batch(b, size, extra=True):
    g = torch.Generator().manual_seed(0)
    x = {"s1": torch.rand(b, 2, size, size, generator=g), "s2": torch.rand(b, 13, size, size, generator=g)}
    if extra:
        x.update(dfc=torch.zeros(b, size, size, dtype=torch.long), index=torch.arange(b))
    return x


@pytest.mark.parametrize("name", list_models())
def test_create_every_model(name, segmentation_model, built):
    assert set(list_models()) >= {"resnet18", "resnet50", "DualBaseline", "SwinBaseline", "DualSwinBaseline",
                                  "DoubleResNetSimCLRDownstream", "DoubleSwinTransformerDownstream",
                                  "DoubleSwinTransformerSegmentation", "DoubleResNetSimCLR", "DoubleSwinTransformer"}
    if name == "DoubleSwinTransformerSegmentation":
        model = segmentation_model  # built once for the module
        assert sum(p.numel() for p in model.parameters()) < 90e6
    else:
        model = built(name, base_model="resnet18") if name in SMALL else built(name)
    size, b = (64, 2) if name in SMALL else (224, 1)
    with torch.no_grad():
        out = model(batch(b, size))
    if name == "DoubleResNetSimCLR":
        assert {k: tuple(v.shape) for k, v in out.items()} == {"s1": (b, 128), "s2": (b, 128)}
    elif name == "DoubleSwinTransformer":
        assert {k: tuple(v.shape) for k, v in out.items()} == {"s1": (b, 768), "s2": (b, 768)}
    elif name == "DoubleSwinTransformerSegmentation":
        assert out.shape == (b, 8, 224, 224)
    else:
        assert out.shape == (b, 8)
    assert model.model_name == name


def test_early_fusion_bands():
    assert create_model("resnet18").backbone.conv1.in_channels == 15
    assert create_model("resnet18", s1_input_channels=0).backbone.conv1.in_channels == 13
    assert create_model("resnet50", s2_input_channels=0).backbone.conv1.in_channels == 2
    assert create_model("resnet18", base_model="resnet50").backbone.num_features == 512  # the name decides


# ---------------------------------------------------------------------------------------------
# single-sensor variants, freezing

@pytest.mark.parametrize("drop", ["s1", "s2"])
def test_single_sensor_resnet(drop, expected):
    keep = "s2" if drop == "s1" else "s1"
    sd = filled("resnet18")
    model = create_model("DoubleResNetSimCLRDownstream", base_model="resnet18", checkpoint={"state_dict": sd},
                         **{f"{drop}_input_channels": 0}).eval()
    dropped, kept = ("backbone1", "backbone2") if drop == "s1" else ("backbone2", "backbone1")
    assert not hasattr(model, dropped) and hasattr(model, kept)
    assert model.fc.in_features == 512
    report = model.load_report
    assert {k for k, r in report.ignored.items() if "branch" in r} == {k for k in sd if k.startswith(dropped)}
    g = torch.Generator().manual_seed(1234)
    x = {keep: torch.rand(2, 2 if keep == "s1" else 13, 64, 64, generator=g)}  # the other key may be absent
    with torch.no_grad():
        assert model(x).shape == (2, 8)
    with pytest.raises(InputShapeError, match=keep):
        model({drop: x[keep]})


def test_single_sensor_swin_matches_reference(expected, inputs):
    sd = filled("swin_t")
    model = create_model("DoubleSwinTransformerDownstream", s1_input_channels=0,
                         checkpoint={"state_dict": sd}).eval()
    assert model.fc.in_features == 768 and not hasattr(model, "backbone1")
    with torch.no_grad():
        maps = model.forward_features({"s2": inputs["s2"]})
        feats = model.forward_head(maps, pre_logits=True)
    assert set(maps) == {"s2"} and maps["s2"].shape[1:] == (7, 7, 768)   # unpooled, timm's meaning
    torch.testing.assert_close(feats, expected["swin_pretrain"]["s2"], **TOL)


def test_freeze_backbone():
    model = create_model("DoubleResNetSimCLRDownstream", base_model="resnet18", freeze_backbone=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"]
    groups = model.parameter_groups(backbone_lr=1e-5, head_lr=3e-6)
    assert [g["name"] for g in groups] == ["head"] and groups[0]["lr"] == 3e-6
    model.train()
    assert model.training and model.fc.training and not model.backbone1.training
    stats = model.backbone1.bn1.running_mean.clone()
    model(batch(2, 64)).logsumexp(1).sum().backward()
    torch.testing.assert_close(model.backbone1.bn1.running_mean, stats)  # BN statistics stay fixed
    assert model.fc.weight.grad is not None and model.backbone2.conv1.weight.grad is None
    # fine-tuning: two groups with their own learning rates, covering every parameter once
    model = create_model("DualBaseline", base_model="resnet18")
    groups = model.parameter_groups(backbone_lr=1e-5, head_lr=3e-6)
    assert [(g["name"], g["lr"]) for g in groups] == [("backbone", 1e-5), ("head", 3e-6)]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


# ---------------------------------------------------------------------------------------------
# errors

def test_wrong_bands_error():
    model = create_model("DualBaseline", base_model="resnet18")
    x = batch(1, 64)
    x["s2"] = x["s2"][:, :12]
    with pytest.raises(InputShapeError, match=r"'s2'\] has 12 bands but the model expects 13"):
        model(x)
    with pytest.raises(InputShapeError, match="batch dict"):
        model(x["s1"])


def test_image_size_errors(built):
    with pytest.raises(ValueError, match=r"img_size=256.*sizes that work: 224, 448"):
        create_model("SwinBaseline", img_size=256)
    model = built("DoubleSwinTransformer")
    with pytest.raises(InputShapeError, match=r"built for 224x224.*is 256x256"):
        model(batch(1, 256))


def test_unknown_model_and_option():
    with pytest.raises(ValueError, match="valid names: .*DoubleSwinTransformerSegmentation"):
        create_model("swin_unet")
    with pytest.raises(TypeError, match="unknown option"):
        create_model("resnet18", pretrained=True)


def test_bad_checkpoint_lists_keys(tmp_path, built):
    sd = filled("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError) as err:
        create_model("DoubleResNetSimCLR", base_model="resnet50", checkpoint=path)
    msg = str(err.value)
    assert str(path) in msg and "holds resnet18 backbones" in msg and "expects resnet50" in msg
    assert "missing keys (396): backbone1.layer1.0.conv3.weight" in msg
    assert "mis-shaped keys (52): backbone1.layer1.0.conv1.weight: checkpoint (64, 64, 3, 3) vs model (64, 64, 1, 1)" in msg
    assert "... and 386 more" in msg  # long lists are cut, with counts
    assert err.value.missing and err.value.mismatched and not err.value.unexpected
    with pytest.raises(CheckpointError, match=r"(?s)holds resnet18 backbones.*expects swin_t.*unexpected keys \(248\)"):
        load_checkpoint(built("DoubleSwinTransformerDownstream"), path)
    with pytest.raises(CheckpointError, match="unrecognised checkpoint.*top-level keys: weights"):
        create_model("resnet18", checkpoint={"weights": 1})
    bad = dict(sd, **{"backbone1.extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): backbone1.extra.weight"):
        create_model("DoubleResNetSimCLR", base_model="resnet18", checkpoint={"state_dict": bad})
    partial = {k: v for k, v in sd.items() if not k.startswith("backbone2.layer4")}
    with pytest.raises(CheckpointError, match="missing keys"):
        create_model("DoubleResNetSimCLRDownstream", base_model="resnet18", checkpoint={"state_dict": partial})
    model = create_model("DoubleResNetSimCLRDownstream", base_model="resnet18")
    report = load_checkpoint(model, {"state_dict": partial}, strict=False)  # loads what fits, reports the rest
    assert any(k.startswith("backbone2.layer4.") for k in report.fresh) and "fc.weight" in report.fresh
    wrong_buffer = with_buffers(filled("swin_t"), "swin_t")
    wrong_buffer["backbone1.layers.0.blocks.1.attn_mask"] = torch.zeros(64, 49, 49)
    with pytest.raises(CheckpointError, match="values differ"):
        load_checkpoint(built("DoubleSwinTransformer"), {"state_dict": wrong_buffer})


def test_other_img_size_accepts_published_buffers():
    """A 448 px model takes the 224 px checkpoint: its size-dependent attention masks are recomputed."""
    sd = with_buffers(filled("swin_t"), "swin_t")
    model = create_model("DoubleSwinTransformerDownstream", s1_input_channels=0, img_size=448,
                         checkpoint={"state_dict": sd})
    reasons = set(model.load_report.ignored.values())
    assert any("another window / image size" in r for r in reasons)
    assert model.load_report.verified_buffers == 12  # the relative position indices of backbone2
    assert model.backbone2.layers[3].blocks[1].attn_mask.shape == (4, 49, 49)  # 14x14 grid: shifted now


# ---------------------------------------------------------------------------------------------
# round trips

@pytest.mark.parametrize("man,name,opts", [("swin_t", "DoubleSwinTransformer", {}),
                                           ("resnet18", "DoubleResNetSimCLR", {"base_model": "resnet18"}),
                                           ("resnet50", "DoubleResNetSimCLR", {"base_model": "resnet50"})])
def test_published_layout_round_trip(man, name, opts, tmp_path, built):
    sd = filled(man)
    model = built(name, **opts)
    load_checkpoint(model, {"state_dict": sd})
    published = to_published_state_dict(model)
    keys = manifest(man)
    assert [(k, list(v.shape), str(v.dtype)[6:]) for k, v in published.items()] == \
        [(k["name"], k["shape"], k["dtype"]) for k in keys]
    for k, v in sd.items():  # every filled tensor is written back unchanged (the Swin heads included)
        torch.testing.assert_close(published[k], v, rtol=0, atol=0)
    if man == "resnet50":
        return  # same code path as resnet18; saving and rebuilding a ResNet50 pair costs seconds
    path = tmp_path / f"{man}.pth"
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    save_checkpoint(backbone_checkpoint(model, epoch=3, optimizer=optimizer), path)
    saved = torch.load(path, weights_only=True)
    assert set(saved) == {"epoch", "arch", "state_dict", "optimizer"} and saved["epoch"] == 3
    again = create_model(name, checkpoint=path, **opts)
    for (k, a), (k2, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert again.load_report.ignored.keys() <= {k for k in published if ".head." in k}


@pytest.mark.parametrize("break_it", ["missing", "unexpected"])
def test_rejected_load_leaves_published_heads_unchanged(break_it, built):
    """The 1000-class heads of a published Swin checkpoint are kept only once the load is accepted."""
    model = built("DoubleSwinTransformer")
    before = {n: None if h is None else {k: v.clone() for k, v in h.items()} for n, h in model.published_heads.items()}
    sd = with_buffers(filled("swin_t"), "swin_t")
    sd = {k: torch.full_like(v, 7.0) if ".head." in k else v for k, v in sd.items()}
    if break_it == "missing":
        del sd["backbone2.norm.weight"]
    else:
        sd["backbone1.extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=break_it):
        load_checkpoint(model, {"state_dict": sd})
    assert model.published_heads.keys() == before.keys()
    for name, head in model.published_heads.items():
        if before[name] is None:
            assert head is None
        else:
            assert head.keys() == before[name].keys() and all(torch.equal(head[k], before[name][k]) for k in head)


def test_downstream_checkpoint_round_trip(tmp_path):
    model = create_model("DoubleSwinTransformerDownstream", num_classes=5, s1_input_channels=0).eval()
    path = tmp_path / "downstream.pth"
    save_checkpoint(downstream_checkpoint(model, val_stats={"overall_accuracy": 0.5}, epochs=7), path)
    saved = torch.load(path, weights_only=True)
    assert {"model_weights", "optim_state", "val_stats", "epochs", "model_name", "model_options"} <= set(saved)
    again = load_model(path).eval()
    assert type(again) is type(model) and again.fc.out_features == 5 and not hasattr(again, "backbone1")
    x = {"s2": batch(1, 224)["s2"]}
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)
    # resume: the engine's extra entries ride along; name/options may be given explicitly
    optimizer = torch.optim.Adam(model.parameter_groups(1e-5, 3e-6))
    ckpt = downstream_checkpoint(model, "DoubleSwinTransformerDownstream", {"num_classes": 5, "s1_input_channels": 0},
                                 optimizer=optimizer, epochs=2, rng={"numpy": numpy.random.get_state()})
    save_checkpoint(ckpt, path)
    with torch.no_grad():
        for p in again.parameters():
            p.zero_()
    resumed = load_downstream_checkpoint(again, path)
    assert resumed["epochs"] == 2 and resumed["optim_state"]["param_groups"][0]["lr"] == 1e-5
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
