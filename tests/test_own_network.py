"""Your own network and your own data, end to end: a 3-class RGB ImageFolder of generated
shapes and a small CNN in the user's own module (``mynets.py`` in the current folder),
through train, export (every format, int8 on real calibration), parity, eval, bench, report
--run, report --compare of two trained versions, predict, serve and triton. Preprocessing
and class names travel; the whole pipeline is proven, not only the graph."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from kit.artifact import MANIFEST
from kit.cli import cli

from .shapes import CLASSES, make_shapes

HERE = Path(__file__).parent
FACTORY = "mynets:shapes"
SHAPE = "3,32,32"


@contextlib.contextmanager
def inside(folder: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def kit(*args: str, code: int | None = 0) -> Result:
    result = CliRunner().invoke(cli, list(args), prog_name="kit")
    assert "Traceback" not in result.output, result.output
    if code is not None:
        assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The user's folder: their module (mynets.py) and their data (shapes/); commands run
    from here, as the user runs them."""
    folder = tmp_path_factory.mktemp("user")
    shutil.copy(HERE / "user_nets.py", folder / "mynets.py")
    make_shapes(folder / "shapes", train=300, val=30)
    with inside(folder):
        yield folder
    sys.modules.pop("mynets", None)


@pytest.fixture(scope="module")
def trained(work: Path) -> dict[str, Any]:
    """Two versions of the user's network: 1 and 3 epochs of the seed's recipe."""
    runs = {}
    for epochs in (1, 3):
        out = work / "runs" / f"e{epochs}"
        result = kit(
            "train", "--model", FACTORY, "--input-shape", SHAPE, "--data-dir", "shapes",
            "--batch-size", "32", "--epochs", str(epochs), "--out", str(out),
        )  # fmt: skip
        runs[epochs] = {"out": out, "log": result.output}
    return runs


@pytest.fixture(scope="module")
def exported(work: Path, trained: dict[str, Any]) -> dict[int, Path]:
    """The 3-epoch version in every format with its int8 variants, and the 1-epoch one."""
    found = {}
    for epochs, formats, extra in (
        (3, "onnx,torchscript,pt2,ort,pte,tflite,openvino", ["--precision", "int8"]),
        (1, "onnx", []),
    ):
        out = work / f"exported_e{epochs}"
        weights = trained[epochs]["out"] / "best.safetensors"
        result = kit(
            "export", "--model", FACTORY, "--input-shape", SHAPE, "--weights", str(weights),
            "--data-dir", "shapes", "--formats", formats, "--out", str(out),
            "--min-agreement", "90", *extra,
        )  # fmt: skip
        assert "pipeline  images -> kit's preprocessing -> model.onnx" in result.output
        assert "raw [0, 1] pixels" not in result.output  # the checkpoint said how
        found[epochs] = out / "shapes"
    return found


def test_train_records_the_datas_facts(trained: dict[str, Any]) -> None:
    run = json.loads((trained[3]["out"] / "run.json").read_text())
    assert run["facts"]["class_names"] == list(CLASSES)
    assert run["config"]["optimizer"] == "adam"  # the seed's recipe
    assert "normalising with the data's own per-channel mean" in trained[3]["log"]
    from safetensors import safe_open

    with safe_open(str(trained[3]["out"] / "best.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["kit.class_names"]) == list(CLASSES)
    assert json.loads(meta["kit.mean"]) == run["facts"]["mean"] != [0.0, 0.0, 0.0]
    assert json.loads(meta["kit.input_shape"]) == [3, 32, 32]


def test_the_export_carries_them(exported: dict[int, Path]) -> None:
    manifest = json.loads((exported[3] / MANIFEST).read_text())
    assert manifest["facts"]["class_names"] == list(CLASSES)
    assert manifest["facts"]["mean"] != [0.0, 0.0, 0.0]
    assert manifest["model"]["data"]["dataset"] == "imagefolder"
    assert {"model.int8.onnx", "model.int8.pte", "model.pte", "model.tflite"} <= set(
        manifest["files"]
    )
    pipeline = manifest["parity"]["pipeline"]
    assert pipeline["passed"] and pipeline["agreement"] == 1.0 and pipeline["images"] == 90


def _eager_top1(exported: Path, trained: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    """The user's eager network on the validation images, fed as its data set feeds it."""
    from kit.data import load_dataset
    from kit.models import checkpoint_facts, load_network, resolve_spec, with_facts

    weights = trained[3]["out"] / "best.safetensors"
    spec = with_facts(resolve_spec(FACTORY, (3, 32, 32)), checkpoint_facts(weights))
    network = load_network(spec, weights=weights, num_classes=3)
    data = load_dataset("imagefolder", spec, data_dir=Path("shapes"))
    files = [p for p, _ in data.test.samples]  # type: ignore[attr-defined]
    import torch

    with torch.no_grad():
        x = torch.stack([data.test[i][0] for i in range(len(files))])
        return files, network.model(x).argmax(1).numpy()


def test_predict_runtime_and_serve_answer_as_eager_to_the_image(
    work: Path, exported: dict[int, Path], trained: dict[str, Any]
) -> None:
    import kit.runtime as kr
    from kit.runtime.images import read_image
    from kit.runtime.preprocess import prepare_images
    from kit.server.repository import load_models

    from .server_utils import request, running_server

    files, eager = _eager_top1(exported[3], trained)
    names = [CLASSES[i] for i in eager]
    # kit predict, on the whole folder
    answer = json.loads(kit("predict", str(exported[3]), "shapes/val", "--json").output)
    by_file = {Path(r["file"]).resolve(): r["top"][0]["label"] for r in answer["predictions"]}
    assert [by_file[Path(f).resolve()] for f in files] == names
    assert answer["model"] == "shapes" and not answer["default"]
    # kit.runtime
    model = kr.load(exported[3])
    images = [read_image(Path(f)) for f in files]
    assert [p[0].label for p in model.classify(images, top_k=1)] == names
    model.self_check()
    # kit serve, with the classification extension
    batch = prepare_images(images, (3, 32, 32), model.facts.mean, model.facts.std)  # type: ignore[union-attr]
    with running_server(load_models(exported[3].parent)) as (url, _):
        served = []
        for row in batch:
            body = {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [1, 3, 32, 32],
                        "datatype": "FP32",
                        "data": row.ravel().tolist(),
                    }
                ],
                "outputs": [{"name": "logits", "parameters": {"classification": 2}}],
            }
            status, _, raw = request(
                url, "POST", "/v2/models/shapes/infer", json.dumps(body).encode()
            )
            assert status == 200, raw
            top = json.loads(raw)["outputs"][0]
            assert top["datatype"] == "BYTES" and top["shape"] == [1, 2]
            served.append(top["data"][0].split(":")[2])
        status, _, raw = request(url, "GET", "/v2/models/shapes/config")
        config = json.loads(raw)
    assert served == names
    assert json.loads(config["parameters"]["kit.class_names"]["string_value"]) == list(CLASSES)
    assert config["output"][0]["label_filename"] == "labels.txt"


def test_parity_eval_bench_and_the_report(work: Path, exported: dict[int, Path]) -> None:
    where = str(exported[3])
    out = kit("parity", where, "--factory", FACTORY).output
    assert "pipeline  images -> kit's preprocessing" in out and out.rstrip().endswith("PASSED")
    out = kit("eval", where, "--factory", FACTORY).output
    assert "accuracy:" in out and "ImageFolder" in out
    kit("bench", where, "--factory", FACTORY, "--seconds", "0.05", "--cold-runs", "0")
    result = kit("report", where, "--factory", FACTORY, "--run", code=None)
    assert result.exit_code == 0 and "shapes: READY" in result.output, result.output
    report = json.loads(kit("report", where, "--factory", FACTORY, "--json").output)
    assert report["pipeline"]["status"] == "pass"
    assert report["facts"]["class_names"] == list(CLASSES)


def test_compare_gates_on_the_users_accuracy(exported: dict[int, Path]) -> None:
    one, three = str(exported[1]), str(exported[3])
    better = kit("report", "--compare", one, three, "--factory", FACTORY, "--min-agreement", "0")
    assert "gate: PASSED" in better.output and "ImageFolder" in better.output
    worse = kit(
        "report", "--compare", three, one, "--factory", FACTORY, "--min-agreement", "0", "--json",
        code=1,
    )  # fmt: skip
    found = json.loads(worse.stdout)
    assert {c["name"] for c in found["classes"]} == set(CLASSES)
    assert found["accuracy_delta"] < 0 and not found["gate"]["passed"]


def test_triton_writes_the_labels(work: Path, exported: dict[int, Path]) -> None:
    kit("triton", str(exported[3]), "--repo", "repo")
    assert (work / "repo" / "shapes" / "labels.txt").read_text().split() == list(CLASSES)
    assert 'label_filename: "labels.txt"' in (work / "repo" / "shapes" / "config.pbtxt").read_text()


def test_the_page_takes_a_picture_for_a_colour_model(
    chromium: Any, exported: dict[int, Path]
) -> None:
    from kit.embed.packages import install_web_files
    from kit.server.repository import load_models

    from .server_utils import running_server

    install_web_files(quiet=True)
    with running_server(load_models(exported[3].parent)) as (url, _):
        tab = chromium.new_page()
        tab.goto(f"http://{url}/")
        tab.wait_for_selector("body[data-ready=true]", timeout=60_000)
        assert tab.get_attribute("body", "data-mode") == "picture"
        assert "circle, square, triangle" in (tab.text_content("#how") or "")
        tab.set_input_files("#file", "shapes/val/triangle/0003.png")
        tab.wait_for_selector("body[data-done='1']", timeout=60_000)
        assert "Both say" in (tab.text_content("#verdict") or "")
        tab.close()


# -- what goes wrong for a new user, and what kit says -------------------------------------


def test_trained_weights_with_the_wrong_normalisation_fail_the_export(
    work: Path, trained: dict[str, Any]
) -> None:
    weights = str(trained[3]["out"] / "best.safetensors")
    result = kit(
        "export", "--model", FACTORY, "--input-shape", SHAPE, "--weights", weights,
        "--data-dir", "shapes", "--formats", "onnx", "--out", "wrong", "--mean", "0", "--std", "1",
        code=1,
    )  # fmt: skip
    assert "chance level for 3 classes" in result.output
    assert not (work / "wrong" / "shapes").exists()  # nothing lands


def test_a_user_network_with_no_normalisation_says_so(work: Path) -> None:
    result = kit(
        "export", "--model", FACTORY, "--input-shape", SHAPE, "--formats", "onnx", "--out", "raw"
    )
    assert "will receive raw [0, 1] pixels" in result.output
    assert (
        "raw [0, 1] pixels"
        in json.loads((work / "raw/shapes" / MANIFEST).read_text())["model"]["note"]
    )
    explicit = kit(
        "export", "--model", FACTORY, "--input-shape", SHAPE, "--formats", "onnx",
        "--out", "raw2", "--mean", "0", "--std", "1",
    )  # fmt: skip
    assert "raw [0, 1] pixels" not in explicit.output


def test_class_names_from_a_flag_or_a_file(work: Path) -> None:
    (work / "labels.txt").write_text("round\nboxy\npointy\n")
    kit(
        "export", "--model", FACTORY, "--input-shape", SHAPE, "--formats", "onnx",
        "--out", "named", "--class-names", "@labels.txt", "--mean", "0.5", "--std", "0.25",
    )  # fmt: skip
    facts = json.loads((work / "named/shapes" / MANIFEST).read_text())["facts"]
    assert facts["class_names"] == ["round", "boxy", "pointy"]
    assert facts["mean"] == [0.5, 0.5, 0.5] and facts["std"] == [0.25, 0.25, 0.25]
    wrong = kit(
        "export", "--model", FACTORY, "--input-shape", SHAPE, "--formats", "onnx",
        "--out", "named2", "--class-names", "a,b", code=2,
    )  # fmt: skip
    assert "2 class names" in wrong.output and "3 classes" in wrong.output


def test_a_one_channel_network_on_colour_images_is_told(work: Path) -> None:
    result = kit(
        "train", "--model", "lenet", "--dataset", "imagefolder", "--data-dir", "shapes", code=2
    )
    assert "lenet takes 1-channel images" in result.output
    assert "colour (3 channels)" in result.output


def test_a_shape_the_network_cannot_take_is_one_sentence_and_no_run_folder(work: Path) -> None:
    """lenet's first layer takes one channel: three are refused before anything is written."""
    result = kit(
        "train", "--model", "lenet", "--input-shape", "3,32,32", "--dataset", "fake",
        "--mean", "0.5", "--std", "0.25", "--num-classes", "3", "--fake-size", "16",
        "--out", "runs/unfit", code=2,
    )  # fmt: skip
    assert "lenet fails on an input of shape (2, 3, 32, 32)" in result.output
    assert "check --input-shape" in result.output
    assert not (work / "runs" / "unfit").exists()


def test_the_module_is_imported_from_the_current_folder(work: Path) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("kit")), "export", "--model", FACTORY,
         "--input-shape", SHAPE, "--formats", "onnx", "--out", "console", "--mean", "0.5", "--std", "0.25"],
        cwd=work, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    elsewhere = subprocess.run(
        [str(Path(sys.executable).with_name("kit")), "export", "--model", FACTORY,
         "--input-shape", SHAPE, "--formats", "onnx", "--out", str(work / "x")],
        cwd=work.parent, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert elsewhere.returncode == 2 and "the current folder" in elsewhere.stderr


def test_at_chance_is_what_guessing_gives() -> None:
    from kit.rule import at_chance

    assert at_chance(1 / 3, 3, 90) and at_chance(0.40, 3, 90)
    assert not at_chance(0.60, 3, 90) and not at_chance(0.15, 10, 10_000)
    assert not at_chance(0.0, 1, 10)  # one class: nothing to guess
