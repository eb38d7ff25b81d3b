"""kit parity --explain: the first layer where an ONNX file and eager part ways, and the
layer a variant loses the most at."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from kit.artifact import read_manifest
from kit.cli import cli
from kit.data import read_idx
from kit.rule import Tolerance
from kit.variants.quantize import prepare, quantize_int8
from kit.verify import rebuild_reference
from kit.verify.explain import localise

from .conftest import perturb


def parity(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["parity", *args], prog_name="kit")
    return result.exit_code, result.stdout if "--json" in args else result.output


def test_a_failing_export_is_explained_without_asking(lenet_export: Path, tmp_path: Path) -> None:
    broken = perturb(lenet_export, tmp_path / "lenet", "layer3.fc2.weight")
    code, out = parity(str(broken), "--batch-sizes", "2")
    assert code == 1
    assert "layer by layer, model.onnx against eager:" in out
    assert "first divergence: layer3.fc2 (Gemm" in out
    table = out.split("layer by layer")[1]
    assert (
        "layer2.conv2" in table.split("layer3.fc2")[0]
    )  # the layers before it are listed, in order


def test_a_folded_batch_norm_names_both_modules(shipped_mnist_cnn: Path, tmp_path: Path) -> None:
    broken = perturb(shipped_mnist_cnn, tmp_path / "mnist_cnn", "layer3.0.weight")
    code, out = parity(str(broken), "--batch-sizes", "1", "--json")
    report = json.loads(out)
    assert code == 1 and report["explain"][0]["first_over"] == "layer3.0 + layer3.1"
    layers = report["explain"][0]["layers"]
    assert [x["over"] for x in layers[:5]] == [False] * 5 and layers[5]["over"] is True


def test_explain_on_request_covers_the_variants(shipped_mnist_cnn: Path) -> None:
    code, out = parity(str(shipped_mnist_cnn), "--explain", "--batch-sizes", "1", "--json")
    report = json.loads(out)
    assert code == 0
    assert [e["artifact"] for e in report["explain"]] == [
        "model.onnx",
        "int8 variant (model.int8.onnx)",
    ]
    assert report["explain"][0]["first_over"] is None
    assert report["explain"][1]["loses_most"] is not None


@pytest.mark.parametrize(
    "layer", ["layer1.conv1", "layer2.conv2", "layer3.fc1", "layer3.fc2", "layer3.fc3"]
)
def test_an_int8_variant_loses_the_most_where_it_was_quantized(
    layer: str, shipped_mnist_cnn: Path, mnist_dir: Path, tmp_path: Path
) -> None:
    """lenet quantized in one layer alone: the localisation must name that layer."""
    lenet = shipped_mnist_cnn.parent / "lenet"
    _, model = rebuild_reference(lenet, read_manifest(lenet))
    images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[:64].astype(np.float32) / 255
    x = np.ascontiguousarray(((images - 0.1307) / 0.3081)[:, None])
    prepare(lenet / "model.onnx", tmp_path / "prepared.onnx")
    graph = onnx.load(str(tmp_path / "prepared.onnx")).graph
    scopes = {
        n.name: next(p.value for p in n.metadata_props if p.key == "pkg.torch.onnx.name_scopes")
        for n in graph.node
    }
    others = [
        n.name
        for n in graph.node
        if n.op_type in ("Conv", "Gemm") and f"'{layer}'" not in scopes[n.name]
    ]
    assert len(others) == 4
    quantize_int8(tmp_path / "prepared.onnx", tmp_path / "int8.onnx", x, "input", exclude=others)
    found = localise(
        tmp_path / "int8.onnx", model, x[:16], rule=Tolerance(1e-4, 1e-4), variant=True
    )
    assert found.loses_most is not None and found.loses_most.module == layer
    assert found.first_over is not None and found.first_over.module == layer
