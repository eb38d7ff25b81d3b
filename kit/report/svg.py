"""The report's pictures as inline SVG: no script, no library, nothing fetched."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape as _escape_html

from .._text import inert

__all__ = ["confusion_difference", "line_chart"]

_PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
    "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
)  # fmt: skip


def escape(text: str) -> str:
    """Labels (class names, runtimes) from files as inert SVG text."""
    return _escape_html(inert(str(text)))


def _log_ticks(low: float, high: float) -> list[float]:
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    return [10.0**k for k in range(first, last + 1)]


def _si(value: float) -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:g}{suffix}"
    return f"{value:g}"


@dataclass(frozen=True)
class _Frame:
    """Where a log-log plot sits in its picture, and its axes' ranges (log10)."""

    left: float
    top: float
    width: float
    height: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def at(self, x: float, y: float) -> str:
        """``"px,py"``: the point (x, y) in the picture."""
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        px = self.left + (math.log10(x) - x0) / ((x1 - x0) or 1) * self.width
        py = self.top + self.height - (math.log10(y) - y0) / ((y1 - y0) or 1) * self.height
        return f"{px:.1f},{py:.1f}"


def _plottable(x: float, y: float) -> bool:
    """Whether a point fits a log-log chart whose ticks are powers of ten a float holds."""
    return all(1e-12 <= v <= 1e15 and math.isfinite(v) for v in (x, y))


def line_chart(
    series: Sequence[tuple[str, Sequence[tuple[float, float]], bool]],
    *,
    x_label: str,
    y_label: str,
    width: int = 860,
    height: int = 380,
) -> str:
    """Log-log lines, one per ``(label, points, dashed)``, with a legend on the right."""
    points = [p for _, pts, _ in series for p in pts if _plottable(*p)]
    if not points:
        return ""
    xs, ys = sorted({p[0] for p in points}), [p[1] for p in points]
    height = max(height, 40 + 16 * len(series))  # room for every legend line
    y_ticks = _log_ticks(min(ys), max(ys))
    x_range = (math.log10(xs[0]), math.log10(xs[-1]) if len(xs) > 1 else math.log10(xs[0]) + 1)
    y_range = (math.log10(y_ticks[0]), math.log10(y_ticks[-1]))
    frame = _Frame(64, 16, width - 64 - 320, height - 16 - 48, x_range, y_range)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(y_label)} by {escape(x_label)}" class="chart">'
        + _axes(frame, xs, y_ticks, x_label, y_label)
        + _lines(frame, series)
        + "</svg>"
    )


def _axes(frame: _Frame, xs: list[float], y_ticks: list[float], x_label: str, y_label: str) -> str:
    left, top, w, h = frame.left, frame.top, frame.width, frame.height
    parts = [f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>']
    for t in y_ticks:
        py = frame.at(xs[0], t).split(",")[1]
        parts.append(
            f'<line x1="{left}" x2="{left + w}" y1="{py}" y2="{py}" stroke="#eee"/>'
            f'<text x="{left - 6}" y="{float(py) + 4}" text-anchor="end">{_si(t)}</text>'
        )
    for x in xs:
        px = frame.at(x, y_ticks[0]).split(",")[0]
        parts.append(f'<text x="{px}" y="{top + h + 16}" text-anchor="middle">{x:g}</text>')
    parts.append(
        f'<text x="{left + w / 2}" y="{top + h + 40}" text-anchor="middle">{escape(x_label)}</text>'
        f'<text x="14" y="{top + h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + h / 2})">{escape(y_label)}</text>'
    )
    return "".join(parts)


def _lines(frame: _Frame, series: Sequence[tuple[str, Sequence[tuple[float, float]], bool]]) -> str:
    parts = []
    legend_x = frame.left + frame.width + 12
    for i, (label, pts, dashed) in enumerate(series):
        color = _PALETTE[i % len(_PALETTE)]
        path = " ".join(frame.at(x, y) for x, y in pts if _plottable(x, y))
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        ly = frame.top + 12 + i * 16
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}>'
            f"<title>{escape(label)}</title></polyline>"
            f'<line x1="{legend_x}" x2="{legend_x + 20}" y1="{ly - 4}" y2="{ly - 4}" '
            f'stroke="{color}" stroke-width="2"{dash}/>'
            f'<text x="{legend_x + 26}" y="{ly}">{escape(label[:48])}</text>'
        )
    return "".join(parts)


def confusion_difference(difference: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    """A grid of ``B - A`` confusion counts (rows: true class, columns: predicted): blue
    where B has more, red where it has fewer, each cell with its count."""
    n = len(labels)
    if n == 0:
        return ""
    cell = max(18, min(40, 480 // n))
    left, top = 90, 70
    size = left + n * cell + 10
    peak = max((abs(v) for row in difference for v in row), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{top + n * cell + 10}" '
        'role="img" aria-label="confusion difference" class="chart">',
        f'<text x="{left}" y="14">predicted class &#8594;</text>',
        f'<text x="4" y="{top - 8}">true class &#8595;</text>',
    ]
    for j, name in enumerate(labels):
        x = left + j * cell + cell / 2
        parts.append(
            f'<text x="{x}" y="{top - 6}" text-anchor="start" '
            f'transform="rotate(-60 {x} {top - 6})">{escape(name[:12])}</text>'
        )
    for i, row in enumerate(difference):
        y = top + i * cell
        parts.append(
            f'<text x="{left - 4}" y="{y + cell / 2 + 4}" text-anchor="end">{escape(labels[i][:12])}</text>'
        )
        for j, value in enumerate(row):
            strength = abs(value) / peak
            color = (
                f"rgba(31,119,180,{strength:.2f})"
                if value > 0
                else f"rgba(214,39,40,{strength:.2f})"
            )
            parts.append(
                f'<rect x="{left + j * cell}" y="{y}" width="{cell}" height="{cell}" '
                f'fill="{color if value else "#fff"}" stroke="#ddd"><title>true {escape(labels[i])}, '
                f"predicted {escape(labels[j])}: {value:+d}</title></rect>"
            )
            if value and cell >= 22:
                parts.append(
                    f'<text x="{left + j * cell + cell / 2}" y="{y + cell / 2 + 4}" '
                    f'text-anchor="middle" font-size="10">{value:+d}</text>'
                )
    return "".join(parts) + "</svg>"
