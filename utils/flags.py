"""Command-line helpers shared by the scripts: real boolean flags that also accept the
original's string spellings, and flags the original took that we accept and ignore.

    --finetuning / --no-finetuning        (ours)
    --finetuning=True / --finetuning False (the original's strings, still accepted)
"""
from __future__ import annotations

import argparse

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
        setattr(namespace, "ignored_flags", ignored)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows real defaults, but not ``(default: None)`` / ``SUPPRESS`` noise."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS, [], ()):
            return text
        if isinstance(action, argparse._StoreTrueAction) and action.default is False:
            return text
        return super()._get_help_string(action)
