"""Shared fixtures. Real MNIST is the copy bundled with kit (or $KIT_TEST_DATA)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kit.artifact import MANIFEST
from kit.data import BUNDLED_MNIST

ROOT = Path(__file__).resolve().parent.parent
MNIST_DIR = Path(os.environ.get("KIT_TEST_DATA", BUNDLED_MNIST))
SHIPPED = ROOT / "exported"
#: the reference models the repository tracks in exported/ (exported/.gitignore)
SHIPPED_MODELS = ("lenet", "mnist_cnn")


@pytest.fixture(scope="session", autouse=True)
def signing_key_of_this_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tests sign results with a key of their own (kit's config folder in a temporary
    directory), never the user's; processes they start inherit it."""
    folder = tmp_path_factory.mktemp("kit-config")
    os.environ["KIT_CONFIG_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"Real MNIST is required at {MNIST_DIR} (bundled with kit, or $KIT_TEST_DATA).")
    return MNIST_DIR


@pytest.fixture(scope="session")
def lenet_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lenet exported once per session with random weights (seed 0)."""
    from kit.export import ExportOptions, Provenance, export_model
    from kit.models import build_model, resolve_spec

    spec = resolve_spec("lenet")
    out = tmp_path_factory.mktemp("export")
    source, options = Provenance(num_classes=10), ExportOptions(progress=False)
    result = export_model(spec, build_model(spec, seed=0), out, source, options)
    return result.directory


@pytest.fixture(scope="session")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the reference models the repository ships, and nothing else.

    Tests never read the working tree's exported/ itself: whatever else a user exported
    there (the README's first command writes exported/alexnet/) must not change them.
    """
    import shutil

    copy = tmp_path_factory.mktemp("shipped") / "exported"
    for name in SHIPPED_MODELS:
        path = SHIPPED / name
        if not (path / MANIFEST).is_file():
            pytest.fail(
                f"The shipped reference model is missing at {path}; see exported/README.md."
            )
        shutil.copytree(path, copy / name)
    return copy


@pytest.fixture(scope="session")
def shipped_mnist_cnn(shipped: Path) -> Path:
    return shipped / "mnist_cnn"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """The system Chromium under playwright (never a browser download of its own). One per
    module: playwright's sync API keeps an event loop running while it is open, and a later
    module's `asyncio.run` would refuse to start beside it."""
    from kit.embed.packages import find_browser

    executable = find_browser()
    if executable is None:
        pytest.fail(
            "This test needs a system Chromium: apt-get install chromium (or $KIT_CHROMIUM)."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


def edit_model(export: Path, into: Path, edit: Any) -> Path:
    """A copy of ``export`` at ``into`` whose model.onnx ``edit`` changed in place; its
    manifest is updated, so only running the file can tell."""
    import shutil

    import onnx

    from kit.artifact import MODEL_FILE, describe_files, read_manifest, write_manifest

    shutil.copytree(export, into)
    proto = onnx.load(str(into / MODEL_FILE))
    edit(proto)
    onnx.save(proto, str(into / MODEL_FILE))
    manifest = read_manifest(into)
    write_manifest(into, manifest.with_files(describe_files(into, {MODEL_FILE: "onnx"})))
    return into


@pytest.fixture
def frobnicated(lenet_export: Path, tmp_path: Path) -> Path:
    """A copy of ``lenet_export`` whose model.onnx ends in kit.test:Frobnicate, an operator
    no runtime has."""
    from onnx import helper

    def frobnicate(proto: Any) -> None:
        last = next(n for n in proto.graph.node if "logits" in n.output)
        last.output[list(last.output).index("logits")] = "before_frobnicate"
        proto.graph.node.append(
            helper.make_node("Frobnicate", ["before_frobnicate"], ["logits"], domain="kit.test")
        )
        proto.opset_import.append(helper.make_opsetid("kit.test", 1))

    return edit_model(lenet_export, tmp_path / "lenet", frobnicate)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def kit_server(shipped: Path) -> Iterator[str]:
    """kit serve over a copy of the shipped models (mnist_cnn, lenet and their int8
    variants): its URL."""
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    command = [sys.executable, "-m", "kit", "serve", str(shipped)]
    proc = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1)
            break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        assert proc.stderr is not None
        pytest.fail(f"kit serve did not become ready: {proc.stderr.read().decode()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def perturb(export: Path, into: Path, initializer: str) -> Path:
    """A copy of ``export`` whose model.onnx has one weight of ``initializer`` moved by 0.5."""
    from onnx import numpy_helper

    def move(proto: Any) -> None:
        found = next(i for i in proto.graph.initializer if i.name == initializer)
        weights = numpy_helper.to_array(found).copy()
        weights.flat[0] += 0.5
        found.CopyFrom(numpy_helper.from_array(weights, initializer))

    return edit_model(export, into, move)
