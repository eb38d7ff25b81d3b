"""A provider asked for by name runs, or the command says why not and exits 2."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

import kit.runtime as kr
from kit.cli import cli
from kit.runtime import providers as session

GPU = session._gpu_present()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="kit")
    return result.exit_code, result.output


@pytest.fixture
def digit(tmp_path: Path) -> Path:
    path = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(path)
    return path


@pytest.mark.parametrize("command", ["predict", "parity", "serve"])
def test_cuda_by_name_on_a_machine_without_it_is_one_sentence_and_exit_2(
    command: str, lenet_export: Path, digit: Path
) -> None:
    args = {
        "predict": ["predict", str(lenet_export), str(digit)],
        "parity": ["parity", str(lenet_export), "--batch-sizes", "1"],
        "serve": ["serve", str(lenet_export), "--port", "0"],
    }[command]
    if GPU and command == "serve":
        pytest.skip("on a GPU machine `kit serve --provider cuda` would start serving")
    code, text = run(*args, "--provider", "cuda")
    if GPU:  # a GPU machine: CUDA must really run
        assert code == 0, text
        return
    assert code == 2, text
    assert "CUDA was asked for, but this machine has no NVIDIA GPU" in text
    assert "Traceback" not in text


def test_runtime_load_refuses_cuda_it_cannot_start(lenet_export: Path) -> None:
    if GPU:
        assert (
            kr.load(lenet_export, providers=["CUDAExecutionProvider"]).provider
            == "CUDAExecutionProvider"
        )
        return
    with pytest.raises(kr.ProviderError, match="use --provider cpu"):
        kr.load(lenet_export, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert (
        kr.load(lenet_export, providers=["CPUExecutionProvider"]).provider == "CPUExecutionProvider"
    )


@pytest.mark.skipif(
    GPU, reason="simulates a GPU whose CUDA libraries do not load; this machine has a GPU"
)
def test_a_gpu_whose_cuda_cannot_start(
    lenet_export: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The device nodes say GPU but onnxruntime cannot start CUDA (this CPU machine)."""
    monkeypatch.setattr(session, "_gpu_present", lambda: True)
    with pytest.raises(kr.ProviderError, match="onnxruntime could not start CUDAExecutionProvider"):
        kr.load(lenet_export, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    with caplog.at_level(logging.WARNING, logger="kit.runtime.providers"):
        model = kr.load(lenet_export)  # auto falls back, with one line naming the provider
    assert model.provider == "CPUExecutionProvider"
    lines = [r.getMessage() for r in caplog.records if r.name == "kit.runtime.providers"]
    assert lines == [
        "CUDAExecutionProvider is unavailable; model.onnx runs on CPUExecutionProvider"
    ]
