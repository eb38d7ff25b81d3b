"""A model's report as data: facts and files, the parity matrix, accuracy per precision,
speed, which runtime versions load each file, and where every figure came from.

Everything comes from the export's manifest and the results kit saved beside it
(:mod:`kit.results`); nothing here runs a model, so a report builds in a moment and without
PyTorch. A cell no result covers says why (the runtime is not installed, no GPU, not run
yet) and which command fills it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from ..artifact import FILE_NAMES, FORMATS, ArtifactFile, Manifest, read_manifest, verify_files
from ..compat import oldest_readers, onnx_versions
from ..embed.packages import pinned_version
from ..errors import first_line
from ..results import Saved, load_results, seconds_since
from .columns import Column, columns_for

__all__ = ["REPORT_VERSION", "build_report", "kit_command"]

#: The report JSON's layout version.
REPORT_VERSION = 1
#: The package whose version wrote each format (from the manifest's ``versions``).
_WRITERS = {
    "onnx": "onnx",
    "ort": "onnxruntime",
    "torchscript": "torch",
    "pt2": "torch",
    "pte": "executorch",
    "tflite": "litert-torch",
    "openvino": "openvino",
}


class _Row(msgspec.Struct):
    """One saved parity comparison (the fields a report shows)."""

    artifact: str
    runtime: str
    inputs: str
    batch: int
    passed: bool
    max_abs: float | None = None
    scale: float | None = None
    top1_agreement: float | None = None
    error: str | None = None
    warning: str | None = None


class _Parity(msgspec.Struct):
    atol: float
    rtol: float
    comparisons: list[_Row]
    notes: list[str] = []


@dataclass(frozen=True)
class _Evidence:
    """A parity report and where it came from."""

    source: str  # the result's kind, or ``export``
    created: str
    command: str
    files: dict[str, str] | None  # sha256 of each file when saved (None: made with them)
    parity: _Parity


def kit_command(args: list[str]) -> str:
    """``["parity", "exported/x"]`` as a shell line: ``kit parity exported/x``."""
    return shlex.join(["kit", *args])


def build_report(
    directory: Path, *, now: datetime | None = None, verify: bool = True
) -> dict[str, Any]:
    """The report of the export in ``directory`` as JSON-ready data.

    ``verify=False`` skips hashing every file against the manifest (kit serve verified them
    when it started, and a page request must not cost a pass over every file).

    Raises:
        ArtifactError: ``directory`` is not an export (no readable manifest).
    """
    now = now or datetime.now(UTC)
    manifest = read_manifest(directory)
    results, unreadable = load_results(directory)
    where = str(directory)
    digests = {name: record.sha256 for name, record in manifest.files.items()}
    evidence = _parity_evidence(manifest, results, where, unreadable)
    matrix = _matrix(manifest, results, evidence, digests, where, now)
    problems = verify_files(directory, manifest.files) if verify else []
    report = {
        "kit_report": REPORT_VERSION,
        "model": manifest.model.name,
        "directory": where,
        "generated": now.isoformat(timespec="seconds"),
        "facts": _facts(manifest),
        "files": _files(manifest),
        "matrix": matrix,
        "accuracy": _accuracy(manifest, results, where, now),
        "speed": _speed(results, digests, where, now),
        "loads_in": _loads_in(directory, manifest, results, evidence, digests),
        "results": _sources(results, manifest, digests, now),
        "problems": problems + unreadable,
    }
    report["verdict"] = _verdict(report, problems)
    return report


def _matrix(
    manifest: Manifest,
    results: dict[str, Saved],
    evidence: list[_Evidence],
    digests: dict[str, str],
    where: str,
    now: datetime,
) -> dict[str, Any]:
    """Every file (and format not exported) by every runtime column, each cell judged."""
    labels = {c.runtime for e in evidence for c in e.parity.comparisons}
    targets = [t.partition("==")[2] for t in manifest.targets if t.startswith("onnxruntime==")]
    pinned = [v for label in labels if (v := pinned_version(label))]
    columns = columns_for(labels, targets + pinned)
    missing = {c.key: c.missing() for c in columns}

    def cells(row: dict[str, Any]) -> dict[str, Any]:
        return {
            c.key: _cell(row, c, missing[c.key], evidence, manifest, digests, where, now)
            for c in columns
        }

    return {
        "columns": [{"key": c.key, "title": c.title} for c in columns],
        "rows": [{**row, "cells": cells(row)} for row in _rows(manifest)],
    }


def _parity_evidence(
    manifest: Manifest, results: dict[str, Saved], where: str, unreadable: list[str]
) -> list[_Evidence]:
    """Every parity report the export has, newest first: saved ones and the export's own."""
    found = []
    for kind, saved in results.items():
        if not kind.startswith("parity-"):
            continue
        try:
            parity = msgspec.convert(saved.data, _Parity)
        except msgspec.ValidationError as exc:
            unreadable.append(f"results/{kind}.json is not a parity report kit saved ({exc})")
            continue
        found.append(_Evidence(kind, saved.created, saved.command, saved.files, parity))
    if manifest.parity is not None:
        try:
            parity = msgspec.convert(manifest.parity, _Parity)
            found.append(
                _Evidence("export", manifest.created, kit_command(["parity", where]), None, parity)
            )
        except msgspec.ValidationError as exc:
            unreadable.append(f"the manifest's parity report is not one kit wrote ({exc})")
    return sorted(found, key=lambda e: e.created, reverse=True)


def _rows(manifest: Manifest) -> list[dict[str, Any]]:
    """One row per runnable file, then one per format not exported (never blank)."""
    rows: list[dict[str, Any]] = [
        {"artifact": a.label, "file": a.name, "format": a.format, "precision": a.precision}
        for a in manifest.artifacts()
    ]
    have = {a.format for a in manifest.artifacts()}
    rows += [
        {"artifact": f, "file": None, "format": f, "precision": "fp32"}
        for f in FORMATS
        if f not in have
    ]
    return rows


def _cell(
    row: dict[str, Any],
    column: Column,
    missing: str | None,
    evidence: list[_Evidence],
    manifest: Manifest,
    digests: dict[str, str],
    where: str,
    now: datetime,
) -> dict[str, Any]:
    """One matrix cell: a verdict with its figures, or why there is none."""
    if row["format"] not in column.formats:
        why = f"{column.title} does not run {row['format']} files"
        return {"status": "n/a", "text": "n/a", "why": why, "command": None}
    if row["file"] is None:
        args = ["export", where, "--formats", row["format"]]
        why = f"this export has no {FILE_NAMES[row['format']]}"
        return {
            "status": "not-run",
            "text": "not exported",
            "why": why,
            "command": kit_command(args),
        }
    for e in evidence:
        rows = [
            c
            for c in e.parity.comparisons
            if c.artifact == row["artifact"] and column.matches(c.runtime)
        ]
        if rows:
            return _judged(row, rows, e, manifest, digests, now)
    if (record := _variant_check(row, column, manifest, where)) is not None:
        return record
    return {
        "status": "not-run",
        "text": "not run" if missing is None else "can't run here",
        "why": missing or "not run yet",
        "runnable": missing is None,
        "command": kit_command(column.command(where)),
    }


def _judged(
    row: dict[str, Any],
    rows: list[_Row],
    e: _Evidence,
    manifest: Manifest,
    digests: dict[str, str],
    now: datetime,
) -> dict[str, Any]:
    """A cell a parity report covers: pass, warn, fail or stale, with its worst figures."""
    failed = [c for c in rows if not c.passed]
    status = "fail" if failed else ("warn" if any(c.warning for c in rows) else "pass")
    real = [c for c in rows if not c.inputs.startswith("random")]
    top1 = [c.top1_agreement for c in (real or rows) if c.top1_agreement is not None]
    worst = max((c.max_abs for c in rows if c.max_abs is not None), default=None)
    bounds = [(c.max_abs, e.parity.atol + e.parity.rtol * (c.scale or 0.0)) for c in rows]
    ratios = [found / bound for found, bound in bounds if found is not None and bound > 0]
    cell: dict[str, Any] = {
        "status": status,
        "runtime": rows[0].runtime,
        "max_abs": worst,
        "of_tolerance": max(ratios, default=None) if row["precision"] == "fp32" else None,
        "top1": min(top1, default=None),
        "top1_on": "real data" if real else "random inputs",
        "checks": len(rows),
        "source": e.source,
        "created": e.created,
        "age_s": seconds_since(e.created, now),
        "command": e.command,
    }
    if failed:
        first = failed[0]
        found = "?" if first.max_abs is None else f"{first.max_abs:.3g}"
        cell["why"] = first.error or f"{first.inputs}: max|diff| {found} outside the rule"
    elif status == "warn":
        cell["why"] = next(c.warning for c in rows if c.warning)
    if e.files is not None and e.files.get(row["file"]) != digests.get(row["file"]):
        cell["why"] = f"{row['file']} changed since this result was saved; rerun it"
        cell["was"], cell["status"] = status, "stale"
    cell["text"] = _cell_text(cell)
    return cell


def _cell_text(cell: dict[str, Any]) -> str:
    parts = [cell["status"]]
    if cell.get("of_tolerance") is not None:
        share = cell["of_tolerance"]
        parts.append(f"{cell['max_abs']:.1e}, {'<1%' if share < 0.01 else f'{share:.0%}'} of tol")
    elif cell.get("max_abs") is not None:
        parts.append(f"max|diff| {cell['max_abs']:.1e}")
    if cell.get("top1") is not None:
        parts.append(f"top-1 {cell['top1']:.2%}")
    return " · ".join(parts)


def _variant_check(
    row: dict[str, Any], column: Column, manifest: Manifest, where: str
) -> dict[str, Any] | None:
    """A variant's own check (``kit quantize``: top-1 agreement with the fp32 file on held-out
    data), in the column of the runtime it was measured in, when no parity run covers it."""
    home = {"onnx": "onnxruntime-cpu", "pte": "executorch"}
    record = next((v for v in manifest.variants.values() if v.file == row["file"]), None)
    if record is None or home.get(record.format) != column.key:
        return None
    passed = record.verified and record.agreement >= record.limits.min_agreement
    why = (
        f"top-1 agreement with the fp32 file {record.agreement:.2%} on {record.held_out} "
        f"(at least {record.limits.min_agreement:.1%} needed)"
    )
    return {
        "status": "pass" if passed else "fail",
        "text": f"{'pass' if passed else 'fail'} · top-1 {record.agreement:.2%} vs fp32",
        "why": why if record.verified else f"not verified on real data: {why}",
        "top1": record.agreement,
        "source": "variant",
        "created": manifest.created,
        "command": kit_command(_variant_args(record.precision, record.format, where)),
    }


def _variant_args(precision: str, fmt: str, where: str) -> list[str]:
    """The command that (re)makes a variant: kit quantize for ONNX, kit export otherwise."""
    if fmt == "onnx":
        return ["quantize", where, "--precision", precision]
    return ["export", where, "--formats", fmt, "--precision", precision]


def _facts(manifest: Manifest) -> dict[str, Any]:
    facts, training = manifest.facts, manifest.training or {}
    names = list(facts.class_names or [])
    return {
        "name": manifest.model.name,
        "input_shape": list(facts.input_shape),
        "classes": facts.num_classes,
        "class_names": names[:50],
        "more_class_names": max(len(names) - 50, 0),
        "mean": list(facts.mean),
        "std": list(facts.std),
        "opset": manifest.opset,
        "created": manifest.created,
        "versions": dict(manifest.versions),
        "trained_on": training.get("data"),
        "test_accuracy": training.get("test_accuracy"),
        "note": manifest.model.note,
        "targets": list(manifest.targets),
    }


def _files(manifest: Manifest) -> list[dict[str, Any]]:
    precision = {v.file: v.precision for v in manifest.variants.values()}
    return [
        {
            "name": name,
            "format": record.format,
            "precision": precision.get(name, "fp32"),
            "size": record.size,
            "sha256": record.sha256,
        }
        for name, record in manifest.files.items()
    ]


def _accuracy(
    manifest: Manifest, results: dict[str, Saved], where: str, now: datetime
) -> list[dict[str, Any]]:
    """Test-set accuracy of the fp32 file and each variant, with the delta to fp32."""
    fp32 = _fp32_accuracy(manifest, results, where, now)
    found = [fp32]
    for record in manifest.variants.values():
        base = record.accuracy_fp32 if record.accuracy_fp32 is not None else fp32["accuracy"]
        found.append(
            {
                "precision": record.precision,
                "file": record.file,
                "accuracy": record.accuracy,
                "delta": None
                if record.accuracy is None or base is None
                else record.accuracy - base,
                "agreement": record.agreement,
                "held_out": record.held_out,
                "limits": msgspec.to_builtins(record.limits),
                "kept_fp32": list(record.nodes_kept_fp32),
                "verified": record.verified,
                "source": "the variant's own check",
                "command": kit_command(_variant_args(record.precision, record.format, where)),
            }
        )
    return found


def _fp32_accuracy(
    manifest: Manifest, results: dict[str, Saved], where: str, now: datetime
) -> dict[str, Any]:
    row: dict[str, Any] = {"precision": "fp32", "file": "model.onnx", "delta": 0.0}
    row["command"] = kit_command(["eval", where])
    saved = results.get("eval")
    accuracy = saved.data.get("accuracy") if saved else None
    if saved and isinstance(accuracy, float):
        agreement = saved.data.get("top1_agreement")
        return row | {
            "accuracy": accuracy,
            "agreement": agreement if isinstance(agreement, float) else None,
            "held_out": str(saved.data.get("data", "")),
            "source": "kit eval",
            "age_s": saved.age_s(now),
        }
    known = next((v.accuracy_fp32 for v in manifest.variants.values() if v.accuracy_fp32), None)
    if known is not None:
        return row | {"accuracy": known, "source": "measured with the variants"}
    trained = (manifest.training or {}).get("test_accuracy")
    if isinstance(trained, float):
        return row | {"accuracy": trained, "source": "training (eager, best epoch)"}
    return row | {"accuracy": None, "delta": None, "source": "not run yet"}


def _speed(
    results: dict[str, Saved], digests: dict[str, str], where: str, now: datetime
) -> dict[str, Any]:
    """``kit bench``'s rows and cold starts, or why there are none."""
    command = kit_command(["bench", where])
    saved = results.get("bench")
    if saved is None:
        return {"status": "not-run", "why": "not run yet", "command": command}
    try:
        bench = msgspec.convert(saved.data, _Bench)
    except msgspec.ValidationError as exc:
        return {
            "status": "not-run",
            "why": f"results/bench.json is unreadable ({exc})",
            "command": command,
        }
    return {
        "status": "stale" if saved.stale_files(digests) else "ran",
        "changed": saved.stale_files(digests),
        "rows": msgspec.to_builtins(bench.rows),
        "cold_start": msgspec.to_builtins(bench.cold_start),
        "macs_per_sample": bench.macs_per_sample,
        "peak_gmacs": bench.peak_gmacs,
        "notes": bench.notes,
        "created": saved.created,
        "age_s": saved.age_s(now),
        "command": saved.command,
    }


class _BenchRow(msgspec.Struct):
    artifact: str
    runtime: str
    batch: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    images_per_s: float | None
    peak_share: float | None = None


class _Cold(msgspec.Struct):
    artifact: str
    runtime: str
    import_s: float
    load_s: float
    first_s: float
    total_s: float
    runs: int


class _Bench(msgspec.Struct):
    rows: list[_BenchRow]
    macs_per_sample: int = 0
    peak_gmacs: dict[str, float] = {}
    cold_start: list[_Cold] = []
    notes: list[str] = []


def _loads_in(
    directory: Path,
    manifest: Manifest,
    results: dict[str, Saved],
    evidence: list[_Evidence],
    digests: dict[str, str],
) -> list[dict[str, Any]]:
    """For each runnable file: the oldest runtime releases that load it, by kit's tables,
    and the releases it was proven or checked in."""
    checked = _checked(results)
    return [
        {
            "file": a.name,
            **_readers(directory, a, manifest),
            "proven": _proven(a, evidence, digests),
            "checked": checked.get(a.name, []),
        }
        for a in manifest.artifacts()
    ]


def _readers(directory: Path, artifact: ArtifactFile, manifest: Manifest) -> dict[str, Any]:
    writer = _WRITERS.get(artifact.format, artifact.format)
    wrote = manifest.versions.get(writer)
    if artifact.format != "onnx":
        rule = f"{writer} {wrote} or newer" if wrote else "its manifest does not say"
        return {"reads": rule, "by": f"written with {writer} {wrote}" if wrote else ""}
    try:
        ir, opset = onnx_versions(directory / artifact.name)
    except Exception as exc:  # a file the manifest lists but onnx cannot parse
        return {"reads": "unknown", "by": f"onnx cannot read it: {first_line(exc)}"}
    ort, triton = oldest_readers(ir, opset)
    return {
        "reads": f"onnxruntime {ort} or newer" if ort else "no onnxruntime kit knows",
        "triton": f"Triton {triton} or newer" if triton else "no Triton release kit knows",
        "by": f"IR {ir}, opset {opset}",
    }


def _checked(results: dict[str, Saved]) -> dict[str, list[dict[str, Any]]]:
    """``kit check``'s saved findings, by file."""
    saved = results.get("check")
    found: dict[str, list[dict[str, Any]]] = {}
    for f in saved.data.get("findings", []) if saved else []:
        if isinstance(f, dict) and isinstance(f.get("file"), str):
            found.setdefault(f["file"], []).append(
                {"target": str(f.get("target")), "loads": f.get("loads"), "why": str(f.get("why"))}
            )
    return found


def _proven(
    artifact: ArtifactFile, evidence: list[_Evidence], digests: dict[str, str]
) -> list[dict[str, Any]]:
    """The pinned onnxruntime releases a parity run ran this file in, and the verdict."""
    found: dict[str, dict[str, Any]] = {}
    for e in evidence:
        if e.files is not None and e.files.get(artifact.name) != digests.get(artifact.name):
            continue
        for c in e.parity.comparisons:
            if c.artifact == artifact.label and (version := pinned_version(c.runtime)):
                entry = found.setdefault(version, {"onnxruntime": version, "passed": True})
                entry["passed"] = entry["passed"] and c.passed
    return list(found.values())


def _sources(
    results: dict[str, Saved], manifest: Manifest, digests: dict[str, str], now: datetime
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        {
            "kind": "export",
            "created": manifest.created,
            "age_s": seconds_since(manifest.created, now),
            "command": "kit export (the manifest's parity report and variants)",
            "changed": [],
        }
    ]
    return found + [
        {
            "kind": kind,
            "created": saved.created,
            "age_s": saved.age_s(now),
            "command": saved.command,
            "kit_version": saved.kit_version,
            "changed": saved.stale_files(digests),
        }
        for kind, saved in sorted(results.items())
    ]


def _verdict(report: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """Ready, not ready or incomplete, with the counts and the reasons in sentences."""
    cells = [cell for row in report["matrix"]["rows"] for cell in row["cells"].values()]
    counts = {
        s: sum(c["status"] == s for c in cells)
        for s in ("pass", "warn", "fail", "stale", "not-run", "n/a")
    }
    unchecked = [
        row["file"]
        for row in report["matrix"]["rows"]
        if row["file"] and not any(c["status"] in ("pass", "warn") for c in row["cells"].values())
    ]
    reasons = [f"{p}" for p in problems]
    if counts["fail"]:
        reasons.append(f"{counts['fail']} parity cell(s) failed")
    if counts["stale"]:
        reasons.append(f"{counts['stale']} result(s) describe files that changed since")
    if unchecked:
        reasons.append(f"no check passed for {', '.join(unchecked)}")
    if problems or counts["fail"]:
        state = "not ready"
    elif reasons:
        state = "incomplete"
    else:
        state = "ready"
    return {"state": state, "counts": counts, "reasons": reasons}
