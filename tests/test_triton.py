"""kit triton: a Triton model repository (and a KServe manifest) from kit exports, checked
with Triton's own ModelConfig schema. Every seed network's config is checked in
tests/test_export.py, on the export it already makes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from kit.artifact import MODEL_FILE, read_manifest
from kit.cli import cli
from kit.deploy.kserve import service_name
from kit.deploy.triton import CONFIG_FILE, check_config


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["triton", *args], prog_name="kit")
    return result.exit_code, result.output


def parse(model_dir: Path) -> mc.ModelConfig:
    return text_format.Parse((model_dir / CONFIG_FILE).read_text(), mc.ModelConfig())


def test_shipped_models_and_their_variants(shipped_mnist_cnn: Path, tmp_path: Path) -> None:
    lenet = shipped_mnist_cnn.parent / "lenet"
    code, out = run(
        str(shipped_mnist_cnn), str(lenet), "--repo", str(tmp_path), "--max-queue-delay-us", "250"
    )
    assert code == 0, out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "lenet",
        "lenet_int8",
        "mnist_cnn",
        "mnist_cnn_int8",
    ]
    facts = read_manifest(shipped_mnist_cnn).facts.to_dict()
    for name, source in (("mnist_cnn", MODEL_FILE), ("mnist_cnn_int8", "model.int8.onnx")):
        model = tmp_path / name
        assert (model / "1" / MODEL_FILE).read_bytes() == (shipped_mnist_cnn / source).read_bytes()
        assert check_config((model / CONFIG_FILE).read_text(), model / "1" / MODEL_FILE, name) == []
        config = parse(model)
        assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 64
        assert [(t.name, mc.DataType.Name(t.data_type), list(t.dims)) for t in config.input] == [
            ("input", "TYPE_FP32", [1, 28, 28])
        ]
        assert [(t.name, list(t.dims)) for t in config.output] == [("logits", [10])]
        assert config.dynamic_batching.max_queue_delay_microseconds == 250
        assert list(config.dynamic_batching.preferred_batch_size) == [64]
        assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_AUTO
        params = {k: v.string_value for k, v in config.parameters.items()}
        assert json.loads(params["kit.mean"]) == facts["mean"]
        assert json.loads(params["kit.std"]) == facts["std"]
        assert json.loads(params["kit.class_names"]) == facts["class_names"]


def test_check_config_finds_what_disagrees(shipped_mnist_cnn: Path, tmp_path: Path) -> None:
    assert run(str(shipped_mnist_cnn), "--repo", str(tmp_path))[0] == 0
    model = tmp_path / "mnist_cnn"
    text = (model / CONFIG_FILE).read_text()
    onnx_file = model / "1" / MODEL_FILE
    wrong_dims = text.replace("dims: 10", "dims: 11")
    assert (
        "outputs [('logits', 'TYPE_FP32', [11])] but the ONNX file has"
        in check_config(wrong_dims, onnx_file, "mnist_cnn")[0]
    )
    assert check_config(text, onnx_file, "lenet") == ["name 'mnist_cnn', directory 'lenet'"]
    assert check_config(text + "\nmax_batch_sise: 3\n", onnx_file, "mnist_cnn")[0].startswith(
        "not a Triton ModelConfig"
    )


def test_placement_and_batching_options(shipped_mnist_cnn: Path, tmp_path: Path) -> None:
    args = [
        "--gpus",
        "0,1",
        "--instances",
        "2",
        "--max-batch-size",
        "32",
        "--preferred-batch-sizes",
        "8,32",
    ]
    assert run(str(shipped_mnist_cnn), "--repo", str(tmp_path), *args)[0] == 0
    config = parse(tmp_path / "mnist_cnn")
    group = config.instance_group[0]
    assert (group.kind, list(group.gpus), group.count) == (
        mc.ModelInstanceGroup.KIND_GPU,
        [0, 1],
        2,
    )
    assert config.max_batch_size == 32 and list(config.dynamic_batching.preferred_batch_size) == [
        8,
        32,
    ]
    assert run(str(shipped_mnist_cnn), "--repo", str(tmp_path), "--device", "cpu")[0] == 0
    assert parse(tmp_path / "mnist_cnn").instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    code, out = run(
        str(shipped_mnist_cnn), "--repo", str(tmp_path), "--preferred-batch-sizes", "128"
    )
    assert code == 2 and "must not exceed --max-batch-size" in out


def test_rewriting_replaces_one_model_whole_and_leaves_the_others(
    shipped_mnist_cnn: Path, tmp_path: Path
) -> None:
    lenet = shipped_mnist_cnn.parent / "lenet"
    assert run(str(shipped_mnist_cnn), str(lenet), "--repo", str(tmp_path))[0] == 0
    (tmp_path / "lenet" / "mine.txt").write_text("a file the user put there")
    (tmp_path / "mnist_cnn" / "stale.txt").write_text("from the old version")
    assert run(str(shipped_mnist_cnn), "--repo", str(tmp_path), "--max-batch-size", "8")[0] == 0
    assert parse(tmp_path / "mnist_cnn").max_batch_size == 8
    assert not (tmp_path / "mnist_cnn" / "stale.txt").exists()
    assert (tmp_path / "lenet" / "mine.txt").exists() and parse(
        tmp_path / "lenet"
    ).max_batch_size == 64
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_input_is_one_sentence_and_writes_nothing(
    shipped_mnist_cnn: Path, tmp_path: Path
) -> None:
    lenet = shipped_mnist_cnn.parent / "lenet"
    code, out = run(
        str(lenet), str(shipped_mnist_cnn), "--repo", str(tmp_path / "r"), "--max-opset", "17"
    )
    assert code == 1 and "uses ONNX opset 20, newer than the 17 the target Triton's" in out
    assert not (tmp_path / "r").exists()  # not even the models before the one refused
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, out = run(str(shipped_mnist_cnn), "--repo", str(blocker / "repo"))
    assert code == 2 and "Cannot write to the repository" in out
    code, out = run(str(tmp_path), "--repo", str(tmp_path / "r2"))
    assert code == 1 and "manifest" in out and not (tmp_path / "r2").exists()


def test_kserve_inference_service(shipped_mnist_cnn: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "isvc.yaml"
    args = ["--repo", str(tmp_path / "models"), "--kserve", str(manifest)]
    code, out = run(str(shipped_mnist_cnn), *args)
    assert code == 2 and "--kserve needs --storage-uri" in out and not manifest.exists()
    code, out = run(str(shipped_mnist_cnn), *args, "--storage-uri", "my-bucket/models")
    assert code == 2 and "is not a URI" in out and not manifest.exists()
    extra = [
        "--storage-uri",
        "gs://my-bucket/models",
        "--kserve-name",
        "Digits_v2",
        "--gpu-count",
        "1",
        "--memory",
        "4Gi",
    ]
    code, out = run(str(shipped_mnist_cnn), *args, *extra)
    assert code == 0, out
    service = yaml.safe_load(manifest.read_text())
    assert (
        service["apiVersion"] == "serving.kserve.io/v1beta1"
        and service["kind"] == "InferenceService"
    )
    assert service["metadata"]["name"] == "digits-v2"
    model = service["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "onnx"} and model["protocolVersion"] == "v2"
    assert model["storageUri"] == "gs://my-bucket/models"
    assert model["resources"]["limits"] == {"cpu": "1", "memory": "4Gi", "nvidia.com/gpu": "1"}
    assert model["resources"]["requests"] == {"cpu": "1", "memory": "4Gi"}


@pytest.mark.parametrize(
    ("model", "name"), [("mnist_cnn", "mnist-cnn"), ("VGG16_bn", "vgg16-bn"), ("3d", "m-3d")]
)
def test_service_names_are_kubernetes_names(model: str, name: str) -> None:
    assert service_name(model) == name


def test_an_fp16_variant_is_its_own_model(lenet_export: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "lenet"
    shutil.copytree(lenet_export, copy)
    made = CliRunner().invoke(cli, ["quantize", str(copy), "--precision", "fp16"])
    assert made.exit_code == 0, made.output
    code, out = run(str(copy), "--repo", str(tmp_path / "repo"))
    assert code == 0, out
    model = tmp_path / "repo" / "lenet_fp16"
    assert (
        check_config((model / CONFIG_FILE).read_text(), model / "1" / MODEL_FILE, "lenet_fp16")
        == []
    )
    assert mc.DataType.Name(parse(model).input[0].data_type) == "TYPE_FP32"  # fp32 in and out
