"""A weights file says how many classes it has; kit takes that, or says what disagrees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from architectures import get_model, get_spec
from kit.artifact import MANIFEST
from kit.cli import cli
from kit.errors import UsageError
from kit.models import load_network, resolve_spec


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="kit")
    return result.exit_code, result.output


def _weights(tmp_path: Path, name: str, classes: int) -> Path:
    path = tmp_path / f"{name}_{classes}.safetensors"
    save_file(
        {k: v.contiguous() for k, v in get_model(name, num_classes=classes).state_dict().items()},
        str(path),
    )
    return path


@pytest.mark.parametrize("name", ["lenet", "mnist_cnn", "alexnet", "vgg11"])
def test_every_registered_head_tells_its_class_count(name: str) -> None:
    spec = get_spec(name)
    assert spec.classes_in(get_model(name, num_classes=7).state_dict()) == 7


def test_alexnet_takes_ten_classes_from_its_weights(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _weights(tmp_path, "alexnet", 10)
    network = load_network(resolve_spec("alexnet"), weights=path)
    assert network.num_classes == 10 and network.model.classifier[6].out_features == 10
    assert "holds 10 classes (classifier.6)" in caplog.text
    with pytest.raises(
        UsageError,
        match=r"--num-classes 1000 disagrees with .*alexnet_10.safetensors: its head classifier.6 has 10 classes",
    ):
        load_network(resolve_spec("alexnet"), weights=path, num_classes=1000)


def _export_lenet(weights: Path, out: Path, *extra: str) -> tuple[int, str]:
    args = ["--model", "lenet", "--weights", str(weights), "--out", str(out), *extra]
    return run("export", *args)


def test_export_carries_the_weights_class_count_into_the_manifest(tmp_path: Path) -> None:
    code, text = _export_lenet(
        _weights(tmp_path, "lenet", 5), tmp_path / "out", "--formats", "onnx"
    )
    assert code == 0, text
    manifest = json.loads((tmp_path / "out" / "lenet" / MANIFEST).read_text())
    assert manifest["model"]["num_classes"] == 5
    assert manifest["facts"]["class_names"] == ["0", "1", "2", "3", "4"]
    assert manifest["outputs"][0]["shape"] == ["batch", 5]
    code, text = run("parity", str(tmp_path / "out" / "lenet"), "--batch-sizes", "2")
    assert code == 0, text
    # a manifest whose class count disagrees with its weights file names both numbers
    manifest["model"]["num_classes"] = 10
    (tmp_path / "out" / "lenet" / MANIFEST).write_text(json.dumps(manifest))
    code, text = run("parity", str(tmp_path / "out" / "lenet"))
    assert code == 1 and "says num_classes 10 but" in text and "holds 5 classes" in text


def test_export_names_both_numbers_when_the_flag_disagrees(tmp_path: Path) -> None:
    weights = _weights(tmp_path, "lenet", 5)
    code, text = _export_lenet(weights, tmp_path / "out", "--num-classes", "7")
    assert code == 2
    assert "--num-classes 7 disagrees" in text and "layer3.fc3 has 5 classes" in text
    assert not (tmp_path / "out").exists()


def test_eval_takes_the_class_count_too(tmp_path: Path) -> None:
    code, text = run(
        "eval", "--model", "lenet", "--weights", str(_weights(tmp_path, "lenet", 10)), "--json"
    )
    assert code == 0, text
    assert json.loads(text)["total"] == 10_000
    code, text = run("eval", "--model", "lenet", "--weights", str(_weights(tmp_path, "lenet", 5)))
    assert code == 1 and "lenet has 5 classes but MNIST" in text and "has 10;" in text


def test_a_users_factory_says_to_pass_num_classes(tmp_path: Path) -> None:
    from tests.user_nets import loud

    path = tmp_path / "loud3.safetensors"
    save_file({k: v.contiguous() for k, v in loud(num_classes=3).state_dict().items()}, str(path))
    args = [
        "export",
        "--model",
        "tests.user_nets:loud",
        "--input-shape",
        "3,8,8",
        "--weights",
        str(path),
        "--formats",
        "onnx",
    ]
    code, text = run(*args, "--out", str(tmp_path / "a"))
    assert code == 1 and "wrong shape: 5.weight (3, 4096) vs (10, 4096)" in text
    assert "pass --num-classes N" in text
    code, text = run(*args, "--out", str(tmp_path / "b"), "--num-classes", "3")
    assert code == 0, text
    code, text = run(
        "export",
        "--model",
        "tests.user_nets:tiny",
        "--input-shape",
        "3,8,8",
        "--num-classes",
        "3",
        "--out",
        str(tmp_path / "c"),
    )
    assert code == 2 and "does not take num_classes" in text


def test_torch_pt_files_work_the_same(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save({"state_dict": get_model("mnist_cnn", num_classes=4).state_dict()}, path)
    assert load_network(resolve_spec("mnist_cnn"), weights=path).num_classes == 4
