"""Text from a file, a folder, a socket or a user, made safe to show: literally, and one line where it must be.

Two faults are kept out: control characters (an escape sequence in a run id or a description would be run by
the terminal) and Rich/Textual markup (`[/]` in a name would be read as a closing tag). `printable` handles the
first for any output; `literal` returns a Rich Text, which is never parsed as markup, for tables and widgets.
Nothing here imports rich until `literal` is called, so the engine may use `printable`.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.text import Text

# Bidirectional overrides and isolates reorder what follows them on screen (a name could show as another).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def _escape(char: str) -> str:
    return repr(char)[1:-1] if char.isascii() or len(repr(char)) > 3 else f"\\u{ord(char):04x}"


def printable(text: object, keep_newlines: bool = False) -> str:
    """str(text) with control characters, line breaks (unless keep_newlines) and bidi controls written as
    escapes (`\\x1b`, `\\n`, `\\u202e`), so the terminal shows them instead of obeying them."""
    value = str(text)
    if value.isprintable():
        return value
    out = []
    for char in value:
        if keep_newlines and char == "\n":
            out.append(char)
        elif char in _LINE_BREAKS or char in _BIDI_CONTROLS or unicodedata.category(char) in ("Cc", "Cs"):
            out.append(_escape(char))
        else:
            out.append(char)
    return "".join(out)


def literal(text: object, style: str = "", keep_newlines: bool = False) -> Text:
    """A Rich Text of text as written: no markup is interpreted, control characters are escaped."""
    from rich.text import Text

    return Text(printable(text, keep_newlines=keep_newlines), style=style)
