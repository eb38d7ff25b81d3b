"""docs/EMBEDDING.md's examples, run as written: Python, Node.js and the browser must each
print the label ``kit predict`` gives the same digit (the mobile ones are marked untested)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner
from PIL import Image

from kit.cache import cache_dir
from kit.cli import cli
from kit.data import read_idx
from kit.embed.packages import WEB_FILES, install_node_package, install_web_files

DOC = Path(__file__).resolve().parent.parent / "docs" / "EMBEDDING.md"
PNGJS = "pngjs@7.0.0"


def _examples() -> dict[str, str]:
    """The first block of each kind: its info string (``python``, ``python executorch``)."""
    blocks = re.findall(r"```(\w[\w ]*)\n(.*?)```", DOC.read_text(), flags=re.S)
    found: dict[str, str] = {}
    for language, code in blocks:
        found.setdefault(language, code)
    return found


@pytest.fixture(scope="module")
def workdir(
    tmp_path_factory: pytest.TempPathFactory, shipped_mnist_cnn: Path, mnist_dir: Path
) -> Path:
    """exported/mnist_cnn and digit.png (test digit 0, a 7), as the examples expect."""
    work = tmp_path_factory.mktemp("embedding")
    (work / "exported").mkdir()
    (work / "exported" / "mnist_cnn").symlink_to(shipped_mnist_cnn)
    image = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[0]
    Image.fromarray(image, "L").save(work / "digit.png")
    return work


@pytest.fixture(scope="module")
def expected(workdir: Path) -> str:
    args = [
        "predict",
        str(workdir / "exported" / "mnist_cnn"),
        str(workdir / "digit.png"),
        "--json",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    label = str(json.loads(result.output)["predictions"][0]["top"][0]["label"])
    assert label == "7"
    return label


def test_the_guide_has_every_example() -> None:
    examples = _examples()
    assert {"python", "js", "html", "kotlin", "swift"} <= set(examples)
    assert {"python executorch", "python litert", "python openvino"} <= set(examples)
    for mobile in ("kotlin", "swift", "kotlin executorch", "kotlin litert"):
        assert "UNTESTED" in examples[mobile], mobile


def test_python_example(workdir: Path, expected: str) -> None:
    (workdir / "classify.py").write_text(_examples()["python"])
    done = subprocess.run(
        [sys.executable, "classify.py"], cwd=workdir, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    label, probability = done.stdout.split()
    assert label == expected and float(probability) > 0.5


def _pngjs() -> Path:
    """pngjs (the Node example's PNG decoder) in kit's cache, installed once with npm."""
    prefix = cache_dir() / "docs-node"
    if not (prefix / "node_modules" / "pngjs").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("The Node.js example needs npm: apt-get install npm.")
        subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", PNGJS],
            check=True,
            capture_output=True,
        )
    return prefix / "node_modules"


def test_node_example(workdir: Path, expected: str) -> None:
    if shutil.which("node") is None:
        pytest.fail("The Node.js example needs Node.js 18+: apt-get install nodejs npm.")
    (workdir / "classify.js").write_text(_examples()["js"])
    env = {**os.environ, "NODE_PATH": f"{install_node_package()}{os.pathsep}{_pngjs()}"}
    done = subprocess.run(
        ["node", "classify.js", "exported/mnist_cnn", "digit.png"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    label, probability = done.stdout.split()
    assert label == expected and float(probability) > 0.5


class _Quiet(http.server.SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
    }

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def site(workdir: Path) -> Iterator[str]:
    """The browser example's origin: the page, mnist_cnn/, digit.png and ort/."""
    root = workdir / "site"
    (root / "ort").mkdir(parents=True, exist_ok=True)
    for name in WEB_FILES:
        shutil.copyfile(install_web_files(quiet=True) / name, root / "ort" / name)
    shutil.copyfile(workdir / "digit.png", root / "digit.png")
    if not (root / "mnist_cnn").exists():
        (root / "mnist_cnn").symlink_to(workdir / "exported" / "mnist_cnn")
    (root / "index.html").write_text(_examples()["html"])
    (root / "favicon.ico").write_bytes(b"")  # the browser asks for one; a 404 is a console error
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.mark.slow
def test_browser_example(chromium: Any, site: str, expected: str) -> None:
    tab = chromium.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.goto(site)
    try:
        tab.wait_for_function(
            "document.getElementById('result').textContent !== 'classifying…'", timeout=60_000
        )
    except Exception:
        pytest.fail(f"the example never answered; the page said: {errors}")
    assert tab.inner_text("#result") == expected and errors == []
    tab.close()


@pytest.fixture(scope="module")
def edge_workdir(
    tmp_path_factory: pytest.TempPathFactory, shipped_mnist_cnn: Path, workdir: Path
) -> Path:
    """A copy of the shipped mnist_cnn with model.pte, model.tflite and OpenVINO IR added by
    kit itself (``kit export exported/mnist_cnn --formats pte,tflite,openvino``)."""
    work = tmp_path_factory.mktemp("edge")
    shutil.copytree(shipped_mnist_cnn, work / "exported" / "mnist_cnn")
    shutil.copyfile(workdir / "digit.png", work / "digit.png")
    args = ["export", str(work / "exported" / "mnist_cnn"), "--formats", "pte,tflite,openvino"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return work


@pytest.mark.parametrize("runtime", ["executorch", "litert", "openvino"])
def test_edge_runtime_examples(edge_workdir: Path, expected: str, runtime: str) -> None:
    (edge_workdir / f"classify_{runtime}.py").write_text(_examples()[f"python {runtime}"])
    done = subprocess.run(
        [sys.executable, f"classify_{runtime}.py"],
        cwd=edge_workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    label, probability = done.stdout.split()[-2:]
    assert label == expected and float(probability) > 0.5
