"""`kit report`: one page per model, and `--compare` to gate a model update."""

from __future__ import annotations

import contextlib
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..artifact import RESULTS_DIR, Limits
from ._common import (
    _echo_json,
    _write_inside,
    _write_text,
    cli,
    data_options,
    echo,
    factory_option,
    limit_options,
)

#: ``kit bench`` as ``--run`` runs it: short timings and one cold start, for a first look
BENCH_ARGS = ["--seconds", "0.25", "--cold-runs", "1"]


@cli.command()
@click.argument("artifact_dir", required=False, type=click.Path(path_type=Path))
@click.option(
    "--compare",
    nargs=2,
    type=click.Path(path_type=Path),
    metavar="A B",
    help="Compare two versions of a model (A in use, B its update) on the test set instead.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Write the HTML page here [default: DIR/{RESULTS_DIR}/report.html; with --compare, "
    "only when given].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report's data as JSON.")
@click.option(
    "--run",
    is_flag=True,
    help="First run what the report lacks and this machine can run: parity in each "
    "installed runtime, kit eval, and a short kit bench (each saves its result). Results "
    "that arrived with the folder are made again here.",
)
@limit_options(
    "--compare: accuracy points B may lose against A.",
    "--compare: percent of test samples both versions must classify alike.",
)
@data_options
@factory_option
def report(
    artifact_dir: Path | None,
    compare: tuple[Path, Path] | None,
    output: Path | None,
    as_json: bool,
    run: bool,
    min_agreement: float,
    max_accuracy_drop: float,
    dataset: str | None,
    data_dir: Path | None,
    factory: str | None,
) -> None:
    """One page that says whether a model is ready to ship; exit 1 unless it is READY.

    \b
    The page (self-contained HTML, opens from disk) shows the model's facts and files; the
    parity matrix (every file in every runtime: pass or fail, the largest difference against
    the tolerance, top-1 agreement on real data; a cell not run says why and the command
    that fills it); accuracy per precision; speed against the machine's peak, as a chart,
    and cold start; which runtime versions load each file; and how old each result is.
    It reads what kit parity, bench, eval, quantize and check saved beside the export.

    \b
    Only results kit made on this machine count: they are signed with a key kit keeps for
    you (~/.config/kit/signing.key). Results that arrived with a folder, and the parity
    record inside its manifest, are shown as "carried in" and never make it READY; --run
    makes them here. Nothing a result says is ever run: --run runs kit's own checks.

    \b
      kit report exported/mnist_cnn                  # exported/mnist_cnn/results/report.html
      kit report exported/mnist_cnn --run            # run what is missing first
      kit report exported/mnist_cnn --json > report.json
      kit report --compare exported/v1 exported/v2   # gate an update: exit 1 when it fails
      kit report --compare exported/v1 exported/v2 --min-agreement 99 -o compare.html
    """
    if (artifact_dir is None) == (compare is None):
        raise click.UsageError("Give an export directory, or --compare A B.")
    if compare is not None:
        limits = Limits(max_accuracy_drop / 100, min_agreement / 100)
        _compare(compare, limits, output, as_json, (dataset, data_dir), factory)
        return
    assert artifact_dir is not None
    from ..report import RunOptions, build_report, format_text, render_report

    options = RunOptions(factory=factory, dataset=dataset, data_dir=data_dir)
    failed = _run_missing(build_report(artifact_dir, options=options)) if run else []
    data = build_report(artifact_dir, options=options)
    for command in failed:
        data["verdict"]["reasons"].append(f"--run: {command} failed")
        data["verdict"]["state"] = "not ready"
    if output is not None:
        _write_text(output, render_report(data))
    elif not as_json:
        _write_inside(artifact_dir, f"{RESULTS_DIR}/report.html", render_report(data))
    if as_json:
        _echo_json(data)
    else:
        echo(format_text(data))
        echo(f"wrote {output or artifact_dir / RESULTS_DIR / 'report.html'}")
    if data["verdict"]["state"] != "ready":
        sys.exit(1)


def _missing_commands(data: dict[str, Any]) -> list[list[str]]:
    """The commands that fill what the report lacks and can run here, each once: built by
    kit for this export (the report's ``args``), never read from a result."""
    commands = [
        cell["args"]
        for row in data["matrix"]["rows"]
        for cell in row["cells"].values()
        if cell.get("runnable") or cell["status"] == "stale"
    ]
    if data["pipeline"].get("runnable"):
        commands.append(data["pipeline"]["args"])
    if not data["accuracy"][0].get("here"):
        commands.append(data["accuracy"][0]["args"])
    if data["speed"]["status"] in ("not-run", "carried"):
        commands.append(data["speed"]["args"] + BENCH_ARGS)
    elif data["speed"]["status"] == "stale":
        commands.append(data["speed"]["args"])
    unique = {tuple(args): list(args) for args in commands}
    return list(unique.values())


def _run_missing(data: dict[str, Any]) -> list[str]:
    """Run each missing command in this process, its output on stderr; the commands that
    failed (a failed parity run is a result too: it is saved and shown)."""
    commands = _missing_commands(data)
    if not commands:
        echo("nothing to run: every cell that can run here has a result made here", err=True)
    failed = []
    for i, args in enumerate(commands, 1):
        command = shlex.join(["kit", *args])
        echo(f"[{i}/{len(commands)}] {command}", err=True)
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):
            code = _invoke(args)
        outcome = "done" if code == 0 else f"exit {code}"
        if code != 0:
            failed.append(command)
        echo(f"[{i}/{len(commands)}] {outcome} in {time.perf_counter() - start:.1f} s", err=True)
    return failed


def _invoke(args: list[str]) -> int:
    try:
        cli.main(args=args, prog_name="kit", standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0)
    except click.ClickException as exc:
        echo(f"error: {exc.format_message()}", err=True)
        return exc.exit_code
    return 0


def _compare(
    dirs: tuple[Path, Path],
    limits: Limits,
    output: Path | None,
    as_json: bool,
    data: tuple[str | None, Path | None],
    factory: str | None,
) -> None:
    from ..evaluate.compare import compare_exports
    from ..report import render_compare

    dataset, data_dir = data
    found = compare_exports(
        *dirs, limits=limits, dataset=dataset, data_dir=data_dir, factory=factory
    )
    if output is not None:
        _write_text(output, render_compare(found))
    if as_json:
        _echo_json(found)
    else:
        echo(_compare_text(found))
        if output is not None:
            echo(f"wrote {output}")
    if not found["gate"]["passed"]:
        sys.exit(1)


def _compare_text(found: dict[str, Any]) -> str:
    a, b, gate = found["a"], found["b"], found["gate"]
    lines = [
        f"A {a['directory']}: accuracy {a['accuracy']:.2%}",
        f"B {b['directory']}: accuracy {b['accuracy']:.2%} ({found['accuracy_delta']:+.2%})",
        f"top-1 agreement: {found['agreement']:.2%} ({found['disagreements']} of "
        f"{found['samples']} samples differ) on {found['data']}",
    ]
    moved = [c for c in found["classes"] if c["delta"]]
    for c in sorted(moved, key=lambda c: c["delta"])[:5]:
        lines.append(f"  class {c['name']}: {c['accuracy_a']:.2%} -> {c['accuracy_b']:.2%}")
    changed = [f["name"] for f in found["files"] if f["change"] != "same"]
    lines.append(f"files changed: {', '.join(changed) or 'none'}")
    lines += [f"- {r}" for r in gate["reasons"]]
    lines.append("gate: PASSED" if gate["passed"] else "gate: FAILED")
    return "\n".join(lines)
