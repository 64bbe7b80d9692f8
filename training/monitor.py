"""What pre-training has learned so far, measured on labelled DFC2020 patches (like DINO's k-NN).

Every ``--monitor_every`` epochs (and at step 0, before any training, as the reference line)
the encoders embed the centre crops of a labelled DFC2020 root (``--monitor_dir``, default
``--val_dir``): the *validation* split trains, the *test* split is evaluated. Reported, as
fractions in [0, 1]:

* ``knn_s1`` / ``knn_s2`` / ``knn_fused``: k-NN accuracy (k = 20, cosine similarity, votes
  weighted by ``exp(sim / 0.07)`` as DINO) on the pooled encoder features (before any
  projection head) of S1, S2 and both concatenated (each L2-normalised first);
* ``probe_s1`` / ``probe_s2`` / ``probe_fused``: a fast linear probe on the same features
  (standardised, scikit-learn ``LogisticRegression``, at most 200 L-BFGS iterations);
* ``retrieval_top1`` / ``retrieval_top5``: held-out cross-modal retrieval: for every test
  patch, is its S2 embedding (the space the InfoNCE loss works in: the model's outputs) among
  the 1 / 5 nearest (cosine) of all test patches' S2 embeddings to its S1 embedding?
  Chance: 1 / N and 5 / N (``retrieval_chance_top1``).

At step 0 a network with BatchNorm (ResNets) is evaluated with BatchNorm statistics re-estimated
on the monitor's training patches (a copy of the model; the default statistics mean 0 / var 1
would understate random features): random weights with real statistics are the fair baseline.
Results go to TensorBoard (``monitor/...``), ``log.txt`` (one line) and ``log.jsonl``
(``{"epoch": E, "monitor/knn_s2": ..., ...}``); :func:`plot_monitor` draws the curves.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

KEYS = ("knn_s1", "knn_s2", "knn_fused", "probe_s1", "probe_s2", "probe_fused",
        "retrieval_top1", "retrieval_top5")
CACHE_LIMIT_BYTES = 1 << 30   # keep the monitor's input crops in memory up to 1 GiB


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("pre-training monitor (k-NN, linear probe, cross-modal retrieval)")
    g.add_argument("--monitor_every", type=int, default=0, metavar="N",
                   help="every N epochs (and at step 0 as the reference) measure k-NN (k=20, "
                        "cosine) and linear-probe accuracy of S1, S2 and fused features and "
                        "held-out S1->S2 retrieval on a labelled DFC2020 root; 0: off")
    g.add_argument("--monitor_dir", default=None,
                   help="DFC2020 root for the monitor: trains on its validation split, evaluates "
                        "on its test split (default: --val_dir)")


# ------------------------------------------------------------------------- the metrics
def retrieval_accuracy(query: torch.Tensor, keys: torch.Tensor, ks=(1, 5)) -> dict:
    """Top-k accuracy of retrieving ``keys[i]`` for ``query[i]`` among all keys (cosine).

    Ties count against the query (a rank is the number of keys at least as similar, the true
    one excluded), so identical inputs give 1.0 only when the true key is strictly nearest
    among distinct keys.
    """
    q = F.normalize(query.float(), dim=1)
    k = F.normalize(keys.float(), dim=1)
    sims = q @ k.T
    true = sims.diagonal().unsqueeze(1)
    others = sims >= true
    others.fill_diagonal_(False)
    rank = others.sum(1)   # keys at least as similar as the true one
    return {f"top{n}": float((rank < n).float().mean()) for n in ks}


def knn_predict(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, *, k: int = 20,
                temperature: float = 0.07, num_classes: int | None = None) -> torch.Tensor:
    """Weighted k-NN (cosine similarity, weights ``exp(sim / T)``), DINO's evaluation.

    ``num_classes``: default the largest training label + 1 (the dataset's own classes, any count)."""
    if num_classes is None:
        num_classes = int(train_y.max()) + 1 if len(train_y) else 1
    a = F.normalize(train_f.float(), dim=1)
    b = F.normalize(test_f.float(), dim=1)
    sims = b @ a.T
    k = min(k, a.shape[0])
    top, idx = sims.topk(k, dim=1)
    votes = torch.zeros(b.shape[0], num_classes)
    votes.scatter_add_(1, train_y[idx].long(), (top / temperature).exp())
    return votes.argmax(1)


def linear_probe_predict(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, *,
                         max_iter: int = 200, seed: int = 0) -> torch.Tensor:
    """Logistic regression on standardised features (scikit-learn, L-BFGS)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, t = train_f.double().numpy(), test_f.double().numpy()
    y = train_y.long().numpy()
    if len(np.unique(y)) < 2:
        return torch.full((len(t),), int(y[0]) if len(y) else 0, dtype=torch.long)
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(scaler.transform(x), y)
    return torch.from_numpy(clf.predict(scaler.transform(t))).long()


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches, device) -> nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are the (cumulative) statistics of
    ``batches``; every other module in eval mode, no weight changes."""
    net = copy.deepcopy(model).eval()
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None        # cumulative average over all batches
        m.train()
    for batch in batches:
        net({k: v.to(device) for k, v in batch.items() if k in ("s1", "s2")})
    for m in bns:
        m.eval()
    return net


# ------------------------------------------------------------------------- the monitor
class Monitor:
    """Embeds a labelled DFC2020 root's centre crops and scores the features (module docstring)."""

    def __init__(self, root=None, *, sets: dict | None = None, image_px_size: int, device, batch_size: int = 64,
                 workers: int = 0, every: int = 1, logger=None, k: int = 20, max_iter: int = 200,
                 input_size: int | None = None, cache_limit_bytes: int = CACHE_LIMIT_BYTES):
        """``root``: a DFC2020 folder (its validation and test splits, centre crops; other
        splits or clipping: :meth:`from_root`), or None with ``sets={"train": ds, "test": ds}`` (any
        datasets of sample dicts); ``input_size``: resize the crops to this size first; the crops
        are read once and kept in memory if they fit in ``cache_limit_bytes`` (fp32)."""
        self.every, self.logger, self.k = int(every), logger, k
        self.device = torch.device(device)
        self.batch_size, self.workers, self.max_iter = batch_size, workers, max_iter
        self.input_size = input_size
        self.sets = sets if sets is not None else self.dfc2020_sets(root, image_px_size)
        self.correct: dict = {}   # per test item, of the last evaluation: {"probe_fused": bool array}
        self.labels = {s: None for s in self.sets}
        self._cache: dict = {}
        per_item = 15 * image_px_size ** 2 * 4
        self.cached = per_item * sum(len(d) for d in self.sets.values()) <= cache_limit_bytes
        self.history: list[dict] = []

    @staticmethod
    def dfc2020_sets(root, image_px_size: int, *, clip_sample_values: bool = True, train_mode: str = "validation",
                     test_mode: str = "test") -> dict:
        """The monitor's ``{"train", "test"}`` datasets of a DFC2020 root (deterministic centre crops)."""
        from data import DFCDataset

        return {split: DFCDataset(root, mode=mode, image_px_size=image_px_size, random_crop=False,
                                  clip_sample_values=clip_sample_values)
                for split, mode in (("train", train_mode), ("test", test_mode))}

    @classmethod
    def from_root(cls, root, *, image_px_size: int, clip_sample_values: bool = True, train_mode: str = "validation",
                  test_mode: str = "test", **options) -> "Monitor":
        """A monitor on a DFC2020 root's ``train_mode`` / ``test_mode`` splits."""
        sets = cls.dfc2020_sets(root, image_px_size, clip_sample_values=clip_sample_values, train_mode=train_mode,
                                test_mode=test_mode)
        return cls(sets=sets, image_px_size=image_px_size, **options)

    def _batches(self, split: str) -> Iterator[dict]:
        if split in self._cache:
            yield from self._cache[split]
            return
        loader = torch.utils.data.DataLoader(self.sets[split], batch_size=self.batch_size,
                                             shuffle=False, num_workers=self.workers)
        keep, labels = [], []
        for batch in loader:
            b = {"s1": batch["s1"], "s2": batch["s2"]}
            labels.append(batch["dfc_label"].long())
            if self.cached:
                keep.append(b)
            yield b
        self.labels[split] = torch.cat(labels)
        if self.cached:
            self._cache[split] = keep

    def _inputs(self, split: str) -> Iterator[dict]:
        """``{"s1", "s2"}`` on the device, resized to ``input_size`` if set."""
        for batch in self._batches(split):
            x = {k: batch[k].to(self.device) for k in ("s1", "s2")}
            if self.input_size and x["s1"].shape[-1] != self.input_size:
                x = {k: F.interpolate(v.float(), size=self.input_size, mode="bilinear",
                                      align_corners=False) for k, v in x.items()}
            yield x

    @torch.no_grad()
    def features(self, model: nn.Module, split: str) -> dict:
        """``{"s1", "s2"}`` pooled encoder features and ``{"z1", "z2"}`` model outputs (CPU)."""
        out = {"s1": [], "s2": [], "z1": [], "z2": []}
        for batch in self._inputs(split):
            x1, x2 = batch["s1"], batch["s2"]
            for key, enc, x in (("s1", model.backbone1, x1), ("s2", model.backbone2, x2)):
                pooled = enc.forward_head(enc.forward_features(x), pre_logits=True)
                out[key].append(pooled.float().cpu())
                fc = getattr(enc, "fc", None)     # ResNet: the projection MLP; Swin: none
                z = fc(pooled) if isinstance(fc, nn.Sequential) else pooled
                out["z1" if key == "s1" else "z2"].append(z.float().cpu())
        return {k: torch.cat(v) for k, v in out.items()}

    def evaluate(self, model: nn.Module, *, reestimate_bn: bool = False) -> dict:
        """The metrics of :data:`KEYS` (plus counts and chance levels) for ``model`` now."""
        start = time.perf_counter()
        was_training = model.training
        net = model
        if reestimate_bn and has_batchnorm(model):
            net = reestimate_batchnorm(model, self._inputs("train"), self.device)
        net.eval()
        try:
            feats = {split: self.features(net, split) for split in self.sets}
        finally:
            model.train(was_training)
        ytr, yte = self.labels["train"], self.labels["test"]
        keep_tr, keep_te = ytr != 255, yte != 255
        values: dict = {}
        for name in ("s1", "s2", "fused"):
            if name == "fused":
                tr = torch.cat([F.normalize(feats["train"][s], dim=1) for s in ("s1", "s2")], 1)
                te = torch.cat([F.normalize(feats["test"][s], dim=1) for s in ("s1", "s2")], 1)
            else:
                tr, te = feats["train"][name], feats["test"][name]
            tr, te = tr[keep_tr], te[keep_te]
            knn = knn_predict(tr, ytr[keep_tr], te, k=self.k)
            probe = linear_probe_predict(tr, ytr[keep_tr], te, max_iter=self.max_iter)
            self.correct[f"knn_{name}"] = (knn == yte[keep_te]).numpy()
            self.correct[f"probe_{name}"] = (probe == yte[keep_te]).numpy()
            values[f"knn_{name}"] = float(self.correct[f"knn_{name}"].mean())
            values[f"probe_{name}"] = float(self.correct[f"probe_{name}"].mean())
        self.correct["labels"] = yte[keep_te].numpy()
        r = retrieval_accuracy(feats["test"]["z1"], feats["test"]["z2"])
        n = len(yte)
        values.update(retrieval_top1=r["top1"], retrieval_top5=r["top5"],
                      retrieval_chance_top1=1.0 / n, retrieval_chance_top5=min(5.0 / n, 1.0),
                      n_train=int(keep_tr.sum()), n_test=int(keep_te.sum()),
                      seconds=time.perf_counter() - start)
        return values

    def run(self, model: nn.Module, epoch: int) -> dict:
        """Evaluate (epoch 0: random init, BatchNorm re-estimated) and log everything."""
        values = self.evaluate(model, reestimate_bn=epoch == 0)
        values["epoch"] = epoch
        self.history.append(values)
        line = (f"monitor epoch {epoch}{' (reference: before training)' if epoch == 0 else ''}: "
                + "  ".join(f"{k}={values[k]:.3f}" for k in KEYS)
                + f"  (n={values['n_test']} test, {values['seconds']:.1f} s)")
        print(line, flush=True)
        if self.logger is not None:
            self.logger.scalars("monitor", {k: values[k] for k in KEYS}, epoch)
            self.logger.text(line)
            self.logger.record({"epoch": epoch, "monitor": {k: v for k, v in values.items()
                                                            if k != "epoch"}})
        return values

    def callbacks(self, model: nn.Module, callbacks, *, steps_per_epoch: int, epochs: int):
        """A copy of ``callbacks`` (:class:`training.engine.Callbacks`) whose ``after_step`` also
        runs the monitor after the last step of every ``every``-th epoch (and of the last epoch)."""
        import dataclasses

        from training.engine import Callbacks

        callbacks = callbacks or Callbacks()
        previous = callbacks.after_step

        def after_step(epoch: int, step: int) -> None:
            if previous is not None:
                previous(epoch, step)
            if step == steps_per_epoch - 1 and ((epoch + 1) % self.every == 0 or epoch + 1 == epochs):
                self.run(model, epoch + 1)

        return dataclasses.replace(callbacks, after_step=after_step)


def from_args(args, device, logger, batch_size: int | None = None):
    """A :class:`Monitor` for ``--monitor_every N`` (> 0) on rank 0, else None."""
    from training import distributed as du

    every = int(getattr(args, "monitor_every", 0) or 0)
    if every <= 0 or not du.is_main_process():
        return None
    root = getattr(args, "monitor_dir", None) or getattr(args, "val_dir", None)
    if not root:
        raise SystemExit("error: --monitor_every needs --monitor_dir (or --val_dir): a DFC2020 root "
                         "with validation and test splits")
    return Monitor.from_root(root, image_px_size=args.image_px_size, device=device,
                             batch_size=batch_size or min(int(args.batch_size or 64), 128), workers=0,
                             every=every, logger=logger, clip_sample_values=args.clip_sample_values)


def read_monitor_log(path) -> list[dict]:
    """The monitor records of a run's ``log.jsonl`` (or a run folder): ``[{"epoch", key: value}]``."""
    path = Path(path)
    if path.is_dir():
        path = path / "log.jsonl"
    rows = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if any(k.startswith("monitor/") for k in rec):
            rows.append({"epoch": rec["epoch"],
                         **{k.split("/", 1)[1]: v for k, v in rec.items() if k.startswith("monitor/")}})
    return rows


def plot_monitor(rows: list[dict], path, title: str = "pre-training monitor", x: str = "epoch") -> Path:
    """A PNG of the monitor curves (accuracy vs ``x``, a key of the rows: ``"epoch"`` or
    ``"step"``; dashed: chance of top-1 retrieval)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    xs = [r[x] for r in rows]
    for ax, keys, name in ((axes[0], ("knn_s1", "knn_s2", "knn_fused"), "k-NN (k=20) accuracy"),
                           (axes[1], ("probe_s1", "probe_s2", "probe_fused"), "linear probe accuracy"),
                           (axes[2], ("retrieval_top1", "retrieval_top5"), "S1->S2 retrieval")):
        for key in keys:
            ax.plot(xs, [r.get(key, math.nan) for r in rows], marker="o", label=key)
        if name.startswith("S1"):
            ax.plot(xs, [r.get("retrieval_chance_top1", math.nan) for r in rows], "k--",
                    label="chance top-1")
        ax.set_title(name)
        ax.set_xlabel(f"{x} (0: random init)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
