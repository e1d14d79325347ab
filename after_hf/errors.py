"""The one base of every error a user can fix by changing an input, and the CLI's error boundary.

Every such error derives from ``AfterHFError`` (``ConfigError``, ``ManifestError``, ``CorpusError``,
``SplitError``, ``StateError``, ``ModelError``, ...) and says in its message which file or option is wrong
and what to do. ``after-hf`` prints it as one line, ``after-hf <command>: <message>``, and exits with 2;
``--debug`` (or ``AFTER_HF_DEBUG=1``) shows the traceback instead. Anything else is a bug: its traceback
is shown as usual. This module imports nothing heavy: ``after-hf <command> --help`` stays fast.
"""

from __future__ import annotations

import os
import sys

DEBUG_FLAG = "--debug"
DEBUG_ENV = "AFTER_HF_DEBUG"
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class AfterHFError(Exception):
    """An input the user can fix (a recipe, a flag, a file, a directory); the message names it and the fix."""


def debug_requested(argv: list[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes")


def one_line(err: BaseException) -> str:
    """The error's message on one line (a wrapped message is joined; an empty one names the error type)."""
    text = " ".join(str(err).split())
    return text or type(err).__name__


def brief(err: BaseException | str, limit: int = 400) -> str:
    """``one_line(err)`` (an error, or a tool's stderr text) cut to ``limit`` characters at a word boundary, so
    that a URL in it is never cut."""
    import textwrap

    return textwrap.shorten(one_line(err), limit, placeholder=" ...")


def report(command: str, err: BaseException, stream=None) -> int:
    """Print ``after-hf <command>: <message>`` on one line; return the exit status."""
    prefix = f"after-hf {command}".strip()
    message = one_line(err)
    for redundant in (f"{prefix}: ", "after-hf: "):  # messages written before the boundary existed
        if message.startswith(redundant):
            message = message[len(redundant):]
    print(f"{prefix}: {message}", file=stream or sys.stderr)
    return EXIT_USER_ERROR
