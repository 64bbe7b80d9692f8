"""hubconf.py: torch.hub entries for the encoders (timm models) and the dual models, from any weights."""
import importlib.util
from pathlib import Path

import pytest
import torch

import export_backbone
from models import create_model, downstream_checkpoint
from models.checkpoint import CheckpointError
from training import cli

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
ENCODERS = {f"{a}_{s}" for a in ("swin_t", "resnet50", "resnet18") for s in ("s1", "s2")}
DUALS = {"dual_swin_t", "dual_resnet50", "dual_resnet18", "dual_swin_t_segmentation"}


def _fill():
    spec = importlib.util.spec_from_file_location("reference_fill", FIXTURES / "fill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hub(name, **kwargs):
    return torch.hub.load(str(REPO), name, source="local", **kwargs)


@pytest.fixture(scope="module")
def resnet18_ckpt(tmp_path_factory):
    """A published-layout resnet18.pth (random weights) and its export."""
    tmp = tmp_path_factory.mktemp("hub")
    path = tmp / "resnet18.pth"
    torch.save({"state_dict": _fill().build_state_dict(FIXTURES / "resnet18_keys.json")}, path)
    assert cli.run(export_backbone.main, export_backbone.get_args_parser(),
                   ["--checkpoint", str(path), "--out", str(tmp / "out")]) == 0
    return path


def pooled(model, bands, size=64):
    x = torch.rand((2, bands, size, size), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return model.eval()(x)


def test_hub_lists_every_entry():
    # torch 2.14's torch.hub.list has no source="local" (it always fetches a GitHub repo); its rule
    # for what an entry is (callables not starting with "_") applied to the local hubconf.py:
    spec = importlib.util.spec_from_file_location("hubconf", REPO / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entries = {n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_")}
    assert entries == ENCODERS | DUALS
    assert module.dependencies == ["torch", "timm"]


@pytest.mark.slow
def test_encoder_entries_from_every_kind_of_weights(resnet18_ckpt):
    ref = create_model("DoubleResNetSimCLRDownstream", base_model="resnet18", checkpoint=resnet18_ckpt)
    expected = pooled(ref.backbone2, 13)
    out = resnet18_ckpt.parent / "out"
    for weights in (resnet18_ckpt, out / "resnet18_s2", out / "resnet18_s2" / "model.safetensors",
                    out / "resnet18_s2.torchgeo.ckpt"):
        model = hub("resnet18_s2", weights=str(weights))
        assert type(model).__module__.startswith("timm."), weights
        assert torch.allclose(pooled(model, 13), expected, atol=1e-5, rtol=0), weights
    s1 = hub("resnet18_s1", weights=str(resnet18_ckpt))
    assert torch.allclose(pooled(s1, 2), pooled(ref.backbone1, 2), atol=1e-5, rtol=0)
    # a new head for a task: the encoder loaded, the head fresh
    head = hub("resnet18_s2", weights=str(resnet18_ckpt), num_classes=5)
    assert tuple(pooled(head, 13).shape) == (2, 5)
    assert torch.equal(head.conv1.weight, ref.backbone2.conv1.weight)


def test_random_init_and_wrong_weights(resnet18_ckpt):
    swin = hub("swin_t_s1")
    assert swin.patch_embed.proj.weight.shape[1] == 2 and swin.num_classes == 0
    with pytest.raises(CheckpointError, match="encoder is a resnet18, not a resnet50"):
        hub("resnet50_s2", weights=str(resnet18_ckpt))
    with pytest.raises(CheckpointError, match="TorchGeo checkpoint of 'resnet18'"):
        hub("resnet50_s2", weights=str(resnet18_ckpt.parent / "out" / "resnet18_s2.torchgeo.ckpt"))


def test_dual_entries(resnet18_ckpt, tmp_path):
    dual = hub("dual_resnet18", weights=str(resnet18_ckpt))
    assert type(dual).__name__ == "DoubleResNetSimCLRDownstream" and dual.fc.out_features == 8
    assert dual.load_report.source == str(resnet18_ckpt) and dual.load_report.fresh == ["fc.weight", "fc.bias"]
    ref = create_model("DoubleResNetSimCLRDownstream", base_model="resnet18", checkpoint=resnet18_ckpt)
    assert torch.equal(dual.backbone1.conv1.weight, ref.backbone1.conv1.weight)
    # a downstream checkpoint of ours: its recorded classes and sensors, everything loaded
    fine = create_model("DoubleResNetSimCLRDownstream", num_classes=5, base_model="resnet18", s1_input_channels=0)
    torch.save(downstream_checkpoint(fine), tmp_path / "fine.pth")
    again = hub("dual_resnet18", weights=str(tmp_path / "fine.pth"))
    assert again.fc.out_features == 5 and set(again.in_chans) == {"s2"} and not again.load_report.fresh
    x = {"s2": torch.rand(1, 13, 64, 64)}
    with torch.no_grad():
        assert torch.equal(again.eval()(x), fine.eval()(x))
    seg = hub("dual_swin_t_segmentation", num_classes=3)
    assert type(seg).__name__ == "DoubleSwinTransformerSegmentation" and seg.output.out_channels == 3
    with pytest.raises(CheckpointError, match="resnet18 backbones, the model expects resnet50"):
        hub("dual_resnet50", weights=str(resnet18_ckpt))
