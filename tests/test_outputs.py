"""Networks that return more than one tensor, and networks the exporter cannot handle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import kit.runtime as kr
from kit.artifact import MANIFEST, MODEL_FILE
from kit.cli import cli

from .server_utils import json_body, request, running_server


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="kit")
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("seg")
    code, text = run(
        "export", "--model", "tests.user_nets:segmenter", "--input-shape", "3,16,16",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, text
    return out / "segmenter"


def test_a_dict_exports_one_named_output_per_key_with_a_dynamic_batch(segmenter: Path) -> None:
    graph = onnx.load(str(segmenter / MODEL_FILE)).graph
    assert [o.name for o in graph.output] == ["out", "aux"]
    for o in graph.output:
        assert o.type.tensor_type.shape.dim[0].dim_param == "batch"
    manifest = json.loads((segmenter / MANIFEST).read_text())
    assert [(o["name"], o["shape"]) for o in manifest["outputs"]] == [
        ("out", ["batch", 4, 16, 16]),
        ("aux", ["batch", 2, 16, 16]),
    ]
    assert manifest["facts"]["outputs"] == ["out", "aux"]
    assert manifest["facts"]["class_names"] == []


def test_parity_compares_every_output(segmenter: Path) -> None:
    code, text = run("parity", str(segmenter), "--json", "--batch-sizes", "2,5")
    assert code == 2 and "pass --factory tests.user_nets:segmenter" in text  # never imported
    factory = ("--factory", "tests.user_nets:segmenter")
    code, text = run("parity", str(segmenter), *factory, "--json", "--batch-sizes", "2,5")
    assert code == 0, text
    rows = json.loads(text)["comparisons"]
    seen = {(r["artifact"], r["inputs"], r["output"]) for r in rows}
    for artifact in ("onnx", "torchscript", "pt2"):
        for inputs in ("random b=2", "random b=5"):
            assert {(artifact, inputs, "out"), (artifact, inputs, "aux")} <= seen


def test_runtime_returns_every_output_and_refuses_to_classify(segmenter: Path) -> None:
    model = kr.load(segmenter)
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16), dtype=np.float32)
    outputs = model.predict(x)
    assert {k: v.shape for k, v in outputs.items()} == {
        "out": (3, 4, 16, 16),
        "aux": (3, 2, 16, 16),
    }
    assert not model.is_classifier
    with pytest.raises(kr.ArtifactError, match="not a classifier"):
        model.classify(np.zeros((16, 16, 3), np.uint8))


def test_predict_says_the_network_is_not_a_classifier(segmenter: Path, tmp_path: Path) -> None:
    from PIL import Image

    image = tmp_path / "x.png"
    Image.new("RGB", (16, 16)).save(image)
    code, text = run("predict", str(segmenter), str(image))
    assert code == 1 and "segmenter is not a classifier" in text and "Traceback" not in text


def test_server_lists_every_output_and_returns_the_requested_ones(segmenter: Path) -> None:
    model = kr.load(segmenter)
    x = np.ones((2, 3, 16, 16), np.float32)
    with running_server({"seg": model}) as (url, _):
        status, _, body = request(url, "GET", "/v2/models/seg")
        meta = json.loads(body)
        assert [(o["name"], o["shape"]) for o in meta["outputs"]] == [
            ("out", [-1, 4, 16, 16]),
            ("aux", [-1, 2, 16, 16]),
        ]
        request_body = json.loads(json_body(x))
        request_body["outputs"] = [{"name": "aux"}]
        status, _, body = request(
            url, "POST", "/v2/models/seg/infer", json.dumps(request_body).encode()
        )
        assert status == 200
        outputs = json.loads(body)["outputs"]
        assert [o["name"] for o in outputs] == ["aux"]
        expected = model.predict(x)["aux"]
        np.testing.assert_allclose(
            np.array(outputs[0]["data"]).reshape(expected.shape), expected, rtol=1e-6
        )
        status, _, body = request(url, "POST", "/v2/models/seg/infer", json_body(x))
        assert [o["name"] for o in json.loads(body)["outputs"]] == ["out", "aux"]


def test_a_tuple_takes_output_names_from_the_flag(tmp_path: Path) -> None:
    args = ["export", "--model", "tests.user_nets:two_heads", "--input-shape", "3,8,8"]
    code, text = run(*args, "--out", str(tmp_path), "--formats", "onnx")
    assert code == 0, text
    names = [o.name for o in onnx.load(str(tmp_path / "two_heads" / MODEL_FILE)).graph.output]
    assert names == ["output_0", "output_1"]
    code, text = run(
        *args, "--out", str(tmp_path), "--output-names", "cls,box", "--formats", "onnx,pt2"
    )
    assert code == 0, text
    names = [o.name for o in onnx.load(str(tmp_path / "two_heads" / MODEL_FILE)).graph.output]
    assert names == ["cls", "box"]
    code, text = run(*args, "--out", str(tmp_path / "x"), "--output-names", "only_one")
    assert code == 2 and "gives 1 name(s) but two_heads returns 2 tensor(s)" in text
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("nested", "nested returns a dict of list; kit exports networks whose forward returns"),
        ("broken", "Building broken failed: weights server unreachable"),
        ("tiny --input-shape 1,2", "tiny fails on an input of shape (2, 1, 2): "),
    ],
)
def test_what_the_exporter_cannot_handle_is_one_sentence(
    factory: str, message: str, tmp_path: Path
) -> None:
    name, *rest = factory.split()
    shape = rest[1] if rest else "3,8,8"
    code, text = run(
        "export", "--model", f"tests.user_nets:{name}", "--input-shape", shape,
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 1 and message in text, text
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_torchvision_segmentation_network_exports_and_serves(tmp_path: Path) -> None:
    """The user's report: lraspp_mobilenet_v3_large returns {"out": tensor}."""
    (tmp_path / "seg_factory.py").write_text(
        "import torchvision\n"
        "def lraspp():\n"
        "    return torchvision.models.segmentation.lraspp_mobilenet_v3_large(\n"
        "        weights=None, weights_backbone=None)\n"
    )
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        code, text = run(
            "export", "--model", "seg_factory:lraspp", "--input-shape", "3,64,64",
            "--out", str(tmp_path / "out"), "--formats", "onnx",
        )  # fmt: skip
    finally:
        sys.path.remove(str(tmp_path))
    assert code == 0, text
    model = kr.load(tmp_path / "out" / "lraspp")
    out = model.predict(np.zeros((2, 3, 64, 64), np.float32))
    assert list(out) == ["out"] and out["out"].shape == (2, 21, 64, 64)


def test_integer_outputs_keep_their_datatype_end_to_end(tmp_path: Path) -> None:
    code, text = run(
        "export", "--model", "tests.user_nets:detector", "--input-shape", "3,8,8",
        "--out", str(tmp_path), "--formats", "onnx,pt2",
    )  # fmt: skip
    assert code == 0, text
    model = kr.load(tmp_path / "detector")
    x = np.random.default_rng(1).standard_normal((4, 3, 8, 8), dtype=np.float32)
    expected = model.predict(x)
    assert expected["labels"].dtype == np.int64
    with running_server({"det": model}) as (url, _):
        meta = json.loads(request(url, "GET", "/v2/models/det")[2])
        assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [
            ("scores", "FP32"),
            ("labels", "INT64"),
        ]
        status, _, body = request(url, "POST", "/v2/models/det/infer", json_body(x))
        assert status == 200
        labels = {o["name"]: o for o in json.loads(body)["outputs"]}["labels"]
        assert labels["datatype"] == "INT64" and labels["data"] == expected["labels"].tolist()


def test_a_parity_failure_shows_the_table_the_flag_and_the_kept_files(tmp_path: Path) -> None:
    args = ["export", "--model", "tests.user_nets:diverging", "--input-shape", "3,8,8"]
    code, text = run(*args, "--out", str(tmp_path), "--keep-failed")
    assert code == 1
    assert "artifact     runtime" in text and "FAIL" in text  # the whole table
    assert "--rtol" in text and "would pass every comparison" in text
    assert f"kept the failed artifacts in {tmp_path / 'diverging.parity-failed'}/" in text
    assert not (tmp_path / "diverging").exists()
    code, text = run(*args, "--out", str(tmp_path), "--rtol", "1")
    assert code == 0, text
