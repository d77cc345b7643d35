"""Client input quoted back in an error message, capped.

Every message that repeats what a client sent (a model name, a cache control, a path)
quotes it through :func:`echo`, so a 10 MB value comes back as 200 characters and an
ellipsis, and a deeply nested one cannot recurse.
"""

from __future__ import annotations

import reprlib
from typing import Any

ECHO_LIMIT = 200  # characters of one quoted client value
ELLIPSIS = "…"

_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxstring = _repr.maxother = _repr.maxlong = ECHO_LIMIT
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6


def echo(value: Any, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)`` for an error message, at most ``limit`` characters plus an ellipsis."""
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + f"{ELLIPSIS} ({len(value)} characters)"
    try:
        text = _repr.repr(value)
    except ValueError:  # an int with more digits than Python will print
        text = f"<{type(value).__name__}>"
    return clip(text, limit)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[:limit] + ELLIPSIS
