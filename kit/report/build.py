"""A model's report as data: facts and files, the parity matrix, accuracy per precision,
speed, which runtime versions load each file, and where every figure came from.

Everything comes from the export's manifest and the results kit saved beside it
(:mod:`kit.results`); nothing here runs a model, so a report builds in a moment and without
PyTorch. A cell no result covers says why (the runtime is not installed, no GPU, not run
yet) and which command fills it.

Only results this user's kit signed can make a cell pass (:mod:`kit._signing`). A result
that arrived with the folder, and the parity record inside the manifest, are shown with
their figures as *carried in*: evidence someone else claims, which counts for nothing until
it is made here. Every command a report names is built here from kit's own knowledge of its
checks; a result's own command is only text to show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from ..artifact import (
    FILE_NAMES,
    MODEL_FILE,
    ArtifactFile,
    Manifest,
    read_manifest,
    variant_key,
    verify_files,
)
from ..catalogue import FORMATS as CATALOGUE
from ..catalogue import PINNED
from ..compat import oldest_readers, onnx_versions
from ..errors import first_line
from ..parity import input_size
from ..results import (
    BenchData,
    CheckData,
    EvalData,
    Loaded,
    ParityData,
    ParityRow,
    VariantData,
    kit_command,
    load_results,
    seconds_since,
)
from .columns import Column, columns_for

__all__ = ["REPORT_VERSION", "RunOptions", "build_report", "kit_command"]

#: The report JSON's layout version.
REPORT_VERSION = 2
CARRIED = "carried in: not made by kit on this machine, so it counts for nothing until rerun here"


@dataclass(frozen=True)
class RunOptions:
    """The user's options every command a report names carries (``--factory``,
    ``--dataset``, ``--data-dir``): what ``kit report --run`` was given, never what a file says."""

    factory: str | None = None
    dataset: str | None = None
    data_dir: Path | None = None

    def args(self, *, data: bool = True) -> list[str]:
        found = ["--factory", self.factory] if self.factory else []
        if data and self.dataset:
            found += ["--dataset", self.dataset]
        if data and self.data_dir is not None:
            found += ["--data-dir", str(self.data_dir)]
        return found


@dataclass(frozen=True)
class _Evidence:
    """A parity report, where it came from, and whether kit made it here."""

    source: str  # the result's kind, or ``manifest``
    created: str
    saved_command: str  # what the result says made it: text to show, never run
    files: dict[str, str] | None  # sha256 of each file when saved (None: the manifest's own)
    parity: ParityData
    here: bool


@dataclass(frozen=True)
class _Context:
    """What every part of one report reads."""

    directory: Path
    where: str
    manifest: Manifest
    results: dict[str, Loaded]
    digests: dict[str, str]
    now: datetime
    options: RunOptions
    #: problems found while reading (a manifest record out of range), for the report's list
    problems: list[str]

    def command(self, args: list[str], *, data: bool = True) -> dict[str, Any]:
        """A command kit builds for this export: its text, and its arguments for --run."""
        full = [*args, *self.options.args(data=data)]
        return {"command": kit_command(full), "args": full}


def build_report(
    directory: Path,
    *,
    now: datetime | None = None,
    verify: bool = True,
    options: RunOptions | None = None,
) -> dict[str, Any]:
    """The report of the export in ``directory`` as JSON-ready data.

    ``verify=False`` skips hashing every file against the manifest (kit serve verified them
    when it started, and a page request must not cost a pass over every file).

    Raises:
        ArtifactError: ``directory`` is not an export (no readable manifest).
    """
    now = now or datetime.now(UTC)
    manifest = read_manifest(directory)
    results, unreadable = load_results(directory, made=manifest.created, now=now)
    digests = {name: record.sha256 for name, record in manifest.files.items()}
    ctx = _Context(
        directory,
        str(directory),
        manifest,
        results,
        digests,
        now,
        options or RunOptions(),
        unreadable,
    )
    evidence = _parity_evidence(ctx, unreadable)
    problems = verify_files(directory, manifest.files) if verify else []
    loads_in = _loads_in(ctx, evidence, problems)
    report = {
        "kit_report": REPORT_VERSION,
        "model": manifest.model.name,
        "directory": ctx.where,
        "generated": now.isoformat(timespec="seconds"),
        "facts": _facts(manifest),
        "files": _files(manifest),
        "matrix": _matrix(ctx, evidence),
        "pipeline": _pipeline(ctx, evidence),
        "accuracy": _accuracy(ctx),
        "speed": _speed(ctx),
        "loads_in": loads_in,
        "results": _sources(ctx),
        "problems": problems + unreadable,
    }
    report["verdict"] = _verdict(report, problems)
    return report


def _matrix(ctx: _Context, evidence: list[_Evidence]) -> dict[str, Any]:
    """Every file (and format not exported) by every runtime column, each cell judged."""
    keys = {c.key for e in evidence for c in e.parity.comparisons}
    manifest = ctx.manifest
    pinned = [v for key in [*manifest.targets, *keys] if (v := _pinned(key))]
    columns = columns_for(keys, pinned)
    missing = {c.key: c.missing() for c in columns}

    def cells(row: dict[str, Any]) -> dict[str, Any]:
        return {c.key: _cell(ctx, row, c, missing[c.key], evidence) for c in columns}

    return {
        "columns": [{"key": c.key, "title": c.title} for c in columns],
        "rows": [{**row, "cells": cells(row)} for row in _rows(manifest)],
    }


def _parity_evidence(ctx: _Context, unreadable: list[str]) -> list[_Evidence]:
    """Every parity report the export has: those made here first (newest first), then those
    carried in (saved elsewhere, or the manifest's own record)."""
    found = [
        _Evidence(kind, r.saved.created, r.saved.command, r.saved.files, r.data, r.here)
        for kind, r in ctx.results.items()
        if isinstance(r.data, ParityData)
    ]
    if ctx.manifest.parity is not None:
        try:
            parity = msgspec.convert(ctx.manifest.parity, ParityData)
            found.append(
                _Evidence("manifest", ctx.manifest.created, "kit export", None, parity, False)
            )
        except msgspec.ValidationError as exc:
            unreadable.append(f"the manifest's parity record is not one kit wrote ({exc})")
    for e in found:
        if e.source != "manifest" and any(not c.key for c in e.parity.comparisons):
            renew = kit_command(["parity", ctx.where, *ctx.options.args()])
            unreadable.append(
                f"{e.source} was saved by an older kit (its rows name no runtime), so no "
                f"column shows them: renew it with {renew}"
            )
    found.sort(key=lambda e: e.created, reverse=True)
    return sorted(found, key=lambda e: not e.here)  # stable: newest first within each


def _pipeline(ctx: _Context, evidence: list[_Evidence]) -> dict[str, Any]:
    """The whole-pipeline check (images through kit's preprocessing into model.onnx against
    eager and the labels): the newest one made here for today's model.onnx, a carried one
    shown as such, or why there is none."""
    made = ctx.command(["parity", ctx.where])
    if not ctx.manifest.facts.is_classifier or MODEL_FILE not in ctx.manifest.files:
        return {"status": "n/a", "why": "only a classifier's pipeline is checked", **made}
    for e in evidence:
        if e.parity.pipeline is None:
            continue
        found = msgspec.to_builtins(e.parity.pipeline)
        status = "pass" if found["passed"] else "fail"
        stale = e.files is not None and e.files.get(MODEL_FILE) != ctx.digests.get(MODEL_FILE)
        if not e.here:
            status = "carried"
        elif stale:
            status = "stale"
        found["runnable"] = status in ("carried", "stale")
        return {
            **found,
            "status": status,
            "source": e.source,
            "origin": _origin(e.here),
            "created": e.created,
            "age_s": seconds_since(e.created, ctx.now),
            **made,
        }
    known = ctx.manifest.model.data or ctx.options.dataset or ctx.options.data_dir
    return {
        "status": "not-run",
        "why": "not run yet" if known else "no labelled test images given (--dataset, --data-dir)",
        "runnable": bool(known),
        **made,
    }


def _rows(manifest: Manifest) -> list[dict[str, Any]]:
    """One row per runnable file, then one per format not exported (never blank)."""
    rows: list[dict[str, Any]] = [
        {"artifact": a.label, "file": a.name, "format": a.format, "precision": a.precision}
        for a in manifest.artifacts()
    ]
    have = {a.format for a in manifest.artifacts()}
    rows += [
        {"artifact": f, "file": None, "format": f, "precision": "fp32"}
        for f in CATALOGUE
        if f not in have
    ]
    return rows


def _cell(
    ctx: _Context,
    row: dict[str, Any],
    column: Column,
    missing: str | None,
    evidence: list[_Evidence],
) -> dict[str, Any]:
    """One matrix cell: a verdict with its figures, or why there is none."""
    if row["format"] not in column.formats:
        why = f"{column.title} does not run {row['format']} files"
        return {"status": "n/a", "text": "n/a", "why": why, "command": None}
    if row["file"] is None:
        why = f"this export has no {FILE_NAMES[row['format']]}"
        made = ctx.command(["export", ctx.where, "--formats", row["format"]])
        return {"status": "not-run", "text": "not exported", "why": why, **made}
    renew = ctx.command(column.command(ctx.where))
    for e in evidence:
        rows = [
            c for c in e.parity.comparisons if c.artifact == row["artifact"] and c.key == column.key
        ]
        if rows:
            cell = _judged(ctx, row, rows, e)
            cell = {**cell, **renew}
            return cell if e.here else _as_carried(cell, missing)
    if (record := _variant_check(ctx, row, column)) is not None:
        return record
    return {
        "status": "not-run",
        "text": "not run" if missing is None else "can't run here",
        "why": missing or "not run yet",
        "runnable": missing is None,
        **renew,
    }


def _as_carried(cell: dict[str, Any], missing: str | None) -> dict[str, Any]:
    """A cell whose only evidence arrived with the folder: its figures, and why it does not
    count; --run makes it here."""
    claimed = cell["status"]
    return {
        **cell,
        "status": "carried",
        "claimed": claimed,
        "text": f"carried in · claims {cell['text']}",
        "why": CARRIED,
        "runnable": missing is None,
    }


def _judged(
    ctx: _Context, row: dict[str, Any], rows: list[ParityRow], e: _Evidence
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
        "sizes": sorted({input_size(c.inputs) or "example" for c in rows}),
        "source": e.source,
        "origin": "made here" if e.here else "carried in",
        "created": e.created,
        "age_s": seconds_since(e.created, ctx.now),
        "saved_command": e.saved_command,
    }
    if failed:
        first = failed[0]
        found = "?" if first.max_abs is None else f"{first.max_abs:.3g}"
        cell["why"] = first.error or f"{first.inputs}: max|diff| {found} outside the rule"
    elif status == "warn":
        cell["why"] = next(c.warning for c in rows if c.warning)
    if e.files is not None and e.files.get(row["file"]) != ctx.digests.get(row["file"]):
        cell["why"] = f"{row['file']} changed since this result was saved; rerun it"
        cell["was"], cell["status"] = status, "stale"
    cell["text"] = _cell_text(cell)
    return cell


def _cell_text(cell: dict[str, Any]) -> str:
    parts = [cell["status"]]
    if len(cell.get("sizes", ())) > 1:
        parts.append(f"{len(cell['sizes'])} sizes")
    if cell.get("of_tolerance") is not None:
        share = cell["of_tolerance"]
        parts.append(f"{cell['max_abs']:.1e}, {'<1%' if share < 0.01 else f'{share:.0%}'} of tol")
    elif cell.get("max_abs") is not None:
        parts.append(f"max|diff| {cell['max_abs']:.1e}")
    if cell.get("top1") is not None:
        parts.append(f"top-1 {cell['top1']:.2%}")
    return " · ".join(parts)


def _variant_record(ctx: _Context, file: str) -> tuple[VariantData, Loaded | None] | None:
    """A variant's own check of ``file``: the one kit saved here for its current bytes, else
    the manifest's record (carried in)."""
    record = next((v for v in ctx.manifest.variants.values() if v.file == file), None)
    if record is None:
        return None
    saved = ctx.results.get(f"quantize-{variant_key(record.precision, record.format)}")
    if (
        saved is not None
        and saved.here
        and isinstance(saved.data, VariantData)
        and saved.data.file == file
        and saved.saved.files.get(file) == ctx.digests.get(file)
    ):
        return saved.data, saved
    try:
        return msgspec.convert(msgspec.to_builtins(record), VariantData), None
    except msgspec.ValidationError as exc:
        problem = f"the manifest's record of {file} holds a value kit never writes ({exc})"
        if problem not in ctx.problems:
            ctx.problems.append(problem)
        return None


def _variant_check(ctx: _Context, row: dict[str, Any], column: Column) -> dict[str, Any] | None:
    """A variant's own check (top-1 agreement with the fp32 file on held-out data, made by
    ``kit quantize`` or export), in the column of the runtime it was measured in, when no
    parity run covers it."""
    found = _variant_record(ctx, row["file"])
    if found is None or CATALOGUE[row["format"]].home != column.key:
        return None
    record, saved = found
    passed = record.verified and record.agreement >= record.limits.min_agreement
    why = (
        f"top-1 agreement with the fp32 file {record.agreement:.2%} on {record.held_out} "
        f"(at least {record.limits.min_agreement:.1%} needed)"
    )
    cell = {
        "status": "pass" if passed else "fail",
        "text": f"{'pass' if passed else 'fail'} · top-1 {record.agreement:.2%} vs fp32",
        "why": why if record.verified else f"not verified on real data: {why}",
        "top1": record.agreement,
        "source": "variant",
        "origin": "made here" if saved else "carried in",
        "created": saved.saved.created if saved else ctx.manifest.created,
        **ctx.command(_variant_args(row["precision"], row["format"], ctx.where)),
    }
    return cell if saved else _as_carried(cell, None)


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
        "trained_on": _text_or_none(training.get("data")),
        "test_accuracy": _share_or_none(training.get("test_accuracy")),
        "note": manifest.model.note,
        "targets": list(manifest.targets),
        "dynamic": facts.dynamic.describe() if facts.dynamic else None,
        "planned": dict(manifest.planned),
        "static": dict(manifest.static),
    }


def _text_or_none(value: Any) -> str | None:
    return value[:500] if isinstance(value, str) else None


def _share_or_none(value: Any) -> float | None:
    ok = isinstance(value, float) and 0.0 <= value <= 1.0
    return value if ok else None


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


def _accuracy(ctx: _Context) -> list[dict[str, Any]]:
    """Test-set accuracy of the fp32 file and each variant, with the delta to fp32."""
    fp32 = _fp32_accuracy(ctx)
    found = [fp32]
    for variant in ctx.manifest.variants.values():
        known = _variant_record(ctx, variant.file)
        if known is None:
            continue
        record, saved = known
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
                "source": "the variant's own check"
                + ("" if saved else " (the manifest's, carried in)"),
                **ctx.command(_variant_args(record.precision, record.format, ctx.where)),
            }
        )
    return found


def _fp32_accuracy(ctx: _Context) -> dict[str, Any]:
    row: dict[str, Any] = {"precision": "fp32", "file": MODEL_FILE, "delta": 0.0}
    row |= ctx.command(["eval", ctx.where])
    saved = ctx.results.get("eval")
    if saved is not None and isinstance(saved.data, EvalData):
        stale = bool(saved.saved.files.get(MODEL_FILE) != ctx.digests.get(MODEL_FILE))
        return row | {
            "accuracy": saved.data.accuracy,
            "agreement": saved.data.top1_agreement,
            "held_out": saved.data.data,
            "source": "kit eval" + ("" if saved.here else " (carried in)"),
            "here": saved.here and not stale,
            "age_s": saved.saved.age_s(ctx.now),
        }
    manifest = ctx.manifest
    known = next((v.accuracy_fp32 for v in manifest.variants.values() if v.accuracy_fp32), None)
    if known is not None:
        return row | {"accuracy": known, "source": "the manifest's variants (carried in)"}
    trained = _share_or_none((manifest.training or {}).get("test_accuracy"))
    if trained is not None:
        return row | {"accuracy": trained, "source": "the manifest's training record (eager)"}
    return row | {"accuracy": None, "delta": None, "source": "not run yet"}


def _speed(ctx: _Context) -> dict[str, Any]:
    """``kit bench``'s rows and cold starts, or why there are none."""
    made = ctx.command(["bench", ctx.where], data=False)
    saved = ctx.results.get("bench")
    if saved is None or not isinstance(saved.data, BenchData):
        return {"status": "not-run", "why": "not run yet", **made}
    bench, changed = saved.data, saved.saved.stale_files(ctx.digests)
    status = "stale" if changed else "ran"
    return {
        "status": status if saved.here else "carried",
        "origin": "made here" if saved.here else "carried in",
        "changed": changed,
        "rows": msgspec.to_builtins(bench.rows),
        "cold_start": msgspec.to_builtins(bench.cold_start),
        "macs_per_sample": bench.macs_per_sample,
        "peak_gmacs": dict(bench.peak_gmacs),
        "notes": list(bench.notes),
        "created": saved.saved.created,
        "age_s": saved.saved.age_s(ctx.now),
        "saved_command": saved.saved.command,
        **made,
    }


def _loads_in(
    ctx: _Context, evidence: list[_Evidence], problems: list[str]
) -> list[dict[str, Any]]:
    """For each runnable file: the oldest runtime releases that load it, by kit's tables,
    and the releases it was proven or checked in. An ONNX file that onnx cannot read is a
    problem of the report (the verdict follows the files, not what a result claims)."""
    checked = _checked(ctx)
    found = []
    for a in ctx.manifest.artifacts():
        readers = _readers(ctx, a)
        if readers.pop("unreadable", False):
            problems.append(f"{a.name} cannot be read: {readers['by']}")
        proven = _proven(ctx, a, evidence)
        found.append(
            {"file": a.name, **readers, "proven": proven, "checked": checked.get(a.name, [])}
        )
    return found


def _readers(ctx: _Context, artifact: ArtifactFile) -> dict[str, Any]:
    writer = CATALOGUE[artifact.format].writer
    wrote = ctx.manifest.versions.get(writer)
    if artifact.format != "onnx":
        rule = f"{writer} {wrote} or newer" if wrote else "its manifest does not say"
        return {"reads": rule, "by": f"written with {writer} {wrote}" if wrote else ""}
    try:
        ir, opset = onnx_versions(ctx.directory / artifact.name)
    except Exception as exc:  # a file the manifest lists but onnx cannot parse
        return {
            "reads": "unknown",
            "by": f"onnx cannot read it: {first_line(exc)}",
            "unreadable": True,
        }
    ort, triton = oldest_readers(ir, opset)
    return {
        "reads": f"onnxruntime {ort} or newer" if ort else "no onnxruntime kit knows",
        "triton": f"Triton {triton} or newer" if triton else "no Triton release kit knows",
        "by": f"IR {ir}, opset {opset}",
    }


def _checked(ctx: _Context) -> dict[str, list[dict[str, Any]]]:
    """``kit check``'s saved findings, by file."""
    saved = ctx.results.get("check")
    found: dict[str, list[dict[str, Any]]] = {}
    if saved is None or not isinstance(saved.data, CheckData):
        return found
    for f in saved.data.findings:
        found.setdefault(f.file, []).append(
            {"target": f.target, "loads": f.loads, "why": f.why, "origin": _origin(saved.here)}
        )
    return found


def _origin(here: bool) -> str:
    return "made here" if here else "carried in"


def _proven(
    ctx: _Context, artifact: ArtifactFile, evidence: list[_Evidence]
) -> list[dict[str, Any]]:
    """The pinned onnxruntime releases a parity run made here ran this file in, and the
    verdict."""
    found: dict[str, dict[str, Any]] = {}
    for e in evidence:
        if not e.here or (e.files or {}).get(artifact.name) != ctx.digests.get(artifact.name):
            continue
        for c in e.parity.comparisons:
            if c.artifact == artifact.label and (version := _pinned(c.key)):
                entry = found.setdefault(version, {"onnxruntime": version, "passed": True})
                entry["passed"] = entry["passed"] and c.passed
    return list(found.values())


def _sources(ctx: _Context) -> list[dict[str, Any]]:
    manifest = ctx.manifest
    found: list[dict[str, Any]] = [
        {
            "kind": "manifest",
            "created": manifest.created,
            "age_s": seconds_since(manifest.created, ctx.now),
            "command": "kit export (the manifest's parity record and variants)",
            "origin": "carried in",
            "changed": [],
        }
    ]
    return found + [
        {
            "kind": kind,
            "created": r.saved.created,
            "age_s": r.saved.age_s(ctx.now),
            "command": r.saved.command,
            "kit_version": r.saved.kit_version,
            "origin": r.origin,
            "changed": r.saved.stale_files(ctx.digests),
        }
        for kind, r in sorted(ctx.results.items())
    ]


STATUSES = ("pass", "warn", "fail", "stale", "carried", "not-run", "n/a")


def _verdict(report: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """Ready, not ready or incomplete, with the counts and the reasons in sentences. Ready
    needs every listed file to have passed a check made here."""
    cells = [cell for row in report["matrix"]["rows"] for cell in row["cells"].values()]
    counts = {s: sum(c["status"] == s for c in cells) for s in STATUSES}
    unchecked = [
        row["file"]
        for row in report["matrix"]["rows"]
        if row["file"] and not any(c["status"] in ("pass", "warn") for c in row["cells"].values())
    ]
    reasons = list(report["problems"])
    if not any(row["file"] for row in report["matrix"]["rows"]):
        problems = [*problems, "the manifest lists no file kit can run"]
        reasons.append(problems[-1])
    if counts["fail"]:
        reasons.append(f"{counts['fail']} parity cell(s) failed")
    pipeline = report["pipeline"]
    if pipeline["status"] == "fail":
        problems = [*problems, f"the whole pipeline failed: {pipeline['why']}"]
        reasons.append(problems[-1])
    if counts["stale"]:
        reasons.append(f"{counts['stale']} result(s) describe files that changed since")
    if counts["carried"]:
        reasons.append(
            f"{counts['carried']} cell(s) rest only on results that arrived with the folder; "
            f"make them here: kit report {report['directory']} --run"
        )
    if unchecked:
        reasons.append(f"no check made here passed for {', '.join(unchecked)}")
    if problems or counts["fail"]:
        state = "not ready"
    elif reasons:
        state = "incomplete"
    else:
        state = "ready"
    return {"state": state, "counts": counts, "reasons": reasons}


def _pinned(key: str) -> str | None:
    """The version of a pinned onnxruntime's runtime key (``onnxruntime==1.16.3``)."""
    found = PINNED.fullmatch(key)
    return found[1] if found else None
