"""Text from a file, made inert before anyone sees it.

A model's name, a note, a class name or a problem sentence can come from a file someone
downloaded. Printed raw, ``ESC]0;...BEL`` retitles a terminal, ``ESC[2J`` clears it, ``\\r``
overwrites the verdict line, and Unicode's bidirectional controls reorder what a page shows.
:func:`inert` writes every such character as a visible escape (``\\x1b``, ``\\u202e``), so
the text reads as what it is.
"""

from __future__ import annotations

import re

__all__ = ["inert"]

#: C0 and C1 controls, DEL, the bidi marks, embeddings, overrides and isolates, and the
#: Unicode line and paragraph separators
_OTHERS = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_ALL = re.compile(f"[\x00-\x1f{_OTHERS}]")
#: the same but newline (\x0a) and tab (\x09)
_BUT_LINES = re.compile(f"[\x00-\x08\x0b-\x1f{_OTHERS}]")


def _visible(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def inert(text: str, *, lines: bool = False) -> str:
    """``text`` with every control character written as a visible escape.

    Args:
        text: Any text.
        lines: Keep newlines and tabs (for kit's own multi-line output); a ``\\r`` is
            escaped either way.
    """
    return (_BUT_LINES if lines else _ALL).sub(_visible, text)
