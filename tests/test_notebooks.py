"""Both demo notebooks execute top to bottom (nbclient) on the sample data, and do what
they say: fine-tune with the original's two learning rates, save ``classifier-epoch-N.pth``
and reload it to the same predictions."""
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]

NOTEBOOKS = {
    # name: (run folder, backbone folder, model name, model options)
    "demo_resnet_backbone": ("resnet50_s2_finetuning", "resnet50_backbone",
                             "DoubleResNetSimCLRDownstream",
                             dict(base_model="resnet50", s1_input_channels=0)),
    "demo_swin_backbone": ("swin_t_s1s2_finetuning", "swin_backbone",
                           "DoubleSwinTransformerDownstream",
                           dict(s1_input_channels=2, s2_input_channels=13)),
}

# Run in the notebook's kernel after its last cell: checks on the live objects.
KERNEL_CHECKS = '''
# the classifier the notebook reloaded from the last classifier-epoch-N.pth
assert last == out_dir / f"classifier-epoch-{EPOCHS - 1}.pth" and last.is_file(), last
_saved = dict(classifier.named_parameters())
assert all(torch.equal(p, _saved[n]) for n, p in model.named_parameters())
assert all(torch.equal(b, dict(classifier.named_buffers())[n]) for n, b in model.named_buffers())
assert same, "the notebook's reload check (same logits on its sample) failed"

# fine-tuning: everything trains, the backbone at 1e-5, the head at 3e-6
_lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
assert _lrs == {"backbone": 1e-5, "head": 3e-6}, _lrs
assert optimizer.defaults["weight_decay"] == 1e-3
_group = {id(p): g["name"] for g in optimizer.param_groups for p in g["params"]}
assert all(p.requires_grad for p in model.parameters())
assert all(_group.get(id(p)) == "backbone" for p in model.backbone_parameters())
assert all(_group.get(id(p)) == "head" for p in model.head_parameters())
_steps = EPOCHS * len(train_loader)
for g in optimizer.param_groups:   # each group moved, by at most ~its lr per Adam step
    _d = max((p.detach() - initial[names[id(p)]]).abs().max().item() for p in g["params"])
    assert 0 < _d <= 3.2 * _steps * g["lr"], (g["name"], _d, _steps)
# the saved backbone is not the pre-trained one (initial: as loaded from the backbone checkpoint)
_bb = tuple(classifier.backbone_prefixes())
_moved = [n for n, p in _saved.items() if n.startswith(_bb) and not torch.equal(p, initial[n])]
assert len(_moved) > len(list(classifier.backbone_parameters())) // 2, len(_moved)
print("KERNEL CHECKS PASSED")
'''


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_notebook_runs(name, sample_root, tmp_path, monkeypatch):
    run_dir, backbone_dir, model_name, options = NOTEBOOKS[name]
    nb = nbformat.read(REPO / "demo" / f"{name}.ipynb", as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "commit the notebook without outputs (python demo/make_notebooks.py)"
    nb.cells.append(nbformat.v4.new_code_cell(KERNEL_CHECKS))
    # the notebook works from the repository root; point it at the test data and a
    # checkpoint-free run folder so that it pre-trains its own backbone
    runs = tmp_path / "runs"
    monkeypatch.setenv("DEMO_DATA", str(sample_root))
    monkeypatch.setenv("DEMO_FAST", "1")
    monkeypatch.delenv("DEMO_EPOCHS", raising=False)
    monkeypatch.setenv("SWIN_CHECKPOINT", str(tmp_path / "none.pth"))
    monkeypatch.setenv("RESNET50_CHECKPOINT", str(tmp_path / "none.pth"))
    monkeypatch.setenv("DEMO_RUNS", str(runs))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "demo")}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    print(f"{name}: {time.perf_counter() - start:.0f} s")
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    assert "checkpoint:" in outputs and "pre-training a backbone" in outputs
    assert "| overall accuracy |" in outputs and "| average accuracy |" in outputs
    assert "fine-tuning: backbones at 1e-05, head at 3e-06" in outputs
    assert "same logits as the in-memory model: True" in outputs
    assert "KERNEL CHECKS PASSED" in outputs

    # DEMO_FAST: 2 epochs, scored (and saved) after epoch 0 and the last one
    saved = sorted(p.name for p in (runs / run_dir).glob("classifier-epoch-*.pth"))
    assert saved == ["classifier-epoch-0.pth", "classifier-epoch-1.pth"]

    from models.checkpoint import read_checkpoint

    obj, _ = read_checkpoint(runs / run_dir / "classifier-epoch-1.pth")
    assert obj["model_name"] == model_name and obj["epochs"] == 2
    assert {k: obj["model_options"][k] for k in options} == options
    assert "overall_accuracy" in obj["val_stats"]
    assert (runs / backbone_dir / "checkpoint_last.pth").is_file()  # pre-trained here
