"""Artifacts that prove themselves where they land: reference data in every export, a
torch-free self-check, which runtime versions can load a file, proof in an old onnxruntime,
and cold start."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import kit.runtime as kr
from kit.artifact import MANIFEST, REFERENCE_BYTES, describe_files, read_manifest, write_manifest
from kit.cli import cli
from kit.errors import ArtifactError

OLD = "1.16.3"  # the onnxruntime several Triton releases in service ship (23.11-24.02)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="kit")
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory, shipped: Path) -> Path:
    """The shipped mnist_cnn with its reference data added (``kit export DIR``)."""
    copy = tmp_path_factory.mktemp("ref") / "mnist_cnn"
    shutil.copytree(shipped / "mnist_cnn", copy)
    code, out = run("export", str(copy))
    assert code == 0, out
    return copy


def test_reference_data_is_onnx_test_data_layout_and_small(digits: Path) -> None:
    import onnx
    from onnx import numpy_helper

    record = read_manifest(digits).reference
    assert record is not None and record.size <= REFERENCE_BYTES
    assert [s.inputs for s in record.sets] == [
        "random b=1",
        "random b=3",
        "random b=8",
        "mnist test b=256",
    ]
    tensor = numpy_helper.to_array(
        onnx.load_tensor_from_string((digits / "test_data_set_3" / "input_0.pb").read_bytes())
    )
    assert tensor.shape == (256, 1, 28, 28)
    assert "atol 0.0001" in record.rule
    files = read_manifest(digits).files
    assert files["test_data_set_3/output_0.pb"].format == "reference"  # sha256-checked too


def test_the_runtime_reads_what_onnx_wrote(digits: Path) -> None:
    import onnx
    from onnx import numpy_helper

    from kit.runtime.reference import read_tensor

    for name in ("input_0.pb", "output_0.pb"):
        path = digits / "test_data_set_1" / name
        ours = read_tensor(path)
        theirs = numpy_helper.to_array(onnx.load_tensor_from_string(path.read_bytes()))
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)


def test_self_check_without_torch_in_a_fresh_process(digits: Path) -> None:
    program = (
        "import sys, kit.runtime\n"
        f"check = kit.runtime.load({str(digits)!r}).self_check()\n"
        f"variant = kit.runtime.load({str(digits)!r}, precision='int8').self_check()\n"
        "print(len(check.rows), check.passed, variant.rule)\n"
        "print(sorted(m for m in ('torch', 'onnx', 'kit.server') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    rows, passed, *rule = done.stdout.splitlines()[0].split()
    assert rows == "4" and passed == "True" and "top-1 agreement" in " ".join(rule)
    assert done.stdout.splitlines()[1] == "[]"


def test_self_check_names_the_sample_output_and_difference(digits: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    copy = tmp_path / "mnist_cnn"
    shutil.copytree(digits, copy)
    path = copy / "test_data_set_2" / "output_0.pb"
    y = numpy_helper.to_array(onnx.load_tensor_from_string(path.read_bytes())).copy()
    y[0, 3] += 1.0  # the kept eager output says something the model does not compute
    path.write_bytes(numpy_helper.from_array(y, "logits").SerializeToString())
    manifest = read_manifest(copy)
    write_manifest(
        copy,
        manifest.with_files(describe_files(copy, {"test_data_set_2/output_0.pb": "reference"})),
    )
    with pytest.raises(
        ArtifactError,
        match=r"model.onnx disagrees with its reference data on random b=8, output logits: max\|diff\| 1",
    ):
        kr.load(copy).self_check()
    code, out = run("parity", str(copy), "--reference")
    assert code == 1 and "FAIL" in out


def test_parity_against_the_reference_data_in_every_runtime(digits: Path) -> None:
    code, out = run(
        "parity", str(digits), "--reference", "--runtime", "python", "--runtime", "node", "--json"
    )
    report = json.loads(out)
    assert code == 0 and report["passed"], out
    runtimes = {(r["artifact"], r["runtime"].split()[0]) for r in report["comparisons"]}
    assert {
        ("onnx", "CPUExecutionProvider"),
        ("onnx", "onnxruntime-node"),
        ("onnx int8", "onnxruntime-node"),
    } <= runtimes
    assert any("not a rebuilt eager network" in n for n in report["notes"])


def test_an_export_without_reference_data_says_how_to_add_it(digits: Path, tmp_path: Path) -> None:
    copy = tmp_path / "mnist_cnn"
    shutil.copytree(digits, copy)
    data = json.loads((copy / MANIFEST).read_text())
    del data["reference"]
    data["files"] = {k: v for k, v in data["files"].items() if not k.startswith("test_data_set_")}
    (copy / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=f"has no reference data .*kit export {copy}"):
        kr.load(copy).self_check()
    code, out = run("parity", str(copy), "--reference")
    assert code == 1 and "has no reference data" in out


def test_a_pte_export_bundles_the_samples(tmp_path: Path, shipped: Path) -> None:
    copy = tmp_path / "lenet"
    shutil.copytree(shipped / "lenet", copy)
    code, out = run("export", str(copy), "--formats", "pte")
    assert code == 0, out
    files = read_manifest(copy).files
    assert files["model.bundled.pte"].format == "pte-bundled"
    from executorch.devtools.bundled_program.serialize import (
        deserialize_from_flatbuffer_to_bundled_program,
    )

    bundled = deserialize_from_flatbuffer_to_bundled_program(
        (copy / "model.bundled.pte").read_bytes()
    )
    cases = bundled.method_test_suites[0].test_cases
    assert len(cases) == 8 and list(cases[0].inputs[0].val.sizes) == [1, 1, 28, 28]


def test_check_says_which_runtimes_load_a_file(digits: Path) -> None:
    code, out = run(
        "check", str(digits), "--target", f"onnxruntime=={OLD}", "--target", "triton==24.05"
    )
    assert code == 1
    assert f"IR version 10, and onnxruntime {OLD} reads up to 9" in out
    assert "within what onnxruntime 1.18.0 (triton==24.05) reads" in out
    code, out = run("check", str(digits), "--target", "triton==19.01")
    assert code == 2 and "does not know which onnxruntime Triton 19.01 ships" in out


@pytest.mark.slow
def test_todays_export_fails_in_the_old_runtime_and_the_targeted_one_passes(
    digits: Path, tmp_path: Path
) -> None:
    """Installs onnxruntime 1.16.3 into kit's cache on first use (pip, from the index)."""
    code, out = run("parity", str(digits), "--runtime", f"onnxruntime=={OLD}", "--batch-sizes", "1")
    assert code == 1
    assert (
        f"onnxruntime {OLD} cannot load model.onnx: Unsupported model IR version: 10, max supported IR version: 9"
        in out
    )
    assert f"kit export --target onnxruntime=={OLD}" in out
    target = ("--target", f"onnxruntime=={OLD}")
    code, out = run(
        "export", "--model", "lenet", "--formats", "onnx", *target, "--out", str(tmp_path)
    )
    assert code == 0, out
    assert read_manifest(tmp_path / "lenet").targets == (f"onnxruntime=={OLD}",)
    code, out = run("check", str(tmp_path / "lenet"), "--target", f"onnxruntime=={OLD}")
    assert code == 0 and "IR 9, opset 19" in out
    code, out = run("parity", str(tmp_path / "lenet"), "--runtime", f"onnxruntime=={OLD}", "--json")
    report = json.loads(out)
    assert code == 0 and report["passed"], out
    assert {r["runtime"] for r in report["comparisons"]} == {
        f"onnxruntime {OLD} (cpu, kit's cache)"
    }


def test_a_target_older_than_the_exporter_is_refused(tmp_path: Path) -> None:
    code, out = run(
        "export", "--model", "lenet", "--target", "onnxruntime==1.13.1", "--out", str(tmp_path)
    )
    assert code == 2 and "reads ONNX opsets up to 17" in out and "opset 18 or newer" in out
    assert not list(tmp_path.iterdir())
    code, out = run(
        "export", "--model", "lenet", "--target", "tensorrt==10", "--out", str(tmp_path)
    )
    assert code == 2 and "is not one kit checks" in out


def test_a_version_with_no_wheel_is_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digits: Path
) -> None:
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path))
    code, out = run("parity", str(digits), "--runtime", "onnxruntime==0.0.1", "--batch-sizes", "1")
    assert (
        code == 2 and "onnxruntime 0.0.1 has no wheel for Python" in out and "Traceback" not in out
    )


def test_triton_gets_perf_analyzer_data_from_the_reference(digits: Path, tmp_path: Path) -> None:
    code, out = run("triton", str(digits), "--repo", str(tmp_path / "repo"))
    assert code == 0, out
    data = json.loads((tmp_path / "repo" / "mnist_cnn" / "perf_analyzer_data.json").read_text())
    assert len(data["data"]) == len(data["validation_data"]) == 16
    assert (
        data["data"][0]["input"]["shape"] == [1, 28, 28]
        and len(data["validation_data"][0]["logits"]["content"]) == 10
    )
    assert (tmp_path / "repo" / "mnist_cnn_int8" / "perf_analyzer_data.json").is_file()


def test_bench_reports_cold_start(digits: Path) -> None:
    code, out = run(
        "bench",
        str(digits),
        "--batch-sizes",
        "1",
        "--seconds",
        "0.05",
        "--cold-runs",
        "1",
        "--json",
    )
    assert code == 0, out
    cold = {c["artifact"]: c for c in json.loads(out)["cold_start"]}
    assert {"eager", "onnx", "onnx int8", "torchscript", "pt2"} <= set(cold)
    assert all(c["total_s"] > 0 and c["runs"] == 1 for c in cold.values())
    assert cold["onnx"]["import_s"] < cold["eager"]["import_s"]  # onnxruntime, not torch


def test_self_check_fails_an_artifact_returning_fewer_outputs(digits: Path) -> None:
    """Judged through kit.parity's one comparison: fewer outputs is a failure, never fewer
    rows that all pass."""
    from kit.parity import Runner
    from kit.runtime.reference import judge, reference_sets

    manifest = read_manifest(digits)
    sets = reference_sets(digits, manifest)
    empty = Runner("model.onnx", "nothing", lambda x: [], key="onnxruntime-cpu")
    check = judge("model.onnx", manifest, sets, empty, None)
    assert check.rows and not check.passed
    with pytest.raises(ArtifactError, match="returns 0 outputs"):
        check.raise_for_failures()
