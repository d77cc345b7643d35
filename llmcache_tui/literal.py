"""Show values from the cache, the config or the user as the text they are, never as markup.

Rich and Textual read a plain ``str`` as markup almost everywhere (``Static``, ``Label``,
table cells, tree labels, notifications), so a prompt holding ``[/INST]`` raised
``MarkupError`` and a model named ``[i]x[/i]`` turned italic. Escaping is no cure: Textual's
``escape`` drops ``[INST]`` and ``[$accent]``. So data is handed to widgets as ``Text``
(``literal``), or as a ``str`` with markup off (``printable``), and only our own fixed
strings are ever markup.

Control characters are drawn as visible symbols: written raw, an escape sequence stored in
a prompt or a log line would drive the user's terminal. Used by the terminal app only.
"""

from __future__ import annotations

import re

from rich.style import StyleType
from rich.text import Text

# C0 controls (tab and newline allowed), DEL, C1 controls, and lone surrogates, which
# cannot be encoded for the terminal at all.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_UNSAFE_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_DELETE_PICTURE = "\u2421"  # ␡
_REPLACEMENT = "\ufffd"


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # the Unicode control pictures: ␀ ... ␛ ... ␟
    if code == 0x7F:
        return _DELETE_PICTURE
    if code <= 0x9F:
        return f"\\x{code:02x}"
    return _REPLACEMENT


def printable(value: object, *, one_line: bool = False) -> str:
    """``value`` as a string that is safe to draw: control characters made visible.

    ``one_line`` also shows newlines and tabs as symbols, for a table cell, a tree label
    or a status line, where a line break would hide the rest.
    """
    text = value if isinstance(value, str) else str(value)
    return (_UNSAFE_ONE_LINE if one_line else _UNSAFE).sub(_visible, text)


def literal(value: object, *, one_line: bool = False, style: StyleType = "") -> Text:
    """``value`` as ``Text``, which no widget parses as markup (see ``printable``)."""
    return Text(printable(value, one_line=one_line), style=style)
