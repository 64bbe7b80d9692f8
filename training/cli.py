"""The command-line helpers of :mod:`utils.cli`, plus what the training scripts add: leaving the
``torchrun`` process group when a script ends (:func:`run`)."""
from __future__ import annotations

import argparse
from typing import Callable, Optional, Sequence

from utils.cli import (  # noqa: F401  (re-exported: the training scripts' CLI toolbox)
    BoolFlag,
    HelpFormatter,
    IgnoredFlag,
    UsageError,
    add_bool_flag,
    add_safety_arguments,
    constrain,
    format_error,
    fraction,
    non_negative_float,
    non_negative_int,
    on_terminal,
    positive_float,
    positive_int,
    probability,
    progress,
    str2bool,
    unit_interval,
)
from utils.cli import run as _run


def _leave_process_group(finished: bool) -> None:
    from training import distributed as du

    du.cleanup(barrier=finished)   # no barrier after a failure: it could hang


def run(main: Callable, parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> int:
    """:func:`utils.cli.run` that leaves the ``torchrun`` process group at the end."""
    return _run(main, parser, argv, cleanup=_leave_process_group)
