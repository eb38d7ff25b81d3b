"""The CLI: every command's --help, outputs, exit codes and error messages."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from kit.artifact import MANIFEST, MODEL_FILE, WEIGHTS_FILE
from kit.cli import cli

COMMANDS = [
    "list",
    "export",
    "parity",
    "quantize",
    "bench",
    "train",
    "eval",
    "predict",
    "serve",
    "doctor",
    "triton",
]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="kit")
    return result.exit_code, result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command: str) -> None:
    code, out = run(command, "--help")
    assert code == 0 and "Usage: kit " + command in out


def test_top_level_help_lists_commands() -> None:
    code, out = run("--help")
    assert code == 0 and all(c in out for c in COMMANDS)


def test_help_does_not_import_torch() -> None:
    code = "import sys; from kit.cli import cli; sys.argv=['kit','--help']\ntry: cli()\nexcept SystemExit: pass\nassert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_list_json() -> None:
    code, out = run("list", "--json")
    data = json.loads(out)
    assert (
        code == 0
        and data["vgg16"]["input_shape"] == [3, 224, 224]
        and data["lenet"]["num_classes"] == 10
    )


def test_export_then_parity(tmp_path: Path) -> None:
    code, out = run(
        "export",
        "--model",
        "lenet",
        "--out",
        str(tmp_path),
        "--formats",
        "onnx,pt2",
        "--opset",
        "18",
    )
    assert code == 0, out
    assert "parity lenet" in out and "PASSED" in out
    untrained = "lenet has random weights drawn from seed 0 (no --weights given); pass --weights"
    assert untrained in out
    manifest = json.loads((tmp_path / "lenet" / MANIFEST).read_text())
    runnable = sorted(n for n, f in manifest["files"].items() if f["format"] != "reference")
    assert manifest["opset"] == 18 and runnable == ["model.onnx", "model.pt2"]
    assert manifest["model"]["weights"] is None and untrained in manifest["model"]["note"]
    code, out = run("parity", str(tmp_path / "lenet"), "--json")
    assert code == 0 and json.loads(out)["passed"] is True


def test_parity_on_real_samples(lenet_export: Path, mnist_dir: Path) -> None:
    code, out = run("parity", str(lenet_export), "--data-dir", str(mnist_dir), "--batch-sizes", "2")
    assert code == 0, out
    assert "mnist test b=256" in out


def test_parity_mismatch_exits_1(lenet_export: Path, tmp_path: Path) -> None:
    copy = tmp_path / "lenet"
    shutil.copytree(lenet_export, copy)
    (copy / MODEL_FILE).write_bytes(b"garbage")
    code, out = run("parity", str(copy))
    assert code == 1 and "model.onnx does not match the sha256" in out and "FAILED" in out


def test_unknown_model_lists_known_ones(tmp_path: Path) -> None:
    code, out = run("export", "--model", "resnet", "--out", str(tmp_path))
    assert code == 2 and "Unknown model 'resnet'; known models: alexnet, lenet" in out
    assert "Traceback" not in out and list(tmp_path.iterdir()) == []


def test_unknown_format_is_a_usage_error(tmp_path: Path) -> None:
    code, out = run(
        "export", "--model", "lenet", "--formats", "onnx,coreml", "--out", str(tmp_path)
    )
    assert code == 2 and "Unknown format coreml" in out


def test_bad_batch_sizes() -> None:
    code, out = run("parity", "x", "--batch-sizes", "1,zero")
    assert code == 2 and "positive integers" in out


def test_weights_that_do_not_fit_are_named(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from architectures import get_model

    state = get_model("lenet").state_dict()
    state["layer3.fc2.weight"] = torch.zeros(5, 120)
    del state["layer1.conv1.bias"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    code, out = run(
        "export", "--model", "lenet", "--weights", str(path), "--out", str(tmp_path / "out")
    )
    assert code == 1
    assert "missing: layer1.conv1.bias" in out and "unexpected: extra.weight" in out
    assert "layer3.fc2.weight (5, 120) vs (84, 120)" in out
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_pt_weights_load_with_weights_only(tmp_path: Path) -> None:
    from architectures import get_model

    path = tmp_path / "seed.pt"
    torch.save({"state_dict": get_model("lenet").state_dict()}, path)
    code, out = run(
        "export",
        "--model",
        "lenet",
        "--weights",
        str(path),
        "--formats",
        "onnx",
        "--out",
        str(tmp_path / "o"),
        "--dataset",  # untrained weights in a file: no labelled data to judge them by
        "fake",
    )
    assert code == 0, out
    assert (tmp_path / "o" / "lenet" / WEIGHTS_FILE).is_file()
    assert "random weights" not in out
    assert json.loads((tmp_path / "o" / "lenet" / MANIFEST).read_text())["model"]["note"] is None


def test_missing_and_unreadable_weights(tmp_path: Path) -> None:
    code, out = run("export", "--model", "lenet", "--weights", str(tmp_path / "none.pt"))
    assert code == 1 and "does not exist" in out
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 16)
    code, out = run("export", "--model", "lenet", "--weights", str(bad))
    assert code == 1 and "Cannot read weights" in out and "Traceback" not in out


def test_unwritable_out(tmp_path: Path) -> None:
    blocker = tmp_path / "f"
    blocker.write_text("")
    code, out = run("export", "--model", "lenet", "--out", str(blocker / "x"))
    assert code == 1 and "Cannot write to output directory" in out


def test_parity_on_missing_and_corrupt_artifacts(tmp_path: Path, lenet_export: Path) -> None:
    code, out = run("parity", str(tmp_path / "nope"))
    assert code == 1 and "is not a directory" in out
    copy = tmp_path / "lenet"
    shutil.copytree(lenet_export, copy)
    (copy / MANIFEST).write_text("{not json")
    code, out = run("parity", str(copy))
    assert code == 1 and "Cannot read" in out


def test_verbose_shows_traceback(tmp_path: Path) -> None:
    code, out = run("--verbose", "parity", str(tmp_path / "nope"))
    assert code == 1 and "Traceback" in out


def test_factory_needs_input_shape() -> None:
    code, out = run("export", "--model", "tests.user_nets:tiny")
    assert code == 2 and "needs --input-shape" in out
    code, out = run("export", "--model", "tests.nowhere:tiny", "--input-shape", "3,8,8")
    assert code == 2 and "Cannot import module 'tests.nowhere'" in out


def test_serve_on_a_busy_port_says_so_before_loading_anything() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, output = run("serve", "--port", str(port))
    assert code == 2
    assert f"Cannot listen on 127.0.0.1:{port}" in output and "--port" in output


def test_doctor_lists_what_this_machine_can_check(monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = run("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(out)}
    assert checks["python CPUExecutionProvider"]["ready"] is True
    assert checks["python CPUExecutionProvider"]["detail"].endswith("gets CPUExecutionProvider")
    node = checks["node onnxruntime-node"]
    assert node["ready"] == (
        shutil.which("node") is not None and "onnxruntime-node" in node["detail"]
    )
    assert code == (0 if all(c["ready"] for n, c in checks.items() if "CUDA" not in n) else 1)


def test_doctor_says_how_to_get_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no node, no chromium
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "cache"))  # nothing installed
    monkeypatch.delenv("KIT_CHROMIUM", raising=False)
    code, out = run("doctor")
    assert code == 1
    assert "--  node onnxruntime-node" in out and "install Node.js 18+" in out
    assert "--  browser onnxruntime-web" in out and "kit doctor --install web" in out
    assert "--  browser chromium" in out and "apt-get install chromium" in out
    assert "ok  python CPUExecutionProvider" in out
