"""User errors: invalid settings, files or datasets end a run with one line and exit status 2.

Set the environment variable ``RGB_DEBUG=1`` to get the full traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

USER_ERROR_EXIT_STATUS = 2
"""Exit status of a run stopped by a user error, the same as argparse uses for bad flags."""

DEBUG_VARIABLE = "RGB_DEBUG"


class UserError(ValueError):
    """Invalid input from the user: a setting, a file, a model or a dataset.

    The message names the value and the fix. It subclasses
    ``ValueError`` so that callers that caught ``ValueError`` keep working.
    """


def debug_enabled() -> bool:
    """Return True when ``RGB_DEBUG`` is set to anything but empty, 0, false or no."""
    return os.environ.get(DEBUG_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def one_line(text: str) -> str:
    """Return ``text`` with every run of whitespace, line breaks included, collapsed to one space."""
    return " ".join(str(text).split())


@contextmanager
def exit_on_error(error_type: type[Exception], exit_status: int, hint: str = "") -> Iterator[None]:
    """Turn an ``error_type`` raised in the block into one line on stderr and ``exit_status``.

    Other exceptions are bugs and keep their traceback. With ``RGB_DEBUG=1``
    the error keeps its traceback too, and the exit status is Python's 1.
    """
    try:
        yield
    except error_type as error:
        if debug_enabled():
            raise
        program = Path(sys.argv[0]).name or "python"
        print(f"{program}: error: {one_line(error)}{hint}", file=sys.stderr)
        raise SystemExit(exit_status) from None


def exit_on_user_error():
    """Turn a ``UserError`` raised in the block into one line on stderr and exit status 2."""
    return exit_on_error(UserError, USER_ERROR_EXIT_STATUS, f" (set {DEBUG_VARIABLE}=1 for the traceback)")
