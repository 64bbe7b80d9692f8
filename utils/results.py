"""Collect finished runs into tables shaped like the paper's.

    python -m utils.results runs/*/ [--out results.md]

Each run folder holds the ``results.json`` written by ``train_evaluation.py``. One table
per task (single-label, multi-label, segmentation); rows are model × setting, columns the
headline metrics in %: the project's whole-set metrics, then the original's definitions
("(orig.)", from ``scores["original"]``) to set a row beside the paper's. The original's
overall (micro) multi-label P/R/F1 equal the project's unless there is no true positive at
all (0 there, NaN here), so only its averages get columns. Runs from before the original's
definitions were recorded show "–" there. A run trained on its own classes (a dataset's
``classes.json``, recorded as ``classes`` in ``results.json``) says so in its setting column.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from utils.report import HEADLINE, _pct

TITLES = {"single_label": "Single-label classification", "multi_label": "Multi-label classification",
          "segmentation": "Segmentation"}
SHORT = {"average_accuracy": "AA", "overall_accuracy": "OA", "miou": "mIoU",
         "average_precision": "avg P", "average_recall": "avg R", "average_f1": "avg F1",
         "overall_precision": "OA P", "overall_recall": "OA R", "overall_f1": "OA F1"}
# the original's definitions shown as extra columns (keys of scores["original"])
ORIGINAL_COLUMNS = {
    "single_label": ["average_accuracy", "overall_accuracy"],
    "multi_label": ["average_precision", "average_recall", "average_f1"],
    "segmentation": ["average_accuracy"],
}


def find_results(paths: list[str]) -> list[Path]:
    """``results.json`` files in the given run folders (searched recursively) or files."""
    found = []
    for p in map(Path, paths):
        if p.is_file() and p.name == "results.json":
            found.append(p)
        elif p.is_dir():
            found += sorted(p.rglob("results.json"))
        else:
            print(f"warning: {p} holds no results.json (unfinished run?)", file=sys.stderr)
    return found


def _classes_note(classes) -> str:
    """``, classes my-region (3)`` for a run on its own classes; empty for the 8 DFC classes."""
    from data.classes import ClassScheme
    from data.errors import DatasetError

    if not classes:
        return ""
    try:
        scheme = ClassScheme.from_json(classes, "results.json")
    except DatasetError:
        return ", classes unreadable"
    return "" if scheme.is_dfc8 else f", classes {scheme.scheme} ({scheme.num_classes})"


def results_tables(files: list[Path]) -> str:
    """Markdown: one table per task, one row per run."""
    runs = [json.loads(f.read_text()) | {"_path": str(f.parent)} for f in files]
    out = []
    for task in ("single_label", "multi_label", "segmentation"):
        rows = [r for r in runs if r.get("task") == task]
        if not rows:
            continue
        cols = HEADLINE[task]
        orig = ORIGINAL_COLUMNS[task]
        titles = [SHORT[c] for c in cols] + [f"{SHORT[c]} (orig.)" for c in orig]
        out += [f"### {TITLES[task]}", "",
                "| run | model | setting | " + " | ".join(titles) + " |",
                "|---|---|---|" + "---|" * len(titles)]
        for r in sorted(rows, key=lambda r: (r["model"], r["setting"])):
            if str(r.get("setting", "")).endswith("_baseline"):
                setting = "from scratch"   # a baseline trains every parameter, --finetuning or not
            else:
                setting = ("fine-tuned" if r.get("finetuning") else "frozen") + \
                          (" (from SSL)" if r.get("checkpoint") else "")
            setting += _classes_note(r.get("classes"))
            original = r["scores"].get("original") or {}
            values = [r["scores"].get(c) for c in cols] + [original.get(c) for c in orig]
            out.append(f"| {r['run_name']} | {r['model']} | {setting} | " +
                       " | ".join(_pct(v) for v in values) + " |")
        out.append("")
    return "\n".join(out) if out else "no finished runs found\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Collect finished runs (results.json) into markdown tables.")
    p.add_argument("runs", nargs="+", help="run folders (searched recursively) or results.json files")
    p.add_argument("--out", default=None, help="also write the tables to this markdown file")
    args = p.parse_args(argv)
    text = results_tables(find_results(args.runs))
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
