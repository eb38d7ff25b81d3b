"""ExecuTorch, LiteRT and OpenVINO: exported, proven against eager like every other runtime,
timed, and each precision stated."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from kit.artifact import MANIFEST, describe_files, read_manifest, write_manifest
from kit.cli import cli
from kit.parity import ParityRun, Runner, format_parity, run_parity
from kit.rule import Tolerance

EDGE = ("executorch", "litert", "openvino")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="kit")
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def edge_export(tmp_path_factory: pytest.TempPathFactory, shipped: Path) -> Path:
    """The shipped lenet's weights in every edge format, and its int8 .pte."""
    out = tmp_path_factory.mktemp("edge")
    code, text = run(
        "export", "--model", "lenet", "--weights", str(shipped / "lenet" / "weights.safetensors"),
        "--formats", "onnx,pte,tflite,openvino", "--precision", "int8", "--out", str(out), "--json",
    )  # fmt: skip
    assert code == 0, text
    return out / "lenet"


def test_each_format_lands_listed_and_checked(edge_export: Path) -> None:
    manifest = read_manifest(edge_export)
    formats = {name: record.format for name, record in manifest.files.items()}
    assert {
        "model.pte": "pte",
        "model.tflite": "tflite",
        "model.xml": "openvino",
    }.items() <= formats.items()
    assert formats["model.bin"] == "openvino-weights" and formats["model.int8.pte"] == "pte-int8"
    assert manifest.parity is not None and manifest.parity["passed"]
    rows = manifest.parity["comparisons"]
    runtimes = {r["artifact"]: set() for r in rows}
    for r in rows:
        runtimes[r["artifact"]].add(r["runtime"])
    assert any(r.startswith("executorch ") for r in runtimes["pte"])
    assert any(r.startswith("litert ") for r in runtimes["tflite"])
    assert any(r.endswith("CPU (f32)") for r in runtimes["openvino"])
    notes = " ".join(manifest.parity["notes"])
    assert (
        "model.pte has a static batch of 1" in notes
        and "model.tflite has a static batch of 1" in notes
    )


def test_openvino_ir_keeps_fp32_weights_and_the_facts(edge_export: Path) -> None:
    import openvino as ov

    model = ov.Core().read_model(str(edge_export / "model.xml"))
    facts = json.loads(model.get_rt_info(["kit", "kit.facts"]).astype(str))
    assert facts["name"] == "lenet" and facts["input_shape"] == [1, 28, 28]
    weights = [op for op in model.get_ops() if op.get_type_name() == "Constant"]
    assert weights and all(str(op.get_element_type()) != "<Type: 'float16'>" for op in weights)


def test_parity_in_each_edge_runtime(edge_export: Path) -> None:
    args = [f"--runtime={r}" for r in EDGE]
    code, text = run("parity", str(edge_export), *args, "--json")
    assert code == 0, text
    report = json.loads(text)
    seen = {(r["artifact"], r["runtime"].split()[0]) for r in report["comparisons"]}
    assert {("pte", "executorch"), ("tflite", "litert"), ("openvino", "openvino")} <= seen
    assert ("pte int8", "executorch") in seen  # the int8 .pte, by agreement on real digits
    inputs = {r["inputs"] for r in report["comparisons"] if r["artifact"] == "pte"}
    assert inputs == {"random b=1", "random b=3", "random b=8", "mnist test b=256"}
    assert any("not checked in this run: model.onnx" in n for n in report["notes"])


def test_the_int8_pte_is_judged_like_the_onnx_int8(edge_export: Path) -> None:
    record = read_manifest(edge_export).variants["int8-pte"]
    assert record.file == "model.int8.pte" and record.format == "pte"
    assert record.samples == 10_000 and record.accuracy is not None
    assert record.limits.min_agreement == 0.995 and record.agreement >= 0.995
    assert "XNNPACKQuantizer" in record.method and "training samples" in (record.calibration or "")


def _swap(export: Path, into: Path, name: str, data: bytes) -> Path:
    shutil.copytree(export, into)
    (into / name).write_bytes(data)
    manifest = read_manifest(into)
    write_manifest(
        into, manifest.with_files(describe_files(into, {name: manifest.files[name].format}))
    )
    return into


def test_a_pte_of_another_network_fails(edge_export: Path, tmp_path: Path) -> None:
    """A .pte that loads and runs but computes something else is caught by numbers."""
    import torch

    from kit.export.edge import export_pte
    from kit.models import build_model, resolve_spec

    spec = resolve_spec("lenet")
    other = build_model(spec, seed=1)  # same shapes, other weights
    export_pte(other, torch.randn(1, *spec.input_shape), tmp_path / "other.pte", name="lenet")
    broken = _swap(
        edge_export, tmp_path / "lenet", "model.pte", (tmp_path / "other.pte").read_bytes()
    )
    code, text = run("parity", str(broken), "--runtime", "executorch", "--batch-sizes", "1")
    assert code == 1 and "FAIL" in text and "pte" in text


def test_a_missing_runtime_names_its_extra(
    edge_export: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in ("executorch.runtime", "ai_edge_litert.interpreter", "openvino"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails, as if not installed
    for runtime, extra in (
        ("executorch", "executorch"),
        ("litert", "litert"),
        ("openvino", "openvino"),
    ):
        code, text = run("parity", str(edge_export), "--runtime", runtime)
        assert code == 2 and f"pip install 'kit[{extra}]'" in text, text


def test_an_operator_openvino_lacks_is_named(frobnicated: Path) -> None:
    code, text = run("export", str(frobnicated), "--formats", "openvino")
    assert code == 1 and "OpenVINO could not convert model.onnx" in text
    assert "Frobnicate" in text and "Traceback" not in text


def test_an_advisory_row_warns_with_its_numbers_and_does_not_fail() -> None:
    x = np.ones((2, 3), np.float32)
    exact = Runner("openvino", "openvino CPU (f32)", lambda b: [b.copy()])
    default = Runner("openvino", "openvino CPU (bf16)", lambda b: [b + 0.01], advisory=True)
    report = run_parity(
        lambda b: [b],
        [exact, default],
        [("random b=2", x)],
        report=ParityRun("m", Tolerance(1e-4, 1e-4)),
    )
    assert report.passed
    warned = [c for c in report.comparisons if c.warning]
    assert len(warned) == 1 and "max|diff| 0.01" in (warned[0].warning or "")
    table = format_parity(report)
    assert "WARN: outside tolerance" in table and "1 advisory row(s) outside tolerance" in table


def test_bench_times_each_edge_runtime(edge_export: Path) -> None:
    code, text = run(
        "bench", str(edge_export), "--batch-sizes", "1", "--seconds", "0.05", "--cold-runs", "1",
        "--json",
    )  # fmt: skip
    assert code == 0, text
    runtimes = {r["runtime"].split()[0] for r in json.loads(text)["rows"]}
    assert {"executorch", "litert", "openvino"} <= runtimes


def test_doctor_says_each_edge_runtime() -> None:
    _code, text = run("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(text)}
    for name in EDGE:
        assert checks[name]["ready"] and checks[name]["detail"].split()[1][0].isdigit(), checks[
            name
        ]


def test_adding_to_a_tampered_export_is_refused(edge_export: Path, tmp_path: Path) -> None:
    copy = tmp_path / "lenet"
    shutil.copytree(edge_export, copy)
    for name in ("model.pte", "model.tflite", "model.xml", "model.bin", "model.int8.pte"):
        (copy / name).unlink()
    data: Any = json.loads((copy / MANIFEST).read_text())
    code, text = run("export", str(copy), "--formats", "pte")
    assert code == 1 and "Refusing to add to" in text and "is missing" in text
    assert json.loads((copy / MANIFEST).read_text()) == data  # nothing changed
