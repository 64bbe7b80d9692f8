"""A dataset's own classes (its ``classes.json``) through the pipeline: dataset, train_evaluation.py
(results, table, confusion matrix, figures, checkpoint), resume, and predict.py (categories, RAT,
tags, legend, area summary). The 8 DFC classes stay the default (the other test files)."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

import train_evaluation
from data import DFCDataset
from data.classes import DFC8, ClassScheme, read_label_mapping
from data.errors import DatasetError
from data.labels import IGNORE_INDEX, single_label
from data.validate import check_dataset
from training import cli, preflight

ROOT = Path(__file__).resolve().parents[1]

# DFC codes of the sample data grouped into three classes; urban, savanna, snow and 0 ignored
CLASS_CSV = """code,name,color
1,Wald,#117733
2,Wald,
4,Offenland,#ddcc77
5,Offenland,
6,Offenland,
9,Offenland,
10,Wasser,#332288
0,ignore,
3,ignore,
7,ignore,
8,ignore,
"""
NAMES = ["Wald", "Offenland", "Wasser"]
COLORS = ["#117733", "#ddcc77", "#332288"]
DFC_TO_INDEX = {1: 0, 2: 0, 4: 1, 5: 1, 6: 1, 9: 1, 10: 2}   # other codes -> 255


def _rewrite_balanced_list(root: Path, scheme: ClassScheme) -> None:
    """``validation_observations_balanced_classes.csv`` from the new labels (the original's rule:
    each row repeated max_count // count(label) times, ignored labels once)."""
    rows = list(csv.reader((root / "validation_observations.csv").read_text().splitlines()))
    labels = []
    for _season, scene, patch in rows:
        path = root / "ROIs0000_validation" / f"dfc_{scene}" / f"ROIs0000_validation_dfc_{scene}_p{patch}.tif"
        with rasterio.open(path) as ds:
            labels.append(single_label(scheme.to_indices(ds.read())))
    counts = {k: labels.count(k) for k in set(labels) - {IGNORE_INDEX}}
    top = max(counts.values())
    with open(root / "validation_observations_balanced_classes.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("Season", "Scene", "ID", "dfc_label", "copy_nr"))
        for row, label in zip(rows, labels):
            for copy in range(1 if label == IGNORE_INDEX else max(1, top // counts[label])):
                w.writerow((*row, label, copy))


@pytest.fixture(scope="module")
def custom_root(tmp_path_factory) -> Path:
    """The sample dataset with its DFC maps rewritten into the 3 classes of ``waldland.csv``."""
    from data.sample import generate_sample_dataset

    base = tmp_path_factory.mktemp("custom")
    root = generate_sample_dataset(base / "root", seed=0, patches={"sen12ms": 1, "validation": 8, "test": 8})
    (base / "waldland.csv").write_text(CLASS_CSV)
    mapping = read_label_mapping(base / "waldland.csv")
    for path in sorted(root.glob("ROIs0000_*/dfc_*/*.tif")):
        with rasterio.open(path) as ds:
            profile, raw = ds.profile, ds.read()
        np.save(str(path) + ".raw.npy", raw)   # the original DFC codes, for the checks below
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(mapping.apply(raw))
    mapping.scheme.save(root / "classes.json")
    _rewrite_balanced_list(root, mapping.scheme)
    return root


def view_root(src: Path, dst: Path, scheme) -> Path:
    """A root sharing ``src``'s patches (symlinked season folders) with its own lists and classes."""
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.is_dir():
            (dst / p.name).symlink_to(p, target_is_directory=True)
        elif p.suffix == ".csv":
            shutil.copy(p, dst / p.name)
    if isinstance(scheme, str):
        (dst / "classes.json").write_text(scheme)
    elif scheme is not None:
        scheme.save(dst / "classes.json")
    return dst


def eval_argv(root, out, *extra):
    return ["--train_dir", str(root), "--model", "DoubleResNetSimCLRDownstream", "--base_model", "resnet18",
            "--image_px_size", "64", "--batch_size", "8", "--num_workers", "0", "--epochs", "1",
            "--output_dir", str(out), *extra]


def refused(argv, capsys) -> str:
    """Run train_evaluation.py's command line in-process; it must fail with one line."""
    rc = cli.run(train_evaluation.main, train_evaluation.get_args_parser(), argv)
    err = capsys.readouterr().err
    assert rc in (1, 2) and "Traceback" not in err, err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    return err


# ------------------------------------------------------------------------------ dataset
def test_the_dataset_takes_its_classes_from_the_root(custom_root):
    ds = DFCDataset(custom_root, mode="validation")
    assert ds.classes == tuple(NAMES) and ds.num_classes == 3 and ds.scheme.colors == tuple(COLORS)
    seen = set()
    for i in range(len(ds)):
        sample = ds[i]
        season, scene, patch = ds.observation(i)
        path = custom_root / season.value / f"dfc_{scene}" / f"{season.value}_dfc_{scene}_p{patch}.tif"
        raw = np.load(str(path) + ".raw.npy")[0]
        expected = np.vectorize(lambda v: DFC_TO_INDEX.get(int(v), IGNORE_INDEX))(raw)
        np.testing.assert_array_equal(sample["dfc"][0].numpy(), expected)
        assert sample["dfc_multilabel_one_hot"].shape == (3,)
        shares = np.bincount(expected.ravel(), minlength=256)[:3] / expected.size
        assert sample["dfc_multilabel_one_hot"].tolist() == (shares >= 0.1).astype(float).tolist()
        assert sample["dfc_label"].item() == single_label(expected)
        assert sample["lc_multilabel_one_hot"].shape == (8,)   # MODIS: always the 8 DFC classes
        seen.update(np.unique(expected).tolist())
    assert {0, 1, 2} <= seen
    # an explicit scheme wins over the root's file: the same files read as DFC codes
    dfc = DFCDataset(custom_root, mode="validation", classes=DFC8)
    assert dfc.classes == DFC8.names and dfc[0]["dfc_multilabel_one_hot"].shape == (8,)
    assert set(np.unique(dfc[0]["dfc"].numpy()).tolist()) <= {0, 1, 255}  # values 1, 2, 3 read as DFC codes


def test_the_default_scheme_reads_dfc_files_exactly_as_before():
    from data.labels import dfc10_to_dfc8

    every = np.arange(1 << 16, dtype=np.uint16)
    np.testing.assert_array_equal(DFC8.table_u16()[every], dfc10_to_dfc8(every))
    odd = np.array([np.nan, -1.0, 0.0, 3.0, 10.0, 10.7, 70000.0], dtype=np.float32)
    np.testing.assert_array_equal(DFC8.to_indices(odd), dfc10_to_dfc8(odd))


def test_the_dfc_figure_uses_the_roots_names_and_colours(custom_root):
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    ds = DFCDataset(custom_root, mode="validation")
    fig = ds.plot(0)
    legend = {t.get_text(): to_hex(h.get_facecolor()) for t, h in
              zip(fig.legends[0].get_texts(), fig.legends[0].legend_handles)}
    present = {NAMES[c] for c in np.unique(ds[0]["dfc"].numpy()).astype(int) if c < 3}
    assert present and all(legend[n] == COLORS[NAMES.index(n)] for n in present)
    plt.close(fig)


def test_a_broken_classes_json_is_one_line_naming_it(custom_root, tmp_path, capsys):
    root = view_root(custom_root, tmp_path / "broken", '{"classes": [{"name": "Wald", "color": "green"}]}')
    with pytest.raises(DatasetError, match="classes.json") as err:
        check_dataset(root, "validation", flag="--train_dir")
    assert "\n" not in str(err.value) and "--train_dir" in str(err.value)
    message = refused(eval_argv(root, tmp_path / "run"), capsys)
    assert str(root / "classes.json") in message and "not a class scheme" in message
    assert not (tmp_path / "run").exists()


def test_label_values_that_are_not_classes_are_refused(custom_root, tmp_path):
    other = ClassScheme(("A", "B", "C"), tuple(COLORS), (5, 6, 7), "other")
    root = view_root(custom_root, tmp_path / "other", other)
    with pytest.raises(DatasetError, match=r"label value\(s\) .* are not classes of .*classes.json"):
        check_dataset(root, "validation", flag="--train_dir")


def test_roots_with_other_classes_are_refused_in_one_line(custom_root, sample_root, tmp_path, capsys):
    renamed = ClassScheme(("Forest", "Open land", "Water"), tuple(COLORS), (1, 2, 3), "renamed")
    other = view_root(custom_root, tmp_path / "other", renamed)
    message = refused(eval_argv(custom_root, tmp_path / "run", "--val_dir", str(other)), capsys)
    assert str(custom_root / "classes.json") in message and str(other / "classes.json") in message
    assert "different classes" in message and "Wald" in message and "Open land" in message
    # a DFC2020 root without classes.json has the 8 DFC classes: not the same either
    message = refused(eval_argv(custom_root, tmp_path / "run", "--val_dir", str(sample_root)), capsys)
    assert f"{sample_root} (no classes.json: the 8 DFC2020 classes)" in message
    assert not (tmp_path / "run").exists()
    # colours and the scheme's name do not make other classes: accepted up to model building
    recoloured = ClassScheme(tuple(NAMES), ("#000000", "#111111", "#222222"), (1, 2, 3), "again")
    args = train_evaluation.get_args_parser().parse_args(eval_argv(
        custom_root, tmp_path / "run", "--val_dir", str(view_root(custom_root, tmp_path / "re", recoloured))))
    assert preflight.resolve_classes(args).names == tuple(NAMES) and args.n_classes == 3


def test_n_classes_defaults_to_the_datasets_classes(custom_root, sample_root, tmp_path, capsys):
    parse = train_evaluation.get_args_parser().parse_args
    args = parse(eval_argv(custom_root, tmp_path / "run"))
    assert args.n_classes is None
    preflight.resolve_classes(args)
    assert args.n_classes == 3 and [c["name"] for c in args.classes["classes"]] == NAMES
    args = parse(eval_argv(sample_root, tmp_path / "run"))
    preflight.resolve_classes(args)
    assert args.n_classes == 8 and args.classes == DFC8.to_json()
    args = parse(eval_argv(custom_root, tmp_path / "run", "--target", "lc_label", "--train_mode", "validation"))
    preflight.resolve_classes(args)   # MODIS IGBP targets keep the 8 DFC classes
    assert args.n_classes == 8 and args.classes == DFC8.to_json()
    args = parse(eval_argv(custom_root, tmp_path / "run", "--n_classes", "5"))
    preflight.resolve_classes(args)   # more outputs than classes: allowed (single label)
    assert args.n_classes == 5
    assert "--n_classes 2: must be >= 3 (the targets have 3 classes" in refused(
        eval_argv(custom_root, tmp_path / "run", "--n_classes", "2"), capsys)
    assert "--n_classes 8: the multi-label target dfc_multilabel_one_hot has 3 classes" in refused(
        eval_argv(custom_root, tmp_path / "run", "--n_classes", "8", "--target", "dfc_multilabel_one_hot"), capsys)


def test_a_resume_keeps_the_classes(custom_root, tmp_path):
    args = train_evaluation.get_args_parser().parse_args(eval_argv(custom_root, tmp_path / "run"))
    preflight.resolve_classes(args)
    current = dict(vars(args))
    stored = dict(current, classes=DFC8.to_json(), n_classes=8)
    (tmp_path / "run").mkdir()
    torch.save({"model_weights": {}, "optim_state": {"state": {}}, "epochs": 1, "config": stored},
               tmp_path / "run" / "checkpoint_last.pth")
    with pytest.raises(cli.UsageError, match=r"n_classes: checkpoint 8, now 3; .*classes\.classes") as err:
        preflight.check_resume("auto", tmp_path / "run", kind="downstream", current=current,
                               keys=preflight.DOWNSTREAM_RESUME_KEYS)
    assert "\n" not in str(err.value)
    # a stored n_classes of None is the dataset's count; a config without classes (older runs) passes
    old = {k: v for k, v in current.items() if k != "classes"} | {"n_classes": None}
    torch.save({"model_weights": {}, "optim_state": {"state": {}}, "epochs": 1, "config": old},
               tmp_path / "run" / "checkpoint_last.pth")
    preflight.check_resume("auto", tmp_path / "run", kind="downstream", current=current,
                           keys=preflight.DOWNSTREAM_RESUME_KEYS, defaults={"n_classes": 3})


# ------------------------------------------------------------------------------ inference pieces
def test_checkpoint_classes_names_colours_and_fallbacks():
    from inference.classes import checkpoint_classes

    scheme = ClassScheme(tuple(NAMES), tuple(COLORS), (1, 2, 3), "waldland")
    got = checkpoint_classes({"classes": scheme.to_json()}, 3)
    assert got.names == NAMES and got.colors == COLORS and got.scheme == "waldland"
    wider = checkpoint_classes({"classes": scheme.to_json()}, 5)   # --n_classes 5 at training
    assert wider.names == NAMES + ["class_3", "class_4"] and wider.colors[:3] == COLORS
    assert len(set(wider.colors)) == 5
    old = checkpoint_classes({"model_weights": {}}, 8)              # no record: the DFC classes
    assert old.names == list(DFC8.names) and old.colors == list(DFC8.colors) and old.scheme is None
    narrow = checkpoint_classes({"classes": scheme.to_json()}, 2)
    assert narrow.names == ["class_0", "class_1"] and narrow.note.startswith("warning:")
    with pytest.raises(DatasetError, match="its 'classes' entry"):
        checkpoint_classes({"classes": {"classes": [{"color": "#000000"}]}}, 3)


def test_the_documented_worldcover_table_is_the_code():
    from data.classes import WORLDCOVER

    rows = [line.split("|")[1:-1] for line in (ROOT / "docs" / "classes.md").read_text().splitlines()
            if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    documented = {int(r[0]): r[3].strip() for r in rows}
    coded = {r["code"]: r["class"].replace(" (no label)", "") for r in WORLDCOVER.describe()}
    assert documented == coded
    notes = {int(r[0]): r[4].strip() for r in rows}
    assert all(notes[c] == n for c, n in WORLDCOVER.notes.items())


# ------------------------------------------------------------------------------ end to end
def _spy(monkeypatch, name, calls):
    real = getattr(train_evaluation, name)

    def spy(*args, **kwargs):
        fig = real(*args, **kwargs)
        calls.append(fig)
        return fig
    monkeypatch.setattr(train_evaluation, name, spy)


@pytest.mark.slow
def test_custom_classes_through_training_and_prediction(custom_root, tmp_path, monkeypatch, capsys):
    """train_evaluation.py (one epoch, single label) on the 3-class root, then predict.py with its
    checkpoint on a scene: the names and colours reach every output."""
    from matplotlib.colors import to_hex

    from data.sample import generate_scene
    from inference.preview import read_legend
    from inference.writer import read_category_names
    from utils.results import find_results, results_tables

    figures = []
    _spy(monkeypatch, "plot_confusion_matrix", figures)
    run = tmp_path / "run"
    rc = cli.run(train_evaluation.main, train_evaluation.get_args_parser(),
                 eval_argv(custom_root, run, "--finetuning"))
    printed = capsys.readouterr().out
    assert rc == 0
    results = json.loads((run / "results.json").read_text())
    assert [c["name"] for c in results["classes"]["classes"]] == NAMES
    assert [c["color"] for c in results["classes"]["classes"]] == COLORS
    assert results["config"]["n_classes"] == 3 and len(results["scores"]["confusion_matrix"]) == 3
    assert "classes: 3 classes (Wald, Offenland, Wasser)" in printed
    for name in NAMES:
        assert f"| {name} |" in printed
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES
    assert [t.get_text() for t in ax.get_yticklabels()] == NAMES
    ckpt = torch.load(run / "checkpoint_last.pth", weights_only=True)
    assert ckpt["classes"] == results["classes"] and ckpt["model_weights"]["fc.weight"].shape[0] == 3
    assert ", classes waldland (3) |" in results_tables(find_results([str(run)]))

    scene = generate_scene(tmp_path / "scene", 256, 256, seed=1)
    out = tmp_path / "map" / "map.tif"
    cmd = [sys.executable, str(ROOT / "predict.py"), "--checkpoint", str(run / "checkpoint_last.pth"),
           "--s2", str(scene["s2"]), "--s1", str(scene["s1"]), "--out", str(out), "--window", "64",
           "--preview", str(tmp_path / "map" / "map.png"), "--summary", str(tmp_path / "map" / "s.json"),
           "--device", "cpu", "--batch_size", "16", "--no_progress"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "classes: 3 classes (Wald, Offenland, Wasser)" in proc.stderr
    rgb = [tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in COLORS]
    cats = read_category_names(out)
    assert cats["categories"] == NAMES
    assert cats["rat"] == [[str(i), n, *map(str, rgb[i])] for i, n in enumerate(NAMES)] + \
        [["255", "no data", "0", "0", "0"]]
    with rasterio.open(out) as ds:
        tags, cmap, labels = ds.tags(), ds.colormap(1), ds.read(1)
    assert json.loads(tags["CLASS_NAMES"]) == NAMES and json.loads(tags["CLASS_COLORS"]) == COLORS
    assert tags["CLASS_SCHEME"] == "waldland" and [tags[f"CLASS_{i}"] for i in range(3)] == NAMES
    assert [cmap[i][:3] for i in range(3)] == rgb and labels[labels != 255].max() <= 2
    summary = json.loads((tmp_path / "map" / "s.json").read_text())
    assert [(c["name"], c["color"]) for c in summary["classes"]] == list(zip(NAMES, COLORS))
    assert summary["class_scheme"] == "waldland"
    assert all(name in proc.stdout for name in NAMES)   # the printed area table
    assert read_legend(tmp_path / "map" / "map.png") == [[i, n, c] for i, (n, c) in
                                                         enumerate(zip(NAMES, COLORS))] + [[255, "no data", "#ffffff"]]
    from PIL import Image
    png = {to_hex(np.asarray(p) / 255.0) for p in
           np.asarray(Image.open(tmp_path / "map" / "map.png").convert("RGB")).reshape(-1, 3)[::7]}
    predicted = {COLORS[c] for c in np.unique(labels) if c < 3}
    assert predicted and predicted <= png


@pytest.mark.slow
def test_custom_classes_in_segmentation(custom_root, tmp_path, monkeypatch, capsys):
    from matplotlib.colors import to_hex

    figures = []
    _spy(monkeypatch, "plot_segmentation_examples", figures)
    argv = ["--train_dir", str(custom_root), "--model", "DoubleSwinTransformerSegmentation", "--target", "dfc",
            "--epochs", "1", "--batch_size", "4", "--num_workers", "0", "--train_used_data_fraction", "0.1",
            "--val_used_data_fraction", "0.25", "--finetuning", "--example_maps", "2", "--output_dir",
            str(tmp_path)]
    assert cli.run(train_evaluation.main, train_evaluation.get_args_parser(), argv) == 0
    printed = capsys.readouterr().out
    scores = json.loads((tmp_path / "results.json").read_text())["scores"]
    assert len(scores["per_class_iou"]) == 3 and len(scores["confusion_matrix"]) == 3
    assert all(f"| {name} |" in printed for name in NAMES)
    legend = figures[0].legends[0]
    assert [t.get_text() for t in legend.get_texts()] == NAMES + ["no data (255)"]
    assert [to_hex(h.get_facecolor()) for h in legend.legend_handles][:3] == COLORS
    ckpt = torch.load(tmp_path / "checkpoint_last.pth", weights_only=True)
    assert [c["name"] for c in ckpt["classes"]["classes"]] == NAMES
