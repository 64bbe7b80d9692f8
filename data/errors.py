"""Exceptions raised by the data layer; every message names the offending path."""

from __future__ import annotations

__all__ = ["DatasetError", "DatasetNotFoundError"]


class DatasetError(ValueError):
    """A dataset file, folder or argument is unusable (wrong band count, corrupt file, ...)."""

    user_facing = True   # utils.cli prints the message as it is


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A root, season folder, sensor folder, patch file or observation CSV does not exist.

    Also a :class:`FileNotFoundError`, so ``except FileNotFoundError`` works.
    """
