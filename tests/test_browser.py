"""kit serve's page in a real headless Chromium: a test digit dropped in and strokes drawn
with the mouse are classified by the server and by onnxruntime-web in the page, and both
agree with ``kit predict`` on the same pixels.

Needs a system Chromium (the README's test command installs it with apt-get where it can)
and onnxruntime-web's files (fetched into kit's cache from the npm registry on first use).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from kit.cli import cli
from kit.data import read_idx
from kit.embed.browser import BROWSER_RUNTIME, BrowserError, run_in_browser
from kit.embed.packages import install_web_files

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(kit_server: str) -> str:
    install_web_files(quiet=True)
    return kit_server


@pytest.fixture
def page(chromium: Any, server: str) -> Iterator[tuple[Any, list[str]]]:
    """The page, loaded and ready, with every console error and page error it reports."""
    tab = chromium.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.goto(server + "/")
    tab.wait_for_selector("body[data-ready=true]", timeout=60_000)
    yield tab, errors
    tab.close()


def _kit_predict(image: Path, model: Path) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli, ["predict", str(model), str(image), "--top-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    return list(json.loads(result.output)["predictions"][0]["top"])


def _answers(tab: Any, count: int) -> dict[str, Any]:
    tab.wait_for_selector(f"body[data-done='{count}']", timeout=30_000)
    return dict(tab.evaluate("window.kitPage.last"))


def _assert_all_agree(last: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    """Server, page and kit predict: the same top-3 classes, probabilities within 1e-4."""
    for side in ("server", "page"):
        top = last[side]["top"]
        assert [t["label"] for t in top] == [e["label"] for e in expected], (side, top, expected)
        for t, e in zip(top, expected, strict=True):
            assert abs(t["p"] - e["probability"]) < 1e-4, (side, top, expected)
        assert last[side]["ms"] > 0
    assert last["agree"] is True


def test_a_test_digit_file(
    page: tuple[Any, list[str]], mnist_dir: Path, shipped_mnist_cnn: Path, tmp_path: Path
) -> None:
    tab, errors = page
    image = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[0]
    label = int(read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")[0])
    path = tmp_path / "digit.png"
    Image.fromarray(image, "L").save(path)
    tab.set_input_files("#file", str(path))
    last = _answers(tab, 1)
    expected = _kit_predict(path, shipped_mnist_cnn)
    assert expected[0]["label"] == str(label)
    _assert_all_agree(last, expected)
    assert tab.inner_text("#verdict") == f"Both say {label}."
    assert errors == []


def test_an_image_dropped_on_the_pad(
    page: tuple[Any, list[str]], mnist_dir: Path, shipped_mnist_cnn: Path, tmp_path: Path
) -> None:
    """An RGB photo-sized image dropped from the desktop: resized in the page as kit does."""
    tab, errors = page
    image = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[1]
    path = tmp_path / "dropped.png"
    Image.fromarray(image, "L").resize((112, 112), Image.Resampling.BILINEAR).convert("RGB").save(
        path
    )
    tab.evaluate(
        """async (b64) => {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const data = new DataTransfer();
          data.items.add(new File([bytes], 'dropped.png', { type: 'image/png' }));
          const drop = new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true });
          document.getElementById('drop').dispatchEvent(drop);
        }""",
        base64.b64encode(path.read_bytes()).decode(),
    )
    last = _answers(tab, 1)
    expected = _kit_predict(path, shipped_mnist_cnn)
    _assert_all_agree(last, expected)
    assert errors == []


def test_strokes_drawn_with_the_mouse(
    page: tuple[Any, list[str]], shipped_mnist_cnn: Path, tmp_path: Path
) -> None:
    tab, errors = page
    box = tab.locator("#pad").bounding_box()
    x0, y0 = box["x"], box["y"]
    tab.mouse.move(x0 + 140, y0 + 40)  # a "1": one stroke down the middle
    tab.mouse.down()
    for y in range(40, 250, 10):
        tab.mouse.move(x0 + 140, y0 + y)
    tab.mouse.up()
    last = _answers(tab, 1)
    pad = tab.evaluate("document.getElementById('pad').toDataURL('image/png')")
    path = tmp_path / "pad.png"
    path.write_bytes(base64.b64decode(pad.split(",", 1)[1]))
    expected = _kit_predict(path, shipped_mnist_cnn)
    assert expected[0]["label"] == "1"
    _assert_all_agree(last, expected)
    assert errors == []


def test_a_file_that_is_not_an_image_is_refused(
    page: tuple[Any, list[str]], tmp_path: Path
) -> None:
    tab, errors = page
    path = tmp_path / "notes.txt"
    path.write_text("not pixels")
    tab.set_input_files("#file", str(path))
    tab.wait_for_function("document.getElementById('message').textContent.length > 0")
    assert "“notes.txt” is not an image this page can read" in tab.inner_text("#message")
    assert tab.inner_text("#server .top") == "" and tab.inner_text("#page .top") == ""
    assert errors == []


def test_the_page_names_its_models_and_needs_no_other_origin(
    page: tuple[Any, list[str]], server: str
) -> None:
    tab, _ = page
    options = tab.eval_on_selector_all("#model option", "els => els.map(e => e.value)")
    assert options == ["lenet", "lenet_int8", "mnist_cnn", "mnist_cnn_int8"]
    urls = tab.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith(server) for u in urls), urls  # no CDN, works offline


def _parity(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["parity", *args], prog_name="kit")
    return result.exit_code, result.output


def test_parity_in_the_browser(shipped_mnist_cnn: Path) -> None:
    lenet = shipped_mnist_cnn.parent / "lenet"
    code, out = _parity(str(lenet), "--runtime", "browser", "--batch-sizes", "1,3", "--json")
    report = json.loads(out)
    assert code == 0 and report["passed"], out
    assert {r["runtime"] for r in report["comparisons"]} == {BROWSER_RUNTIME}
    assert {r["artifact"] for r in report["comparisons"]} == {"onnx", "onnx int8"}


def test_an_operator_the_browser_lacks_is_named(frobnicated: Path) -> None:
    code, out = _parity(str(frobnicated), "--runtime", "browser", "--batch-sizes", "1")
    assert code == 1
    assert f"{BROWSER_RUNTIME} has no operator kit.test:Frobnicate, which model.onnx" in out
    with pytest.raises(BrowserError, match="has no operator kit.test:Frobnicate"):
        run_in_browser(frobnicated / "model.onnx", [np.zeros((1, 1, 28, 28), np.float32)])


def test_ort_files_too_in_both_javascript_runtimes(tmp_path: Path) -> None:
    from kit.embed.node import NODE_RUNTIME
    from kit.export import ExportOptions, export_model
    from kit.models import build_model, resolve_spec

    spec = resolve_spec("lenet")
    options = ExportOptions(formats=["onnx", "ort"], progress=False)
    result = export_model(spec, build_model(spec, seed=0), tmp_path, options=options)
    args = ["--runtime", "node", "--runtime", "browser", "--batch-sizes", "1,3", "--json"]
    code, out = _parity(str(result.directory), *args)
    report = json.loads(out)
    assert code == 0 and report["passed"], out
    seen = {(r["artifact"], r["runtime"]) for r in report["comparisons"]}
    assert seen == {(a, r) for a in ("onnx", "ort") for r in (NODE_RUNTIME, BROWSER_RUNTIME)}


def test_model_names_that_need_encoding_work_in_the_page(
    chromium: Any, lenet_export: Path, mnist_dir: Path, tmp_path: Path
) -> None:
    """A model named ``m%41#b`` (its manifest says so) is fetched by its own name."""
    import shutil
    import subprocess
    import sys
    import time
    import urllib.request

    from kit.artifact import MANIFEST

    from .conftest import free_port

    folder = tmp_path / "exported" / "odd"
    shutil.copytree(lenet_export, folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["model"]["name"] = "m%41#b"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kit", "serve", str(folder.parent), "--port", str(port)],
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url + "/v2/health/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        tab = chromium.new_page()
        errors: list[str] = []
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.goto(url + "/")
        tab.wait_for_selector("body[data-ready=true]", timeout=60_000)
        assert tab.eval_on_selector_all("#model option", "els => els.map(e => e.value)") == [
            "m%41#b"
        ]
        path = tmp_path / "digit.png"
        Image.fromarray(read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[0], "L").save(path)
        tab.set_input_files("#file", str(path))
        last = _answers(tab, 1)
        assert last["model"] == "m%41#b" and last["agree"] is True
        assert errors == []
    finally:
        proc.terminate()
        proc.wait(30)
