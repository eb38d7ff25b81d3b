"""One fixed-width table printer for every table kit prints (parity, bench, explain, list)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["format_table"]


def format_table(
    head: Sequence[str], rows: Sequence[Sequence[str]], *, last_free: bool = True
) -> str:
    """Columns padded to their widest cell, two spaces apart; with ``last_free`` the last
    column (a verdict or description) is not padded and may run long."""
    table = [tuple(head), *(tuple(r) for r in rows)]
    padded = len(head) - 1 if last_free else len(head)
    widths = [max(len(r[i]) for r in table) for i in range(padded)]
    lines = []
    for r in table:
        cells = [v.ljust(w) for v, w in zip(r, widths, strict=False)]
        if last_free:
            cells.append(r[-1])
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
