"""A report as one self-contained HTML file: inline CSS and SVG, no script, nothing fetched
(its Content-Security-Policy forbids it), and the report's JSON inside for tools."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from html import escape as _escape_html
from typing import Any

from .._text import inert
from .svg import confusion_difference, line_chart

__all__ = ["CSP", "age_text", "render_compare", "render_report"]

#: what the page may load: nothing (no script, no request); its own inline style
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;
 max-width:1280px;padding:16px 24px;color:#1b1b1b;overflow-wrap:anywhere}
h1{margin:0 0 4px;font-size:26px}h2{margin:28px 0 8px;font-size:19px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:6px 0}th,td{border:1px solid #ddd;padding:4px 8px;
 text-align:left;vertical-align:top}th{background:#f6f6f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font:12px ui-monospace,Menlo,Consolas,monospace;background:#f3f3f3;padding:1px 4px;
 word-break:break-all}
small,.muted{color:#666}
.verdict{display:inline-block;padding:6px 12px;border-radius:6px;font-weight:600;margin:6px 0}
.ready{background:#e3f5e1;color:#17622a}.incomplete{background:#fff4d6;color:#7a5300}
.not-ready{background:#fde2e1;color:#8f1d18}
.matrix td{min-width:84px;font-size:12px;padding:3px 6px}.matrix th{font-size:13px}.matrix summary{cursor:pointer;list-style:none}
.matrix summary::-webkit-details-marker{display:none}
.cell.pass{background:#e3f5e1}.cell.fail{background:#fde2e1}.cell.warn{background:#fff4d6}
.cell.stale{background:#ffe8cc}.cell.not-run{background:#f2f2f2;color:#555}
.cell.carried{background:repeating-linear-gradient(45deg,#f4f4f4,#f4f4f4 6px,#ececec 6px,#ececec 12px);color:#555}
.cell.n\\/a{background:#fff;color:#aaa}
.status{font-weight:600;text-transform:uppercase;font-size:11px;letter-spacing:.04em}
.legend span{display:inline-block;padding:1px 8px;margin-right:6px;border:1px solid #ddd}
.chart text{font:11px system-ui,sans-serif;fill:#333}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px}dt{color:#666}dd{margin:0}
"""


def escape(text: Any) -> str:
    """Text from a report (much of it from files someone else wrote) as inert HTML: markup
    escaped, control and bidi characters shown as escapes."""
    return _escape_html(inert(str(text)))


def age_text(seconds: float | None) -> str:
    """``4 min ago``, ``2 h ago``, ``3 days ago`` (``age unknown`` for None)."""
    if seconds is None:
        return "age unknown"
    if seconds < 90:
        return "just now"
    for size, unit in ((86400, "days"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return "just now"


def _page(title: str, state: str, body: Iterable[str], data: dict[str, Any]) -> str:
    blob = json.dumps(data, allow_nan=False).replace("<", "\\u003c")
    return "".join(
        [
            '<!doctype html><html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            '<meta name="viewport" content="width=device-width,initial-scale=1">',
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head>",
            f'<body data-state="{escape(state)}">',
            *body,
            f'<script type="application/json" id="report-data">{blob}</script>',
            "</body></html>\n",
        ]
    )


def _table(
    head: Sequence[str],
    rows: Iterable[Sequence[str]],
    numeric: frozenset[int] | set[int] = frozenset(),
) -> str:
    """An HTML table; cells are already-escaped HTML."""
    parts = ["<table><thead><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        parts.append("<tr>")
        parts += [
            f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        ]
        parts.append("</tr>")
    return "".join(parts) + "</tbody></table>"


def _pct(value: Any, signed: bool = False) -> str:
    if not isinstance(value, int | float):
        return "—"
    return f"{value:+.2%}" if signed else f"{value:.2%}"


def _num(value: Any, fmt: str = ".3f") -> str:
    return format(value, fmt) if isinstance(value, int | float) else "—"


def _size(n: int) -> str:
    for factor, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} B"


_VERDICT = {
    "ready": "Ready to ship: every check that ran passed",
    "incomplete": "Incomplete: nothing failed, but not everything is checked",
    "not ready": "Not ready: something failed",
}


def render_report(report: dict[str, Any]) -> str:
    """The report of :func:`~kit.report.build_report` as one HTML page."""
    verdict = report["verdict"]
    state = verdict["state"]
    counts = ", ".join(f"{n} {s}" for s, n in verdict["counts"].items() if n)
    body = [
        f"<header><h1>{escape(report['model'])}</h1>",
        f'<div class="verdict {state.replace(" ", "-")}" id="verdict">{escape(_VERDICT[state])}</div>',
        f"<p><small>matrix cells: {escape(counts)}</small></p>",
        *(f'<p class="reason">{escape(r)}</p>' for r in verdict["reasons"]),
        f"<p class=muted>{escape(_summary(report['facts']))} · {escape(report['directory'])} · "
        f"report generated {escape(report['generated'])} by kit</p></header>",
        _matrix_html(report["matrix"]),
        _pipeline_html(report["pipeline"]),
        _accuracy_html(report["accuracy"]),
        _speed_html(report["speed"]),
        _loads_html(report["loads_in"]),
        _facts_html(report["facts"]),
        _files_html(report["files"]),
        _sources_html(report["results"], report["problems"]),
        "<footer><p class=muted>Results in the export's results/ folder are evidence kit saved "
        "about the files; they are not covered by the manifest's sha256. To reproduce them on "
        "this machine: <code>kit report DIR --run</code> after deleting results/, or each "
        "cell's command.</p></footer>",
    ]
    return _page(f"kit report: {report['model']}", state, body, report)


def _summary(facts: dict[str, Any]) -> str:
    shape = "×".join(map(str, facts["input_shape"]))
    return f"{shape} in, {facts['classes']} classes out, exported {facts['created'][:10]}"


def _facts_html(facts: dict[str, Any]) -> str:
    names = ", ".join(facts["class_names"]) + (
        f" and {facts['more_class_names']} more" if facts["more_class_names"] else ""
    )
    items = [
        ("input", "×".join(map(str, facts["input_shape"])) + " float32, batch first"),
        ("classes", f"{facts['classes']}: {names}"),
        ("normalisation", f"mean {facts['mean']}, std {facts['std']}"),
        ("ONNX opset", str(facts["opset"])),
        ("exported", f"{facts['created']} with kit {facts['versions'].get('kit', '?')}"),
        ("versions", ", ".join(f"{k} {v}" for k, v in facts["versions"].items())),
        ("trained on", str(facts["trained_on"] or "— (no training record)")),
        ("test accuracy (eager)", _pct(facts["test_accuracy"])),
    ]
    if facts["targets"]:
        items.append(("made to load in", ", ".join(facts["targets"])))
    if facts.get("dynamic"):
        items.append(("sizes that vary", f"{facts['dynamic']} (other sizes are refused)"))
    for name, size in (facts.get("planned") or {}).items():
        items.append((f"{name} plans", f"{size / 2**20:.1f} MiB for its largest input"))
    for name, why in (facts.get("static") or {}).items():
        items.append((f"{name} is static", why))
    if facts["note"]:
        items.append(("note", facts["note"]))
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items)
    return f'<section id="facts"><h2>The model</h2><dl>{rows}</dl></section>'


def _cell_html(row: dict[str, Any], key: str, cell: dict[str, Any]) -> str:
    status = cell["status"]
    lines = [f'<span class="status">{escape(status)}</span>']
    if status == "not-run":  # why it has no result is what the cell is for
        lines.append(escape(cell["why"]))
    else:
        lines += [escape(part) for part in cell["text"].split(" · ")[1:]]
    detail = []
    if cell.get("why") and status != "not-run":
        detail.append(f"<p>{escape(cell['why'])}</p>")
    if cell.get("runtime"):
        detail.append(
            f"<p>ran in {escape(cell['runtime'])}, {cell.get('checks', 0)} comparisons</p>"
        )
    if len(cell.get("sizes", ())) > 1:
        detail.append(f"<p>at sizes: {escape(', '.join(cell['sizes']))}</p>")
    if cell.get("source"):
        detail.append(
            f"<p>from {escape(cell['source'])} ({escape(cell.get('origin', ''))}), "
            f"{escape(age_text(cell.get('age_s')))}</p>"
        )
    if cell.get("saved_command"):
        detail.append(
            f"<p>the result says it was made by: <q>{escape(cell['saved_command'])}</q></p>"
        )
    if cell.get("command"):
        detail.append(f"<p>kit's command for it:</p><code>{escape(cell['command'])}</code>")
    return (
        f'<td class="cell {escape(status)}" data-row="{escape(row["artifact"])}" '
        f'data-col="{escape(key)}" data-status="{escape(status)}"><details><summary>'
        + "<br>".join(line for line in lines if line)
        + "</summary>"
        + "".join(detail)
        + "</details></td>"
    )


def _matrix_html(matrix: dict[str, Any]) -> str:
    head = "".join(f"<th>{escape(c['title'])}</th>" for c in matrix["columns"])
    rows = []
    for row in matrix["rows"]:
        name = (
            f"{escape(row['artifact'])}<br><small>{escape(row['file'] or 'not exported')}</small>"
        )
        cells = "".join(
            _cell_html(row, c["key"], row["cells"][c["key"]]) for c in matrix["columns"]
        )
        rows.append(f'<tr data-row="{escape(row["artifact"])}"><th>{name}</th>{cells}</tr>')
    legend = (
        '<p class="legend"><span class="cell pass">pass</span><span class="cell warn">warn '
        '(advisory)</span><span class="cell fail">fail</span><span class="cell stale">stale: '
        'the file changed since</span><span class="cell carried">carried in: a result made '
        'elsewhere, shown, never counted</span><span class="cell not-run">not run (why '
        "inside)</span>"
        "<span>n/a: the runtime does not run that format</span> Click a cell for its "
        "source, age and kit's command that makes it here.</p>"
    )
    return (
        '<section id="parity"><h2>Parity: every file in every runtime, against eager PyTorch</h2>'
        f'<table class="matrix"><thead><tr><th>file</th>{head}</tr></thead><tbody>'
        + "".join(rows)
        + f"</tbody></table>{legend}</section>"
    )


def _pipeline_html(p: dict[str, Any]) -> str:
    """The whole-pipeline check: images as their files hold them, through kit's own
    preprocessing into model.onnx, against eager on the data set's tensors and the labels."""
    title = (
        '<section id="pipeline"><h2>The whole pipeline: images → kit\'s preprocessing → '
        "model.onnx, against eager and the labels</h2>"
    )
    status = p["status"]
    if status in ("n/a", "not-run"):
        return (
            f'{title}<p class="cell {escape(status)}" data-status="{escape(status)}">'
            f"{escape(p['why'])}. <code>{escape(p['command'])}</code></p></section>"
        )
    rows = [
        (
            escape(p["data"]),
            str(p["images"]),
            _pct(p["accuracy"]),
            _pct(p["accuracy_eager"]),
            _pct(p["agreement"]),
            f'<span class="status">{escape(status)}</span>'
            + (f" {escape(p['why'])}" if p.get("why") else ""),
        )
    ]
    head = ("test images", "images", "through kit", "eager", "top-1 agreement", "verdict")
    made = f"from {escape(p['source'])} ({escape(p['origin'])}), {escape(age_text(p['age_s']))}"
    return (
        f'{title}<div class="cell {escape(status)}" data-status="{escape(status)}">'
        f"{_table(head, rows, {1, 2, 3, 4})}</div><p class=muted>{made}. "
        f"<code>{escape(p['command'])}</code></p></section>"
    )


def _accuracy_html(rows: list[dict[str, Any]]) -> str:
    body = [
        (
            escape(r["precision"]),
            escape(r["file"]),
            _pct(r.get("accuracy")),
            _pct(r.get("delta"), signed=True),
            _pct(r.get("agreement")),
            escape(", ".join(r.get("kept_fp32") or []) or "—"),
            escape(str(r.get("held_out") or "—")),
            escape(r["source"]) + (f" ({escape(age_text(r['age_s']))})" if "age_s" in r else ""),
            f"<code>{escape(r['command'])}</code>",
        )
        for r in rows
    ]
    head = (
        "precision",
        "file",
        "accuracy",
        "Δ to fp32",
        "top-1 vs fp32/eager",
        "kept in fp32",
        "test data",
        "source",
        "command",
    )
    return f'<section id="accuracy"><h2>Accuracy on the test set</h2>{_table(head, body, {2, 3, 4})}</section>'


def _speed_html(speed: dict[str, Any]) -> str:
    title = '<section id="speed"><h2>Speed</h2>'
    if speed["status"] == "not-run":
        return (
            f'{title}<p class="cell not-run" data-status="not-run">Not measured: '
            f"{escape(speed['why'])}. <code>{escape(speed['command'])}</code></p></section>"
        )
    peaks = ", ".join(f"{k} {v:.1f} GMAC/s" for k, v in speed["peak_gmacs"].items())
    stale = (
        f'<p class="cell stale">Stale: {escape(", ".join(speed["changed"]))} changed since.</p>'
        if speed["status"] == "stale"
        else ""
    )
    if speed["status"] == "carried":
        stale = (
            '<p class="cell carried" data-status="carried">Carried in: these figures were not '
            f"measured by kit on this machine. Measure them here: <code>{escape(speed['command'])}"
            "</code></p>"
        )
    return (
        f"{title}{stale}<p>{speed['macs_per_sample'] / 1e6:.1f} M multiply-adds per sample; "
        f"onnxruntime's measured matrix-product peak on that machine: {escape(peaks)}. Measured "
        f"{escape(age_text(speed['age_s']))}; the result says by <q>"
        f"{escape(speed['saved_command'])}</q>.</p>"
        + _speed_chart(speed["rows"])
        + _speed_table(speed["rows"])
        + _cold_table(speed["cold_start"])
        + "".join(f"<p class=muted>note: {escape(n)}</p>" for n in speed["notes"])
        + "</section>"
    )


def _speed_chart(rows: list[dict[str, Any]]) -> str:
    """Images per second by batch size, a line per artifact and runtime; the peak dashed."""
    series: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r["images_per_s"] and not r.get("size"):  # the grid's sizes are in the table
            label = f"{r['artifact']} / {r['runtime']}"
            series.setdefault(label, []).append((r["batch"], r["images_per_s"]))
    return line_chart(
        [(label, points, label.startswith("limit")) for label, points in series.items()],
        x_label="batch size",
        y_label="images per second",
    )


def _speed_table(rows: list[dict[str, Any]]) -> str:
    body = [
        (
            escape(r["artifact"]),
            escape(r["runtime"]),
            f"{r['batch']} at {escape(r['size'])}" if r.get("size") else str(r["batch"]),
            _num(r["p50_ms"]),
            _num(r["p99_ms"]),
            _num(r["images_per_s"], ",.0f"),
            _pct(r["peak_share"]) if r["peak_share"] is not None else "—",
        )
        for r in rows
    ]
    head = ("artifact", "runtime", "batch", "p50 ms", "p99 ms", "images/s", "of peak")
    return _table(head, body, {2, 3, 4, 5, 6})


def _cold_table(cold: list[dict[str, Any]]) -> str:
    if not cold:
        return "<p>Cold start not measured (<code>--cold-runs 0</code>).</p>"
    keys = ("import_s", "load_s", "first_s", "total_s")
    body = [
        (escape(c["artifact"]), escape(c["runtime"]), *(_num(c[k]) for k in keys)) for c in cold
    ]
    head = ("cold start", "runtime", "import s", "load s", "first inference s", "total s")
    return _table(head, body, {2, 3, 4, 5})


def _loads_html(rows: list[dict[str, Any]]) -> str:
    def checks(r: dict[str, Any]) -> str:
        proven = [
            f"onnxruntime {p['onnxruntime']}: {'ran, parity passed' if p['passed'] else 'FAILED'}"
            for p in r["proven"]
        ]
        verdict = {True: "loads", False: "cannot load", None: "unknown"}
        checked = [f"{c['target']}: {verdict[c['loads']]}" for c in r["checked"]]
        return escape("; ".join(proven + checked) or "—")

    body = [
        (
            escape(r["file"]),
            escape(r["by"]),
            escape(r["reads"]),
            escape(r.get("triton", "—")),
            checks(r),
        )
        for r in rows
    ]
    head = (
        "file",
        "written as",
        "loads in (kit's tables)",
        "Triton",
        "proven in that release / kit check",
    )
    return f'<section id="loads"><h2>Which runtime versions load each file</h2>{_table(head, body)}</section>'


def _files_html(files: list[dict[str, Any]]) -> str:
    body = [
        (
            escape(f["name"]),
            escape(f["format"]),
            escape(f["precision"]),
            _size(f["size"]),
            f'<code title="{escape(f["sha256"])}">{escape(f["sha256"][:16])}…</code>',
        )
        for f in files
    ]
    return f'<section id="files"><h2>Files</h2>{_table(("file", "format", "precision", "size", "sha256"), body, {3})}</section>'


def _sources_html(sources: list[dict[str, Any]], problems: list[str]) -> str:
    body = [
        (
            escape(s["kind"]),
            escape(s["origin"]),
            escape(s["created"]),
            escape(age_text(s["age_s"])),
            f"<code>{escape(s['command'])}</code>",
            escape(", ".join(s["changed"]) + " changed since") if s["changed"] else "current",
        )
        for s in sources
    ]
    listed = "".join(f'<li class="problem">{escape(p)}</li>' for p in problems)
    return (
        '<section id="sources"><h2>Where the figures come from</h2>'
        + _table(("result", "origin", "saved", "age", "made by (as it says)", "files"), body)
        + (f"<h3>Problems</h3><ul>{listed}</ul>" if problems else "")
        + "</section>"
    )


def render_compare(compare: dict[str, Any]) -> str:
    """The comparison of :func:`kit.evaluate.compare.compare_exports` as one HTML page."""
    gate = compare["gate"]
    state = "ready" if gate["passed"] else "not ready"
    a, b = compare["a"], compare["b"]
    body = [
        f"<header><h1>{escape(a['name'])} → {escape(b['name'])}</h1>",
        f'<div class="verdict {state.replace(" ", "-")}" id="verdict">'
        + escape("The update passes the gate" if gate["passed"] else "The update fails the gate")
        + "</div>",
        *(f'<p class="reason">{escape(r)}</p>' for r in gate["reasons"]),
        f"<p class=muted>A: {escape(a['directory'])} · B: {escape(b['directory'])} · "
        f"{escape(compare['data'])} · generated {escape(compare['generated'])}</p></header>",
        _agreement_html(compare),
        _classes_html(compare["classes"], compare["confusion_difference"]),
        _speed_delta_html(compare["speed"]),
        _changed_html(compare["files"]),
    ]
    return _page(
        f"kit compare: {compare['a']['name']} → {compare['b']['name']}", state, body, compare
    )


def _agreement_html(compare: dict[str, Any]) -> str:
    a, b, gate = compare["a"], compare["b"], compare["gate"]
    differ = f"{compare['disagreements']} of {compare['samples']} samples differ"
    rows = [
        (
            "accuracy",
            _pct(a["accuracy"]),
            _pct(b["accuracy"]),
            _pct(compare["accuracy_delta"], signed=True),
        ),
        ("top-1 agreement A vs B", _pct(compare["agreement"]), "", differ),
    ]
    return (
        '<section id="agreement"><h2>Agreement and accuracy</h2>'
        + _table(("", "A", "B", "Δ (B − A)"), rows, {1, 2})
        + f"<p>Gate: agreement at least {gate['min_agreement']:.2%}, accuracy drop at most "
        f"{gate['max_accuracy_drop']:.2%}.</p></section>"
    )


def _classes_html(classes: list[dict[str, Any]], difference: list[list[int]]) -> str:
    rows = [
        (
            escape(c["name"]),
            _pct(c["accuracy_a"]),
            _pct(c["accuracy_b"]),
            _pct(c["delta"], signed=True),
            str(c["samples"]),
        )
        for c in classes
    ]
    return (
        '<section id="classes"><h2>Per class</h2>'
        + _table(("class", "accuracy A", "accuracy B", "Δ", "samples"), rows, {1, 2, 3, 4})
        + "<p>Confusion difference (B − A), true class by predicted class: blue where B "
        "predicts that pair more often, red less often. On the diagonal (correct answers) red "
        "is a loss; off it, blue is a new mistake.</p>"
        + confusion_difference(difference, [c["name"] for c in classes])
        + "</section>"
    )


def _speed_delta_html(speed: dict[str, Any]) -> str:
    if not speed["rows"]:
        return f'<section id="speed"><h2>Speed</h2><p class="cell not-run">{escape(speed["why"])}</p></section>'
    rows = [
        (
            escape(r["artifact"]),
            escape(r["runtime"]),
            str(r["batch"]),
            _num(r["a"], ",.0f"),
            _num(r["b"], ",.0f"),
            _pct(r["change"], signed=True),
        )
        for r in speed["rows"]
    ]
    return (
        '<section id="speed"><h2>Speed (images per second, from each export\'s kit bench)</h2>'
        + _table(("artifact", "runtime", "batch", "A", "B", "change"), rows, {2, 3, 4, 5})
        + f"<p class=muted>{escape(speed['why'])}</p></section>"
    )


def _changed_html(files: list[dict[str, Any]]) -> str:
    rows = [
        (
            escape(f["name"]),
            escape(f["change"]),
            _size(f["size_a"]) if f["size_a"] else "—",
            _size(f["size_b"]) if f["size_b"] else "—",
        )
        for f in files
    ]
    return f'<section id="files"><h2>Files</h2>{_table(("file", "change", "size A", "size B"), rows, {2, 3})}</section>'
