#!/usr/bin/env python
"""Write the two demo notebooks (without outputs) from one template.

    python demo/make_notebooks.py          # rewrites demo/demo_resnet_backbone.ipynb
                                           # and demo/demo_swin_backbone.ipynb

Both retell the original repository's notebooks (ResNet50 on Sentinel-2 only; dual
Swin-T on Sentinel-1 + Sentinel-2): DFC2020 data at 224 px, a look at samples, the
published self-supervised backbone, 5 epochs of fine-tuning (backbone lr 1e-5, head lr
3e-6, Adam, weight decay 1e-3, batch 16, test split every 2 epochs), a saved
``classifier-epoch-N.pth``, reloaded to predict one sample. Edit this file, not the
notebooks, and run it again.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

VARIANTS = {
    "demo_resnet_backbone": dict(
        title="ResNet50 on Sentinel-2: fine-tuning the self-supervised backbone for land cover",
        original="demo_resnet_backbone.ipynb",
        what=("the **Sentinel-2 ResNet50** of the self-supervised dual ResNet50 (pre-trained "
              "against Sentinel-1 with the cross-modal contrastive loss), used alone "
              "(`s1_input_channels=0`), with a fresh linear head on its 2048-d features"),
        sensors="Sentinel-2 only",
        stored="OA 0.544 / AA 0.408",
        env="RESNET50_CHECKPOINT", published="resnet50.pth",
        demo_ckpt="runs/demo/resnet50_backbone/checkpoint_last.pth",
        pretrain_module="train_resnet_backbone", pretrain_dir="resnet50_backbone",
        pretrain_args=('"--arch", "resnet50", "--batch_size", "8", "--lr", "1e-4", '
                       '"--temperature", "0.2"'),
        model_name="DoubleResNetSimCLRDownstream",
        model_options='base_model="resnet50", s1_input_channels=0',
        load_note=("Only the Sentinel-2 ResNet (`backbone2`) is taken from the checkpoint: the "
                   "load report lists the Sentinel-1 branch and the SimCLR projection heads as "
                   "ignored. The 8-class linear head is new."),
        run_dir="resnet50_s2_finetuning",
        inputs='{"s2": sample["s2"][None].to(device)}',
        plot_samples=1,
    ),
    "demo_swin_backbone": dict(
        title="Dual Swin-T on Sentinel-1 + Sentinel-2: fine-tuning the self-supervised backbone for land cover",
        original="demo_swin_backbone.ipynb",
        what=("the self-supervised **dual Swin-T** (one Swin-T for Sentinel-1, one for "
              "Sentinel-2, pre-trained with the cross-modal contrastive loss), with a fresh "
              "linear head on the concatenated 768 + 768 features (S1 + S2 fusion)"),
        sensors="Sentinel-1 + Sentinel-2",
        stored="OA 0.543 / AA 0.481",
        env="SWIN_CHECKPOINT", published="swin_t.pth",
        demo_ckpt="runs/demo/swin_backbone/checkpoint_last.pth",
        pretrain_module="train_d_swin_backbone", pretrain_dir="swin_backbone",
        pretrain_args='"--batch_size", "8", "--warmup_epochs", "0", "--lr", "2e-5"',
        model_name="DoubleSwinTransformerDownstream",
        model_options="",
        load_note=("Both Swin-T backbones load; the 1000-class heads of the original layout are "
                   "reported as ignored. The 8-class linear head on the fused features is new."),
        run_dir="swin_t_s1s2_finetuning",
        inputs='{"s1": sample["s1"][None].to(device),\n     "s2": sample["s2"][None].to(device)}',
        plot_samples=2,
    ),
}


def _setup_cells(v: dict) -> list:
    """Title, what the notebook does, imports and configuration."""
    return [
        new_markdown_cell(f"""# {v['title']}

This notebook retells the original repository's `{v['original']}` with this project's code:

1. load DFC2020: train on the **unbalanced validation split**, test on the **test split**, 224 px
   ({v['sensors']});
2. look at a few samples;
3. load {v['what']};
4. **fine-tune** everything for 5 epochs — backbone lr 1e-5, head lr 3e-6, Adam, weight
   decay 1e-3, batch 16 — scoring the test split every 2 epochs (after epochs 0, 2 and 4) and
   saving `classifier-epoch-N.pth` each time;
5. reload the saved classifier and predict one sample.

It runs on the generated sample data (`python -m data.sample`), so it works on a laptop CPU.
With the real data, set `DEMO_DATA=/path/to/dfc2020` and `{v['env']}=/path/to/{v['published']}`
(the published checkpoint) before starting Jupyter. `DEMO_FAST=1` (the tests) shortens the
run to 2 epochs on a quarter of the training and half of the test patches."""),
        new_code_cell("""import os, sys
from pathlib import Path

# the repository root, whether the notebook runs from demo/ or from the root
ROOT = Path.cwd().parent if Path.cwd().name == "demo" else Path.cwd()
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

import torch
import matplotlib.pyplot as plt

from data import DFCDataset
from data.sample import generate_sample_dataset
from models import create_model, load_model
from models.checkpoint import downstream_checkpoint, save_checkpoint
from training import engine, tasks
from training.downstream import apply_plan, plan_training
from utils.report import plot_confusion_matrix, scores_table

DATA = Path(os.environ.get("DEMO_DATA", "sample_data"))
RUNS = Path(os.environ.get("DEMO_RUNS", "runs/demo/notebooks"))  # checkpoints written here
FAST = os.environ.get("DEMO_FAST") == "1"

# the original notebook's settings
config = {
    "image_px_size": 224, "batch_size": 16, "epochs": 5, "val_every": 2,
    "learning_rate": 1e-5,   # the backbone's, when fine-tuning
    "classifier_lr": 3e-6,   # the head's, when fine-tuning
    "weight_decay": 1e-3, "seed": 42,
    "train_used_data_fraction": 1.0, "val_used_data_fraction": 1.0,
}
if FAST:  # a smoke run: 2 epochs (scored after both), a quarter / half of the patches
    config.update(epochs=2, train_used_data_fraction=0.25, val_used_data_fraction=0.5)
EPOCHS = int(os.environ.get("DEMO_EPOCHS", config["epochs"]))

engine.set_seed(config["seed"])
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if not (DATA / "validation_observations.csv").exists():
    generate_sample_dataset(DATA, seed=0)
print("data:", DATA.resolve(), "| device:", device, "| epochs:", EPOCHS)"""),
    ]


def _data_and_model_cells(v: dict) -> list:
    """1-3: the data, a look at samples, the self-supervised backbone."""
    opts = f",\n                     {v['model_options']}" if v["model_options"] else ""
    return [
        new_markdown_cell("""## 1. Data
DFC2020 has a *validation* split (986 patches in the real data), used here for training —
all of it, **not** the class-balanced subset — and a *test* split (5,128 patches), used for
scoring. Patches are 256 px; training takes a random 224 px crop, the test the centre crop."""),
        new_code_cell("""train_set = DFCDataset(DATA, mode="validation", image_px_size=config["image_px_size"],
                       balanced_classes=False, random_crop=True, seed=config["seed"],
                       used_data_fraction=config["train_used_data_fraction"])
test_set = DFCDataset(DATA, mode="test", image_px_size=config["image_px_size"],
                      used_data_fraction=config["val_used_data_fraction"])
print(train_set, "\\n", test_set)
len(train_set), len(test_set)"""),
        new_markdown_cell("""## 2. Look at a few samples
Sentinel-2 RGB, Sentinel-1 VV and VH, the coarse MODIS land cover and the fine DFC map."""),
        new_code_cell(f"""for i in range({v['plot_samples']}):
    train_set.plot(i)
plt.show()"""),
        new_markdown_cell(f"""## 3. The self-supervised backbone
`{v['env']}` may point at the published `{v['published']}`. Otherwise the notebook uses the
checkpoint `make demo` wrote, or pre-trains one briefly here with the project's own
pre-training script (`{v['pretrain_module']}.py`)."""),
        new_code_cell(f"""ckpt = Path(os.environ.get("{v['env']}",
                          "{v['demo_ckpt']}"))
if not ckpt.exists():
    print(f"{{ckpt}} not found: pre-training a backbone briefly on {{DATA}}")
    import {v['pretrain_module']}
    args = {v['pretrain_module']}.get_args_parser().parse_args(
        ["--train_dir", str(DATA), "--epochs", "1" if FAST else "3",
         {v['pretrain_args']},
         "--workers", "0", "--output_dir", str(RUNS / "{v['pretrain_dir']}"), "--resume", "auto"]
        + (["--train_used_data_fraction", "0.125"] if FAST else []))
    {v['pretrain_module']}.main(args)
    ckpt = RUNS / "{v['pretrain_dir']}" / "checkpoint_last.pth"
print("checkpoint:", ckpt)"""),
        new_markdown_cell(f"""{v['load_note']}

Fine-tuning trains every parameter, in the original's two parameter groups
(`plan_training` / `apply_plan`, as `train_evaluation.py --finetuning` does): the
backbone at `learning_rate` 1e-5 and the head at `classifier_lr` 3e-6."""),
        new_code_cell(f"""MODEL = "{v['model_name']}"
model = create_model(MODEL, num_classes=8, checkpoint=ckpt{opts}).to(device)
print(model.load_report.summary())

plan = plan_training(MODEL, finetuning=True, learning_rate=config["learning_rate"],
                     classifier_lr=config["classifier_lr"])
optimizer = torch.optim.Adam(apply_plan(model, plan), weight_decay=config["weight_decay"])
print(plan.description)
for g in optimizer.param_groups:
    print(f"  {{g['name']:8s}} lr {{g['lr']:g}}  {{sum(p.numel() for p in g['params']):,}} parameters")"""),
    ]


def _training_cells(v: dict) -> list:
    """4-6: fine-tuning, the scores, reloading the saved classifier."""
    return [
        new_markdown_cell("""## 4. Fine-tune
The loop in plain sight: one `engine.train_one_epoch` per epoch (cross-entropy with the
ignore index 255, for patches whose most frequent pixel is *no data*); after epochs 0, 2, 4
(and always the last) the test split is scored with `engine.evaluate` and the classifier is
saved as `classifier-epoch-N.pth`, with the project's checkpoint writer (it records the
model's name and options, so `load_model` can rebuild it)."""),
        new_code_cell(f"""task = tasks.SupervisedTask("dfc_label", num_classes=8)
train_loader = engine.build_loader(train_set, config["batch_size"], shuffle=True,
                                   seed=config["seed"])
test_loader = engine.build_loader(test_set, config["batch_size"], shuffle=False, evaluation=True)
out_dir = RUNS / "{v['run_dir']}"
initial = {{n: p.detach().clone() for n, p in model.named_parameters()}}  # to see what moved

for epoch in range(EPOCHS):
    engine.set_epoch(train_loader, epoch)
    result = engine.train_one_epoch(model, train_loader, task, optimizer, device, epoch)
    line = f"epoch {{epoch}}: train loss {{result.stats['loss']:.4f}}"
    if epoch % config["val_every"] == 0 or epoch == EPOCHS - 1:
        scores = engine.evaluate(model, test_loader, task, device, desc="test")
        path = out_dir / f"classifier-epoch-{{epoch}}.pth"
        save_checkpoint(downstream_checkpoint(model, val_stats=scores, epochs=epoch + 1), path)
        line += (f" | test loss {{scores['loss']:.4f}}, OA {{scores['overall_accuracy']:.3f}}, "
                 f"AA {{scores['average_accuracy']:.3f}} -> {{path}}")
    print(line)"""),
        new_markdown_cell("""Both groups moved, each by at most about its learning rate per step (the size of an Adam
step is close to the learning rate):"""),
        new_code_cell("""names = {id(p): n for n, p in model.named_parameters()}
steps = EPOCHS * len(train_loader)
for g in optimizer.param_groups:
    change = max((p.detach() - initial[names[id(p)]]).abs().max().item() for p in g["params"])
    print(f"{g['name']:8s} lr {g['lr']:g}: largest weight change {change:.2e} after {steps} steps")"""),
        new_markdown_cell(f"""## 5. Scores on the test split
Accuracy over the whole split from a confusion matrix: overall (OA), average over classes (AA)
and per class, after the last epoch.

**The original notebook's stored output, on the real DFC2020 data** (published backbone,
986 training and 5,128 test patches): **{v['stored']}**. On the tiny generated sample data,
with a backbone pre-trained for a few steps, the numbers below mean nothing beyond
"it runs": a handful of synthetic test patches, and the scores move by whole patches."""),
        new_code_cell("""print(scores_table(scores, "single_label"))
plot_confusion_matrix(scores["confusion_matrix"], title=f"{MODEL}, fine-tuned, test split")
plt.show()"""),
        new_markdown_cell("""## 6. Reload the saved classifier and predict
As the original does, the last `classifier-epoch-N.pth` is loaded into a new model
(`load_model` rebuilds it from the name and options the checkpoint records) and predicts
sample 2 of the evaluation dataset — the original's `val_dataset`, which is the DFC2020
*test* split."""),
        new_code_cell(f"""last = out_dir / f"classifier-epoch-{{EPOCHS - 1}}.pth"
classifier = load_model(last).to(device).eval()
print("reloaded:", last)

sample = test_set[2]
x = {v['inputs']}
with torch.no_grad():
    logits = classifier(x)
    same = torch.allclose(logits, model.eval()(x), atol=1e-5)
pred, true = int(logits.argmax(1)), int(sample["dfc_label"])
print(f"predicted class: {{test_set.classes[pred]}}; true class: "
      f"{{test_set.classes[true] if true != 255 else 'no data'}}; "
      f"same logits as the in-memory model: {{same}}")
test_set.plot(sample, title=f"predicted: {{test_set.classes[pred]}}   true: "
              + (test_set.classes[true] if true != 255 else "no data"))
plt.show()"""),
    ]


def cells(v: dict) -> list:
    """Every cell of one notebook variant."""
    return _setup_cells(v) + _data_and_model_cells(v) + _training_cells(v)


def build(name: str) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells(VARIANTS[name]))
    for i, cell in enumerate(nb.cells):  # stable ids: regenerating changes nothing
        cell.id = f"{name.split('_')[1]}-{i:02d}"
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    return nb


def main() -> None:
    for name in VARIANTS:
        nb = build(name)
        nbformat.validate(nb)
        path = HERE / f"{name}.ipynb"
        nbformat.write(nb, path)
        print("wrote", path)


if __name__ == "__main__":
    main()
