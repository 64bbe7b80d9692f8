"""Human-readable results: metric tables, confusion-matrix and prediction figures."""
from __future__ import annotations

import math

import numpy as np

from data.labels import DFC_CLASSES as CLASS_NAMES

# headline metrics per task, in the order the paper's tables use
HEADLINE = {
    "single_label": ["average_accuracy", "overall_accuracy"],
    "multi_label": ["average_precision", "average_recall", "average_f1",
                    "overall_precision", "overall_recall", "overall_f1"],
    "segmentation": ["average_accuracy", "overall_accuracy", "miou"],
}
PER_CLASS = {
    "single_label": ["per_class_accuracy"],
    "multi_label": ["per_class_precision", "per_class_recall", "per_class_f1"],
    "segmentation": ["per_class_accuracy", "per_class_iou"],
}
# the original's definitions, in ``scores["original"]`` (see training.metrics), to set a run
# beside the paper's numbers; the original has no overall accuracy or IoU for segmentation
ORIGINAL_HEADLINE = {
    "single_label": ["average_accuracy", "overall_accuracy"],
    "multi_label": ["average_precision", "average_recall", "average_f1",
                    "overall_precision", "overall_recall", "overall_f1"],
    "segmentation": ["average_accuracy"],
}
ORIGINAL_PER_CLASS = {
    "single_label": ["per_class_accuracy"],
    "multi_label": ["per_class_precision", "per_class_recall", "per_class_f1"],
    "segmentation": ["per_class_accuracy"],
}
NO_DATA_ROW = "no data (255)"


def _pct(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def scores_table(scores: dict, task: str, class_names=CLASS_NAMES) -> str:
    """A markdown table: headline metrics, then one row per class (values in %).

    The project's whole-set metrics come first; where ``scores["original"]`` is present
    (runs since the original's definitions were added), the original's follow, marked
    "(original)" / "(orig.)", so the numbers can be set beside the paper's. The original's
    single-label per-class accuracy has a 255 entry: the extra "no data (255)" row.
    """
    original = scores.get("original") or {}
    over = samples_note(scores)   # unreadable samples skipped: every metric says over how many
    extra = f" {over} |" if over else ""
    lines = ["| metric | value (%) |" + (" samples |" if over else ""), "|---|---|" + ("---|" if over else "")]
    for key in HEADLINE[task]:
        lines.append(f"| {key.replace('_', ' ')} | {_pct(scores.get(key))} |{extra}")
    if original:
        for key in ORIGINAL_HEADLINE[task]:
            lines.append(f"| {key.replace('_', ' ')} (original) | {_pct(original.get(key))} |{extra}")
    columns = [(k.replace("per_class_", ""), scores[k]) for k in PER_CLASS[task] if k in scores]
    columns += [(k.replace("per_class_", "") + " (orig.)", original[k])
                for k in ORIGINAL_PER_CLASS[task] if k in original]
    if columns:
        names = list(class_names)
        if any(len(values) > len(names) for _, values in columns):
            names.append(NO_DATA_ROW)
        lines += ["", "| class | " + " | ".join(title for title, _ in columns) + " |",
                  "|---" * (len(columns) + 1) + "|"]
        for i, name in enumerate(names):
            lines.append(f"| {name} | " + " | ".join(
                _pct(values[i] if i < len(values) else None) for _, values in columns) + " |")
    if over:
        lines += ["", f"Every metric above is over {over}; the skipped files are listed in the run's "
                      "bad_samples.txt."]
    return "\n".join(lines)


def samples_note(scores: dict) -> str | None:
    """``46 of 48 samples (2 unreadable, skipped)`` when the evaluation skipped any, else None."""
    skipped, evaluated = scores.get("skipped_samples"), scores.get("evaluated_samples")
    if not skipped:
        return None
    return f"{evaluated} of {evaluated + skipped} samples ({skipped} unreadable, skipped)"


def plot_confusion_matrix(cm, class_names=CLASS_NAMES, title: str = "Confusion matrix"):
    """Row-normalised confusion matrix (true classes in rows) with counts annotated."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=float)
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_segmentation_examples(examples: list[dict], class_names=CLASS_NAMES, colors=None):
    """Rows of (S2 RGB, true map, predicted map) for a few test patches.

    ``examples``: dicts with ``s2`` (13,H,W) normalised, ``true`` (H,W) and ``pred`` (H,W);
    ``colors``: ``#rrggbb`` per class (default: the DFC palette).
    """
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from data.labels import DFC_COLORS, NO_DATA_COLOR, colorize

    colors = tuple(colors) if colors is not None else DFC_COLORS

    fig, axes = plt.subplots(len(examples), 3, figsize=(9, 3 * len(examples)), squeeze=False)
    for row, ex in zip(axes, examples):
        rgb = np.asarray(ex["s2"])[[3, 2, 1]].transpose(1, 2, 0)
        rgb = np.clip(rgb / max(np.percentile(rgb, 98), 1e-6), 0, 1)
        row[0].imshow(rgb)
        for ax, key in zip(row[1:], ("true", "pred")):
            ax.imshow(colorize(np.asarray(ex[key]), colors), interpolation="nearest")
        for ax, t in zip(row, ("S2 RGB", "true", "predicted")):
            ax.set_title(t)
            ax.axis("off")
    handles = [Patch(color=c, label=n) for c, n in zip(colors, class_names)]
    handles.append(Patch(color=NO_DATA_COLOR, label="no data (255)"))
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
