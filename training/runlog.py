"""What a run records: TensorBoard, ``log.txt`` and ``log.jsonl`` in its folder (rank 0 only)."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from training import distributed as du
from training.metrics import headline


class Logger:
    """Run records on rank 0 (a no-op on other ranks or without a folder).

    * TensorBoard scalars and figures;
    * ``log.txt``: every line the run prints about its progress (one per epoch), timestamped;
    * ``log.jsonl``: one JSON object per epoch with every scalar (train, val, LRs per group),
      easy to load with ``pandas.read_json(path, lines=True)``.
    """

    def __init__(self, log_dir: str | Path | None):
        self.writer = None
        self.log_dir = None
        if log_dir is not None and du.is_main_process():
            from torch.utils.tensorboard import SummaryWriter
            self.log_dir = Path(log_dir)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(str(log_dir))

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def figure(self, tag: str, fig, step: int) -> None:
        if self.writer is not None:
            self.writer.add_figure(tag, fig, step)

    def text(self, line: str) -> None:
        """Append a line to ``log.txt``."""
        if self.log_dir is not None:
            with open(self.log_dir / "log.txt", "a") as fp:
                fp.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {line}\n")

    def record(self, record: dict) -> None:
        """Append one epoch's scalars to ``log.jsonl``."""
        if self.log_dir is None:
            return
        flat = {}
        for part, values in record.items():
            if isinstance(values, dict):
                flat.update({f"{part}/{k}": v for k, v in headline(values).items()})
                flat.update({f"{part}/{k}": v for k, v in values.items()
                             if isinstance(v, int) and not isinstance(v, bool)})
            else:
                flat[part] = values
        with open(self.log_dir / "log.jsonl", "a") as fp:
            fp.write(json.dumps(flat, default=float) + "\n")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
