"""``kit report``: one page that says whether a model is ready to ship, built from its
manifest and the results kit's checks saved beside it; and the page of ``kit report
--compare``. Torch-free: ``kit serve`` renders a served model's report on request."""

from __future__ import annotations

from typing import Any

from .._table import format_table
from .build import REPORT_VERSION, RunOptions, build_report, kit_command
from .columns import parity_kind
from .html import CSP, age_text, render_compare, render_report

__all__ = [
    "CSP",
    "REPORT_VERSION",
    "RunOptions",
    "build_report",
    "format_text",
    "kit_command",
    "parity_kind",
    "render_compare",
    "render_report",
]


def _short(cell: dict[str, Any]) -> str:
    """A cell in a word or two: its status, or why it has none."""
    if cell["status"] == "n/a":
        return "-"
    if cell["status"] == "not-run":
        return str(cell["text"])
    sizes = len(cell.get("sizes", ()))
    return f"{cell['status']} ({sizes} sizes)" if sizes > 1 else str(cell["status"])


def format_text(report: dict[str, Any]) -> str:
    """The verdict, the matrix as a table of statuses, accuracy and where the speed is."""
    matrix = report["matrix"]
    keys = [c["key"] for c in matrix["columns"]]
    rows = [(row["artifact"], *(_short(row["cells"][k]) for k in keys)) for row in matrix["rows"]]
    lines = [
        format_table(("file", *(c["title"] for c in matrix["columns"])), rows, last_free=False)
    ]
    if report["facts"].get("dynamic"):
        lines.append(f"sizes that vary: {report['facts']['dynamic']} (others are refused)")
    for name, size in (report["facts"].get("planned") or {}).items():
        lines.append(f"{name} plans {size / 2**20:.1f} MiB for its largest input (ExecuTorch)")
    for name, why in (report["facts"].get("static") or {}).items():
        lines.append(f"{name} is {why}")
    for r in report["accuracy"]:
        if r.get("accuracy") is not None:
            delta = (
                f" ({r['delta']:+.2%} vs fp32)"
                if r["precision"] != "fp32" and r.get("delta") is not None
                else ""
            )
            lines.append(
                f"accuracy {r['precision']} ({r['file']}): {r['accuracy']:.2%}{delta} [{r['source']}]"
            )
    pipeline = report["pipeline"]
    if pipeline["status"] not in ("n/a", "not-run"):
        lines.append(
            f"whole pipeline ({pipeline['status']}): {pipeline['accuracy']:.2%} through kit's "
            f"preprocessing, {pipeline['accuracy_eager']:.2%} eager, on {pipeline['images']} "
            f"images of {pipeline['data']}"
        )
    speed = report["speed"]
    lines.append(
        f"speed: measured {age_text(speed['age_s'])}"
        if speed["status"] != "not-run"
        else f"speed: {speed['why']} ({speed['command']})"
    )
    lines += [f"problem: {p}" for p in report["problems"]]
    verdict = report["verdict"]
    lines += [f"- {r}" for r in verdict["reasons"]]
    lines.append(f"{report['model']}: {verdict['state'].upper()}")
    return "\n".join(lines)
