"""Parity verdicts, report errors, and re-verification of saved artifacts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kit.artifact import FILE_NAMES, MANIFEST, MODEL_FILE, ArtifactFile
from kit.errors import ParityError, ShapeMismatch, ToleranceExceeded
from kit.parity import Comparison, ParityRun, format_parity
from kit.rule import Agreement, Tolerance
from kit.verify import verify_saved


def _cmp() -> Comparison:
    return Comparison("onnx", "cpu", "random b=2", 2)


def compare(a: np.ndarray, b: np.ndarray, *, atol: float, rtol: float) -> Comparison:
    """The tolerance rule's verdict on one output."""
    return Tolerance(atol, rtol).judge(a, b, _cmp())


def test_compare_within_tolerance() -> None:
    b = np.array([[1.0, 2.0], [3.0, -4.0]], np.float32)
    c = compare(b + 1e-6, b, atol=1e-5, rtol=0)
    assert c.passed and c.max_abs == pytest.approx(1e-6, rel=0.2) and c.top1_agreement == 1.0


def test_compare_uses_relative_tolerance_on_large_values() -> None:
    b = np.array([[1000.0, 1.0]], np.float32)
    a = b + np.array([[0.05, 0.0]], np.float32)
    assert not compare(a, b, atol=1e-3, rtol=0).passed
    assert compare(a, b, atol=1e-3, rtol=1e-4).passed


def test_compare_flags_shape_and_nan() -> None:
    b = np.zeros((2, 3), np.float32)
    shape = compare(np.zeros((2, 4), np.float32), b, atol=1, rtol=1)
    assert not shape.passed and "shape" in (shape.error or "")
    nan = compare(np.full((2, 3), np.nan, np.float32), b, atol=1, rtol=1)
    assert not nan.passed and "NaN" in (nan.error or "")


def test_top1_agreement_counts_rows() -> None:
    b = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    a = b.copy()
    a[0] = [0.0, 1.0]
    assert compare(a, b, atol=0, rtol=0).top1_agreement == 0.75


def test_report_raises_typed_errors_listing_every_failure() -> None:
    report = ParityRun("m", Tolerance(1e-5, 0.0))
    report.comparisons = [
        Comparison("onnx", "cpu", "random b=1", 1, max_abs=1.0, kind="tolerance"),
        Comparison("pt2", "cpu", "random b=3", 3, max_abs=2.0, kind="tolerance"),
    ]
    with pytest.raises(ToleranceExceeded, match="onnx on cpu, random b=1.*pt2 on cpu, random b=3"):
        report.raise_for_failures()
    report.comparisons = [
        Comparison(
            "onnx",
            "cpu",
            "random b=1",
            1,
            kind="shape",
            error="output shape (1,) differs from eager (2,)",
        )
    ]
    with pytest.raises(ShapeMismatch):
        report.raise_for_failures()
    report.problems = ["model.onnx does not match"]
    with pytest.raises(ParityError):
        report.raise_for_failures()


def test_verify_saved_passes_on_a_fresh_export(lenet_export: Path) -> None:
    report = verify_saved(lenet_export, batch_sizes=(1, 8))
    assert report.passed, format_parity(report)
    assert {c.batch for c in report.comparisons} == {1, 8}
    assert "PASSED" in format_parity(report)


def test_verify_saved_catches_a_modified_file(lenet_export: Path, tmp_path: Path) -> None:
    copy = tmp_path / "lenet"
    shutil.copytree(lenet_export, copy)
    with open(copy / FILE_NAMES["torchscript"], "ab") as f:
        f.write(b"\0")
    report = verify_saved(copy)
    assert not report.passed
    assert report.problems == [
        "model.ts does not match the sha256 in manifest.json (modified or corrupt)"
    ]


def test_verify_saved_catches_a_different_network(lenet_export: Path, tmp_path: Path) -> None:
    """Artifacts whose sha256 match but whose reference differs (another seed) fail parity."""
    copy = tmp_path / "lenet"
    shutil.copytree(lenet_export, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["model"]["seed"] = 1
    (copy / MANIFEST).write_text(json.dumps(manifest))
    report = verify_saved(copy)
    assert not report.passed
    assert len(report.failures) == len(report.comparisons) > 0
    with pytest.raises(ToleranceExceeded):
        report.raise_for_failures()


def test_each_sample_is_judged_against_its_own_scale() -> None:
    # float32 noise (2.4e-4) beside a tiny element of an output in the hundreds: not a failure
    b = np.array([[390.0, 0.001, -120.0]], np.float32)
    a = b + np.array([[0.0, 2.4e-4, 0.0]], np.float32)
    ok = compare(a, b, atol=1e-4, rtol=1e-4)
    assert ok.passed and ok.max_rel > 0.1  # the element-wise relative error is large
    # a large sample does not excuse a small one beside it in the batch
    b2 = np.array([[390.0, 1.0], [1.0, 0.5]], np.float32)
    a2 = b2 + np.array([[0.0, 0.0], [0.01, 0.0]], np.float32)
    bad = compare(a2, b2, atol=1e-4, rtol=1e-4)
    assert not bad.passed and bad.kind == "tolerance"
    assert bad.needed_rtol == pytest.approx((0.01 - 1e-4) / 1.0, rel=1e-3)


def test_relax_hint_names_the_flag_and_the_value_that_would_pass() -> None:
    report = ParityRun("m", Tolerance(1e-4, 1e-4))
    report.comparisons = [compare(np.ones((1, 2)) * 1.003, np.ones((1, 2)), atol=1e-4, rtol=1e-4)]
    hint = report.relax_hint()
    assert hint.startswith("--rtol 0.0031 (now 0.0001)")
    with pytest.raises(ToleranceExceeded, match="--rtol 0.0031"):
        report.raise_for_failures()
    relaxed = compare(np.ones((1, 2)) * 1.003, np.ones((1, 2)), atol=1e-4, rtol=0.0031)
    assert relaxed.passed


def test_large_outputs_pass_and_a_perturbed_weight_fails(tmp_path: Path) -> None:
    import torch

    from kit.export import ExportOptions, export_model
    from kit.models import build_model, resolve_spec
    from kit.verify import check_artifacts

    spec = resolve_spec("tests.user_nets:loud", (3, 8, 8))
    model = build_model(spec)
    with torch.no_grad():
        assert model(torch.randn(4, 3, 8, 8)).abs().max() > 100
    result = export_model(spec, model, tmp_path, options=ExportOptions(progress=False))
    assert result.report.passed, format_parity(result.report)
    with torch.no_grad():
        model[-1].weight[0, 0] += 0.05
    files = [ArtifactFile(MODEL_FILE, "onnx"), ArtifactFile(FILE_NAMES["pt2"], "pt2")]
    report = check_artifacts(
        model,
        result.directory,
        files,
        name="loud",
        input_shape=(3, 8, 8),
        rule=Tolerance(1e-4, 1e-4),
    )
    assert not report.passed
    assert {c.kind for c in report.failures} == {"tolerance"}
    assert "--rtol" in report.relax_hint()


def test_keep_failed_leaves_the_failed_artifacts_apart(tmp_path: Path) -> None:
    from kit.artifact import DEFAULT_FORMATS, FAILED_SUFFIX, FILE_NAMES, PARITY_FILE
    from kit.export import ExportOptions, export_model
    from kit.models import build_model, resolve_spec

    spec = resolve_spec("tests.user_nets:diverging", (3, 8, 8))
    with pytest.raises(ToleranceExceeded) as caught:
        export_model(spec, build_model(spec), tmp_path, options=ExportOptions(progress=False))
    assert (
        not (tmp_path / "diverging").exists()
        and not (tmp_path / f"diverging{FAILED_SUFFIX}").exists()
    )
    assert caught.value.report is not None and caught.value.kept is None
    keep = ExportOptions(progress=False, keep_failed=True)
    with pytest.raises(ToleranceExceeded) as caught:
        export_model(spec, build_model(spec), tmp_path, options=keep)
    kept = tmp_path / f"diverging{FAILED_SUFFIX}"
    assert caught.value.kept == kept
    written = {FILE_NAMES[f] for f in DEFAULT_FORMATS}
    assert {*written, PARITY_FILE} <= {p.name for p in kept.iterdir()}
    assert json.loads((kept / PARITY_FILE).read_text())["passed"] is False
    assert not (tmp_path / "diverging").exists()


def test_relax_hint_for_an_all_zero_eager_sample_names_atol() -> None:
    report = ParityRun("m", Tolerance(1e-6, 1e-4))
    report.comparisons = [compare(np.full((1, 3), 2e-5), np.zeros((1, 3)), atol=1e-6, rtol=1e-4)]
    assert report.relax_hint().startswith("--atol 2.1e-05 (now 1e-06) would pass")


def test_agreement_judges_a_variant_by_its_top1_classes() -> None:
    b = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    a = b + 0.3  # far outside any tolerance, yet the same classes
    assert not compare(a, b, atol=1e-4, rtol=1e-4).passed
    assert Agreement(0.995).judge(a, b, _cmp()).passed
    a[0] = [0.0, 1.0]
    missed = Agreement(0.995).judge(a, b, _cmp())
    assert not missed.passed and missed.kind == "agreement" and missed.top1_agreement == 0.75
    assert Agreement(0.995).describe() == "top-1 agreement with eager >= 99.5%"


def test_every_report_states_its_rule(lenet_export: Path, mnist_dir: Path) -> None:
    report = verify_saved(lenet_export, batch_sizes=(1,), atol=2e-4)
    assert report.to_dict()["rule"] == report.rule.describe()
    assert "atol 0.0002 + rtol" in format_parity(report).splitlines()[-1]
