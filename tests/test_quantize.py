"""`kit quantize`: an int8 variant beside model.onnx, its accuracy cost measured on real data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

import kit.runtime as kr
from kit.artifact import FACTS_KEY, MANIFEST, MODEL_FILE, VARIANT_FILES, ModelFacts
from kit.cli import cli

INT8 = VARIANT_FILES["int8"]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="kit")
    return result.exit_code, result.output


def _facts(path: Path) -> ModelFacts:
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return ModelFacts.from_json(props[FACTS_KEY])


@pytest.fixture(scope="module")
def quantized(shipped_mnist_cnn: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("q") / "mnist_cnn"
    shutil.copytree(shipped_mnist_cnn, copy)
    code, text = run("quantize", str(copy), "--calibration-size", "256")
    assert code == 0, text
    assert "top-1 agreement with model.onnx" in text
    return copy


def test_the_variant_is_listed_checked_and_carries_the_facts(quantized: Path) -> None:
    manifest = json.loads((quantized / MANIFEST).read_text())
    record = manifest["variants"]["int8"]
    assert record["file"] == INT8 and record["verified"] is True
    assert record["samples"] == 10_000 and record["agreement"] >= 0.995
    assert record["accuracy_fp32"] - record["accuracy"] <= 0.003
    assert manifest["files"][INT8]["size"] == (quantized / INT8).stat().st_size
    assert _facts(quantized / INT8) == _facts(quantized / MODEL_FILE)  # usable alone
    assert kr.load(quantized).name == "mnist_cnn"  # every sha256, the variant's included
    int8 = kr.load(quantized / INT8)
    assert int8.class_names == [str(i) for i in range(10)]
    code, text = run("parity", str(quantized), "--batch-sizes", "2")
    assert code == 0, text


def test_a_tampered_variant_is_refused(quantized: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(quantized, copy)
    with open(copy / INT8, "ab") as f:
        f.write(b"\0")
    with pytest.raises(kr.ArtifactError, match=f"{INT8} does not match the sha256"):
        kr.load(copy)


def test_missed_limits_write_nothing(shipped_mnist_cnn: Path, tmp_path: Path) -> None:
    copy = tmp_path / "mnist_cnn"
    shutil.copytree(shipped_mnist_cnn, copy)
    before = (copy / MANIFEST).read_text()
    args = ["--calibration-size", "64", "--min-agreement", "100", "--max-fp32-layers", "0"]
    code, text = run("quantize", str(copy), *args)
    assert code == 1 and "misses its limits" in text and "is under 100.00%" in text
    assert (copy / MANIFEST).read_text() == before
    assert sorted(p.name for p in copy.iterdir()) == sorted(
        p.name for p in shipped_mnist_cnn.iterdir()
    )


def test_bad_input_is_one_sentence(lenet_export: Path, tmp_path: Path) -> None:
    code, text = run("quantize", str(lenet_export), "--precision", "int4")
    assert code == 2 and "Invalid value for '--precision': 'int4'" in text
    code, text = run("quantize", str(tmp_path / "nope"))
    assert code == 1 and "is not a directory" in text
    copy = tmp_path / "lenet"
    shutil.copytree(lenet_export, copy)
    (copy / MODEL_FILE).write_bytes(b"not onnx")
    code, text = run("quantize", str(copy))
    assert code == 1 and "Refusing to quantize" in text and "does not match the sha256" in text


def test_a_network_without_data_needs_the_explicit_flag(tmp_path: Path) -> None:
    args = ["export", "--model", "tests.user_nets:tiny", "--input-shape", "3,16,16"]
    code, text = run(*args, "--out", str(tmp_path), "--formats", "onnx")
    assert code == 0, text
    code, text = run("quantize", str(tmp_path / "tiny"), "--factory", "tests.user_nets:tiny")
    assert code == 2 and "--random-calibration" in text
    code, text = run(
        "quantize",
        str(tmp_path / "tiny"),
        "--factory",
        "tests.user_nets:tiny",
        "--dataset",
        "mnist",
    )
    assert code == 1 and "MNIST is 1-channel" in text  # a calibration set that does not fit
    code, text = run(
        "quantize",
        str(tmp_path / "tiny"),
        "--factory",
        "tests.user_nets:tiny",
        "--random-calibration",
        "--json",
    )
    assert code == 0, text
    record = json.loads(text)
    assert record["verified"] is False and record["accuracy"] is None
    assert "accuracy unverified" in record["calibration"]


def test_the_variant_is_chosen_by_name_everywhere(
    quantized: Path, lenet_export: Path, tmp_path: Path
) -> None:
    from PIL import Image

    from kit.server.repository import load_models

    from .server_utils import request, running_server

    int8 = kr.load(quantized, precision="int8")
    assert int8.precision == "int8" and int8.path.name == INT8
    assert kr.load(quantized).precision == "fp32"
    with pytest.raises(kr.ArtifactError, match="has no int8 variant"):
        kr.load(lenet_export, precision="int8")
    from kit.errors import UsageError

    with pytest.raises(UsageError, match="Unknown precision 'int4'"):
        kr.load(quantized, precision="int4")
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(image)
    code, text = run("predict", str(quantized), str(image), "--precision", "int8", "--json")
    assert code == 0 and json.loads(text)["precision"] == "int8"
    models = load_models(quantized)
    assert sorted(models) == ["mnist_cnn", "mnist_cnn_int8"]
    with running_server(models) as (url, _):
        meta = json.loads(request(url, "GET", "/v2/models/mnist_cnn_int8")[2])
        assert meta["parameters"] == {"precision": "int8"}


def test_parity_checks_every_variant(quantized: Path, tmp_path: Path) -> None:
    code, text = run("parity", str(quantized), "--json")
    assert code == 0, text
    rows = [c for c in json.loads(text)["comparisons"] if c["artifact"] == "onnx int8"]
    assert rows and rows[0]["inputs"] == "mnist test b=256" and rows[0]["top1_agreement"] >= 0.995
    copy = tmp_path / "m"
    shutil.copytree(quantized, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["variants"]["int8"]["limits"]["min_agreement"] = 1.01  # a limit nothing meets
    (copy / MANIFEST).write_text(json.dumps(manifest))
    code, text = run("parity", str(copy))
    assert code == 1 and "onnx int8" in text and "FAIL: top-1 agreement under 101.0%" in text


def test_parity_says_when_a_variant_is_not_checked(tmp_path: Path) -> None:
    args = ["export", "--model", "tests.user_nets:tiny", "--input-shape", "3,16,16"]
    assert run(*args, "--out", str(tmp_path), "--formats", "onnx")[0] == 0
    assert (
        run(
            "quantize",
            str(tmp_path / "tiny"),
            "--factory",
            "tests.user_nets:tiny",
            "--random-calibration",
        )[0]
        == 0
    )
    code, text = run("parity", str(tmp_path / "tiny"), "--factory", "tests.user_nets:tiny")
    assert code == 0 and "note: variants onnx int8 not checked" in text


def test_eval_reports_each_variant(quantized: Path) -> None:
    code, text = run("eval", str(quantized), "--json")
    assert code == 0, text
    result = json.loads(text)
    int8 = result["variants"]["int8"]
    assert int8["total"] == 10_000 and result["accuracy"] - int8["accuracy"] <= 0.003
    assert int8["top1_agreement"] >= 0.995


def test_an_fp16_variant_keeps_fp32_inputs_and_outputs(quantized: Path, tmp_path: Path) -> None:
    import numpy as np

    copy = tmp_path / "m"
    shutil.copytree(quantized, copy)
    code, text = run("quantize", str(copy), "--precision", "fp16")
    assert code == 0 and "its speed needs a GPU" in text, text
    record = json.loads((copy / MANIFEST).read_text())["variants"]["fp16"]
    assert record["agreement"] >= 0.995 and record["calibration"] is None
    fp16 = kr.load(copy, precision="fp16")
    out = fp16.predict(np.zeros((2, 1, 28, 28), np.float32))["logits"]
    assert out.dtype == np.float32 and out.shape == (2, 10)  # apps keep feeding float32
    assert sorted(json.loads(run("eval", str(copy), "--json")[1])["variants"]) == ["fp16", "int8"]


def test_export_makes_the_variants_asked_for(tmp_path: Path) -> None:
    weights = Path(__file__).resolve().parent.parent / "exported" / "lenet" / "weights.safetensors"
    args = ["export", "--model", "lenet", "--weights", str(weights), "--out", str(tmp_path)]
    code, text = run(*args, "--formats", "onnx", "--precision", "fp32,int8")
    assert code == 0, text
    assert "int8 variant: top-1 agreement" in text and INT8 in text
    manifest = json.loads((tmp_path / "lenet" / MANIFEST).read_text())
    assert set(manifest["variants"]) == {"int8"} and INT8 in manifest["files"]
    code, text = run(*args, "--precision", "fp32,int4")
    assert code == 2 and "Unknown precision int4; choose from fp32, int8, fp16" in text
    code, text = run(*args, "--formats", "torchscript", "--precision", "int8")
    assert code == 2 and "need onnx in --formats" in text


def test_layers_that_break_int8_are_kept_in_fp32(tmp_path: Path) -> None:
    """A network with one huge-range activation fails naive int8; the search finds it."""
    args = ["export", "--model", "tests.user_nets:outlier", "--input-shape", "3,8,8"]
    assert run(*args, "--out", str(tmp_path), "--formats", "onnx")[0] == 0
    directory = tmp_path / "outlier"
    code, text = run(
        "quantize",
        str(directory),
        "--factory",
        "tests.user_nets:outlier",
        "--random-calibration",
        "--max-fp32-layers",
        "0",
    )
    assert code == 1 and "misses its limits" in text  # naive int8 loses the prediction
    code, text = run(
        "quantize", str(directory), "--factory", "tests.user_nets:outlier", "--random-calibration"
    )
    assert code == 0 and "kept in fp32 to meet the limits" in text, text
    record = json.loads((directory / MANIFEST).read_text())["variants"]["int8"]
    assert record["nodes_kept_fp32"] and record["agreement"] >= 0.995
    first, last = record["tries"][0], record["tries"][-1]
    assert first["kept_fp32"] == [] and first["agreement"] < 0.5
    assert last["kept_fp32"] == record["nodes_kept_fp32"]
    code, text = run(
        "quantize",
        str(directory),
        "--factory",
        "tests.user_nets:outlier",
        "--random-calibration",
        "--max-fp32-layers",
        "1",
    )
    assert code == 1 and "kept in fp32: (none) -> agreement" in text  # what it tried, as a table
