"""The one base class of the project's user-input errors (lowest layer: every level subclasses it).

A :class:`UserInputError` says what is wrong with something a user handed in (a config
file or override, a checkpoint, a vector file, a bundle, a command-line argument) in ONE
line naming the file, the field (dotted path or record index) and the offending value.
``deltamtl <command>`` (deltamtl/cli.py) prints it as ``deltamtl <command>: error: <line>``
and exits with status 2; any other exception is a bug and keeps its traceback.

It is a :class:`ValueError`, so callers that catch ``ValueError`` keep working.
"""

from __future__ import annotations


def one_line(text: object) -> str:
    """``text`` with its lines joined by '; ' (blank lines and edge spaces dropped)."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


class UserInputError(ValueError):
    """Bad user input; the message is one line naming the file, the field and the value."""

    def __init__(self, message: object, *args: object) -> None:
        super().__init__(one_line(message), *args)


def count_arg(text: str) -> int:
    """argparse ``type=`` for a count: an integer >= 0 (``--sequences -5`` is refused)."""
    import argparse

    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value
