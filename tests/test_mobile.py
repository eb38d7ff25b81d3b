"""The ORT mobile format: written from the ONNX file, checked for parity, listed, judged
against ORT Mobile's default operator set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from click.testing import CliRunner

from kit.artifact import ORT_OPS_FILE
from kit.cli import cli
from kit.export import ExportOptions, export_model
from kit.export.mobile import MOBILE_DEFAULT_OPS, parse_required_ops
from kit.models import build_model, resolve_spec
from kit.verify import verify_saved

WITH_ORT = ExportOptions(formats=["onnx", "ort"], progress=False)


def test_ort_file_is_written_checked_and_listed(tmp_path: Path) -> None:
    spec = resolve_spec("lenet")
    result = export_model(spec, build_model(spec, seed=0), tmp_path, options=WITH_ORT)
    rows = result.report.comparisons
    assert {c.artifact for c in rows} == {"onnx", "ort"} and all(c.passed for c in rows)
    files = result.manifest.files
    assert files["model.ort"].format == "ort"
    assert files[ORT_OPS_FILE].format == "ort-operators"
    ops = parse_required_ops((result.directory / ORT_OPS_FILE).read_text())
    mobile = result.manifest.mobile
    assert mobile is not None and "ai.onnx:MaxPool" in ops and mobile.operators == ops
    assert mobile.outside_default_set == ()
    assert result.notes[-1].startswith("model.ort uses only operators of ORT Mobile's default set")
    assert "/tmp" not in (result.directory / ORT_OPS_FILE).read_text()  # no converter's path

    # The ORT file computes what the ONNX file computes, and kit parity re-checks it.
    x = np.random.default_rng(0).standard_normal((3, *spec.input_shape), dtype=np.float32)
    outputs = [
        ort.InferenceSession(str(result.directory / name)).run(None, {"input": x})[0]
        for name in ("model.onnx", "model.ort")
    ]
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-6)
    report = verify_saved(result.directory)
    assert report.passed and "ort" in {c.artifact for c in report.comparisons}


def test_an_operator_outside_the_default_set_is_named(tmp_path: Path) -> None:
    spec = resolve_spec("tests.user_nets:hardswish", (3, 8, 8))
    result = export_model(spec, build_model(spec), tmp_path, options=WITH_ORT)
    assert result.manifest.mobile is not None
    assert result.manifest.mobile.outside_default_set == ("ai.onnx:HardSigmoid",)
    assert "outside ORT Mobile's default set: ai.onnx:HardSigmoid" in result.notes[-1]


def test_the_default_set_reads_like_the_converters_config() -> None:
    config = "# a comment\n!globally_allowed_types;float\nai.onnx;20;Conv,Relu\ncom.microsoft;1;FusedConv\n"
    assert parse_required_ops(config) == ("ai.onnx:Conv", "ai.onnx:Relu", "com.microsoft:FusedConv")
    assert {"ai.onnx:Conv", "com.microsoft:FusedConv"} <= MOBILE_DEFAULT_OPS
    assert "ai.onnx:HardSwish" not in MOBILE_DEFAULT_OPS


def test_cli_says_whether_the_model_fits_the_mobile_build(tmp_path: Path) -> None:
    args = ["export", "--model", "lenet", "--formats", "onnx,ort", "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, args, prog_name="kit")
    assert result.exit_code == 0, result.output
    assert "model.ort uses only operators of ORT Mobile's default set" in result.output
    assert "model.ort" in result.output and ORT_OPS_FILE in result.output
    bad = CliRunner().invoke(cli, ["export", "--model", "lenet", "--formats", "ort"])
    assert bad.exit_code == 2 and "ort is converted from the ONNX file" in bad.output
