"""Export folders people download and share: nothing in one can crash kit, make it read a
file outside the folder, run code, or take unbounded memory; every problem is one sentence."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import kit.runtime as kr
from kit.artifact import MANIFEST, MODEL_FILE, read_manifest
from kit.cli import cli
from kit.errors import ArtifactError

from .conftest import edit_model


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="kit")
    return result.exit_code, result.output


def _copy(export: Path, into: Path, change: Any) -> Path:
    """A copy of ``export`` whose manifest ``change`` (a dict edit) has altered."""
    shutil.copytree(export, into)
    data = json.loads((into / MANIFEST).read_text())
    change(data)
    (into / MANIFEST).write_text(json.dumps(data))
    return into


def _every_command(folder: Path) -> list[tuple[int, str]]:
    """What parity, eval, predict, triton and quantize say of ``folder``."""
    digit = folder.parent / "digit.png"
    from PIL import Image

    Image.new("L", (28, 28)).save(digit)
    return [
        run("parity", str(folder), "--batch-sizes", "1"),
        run("eval", str(folder)),
        run("predict", str(folder), str(digit)),
        run("triton", str(folder), "--repo", str(folder.parent / "repo")),
        run("quantize", str(folder)),
    ]


# -- 8. paths in a manifest stay inside its folder ---------------------------------------------


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/shadow", "/proc/self/mem", "a/../../x"])
def test_a_path_outside_the_folder_is_refused_unopened(
    lenet_export: Path, tmp_path: Path, name: str
) -> None:
    def point_outside(data: dict[str, Any]) -> None:
        data["files"][name] = {"format": "onnx", "size": 1, "sha256": "0" * 64}

    folder = _copy(lenet_export, tmp_path / "lenet", point_outside)
    for code, out in _every_command(folder):
        assert code == 1, out
        assert f"field files[{name!r}]" in out and "inside its folder" in out, out
        assert "Traceback" not in out and "missing" not in out and "does not match" not in out
    with pytest.raises(ArtifactError, match="inside its folder"):
        kr.load(folder)


def test_a_symlink_out_of_the_folder_is_refused(lenet_export: Path, tmp_path: Path) -> None:
    folder = tmp_path / "lenet"
    shutil.copytree(lenet_export, folder)
    (folder / MODEL_FILE).unlink()
    (folder / MODEL_FILE).symlink_to("/etc/passwd")
    with pytest.raises(ArtifactError, match="resolves outside"):
        read_manifest(folder)
    code, out = run("parity", str(folder))
    assert code == 1 and "resolves outside" in out


# -- 9. malformed manifests are one sentence naming the field ----------------------------------


def _files_string(d: dict[str, Any]) -> None:
    d["files"]["model.onnx"] = "abc"


def _files_empty(d: dict[str, Any]) -> None:
    d["files"]["model.onnx"] = {}


def _no_input_shape(d: dict[str, Any]) -> None:
    del d["model"]["input_shape"]


def _no_name(d: dict[str, Any]) -> None:
    del d["model"]["name"]


def _variant_without_file(d: dict[str, Any]) -> None:
    d["variants"] = {"int8": {"precision": "int8"}}


def _unknown_limit(d: dict[str, Any]) -> None:
    d["variants"] = {"int8": {"file": "model.onnx", "precision": "int8", "limits": {"max_drop": 1}}}


def _model_is_a_list(d: dict[str, Any]) -> None:
    d["model"] = [1, 2]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (_files_string, "field files['model.onnx'] must be object, not str"),
        (_files_empty, "field files['model.onnx'].format is missing"),
        (_no_input_shape, "field model.input_shape is missing"),
        (_no_name, "field model.name is missing"),
        (_variant_without_file, "field variants['int8'].file is missing"),
        (_unknown_limit, "field variants['int8'].limits.max_drop is not one kit knows"),
        (_model_is_a_list, "field model must be object, not array"),
    ],
)
def test_a_malformed_manifest_is_one_sentence_everywhere(
    lenet_export: Path, tmp_path: Path, change: Any, field: str
) -> None:
    folder = _copy(lenet_export, tmp_path / "lenet", change)
    for code, out in _every_command(folder):
        assert code == 1, out
        assert f"{folder / MANIFEST} is not a valid kit manifest: {field}" in out, out
        assert "Traceback" not in out
    with pytest.raises(ArtifactError, match="not a valid kit manifest"):
        kr.load(folder)


# -- 10. code named by a manifest does not run -------------------------------------------------


def test_a_factory_in_a_manifest_is_shown_never_imported(
    lenet_export: Path, tmp_path: Path
) -> None:
    def abort(d: dict[str, Any]) -> None:
        d["model"]["factory"] = "os:abort"

    folder = _copy(lenet_export, tmp_path / "lenet", abort)
    for args in (["parity", str(folder)], ["eval", str(folder)], ["bench", str(folder)]):
        code, out = run(*args)
        assert code == 2 and "'os:abort', which kit does not import" in out, out


def test_a_module_beside_the_user_is_not_imported(lenet_export: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "evil_mod.py").write_text(
        "from pathlib import Path\nPath('imported').write_text('yes')\ndef net(): pass\n"
    )

    def evil(d: dict[str, Any]) -> None:
        d["model"]["factory"] = "evil_mod:net"

    folder = _copy(lenet_export, tmp_path / "lenet", evil)
    done = subprocess.run(
        [sys.executable, "-m", "kit", "parity", str(folder)],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "pass --factory evil_mod:net" in done.stderr
    assert not (work / "imported").exists()


def test_torchscript_loads_only_after_its_sha256(lenet_export: Path, tmp_path: Path) -> None:
    folder = tmp_path / "lenet"
    shutil.copytree(lenet_export, folder)
    (folder / "model.ts").write_bytes(b"PK\x03\x04 not what export wrote")
    code, out = run("parity", str(folder), "--json")
    report = json.loads(out)
    assert code == 1 and report["comparisons"] == []  # nothing ran
    assert report["problems"] == [
        "model.ts does not match the sha256 in manifest.json (modified or corrupt)"
    ]


# -- 11. ONNX facts that lie, or describe no graph kit can feed --------------------------------


def _set_facts(export: Path, into: Path, change: Any) -> Path:
    from kit.artifact import FACTS_KEY

    def edit(proto: Any) -> None:
        prop = next(p for p in proto.metadata_props if p.key == FACTS_KEY)
        facts = json.loads(prop.value)
        change(facts)
        prop.value = json.dumps(facts)

    return edit_model(export, into, edit)


@pytest.mark.parametrize(
    ("change", "sentence"),
    [
        (
            lambda f: f.update(input_shape=[3, 28, 28], mean=[0, 0, 0], std=[1, 1, 1]),
            "facts say input shape [3, 28, 28] but its graph takes ['N', 1, 28, 28]",
        ),
        (
            lambda f: f.update(input_shape=[1, 20000, 20000]),
            "input_shape [1, 20000, 20000] holds more than 16777216 values",
        ),
        (lambda f: f.update(mean=["a"]), "field mean[0] must be float, not str"),
    ],
)
def test_facts_that_lie_are_one_sentence(
    lenet_export: Path, tmp_path: Path, change: Any, sentence: str
) -> None:
    folder = _set_facts(lenet_export, tmp_path / "lenet", change)
    from PIL import Image

    Image.new("L", (28, 28)).save(tmp_path / "digit.png")
    code, out = run("predict", str(folder), str(tmp_path / "digit.png"))
    assert code == 1 and sentence in out and "Traceback" not in out, out


def test_a_graph_without_inputs_is_one_sentence(lenet_export: Path, tmp_path: Path) -> None:
    def no_inputs(proto: Any) -> None:
        del proto.graph.input[:]

    folder = tmp_path / "lenet"
    shutil.copytree(lenet_export, folder)
    import onnx

    proto = onnx.load(str(folder / MODEL_FILE))
    no_inputs(proto)
    onnx.save(proto, str(tmp_path / "empty.onnx"))
    with pytest.raises(ArtifactError):
        kr.load(tmp_path / "empty.onnx")


# -- 12. kit triton verifies, and refuses two exports of one name ------------------------------


def test_triton_refuses_a_tampered_model(lenet_export: Path, tmp_path: Path) -> None:
    folder = tmp_path / "lenet"
    shutil.copytree(lenet_export, folder)
    with open(folder / MODEL_FILE, "ab") as f:
        f.write(b"\0")
    code, out = run("triton", str(folder), "--repo", str(tmp_path / "repo"))
    assert code == 1 and "Refusing to deploy" in out and "does not match the sha256" in out
    assert not (tmp_path / "repo" / "lenet").exists()


def test_triton_refuses_two_exports_of_one_name(lenet_export: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "lenet", tmp_path / "b" / "lenet"
    shutil.copytree(lenet_export, first)
    shutil.copytree(lenet_export, second)
    code, out = run("triton", str(first), str(second), "--repo", str(tmp_path / "repo"))
    assert code == 2 and f"{first} and {second} both export a model named 'lenet'" in out
    assert not (tmp_path / "repo").exists()


# -- 7. what gets served ------------------------------------------------------------------------


def test_only_complete_verified_exports_are_served(
    lenet_export: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from kit.server.repository import load_models

    root = tmp_path / "exported"
    shutil.copytree(lenet_export, root / "lenet")
    shutil.copytree(lenet_export, root / ".lenet.partial-abc123")  # an export killed mid-way
    shutil.copytree(lenet_export, root / "lenet.parity-failed")  # --keep-failed
    (root / "no_manifest").mkdir()
    shutil.copy(lenet_export / MODEL_FILE, root / "no_manifest" / MODEL_FILE)
    shutil.copytree(lenet_export, root / "manifest_dir")
    (root / "manifest_dir" / MANIFEST).unlink()
    (root / "manifest_dir" / MANIFEST).mkdir()
    tampered = _copy(lenet_export, root / "tampered", lambda d: d["model"].update(name="tampered"))
    with open(tampered / MODEL_FILE, "ab") as f:
        f.write(b"\0")
    with caplog.at_level(logging.INFO, logger="kit.server"):
        models = load_models(root)
    assert sorted(models) == ["lenet"]
    skipped = {
        r.__dict__["folder"]: r.__dict__["why"] for r in caplog.records if "folder" in r.__dict__
    }
    assert set(skipped) == {
        str(root / n)
        for n in (
            ".lenet.partial-abc123",
            "lenet.parity-failed",
            "no_manifest",
            "manifest_dir",
            "tampered",
        )
    }
    assert "does not match the sha256" in skipped[str(tampered)]


def test_sigterm_during_export_leaves_nothing(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kit",
            "export",
            "--model",
            "vgg11",
            "--formats",
            "onnx,torchscript",
            "--out",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".vgg11.partial-*/*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob(".vgg11.partial-*")), "the export never started writing"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_a_sigterm_whose_exception_was_swallowed_still_stops_the_export(tmp_path: Path) -> None:
    """Python only prints an exception raised inside a ``__del__`` or a callback, so the
    handler's exception can be lost; the export must still never land."""
    from kit.export.staging import move_into_place, staging_dir

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped, staging_dir(tmp_path, "lenet") as staging:
        (staging / "model.onnx").write_bytes(b"half")
        with contextlib.suppress(BaseException):  # what Python does in a __del__
            signal.raise_signal(signal.SIGTERM)  # the handler runs here, in this thread
        move_into_place(staging, tmp_path / "lenet")
    assert stopped.value.code == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before  # put back


def test_a_sigkill_leftover_is_ignored_then_cleaned(lenet_export: Path, tmp_path: Path) -> None:
    leftover = tmp_path / ".lenet.partial-dead1"
    shutil.copytree(lenet_export, leftover)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (leftover / ".kit-export.pid").write_text(str(dead.pid))  # a process that is gone
    code, out = run("serve", str(tmp_path), "--port", "0")
    assert code == 1 and "No exported model" in out  # the leftover is not an export
    code, out = run("export", "--model", "lenet", "--formats", "onnx", "--out", str(tmp_path))
    assert code == 0, out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet"]


def test_a_running_exports_staging_is_left_alone(tmp_path: Path) -> None:
    from kit.export.staging import clean_leftovers

    live = tmp_path / ".lenet.partial-live1"
    live.mkdir()
    (live / ".kit-export.pid").write_text(str(os.getpid()))  # this process: alive
    clean_leftovers(tmp_path, "lenet")
    assert live.is_dir()


# -- 13, 14. images --------------------------------------------------------------------------


def _digit(mnist_dir: Path, index: int = 0) -> np.ndarray:
    from kit.data import read_idx

    return read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[index]


def _top(out: str) -> tuple[str, float]:
    top = json.loads(out)["predictions"][0]["top"][0]
    return top["label"], top["probability"]


def test_a_16_bit_png_is_the_same_picture_as_its_8_bit_copy(
    shipped_mnist_cnn: Path, mnist_dir: Path, tmp_path: Path
) -> None:
    from PIL import Image

    digit = _digit(mnist_dir, 0)
    Image.fromarray(digit).save(tmp_path / "eight.png")
    Image.fromarray(digit.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    assert Image.open(tmp_path / "sixteen.png").mode == "I;16"
    answers = [
        _top(run("predict", str(shipped_mnist_cnn), str(tmp_path / f), "--json")[1])
        for f in ("eight.png", "sixteen.png")
    ]
    assert answers[0][0] == answers[1][0] == "7"
    assert answers[0][1] == pytest.approx(answers[1][1], abs=1e-6)


def test_a_mode_kit_cannot_map_is_refused_by_name(shipped_mnist_cnn: Path, tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.zeros((28, 28), np.float32)).save(tmp_path / "float.tif")
    code, out = run("predict", str(shipped_mnist_cnn), str(tmp_path / "float.tif"))
    assert code == 1 and "has mode F, which kit cannot map" in out


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` and whose data is a few bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_image_bombs_are_one_sentence(shipped_mnist_cnn: Path, tmp_path: Path) -> None:
    import zlib

    (tmp_path / "huge.png").write_bytes(_png_claiming(100_000, 100_000))
    code, out = run("predict", str(shipped_mnist_cnn), str(tmp_path / "huge.png"))
    assert code == 1 and "claims 100000x100000 pixels" in out and "--max-image-pixels" in out
    # a text chunk that inflates to 100 MB
    from PIL import Image

    Image.new("L", (28, 28)).save(tmp_path / "small.png")
    raw = (tmp_path / "small.png").read_bytes()
    import struct

    bomb = b"Comment\0\0" + zlib.compress(b"\0" * 100_000_000, 9)
    ztxt = (
        struct.pack(">I", len(bomb))
        + b"zTXt"
        + bomb
        + struct.pack(">I", zlib.crc32(b"zTXt" + bomb))
    )
    (tmp_path / "ztxt.png").write_bytes(raw[:33] + ztxt + raw[33:])
    code, out = run("predict", str(shipped_mnist_cnn), str(tmp_path / "ztxt.png"))
    assert code == 1 and "Cannot read image" in out and "Traceback" not in out, out


def test_the_pixel_limit_has_a_flag(shipped_mnist_cnn: Path, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("L", (300, 300), 0).save(tmp_path / "big.png")
    code, out = run(
        "predict", str(shipped_mnist_cnn), str(tmp_path / "big.png"), "--max-image-pixels", "10000"
    )
    assert code == 1 and "claims 300x300 pixels, more than the limit of 10000" in out
    code, out = run("predict", str(shipped_mnist_cnn), str(tmp_path / "big.png"))
    assert code == 0, out


def test_a_large_jpeg_is_reduced_while_it_is_decoded(tmp_path: Path) -> None:
    from PIL import Image

    from kit.runtime.images import read_image

    Image.new("L", (4000, 4000), 128).save(tmp_path / "big.jpg", quality=90)
    assert read_image(tmp_path / "big.jpg", size=(28, 28)).shape == (500, 500)  # 1/8 scale
    assert read_image(tmp_path / "big.jpg").shape == (4000, 4000)
