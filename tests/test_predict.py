"""kit predict on real digits saved as image files of several formats, modes and sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from kit.cli import cli
from kit.data import read_idx


@pytest.fixture(scope="module")
def digits(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[:12]
    labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")[:12]
    return images, labels


def _save(img: np.ndarray, path: Path, mode: str, size: int) -> Path:
    pil = Image.fromarray(img, "L").resize((size, size), Image.Resampling.BILINEAR)
    if mode == "RGB":
        pil = pil.convert("RGB")
    elif mode == "RGBA":
        pil = pil.convert("RGBA")
    elif mode == "P":
        pil = pil.convert("P")
    pil.save(path)
    return path


def test_predict_files_of_every_kind(
    digits: tuple[np.ndarray, np.ndarray], tmp_path: Path, shipped_mnist_cnn: Path
) -> None:
    images, labels = digits
    kinds = [
        ("png", "L", 28),
        ("png", "RGBA", 140),
        ("jpg", "RGB", 56),
        ("bmp", "L", 20),
        ("png", "P", 28),
        ("bmp", "RGB", 28),
    ]
    files = [
        _save(images[i], tmp_path / f"d{i}.{ext}", mode, size)
        for i, (ext, mode, size) in enumerate(kinds * 2)
    ]
    result = CliRunner().invoke(
        cli, ["predict", str(shipped_mnist_cnn), *map(str, files), "--top-k", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["provider"] == "CPUExecutionProvider" and len(out["predictions"]) == len(files)
    got = [int(p["top"][0]["label"]) for p in out["predictions"]]
    assert sum(g == y for g, y in zip(got, labels, strict=True)) >= len(files) - 1, (
        got,
        labels.tolist(),
    )
    assert all(len(p["top"]) == 3 for p in out["predictions"])


def test_predict_defaults_to_the_shipped_model(
    digits: tuple[np.ndarray, np.ndarray], tmp_path: Path, shipped_mnist_cnn: Path
) -> None:
    images, labels = digits
    path = _save(images[0], tmp_path / "seven.png", "L", 28)
    result = CliRunner().invoke(cli, ["predict", str(path)])
    assert result.exit_code == 0, result.output
    said = result.output.splitlines()
    assert said[0].startswith("model mnist_cnn: ") and "the default digit model" in said[0]
    assert said[1].startswith(f"{path}: {labels[0]} (")


def test_predict_errors(tmp_path: Path, shipped_mnist_cnn: Path) -> None:
    missing = CliRunner().invoke(cli, ["predict", str(tmp_path / "nope.png")], prog_name="kit")
    assert missing.exit_code == 1 and "nope.png: error: Image" in missing.output
    assert "does not exist" in missing.output
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    good = _save(np.zeros((28, 28), np.uint8), tmp_path / "zero.png", "L", 28)
    result = CliRunner().invoke(cli, ["predict", str(bad), str(good)], prog_name="kit")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "bad.png: error: Cannot read image" in result.output
    assert f"{good}: " in result.output  # the batch goes on past a bad file
    only_model = CliRunner().invoke(cli, ["predict", str(shipped_mnist_cnn)], prog_name="kit")
    assert only_model.exit_code == 2 and "at least one image" in only_model.output
