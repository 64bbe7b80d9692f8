"""What every command-line script shares (the training scripts, ``predict.py``, ``prepare_dataset.py``,
``export_backbone.py``): one-line errors, numeric flag types, run-folder flags,
real boolean flags that also take the original's strings (``--finetuning=True``), flags of the
original accepted and ignored, and a help formatter that shows real defaults.

``run(main, parser)`` parses the arguments and calls ``main(args)``; an exception becomes one
line on stderr (``error: ...``, naming the file, flag or key) and a non-zero exit code instead
of a traceback. ``--debug`` shows the traceback. Exit codes: 2 for a usage error (bad flag,
refused run folder, mismatched resume), 1 for any other failure, 130 for Ctrl-C.

The argparse types (``positive_int``, ``fraction``, ...) make a bad number fail while parsing,
with argparse's usual ``error: argument --epochs: ...``.
"""
from __future__ import annotations

import argparse
import errno
import shutil
import sys
import traceback
from pathlib import Path
from typing import Callable, Optional, Sequence

__all__ = ["UsageError", "run", "format_error", "progress", "on_terminal", "constrain", "add_safety_arguments",
           "positive_int", "non_negative_int", "positive_float", "non_negative_float", "fraction", "probability",
           "unit_interval", "s2_offset", "str2bool", "BoolFlag", "add_bool_flag", "IgnoredFlag", "HelpFormatter"]


class UsageError(ValueError):
    """A mistake in what the user asked for (a flag, a run folder, a resume); exit code 2."""

    user_facing = True


# ------------------------------------------------------------------------- argparse types
def _number(text: str, kind: type, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def _bounded(kind: type, what: str, ok: Callable[[float], bool]) -> Callable[[str], float]:
    def parse(text: str):
        value = _number(text, kind, "an integer" if kind is int else "a number")
        if value != value or not ok(value):  # NaN fails every range
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value
    parse.__name__ = f"{kind.__name__} ({what})"  # argparse names the type in some messages
    return parse


positive_int = _bounded(int, ">= 1", lambda v: v >= 1)
non_negative_int = _bounded(int, ">= 0", lambda v: v >= 0)
positive_float = _bounded(float, "> 0 and finite", lambda v: 0 < v < float("inf"))
non_negative_float = _bounded(float, ">= 0 and finite", lambda v: 0 <= v < float("inf"))
fraction = _bounded(float, "in (0, 1]", lambda v: 0 < v <= 1)
probability = _bounded(float, "in [0, 1)", lambda v: 0 <= v < 1)
unit_interval = _bounded(float, "in [0, 1]", lambda v: 0 <= v <= 1)


def s2_offset(text: str) -> Optional[float]:
    """``--s2_offset`` of the scripts that read Sentinel-2 products: None for 'auto' (from the
    product's metadata), else a number of DN between -10000 and 10000 (e.g. -1000 or 0)."""
    if str(text).lower() == "auto":
        return None
    value = _number(text, float, "'auto' or a number of DN such as -1000 or 0")
    if value != value or not -10000 <= value <= 10000:
        raise argparse.ArgumentTypeError(f"expected a value between -10000 and 10000 DN, got {text}")
    return value


def constrain(parser: argparse.ArgumentParser, **types: Callable[[str], object]) -> None:
    """Give the flags with these destinations a checking type (``epochs=positive_int``).

    Applied after the flags are defined, so their definitions stay as they are; a destination
    the parser does not have is an error (a renamed flag must not lose its check silently).
    """
    actions = {a.dest: a for a in parser._actions}
    unknown = sorted(set(types) - set(actions))
    if unknown:
        raise KeyError(f"constrain: the parser has no flag(s) with destination {unknown}")
    for dest, kind in types.items():
        actions[dest].type = kind


def add_safety_arguments(group) -> None:
    """``--overwrite`` and ``--debug`` (next to a script's ``--resume``)."""
    group.add_argument("--overwrite", action="store_true",
                       help="replace the run already in OUTPUT_DIR (its checkpoints, results, config "
                            "and TensorBoard logs); without it such a folder is refused")
    group.add_argument("--debug", action="store_true",
                       help="on an error, show the Python traceback instead of one line")


# ------------------------------------------------------------------------------- errors
def _free_space(path: Path) -> str:
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                free = shutil.disk_usage(folder).free
            except OSError:
                return ""
            return f"; {free / 2**20:.0f} MiB free there"
    return ""


def format_error(exc: BaseException, output_dir: Optional[str] = None) -> str:
    """One line for ``exc``: the message, the file it concerns, a hint where one helps.

    Exceptions whose class says ``user_facing = True`` (:class:`UsageError`, the data layer's
    ``DatasetError``, ``CheckpointError``, the engine's ``NonFiniteLossError``) are written for the
    user: their message is printed as it is.
    """
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = exc.filename or (f"a file in {output_dir}" if output_dir else "a file")
        what = "disk full" if exc.errno == errno.ENOSPC else "disk quota exceeded"
        return (f"{what} while writing {where}{_free_space(Path(exc.filename or output_dir or '.'))}: "
                "free some space (or choose another --output_dir) and continue with --resume auto")
    if getattr(exc, "user_facing", False):
        message = str(exc)
    elif isinstance(exc, OSError) and exc.filename is not None:
        message = f"{exc.filename}: {exc.strerror or exc}"
    elif isinstance(exc, OSError):
        message = str(exc)
    else:  # not anticipated: still one line, with the way to the details
        message = f"{type(exc).__name__}: {exc} (run again with --debug for the traceback)"
    # CheckpointError lists keys on indented lines: keep them, on the same line
    return "; ".join(part.strip() for part in message.splitlines() if part.strip())


def run(main: Callable, parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None,
        cleanup: Optional[Callable[[bool], None]] = None) -> int:
    """Parse ``argv``, call ``main(args)`` and turn an exception into one line; returns the exit code.

    ``cleanup(finished)`` runs at the end in every case (the training scripts leave their
    ``torchrun`` process group there)."""
    def one_line_error(message: str):  # argparse's own would print the whole usage first
        print(f"{parser.prog}: error: {message} (--help lists every flag)", file=sys.stderr)
        raise SystemExit(2)

    parser.error = one_line_error
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or argparse has printed its error
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    finished = False
    try:
        main(args)
        finished = True
        return 0
    except KeyboardInterrupt:
        if getattr(args, "debug", False):
            raise
        print("\ninterrupted; the last checkpoint is kept: continue with --resume auto", file=sys.stderr)
        return 130
    except SystemExit as exc:  # a script's own `raise SystemExit("error: ...")`
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 2
        return int(exc.code or 0)
    except Exception as exc:  # noqa: BLE001  (the whole point: no traceback)
        if getattr(args, "debug", False):
            traceback.print_exc()
        output_dir = getattr(args, "output_dir", None)
        print(f"error: {format_error(exc, str(output_dir) if output_dir else None)}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    finally:
        if cleanup is not None:
            cleanup(finished)


# ------------------------------------------------------------------ boolean and legacy flags
TRUE_STRINGS = {"true", "1", "yes", "y", "on", "t"}
FALSE_STRINGS = {"false", "0", "no", "n", "off", "f", "none"}


def str2bool(value: str) -> bool:
    """The original's ``strtobool`` spellings (``True``/``False``, ``1``/``0``, ...)."""
    v = str(value).strip().lower()
    if v in TRUE_STRINGS:
        return True
    if v in FALSE_STRINGS:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (True/False), got {value!r}")


class BoolFlag(argparse.Action):
    """``--name`` sets True, ``--no-name`` sets False, ``--name=False`` / ``--name False`` the value.

    Use through :func:`add_bool_flag`.
    """

    def __init__(self, option_strings, dest, default=False, help=None, **kwargs):
        names = list(option_strings)
        for opt in option_strings:
            if opt.startswith("--"):
                names.append("--no-" + opt[2:])
        super().__init__(names, dest, nargs="?", default=default, help=help, metavar="BOOL")

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string.startswith("--no-"):
            if values is not None:
                parser.error(f"{option_string} takes no value")
            setattr(namespace, self.dest, False)
        elif values is None:
            setattr(namespace, self.dest, True)
        else:
            try:
                setattr(namespace, self.dest, str2bool(values))
            except argparse.ArgumentTypeError as e:
                parser.error(f"{option_string}: {e}")

    def format_usage(self) -> str:
        return " | ".join(self.option_strings)


def add_bool_flag(parser, *names: str, default: bool = False, help: str = "") -> None:
    """A real boolean flag (``--x`` / ``--no-x``) that also takes ``--x=True`` / ``--x False``."""
    parser.add_argument(*names, action=BoolFlag, default=default,
                        help=f"{help} (default: {default})".strip())


class IgnoredFlag(argparse.Action):
    """A flag of the original that has no effect here: accepted, noted once on stderr."""

    def __init__(self, option_strings, dest, note: str = "", **kwargs):
        kwargs.setdefault("nargs", "?")
        kwargs["default"] = argparse.SUPPRESS
        kwargs.setdefault("help", f"accepted for compatibility and ignored ({note})")
        self.note = note
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        import sys

        print(f"note: {option_string} is accepted for compatibility and ignored ({self.note})",
              file=sys.stderr)
        ignored = dict(getattr(namespace, "ignored_flags", None) or {})
        ignored[option_string] = values
        namespace.ignored_flags = ignored


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows real defaults, but not ``(default: None)`` / ``SUPPRESS`` noise."""

    def _format_action(self, action):
        # a flag without help text still shows its default
        if (not action.help and action.option_strings and action.nargs != 0
                and action.default not in (None, argparse.SUPPRESS, [], ())):
            action.help = "default: %(default)s"
        return super()._format_action(action)

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS, [], ()):
            return text
        if isinstance(action, argparse._StoreTrueAction) and action.default is False:
            return text
        return super()._get_help_string(action)


# ----------------------------------------------------------------------------- progress bars
def on_terminal() -> bool:
    """True when stderr is a terminal and this is the main process (RANK 0 or no torchrun)."""
    import os

    return sys.stderr.isatty() and os.environ.get("RANK", "0") == "0"


def progress(iterable=None, desc: str = "", enabled: Optional[bool] = None, **kwargs):
    """A tqdm bar on a terminal only: a run whose output goes to a file or a pipe gets its
    one line per epoch, not carriage-return frames. ``enabled=False`` turns it off."""
    from tqdm.auto import tqdm

    show = on_terminal() if enabled is None else (enabled and on_terminal())
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, desc=desc, disable=not show, **kwargs)
