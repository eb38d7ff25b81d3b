"""Parity verdicts, report errors, and re-verification of saved artifacts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kit.errors import ParityError, ShapeMismatch, ToleranceExceeded
from kit.parity import Comparison, ParityReport, compare, verify_saved


def _cmp() -> Comparison:
    return Comparison("onnx", "cpu", "random b=2", 2)


def test_compare_within_tolerance() -> None:
    b = np.array([[1.0, 2.0], [3.0, -4.0]], np.float32)
    c = compare(b + 1e-6, b, atol=1e-5, rtol=0, into=_cmp())
    assert c.passed and c.max_abs == pytest.approx(1e-6, rel=0.2) and c.top1_agreement == 1.0


def test_compare_uses_relative_tolerance_on_large_values() -> None:
    b = np.array([[1000.0, 1.0]], np.float32)
    a = b + np.array([[0.05, 0.0]], np.float32)
    assert not compare(a, b, atol=1e-3, rtol=0, into=_cmp()).passed
    assert compare(a, b, atol=1e-3, rtol=1e-4, into=_cmp()).passed


def test_compare_flags_shape_and_nan() -> None:
    b = np.zeros((2, 3), np.float32)
    shape = compare(np.zeros((2, 4), np.float32), b, atol=1, rtol=1, into=_cmp())
    assert not shape.passed and "shape" in (shape.error or "")
    nan = compare(np.full((2, 3), np.nan, np.float32), b, atol=1, rtol=1, into=_cmp())
    assert not nan.passed and "NaN" in (nan.error or "")


def test_top1_agreement_counts_rows() -> None:
    b = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    a = b.copy()
    a[0] = [0.0, 1.0]
    assert compare(a, b, atol=0, rtol=0, into=_cmp()).top1_agreement == 0.75


def test_report_raises_typed_errors_listing_every_failure() -> None:
    report = ParityReport("m", 1e-5, 0.0)
    report.comparisons = [
        Comparison("onnx", "cpu", "random b=1", 1, max_abs=1.0),
        Comparison("pt2", "cpu", "random b=3", 3, max_abs=2.0),
    ]
    with pytest.raises(ToleranceExceeded, match="onnx on cpu, random b=1.*pt2 on cpu, random b=3"):
        report.raise_for_failures()
    report.comparisons = [
        Comparison(
            "onnx", "cpu", "random b=1", 1, error="output shape (1,) differs from eager (2,)"
        )
    ]
    with pytest.raises(ShapeMismatch):
        report.raise_for_failures()
    report.problems = ["model.onnx does not match"]
    with pytest.raises(ParityError):
        report.raise_for_failures()


def test_verify_saved_passes_on_a_fresh_export(lenet_export: Path) -> None:
    report = verify_saved(lenet_export, batch_sizes=(1, 8))
    assert report.passed, report.format_table()
    assert {c.batch for c in report.comparisons} == {1, 8}
    assert "PASSED" in report.format_table()


def test_verify_saved_catches_a_modified_file(lenet_export: Path, tmp_path: Path) -> None:
    copy = tmp_path / "lenet"
    shutil.copytree(lenet_export, copy)
    with open(copy / "model.ts", "ab") as f:
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
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["model"]["seed"] = 1
    (copy / "manifest.json").write_text(json.dumps(manifest))
    report = verify_saved(copy)
    assert not report.passed
    assert len(report.failures) == len(report.comparisons) > 0
    with pytest.raises(ToleranceExceeded):
        report.raise_for_failures()
