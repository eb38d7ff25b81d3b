"""Installed like a user installs it: a wheel (not an editable checkout) in a fresh venv,
run from a folder that is not the source tree, gives a kit whose defaults work."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("kit", "architectures", "pyproject.toml", "setup.py", "README.md")

pytestmark = pytest.mark.slow

#: a user's environment: nothing pointing into a checkout
CLEAN = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _wheel(tmp: Path) -> Path:
    """The wheel of a clean copy of the sources (the build leaves nothing in the checkout)."""
    tree = tmp / "src"
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, tree / name)
    for name in ("lenet", "mnist_cnn"):
        shutil.copytree(ROOT / "exported" / name, tree / "exported" / name,
                        ignore=shutil.ignore_patterns("results"))  # fmt: skip
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*pip, "-w", str(tmp / "dist"), str(tree)], check=True, timeout=600)
    return next((tmp / "dist").glob("kit-*.whl"))


def _venv(tmp: Path, wheel: Path) -> Path:
    """A fresh venv with the wheel installed; its dependencies are this venv's (read as a
    plain path, so this checkout's editable install is not)."""
    venv = tmp / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], env=CLEAN, check=True
    )
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        env=CLEAN, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    subprocess.run([*install, "--no-deps", str(wheel)], env=CLEAN, check=True, timeout=600)
    return venv


def _run(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "kit"), *args], cwd=cwd, env=CLEAN, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def test_an_installed_wheel_works_outside_the_source_tree(tmp_path: Path) -> None:
    venv = _venv(tmp_path, _wheel(tmp_path))
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run(
        [venv / "bin" / "python", "-c", "import kit; print(kit.__file__)"],
        cwd=work, env=CLEAN, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert str(venv) in where and str(ROOT) not in where, where
    shipped = Path(where.strip()).parent / "_shipped" / "mnist_cnn"
    assert (shipped / "model.onnx").is_file()

    listed = _run(venv, work, "list")
    assert listed.returncode == 0 and "mnist_cnn" in listed.stdout, listed.stderr

    from PIL import Image

    raw = gzip.decompress((ROOT / "kit/sample_data/mnist/t10k-images-idx3-ubyte.gz").read_bytes())
    digit = np.frombuffer(raw, np.uint8, count=28 * 28, offset=16).reshape(28, 28)
    Image.fromarray(digit).save(work / "digit.png")
    predicted = _run(venv, work, "predict", "digit.png")
    assert predicted.returncode == 0 and "mnist_cnn" in predicted.stdout, predicted.stderr

    page = work / "page.html"
    reported = _run(venv, work, "report", str(shipped), "-o", str(page))
    assert reported.returncode in (0, 1) and page.is_file(), reported.stderr
    assert "Traceback" not in reported.stderr

    _serve_answers(venv, work)


def _serve_answers(venv: Path, work: Path) -> None:
    """``kit serve`` with no folder serves the shipped models."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([venv / "bin" / "kit", "serve", "--port", str(port)], cwd=work,
                            env=CLEAN, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/v2/models/mnist_cnn"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    assert json.load(answer)["name"] == "mnist_cnn"
                    break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, (
                    "kit serve did not start"
                )
                time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(30)
