"""`kit check`: which runtime versions can load an export's files."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .._table import format_table
from ._common import _echo_json, _save_result, cli, echo


@cli.command()
@click.argument("artifact_dir", type=click.Path(path_type=Path))
@click.option(
    "--target",
    "targets",
    multiple=True,
    required=True,
    metavar="RUNTIME==VERSION",
    help="onnxruntime==1.16.3, onnxruntime-node==X, onnxruntime-web==X, triton==24.01 (the "
    "onnxruntime it ships) or executorch==X. Repeat it for several.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def check(artifact_dir: Path, targets: tuple[str, ...], as_json: bool) -> None:
    """Say for each file whether a runtime version can load it; exit 1 if one cannot.

    ONNX files (model.onnx and its variants) are judged by their IR version and opset
    against what that onnxruntime release reads, naming the operators newer than it;
    model.ort and model.pte by the version that wrote them. The tables are kit's, with their
    sources (docs/DESIGN.md); prove a verdict in that very version with
    kit parity DIR --runtime onnxruntime==X. The findings are saved in DIR/results/ for
    kit report.

    \b
      kit check exported/mnist_cnn --target onnxruntime==1.16.3
      kit check exported/mnist_cnn --target triton==24.01 --target triton==25.05
      kit export --model mnist_cnn --target onnxruntime==1.16.3   # a file that loads there
    """
    from ..compat import check_export, parse_target

    findings = check_export(artifact_dir, [parse_target(t) for t in targets])
    args = ["check", str(artifact_dir), *(a for t in targets for a in ("--target", t))]
    _save_result(artifact_dir, "check", {"findings": [f.__dict__ for f in findings]}, args)
    if as_json:
        _echo_json([f.__dict__ for f in findings])
    else:
        verdict = {True: "loads", False: "CANNOT LOAD", None: "unknown"}
        rows = [(f.file, f.target, verdict[f.loads], f.why) for f in findings]
        echo(format_table(("file", "target", "", "why"), rows))
    if any(f.loads is False for f in findings):
        sys.exit(1)
