"""The one exception type for errors a user can cause."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class NeurometryError(Exception):
    """A mistake in the user's input (missing file, unknown model or point, bad shape, NaN, ...).

    The message is one line that says what is wrong and how to fix it. The CLI prints it
    as ``error: <message>`` and exits with code 2; it never shows a traceback for these.
    """


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``" (did you mean a, b?)"`` for close matches of ``name`` among ``choices``, else ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""
