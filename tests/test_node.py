"""Artifacts in onnxruntime-node: parity as a Node.js app runs them, and how it fails.

Node.js must be installed (the README's test command runs where it is; `apt-get install
nodejs npm` elsewhere); onnxruntime-node installs itself into kit's cache on first use.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from kit.artifact import MODEL_FILE
from kit.cli import cli
from kit.embed.node import NODE_RUNTIME, NodeError, run_in_node
from kit.embed.packages import ORT_JS_VERSION, install_node_package


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="kit")
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def node_modules() -> Path:
    if shutil.which("node") is None:
        pytest.fail("These tests need Node.js 18+ on PATH: apt-get install nodejs npm.")
    return install_node_package()


def test_shipped_model_and_its_int8_variant_pass_in_node(
    node_modules: Path, shipped_mnist_cnn: Path
) -> None:
    code, out = run("parity", str(shipped_mnist_cnn), "--runtime", "node", "--json")
    report = json.loads(out)
    assert code == 0 and report["passed"], out
    rows = report["comparisons"]
    assert {r["runtime"] for r in rows} == {NODE_RUNTIME}
    assert {(r["artifact"], r["inputs"]) for r in rows} == {
        ("onnx", "random b=1"),
        ("onnx", "random b=3"),
        ("onnx", "random b=8"),
        ("onnx", "mnist test b=256"),
        ("onnx int8", "mnist test b=256"),
    }


def test_node_computes_what_python_onnxruntime_computes(
    node_modules: Path, shipped_mnist_cnn: Path
) -> None:
    import onnxruntime as ort

    path = shipped_mnist_cnn / MODEL_FILE
    batches = [np.random.default_rng(n).random((n, 1, 28, 28), dtype=np.float32) for n in (1, 5)]
    python = ort.InferenceSession(str(path))
    for x, outputs in zip(batches, run_in_node(path, batches), strict=True):
        (logits,) = outputs
        assert logits.dtype == np.float32 and logits.shape == (len(x), 10)
        np.testing.assert_allclose(logits, python.run(None, {"input": x})[0], rtol=1e-5, atol=1e-5)


def test_an_operator_node_lacks_is_named_with_the_runtime(
    node_modules: Path, frobnicated: Path
) -> None:
    broken = frobnicated
    code, out = run("parity", str(broken), "--runtime", "node")
    assert code == 1
    assert f"onnxruntime-node {ORT_JS_VERSION} (cpu) has no operator kit.test:Frobnicate" in out
    with pytest.raises(NodeError, match="has no operator kit.test:Frobnicate, which model.onnx"):
        run_in_node(broken / MODEL_FILE, [np.zeros((1, 1, 28, 28), np.float32)])


def test_without_node_the_command_says_how_to_get_it(
    lenet_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    code, out = run("parity", str(lenet_export), "--runtime", "node")
    assert code == 2 and "Node.js is not installed; install Node.js 18 or newer" in out


@pytest.mark.slow
def test_first_use_installs_the_pinned_package_into_the_cache(
    node_modules: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path))
    modules = install_node_package()
    assert modules == tmp_path / f"onnxruntime-node-{ORT_JS_VERSION}" / "node_modules"
    package = json.loads((modules / "onnxruntime-node" / "package.json").read_text())
    assert package["version"] == ORT_JS_VERSION
    assert f"installing onnxruntime-node {ORT_JS_VERSION} into" in capfd.readouterr().err
    assert install_node_package() == modules and capfd.readouterr().err == ""  # once only
    assert [p.name for p in tmp_path.iterdir()] == [modules.parent.name]  # no staging left


def test_an_unreachable_registry_is_one_sentence_and_leaves_nothing(
    node_modules: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    with pytest.raises(Exception, match=f"npm could not install onnxruntime-node@{ORT_JS_VERSION}"):
        install_node_package(quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["npm-cache"])


def test_a_node_runner_takes_inputs_as_they_come_and_its_process_ends_on_close(
    node_modules: Path, shipped_mnist_cnn: Path
) -> None:
    """A runner's life cycle: one Node.js process for the file, started by the first batch,
    answering each batch as it comes (none announced in advance), gone once closed."""
    import os

    import onnxruntime as ort

    from kit.artifact import ArtifactFile
    from kit.parity import closing
    from kit.runners import make_runners

    def node_children() -> set[int]:
        found = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                name, rest = stat.read_text().rsplit(")", 1)
            except OSError:
                continue
            if name.endswith("(node") and int(rest.split()[1]) == os.getpid():
                found.add(int(stat.parent.name))
        return found

    before = node_children()
    onnx = [ArtifactFile(MODEL_FILE, "onnx")]
    python = ort.InferenceSession(str(shipped_mnist_cnn / MODEL_FILE))
    with closing(make_runners(shipped_mnist_cnn, onnx, ["node"])) as runners:
        (runner,) = runners
        assert runner.key == "node" and node_children() == before  # nothing started yet
        for n in (2, 1, 4):
            x = np.random.default_rng(n).random((n, 1, 28, 28), dtype=np.float32)
            (logits,) = runner.run(x)
            expected = python.run(None, {"input": x})[0]
            np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
        started = node_children() - before
        assert len(started) == 1  # one process for every batch
    assert not (node_children() & started)
