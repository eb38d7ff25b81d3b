"""kit infer: batch inference into Parquet, every row accounted for, on one machine or Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import kit.runtime as kr
from kit.cli import cli
from kit.infer import read_predictions


def _kit(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="kit")
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory, shipped: Path) -> Path:
    """An ImageFolder of 200 MNIST test digits as PNG files (folders named after the
    model's classes), plus a truncated PNG and a text file posing as one."""
    from PIL import Image

    from kit.data import raw_test_images

    model = kr.load(shipped / "mnist_cnn", warmup=False)
    raw = raw_test_images("mnist", None, count=200)
    assert raw is not None
    root = tmp_path_factory.mktemp("digits")
    for k, (image, label) in enumerate(zip(raw.images, raw.labels, strict=True)):
        folder = root / model.label(int(label))
        folder.mkdir(exist_ok=True)
        Image.fromarray(image).save(folder / f"{k:04d}.png")
    first = next(root.rglob("*.png"))
    (first.parent / "truncated.png").write_bytes(first.read_bytes()[:60])
    (first.parent / "notes.png").write_text("not an image")
    (first.parent / "zero.png").symlink_to("/dev/zero")  # listed, never opened
    os.mkfifo(first.parent / "pipe.png")  # would hang a reader
    return root


def test_every_row_is_accounted_for_and_agrees_with_the_runtime(
    digits: Path, shipped: Path, tmp_path: Path
) -> None:
    out = tmp_path / "preds.parquet"
    export = shipped / "mnist_cnn"
    code, text = _kit("infer", str(export), str(digits), "--out", str(out), "--part-rows", "64",
                      "--json")  # fmt: skip
    summary = json.loads(text)
    assert code == 1  # two rows are errors: the job ends, and says so
    assert (summary["rows"], summary["predicted"], summary["errors"]) == (204, 200, 4)
    assert summary["balanced"] and summary["source"] == "imagefolder"
    table = read_predictions(out).to_pylist()
    assert sorted(r["index"] for r in table) == list(range(204))
    assert len(list(out.glob("part-*.parquet"))) == 4
    errors = {Path(r["path"]).name: r["error"] for r in table if r["error"]}
    assert set(errors) == {"truncated.png", "notes.png", "zero.png", "pipe.png"}
    assert "Cannot read image" in errors["truncated.png"]
    assert "regular file" in errors["pipe.png"] and "regular file" in errors["zero.png"]
    # the same answers as kit.runtime on the same files
    model = kr.load(export, warmup=False)
    from kit.runtime.images import read_image

    good = [r for r in table if not r["error"]]
    images = [read_image(Path(r["path"])) for r in good]
    expected = [top[0].label for top in model.classify(images, top_k=1)]
    assert [r["top1"] for r in good] == expected
    assert summary["accuracy"] == pytest.approx(np.mean([r["top1"] == r["label"] for r in good]))
    sha = json.loads((export / "manifest.json").read_text())["files"]["model.onnx"]["sha256"]
    assert {r["model_sha256"] for r in table} == {sha}


def test_workers_in_parallel_write_the_rows_of_one_worker_in_order(
    digits: Path, shipped: Path, tmp_path: Path
) -> None:
    tables = []
    for workers in ("1", "4"):  # parts of 50 rows cut into batches of 8: the last one short
        out = tmp_path / workers
        _kit("infer", str(shipped / "mnist_cnn"), str(digits), "--out", str(out),
             "--workers", workers, "--batch-size", "8", "--part-rows", "50")  # fmt: skip
        assert len(list(out.glob("part-*.parquet"))) == 5
        tables.append(read_predictions(out).to_pylist())
    assert [r["index"] for r in tables[1]] == list(range(204))
    assert tables[1] == tables[0]


def test_the_output_is_refused_replaced_or_resumed_never_mixed(
    digits: Path, shipped: Path, tmp_path: Path
) -> None:
    out = tmp_path / "p.parquet"
    args = ["infer", str(shipped / "mnist_cnn"), str(digits), "--out", str(out)]
    assert _kit(*args)[0] == 1
    code, text = _kit(*args)
    assert code == 2 and "--resume" in text and "--force" in text
    code, text = _kit(*args, "--resume", "--json")
    assert json.loads(text)["parts_already_written"] == 1
    other = ["infer", str(shipped / "lenet"), str(digits), "--out", str(out), "--resume"]
    code, text = _kit(*other)
    assert code == 2 and "another job" in text
    assert _kit(*args, "--force")[0] == 1
    assert len(read_predictions(out)) == 204
    a_file = tmp_path / "preds.parquet"
    a_file.write_text("x")
    code, text = _kit("infer", str(shipped / "mnist_cnn"), str(digits), "--out", str(a_file))
    assert code == 2 and "is a file" in text and a_file.read_text() == "x"
    stranger = tmp_path / "mine"
    stranger.mkdir()
    (stranger / "keep.txt").write_text("x")
    code, text = _kit("infer", str(shipped / "mnist_cnn"), str(digits), "--out", str(stranger))
    assert code == 2 and "not a kit infer output" in text and (stranger / "keep.txt").exists()


def test_a_model_that_fails_its_self_check_scores_nothing(
    digits: Path, shipped: Path, tmp_path: Path
) -> None:
    import shutil

    from onnx import numpy_helper

    from kit.artifact import describe_files, read_manifest, write_manifest

    export = tmp_path / "mnist_cnn"
    shutil.copytree(shipped / "mnist_cnn", export)
    path = export / "test_data_set_0" / "output_0.pb"
    tensor = numpy_helper.to_array(__import__("onnx").load_tensor_from_string(path.read_bytes()))
    path.write_bytes(numpy_helper.from_array(tensor + 1.0, "logits").SerializeToString())
    write_manifest(
        export,
        read_manifest(export).with_files(describe_files(export, {"test_data_set_0/output_0.pb": "reference"})),
    )  # fmt: skip
    out = tmp_path / "p.parquet"
    code, text = _kit("infer", str(export), str(digits), "--out", str(out))
    assert code == 1 and "disagrees with its reference data" in text
    assert not out.exists()


def test_a_killed_job_resumes_to_every_row_exactly_once(shipped: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.parquet"
    command = [sys.executable, "-m", "kit", "infer", str(shipped / "mnist_cnn"), "mnist",
               "--out", str(out), "--part-rows", "500", "--batch-size", "50"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(out.glob("part-*.parquet"))) < 3 and time.monotonic() < deadline:
        assert proc.poll() is None, "the job ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(list(out.glob("part-*.parquet")))
    assert 3 <= written < 20
    code, text = _kit("infer", str(shipped / "mnist_cnn"), "mnist", "--out", str(out),
                      "--part-rows", "500", "--resume", "--json")  # fmt: skip
    summary = json.loads(text)
    assert code == 0 and summary["parts_already_written"] >= written
    indexes = read_predictions(out).column("index").to_pylist()
    assert sorted(indexes) == list(range(10_000))  # each exactly once
    assert not list(out.glob(".part-*"))


def test_on_mnist_the_accuracy_is_kit_evals(shipped: Path, tmp_path: Path) -> None:
    export = str(shipped / "mnist_cnn")
    code, text = _kit("infer", export, "mnist", "--out", str(tmp_path / "p"), "--json")
    assert code == 0, text
    infer = json.loads(text)
    code, text = _kit("eval", export, "--json")
    assert code == 0, text
    assert infer["rows"] == infer["predicted"] == 10_000
    assert infer["accuracy"] == pytest.approx(json.loads(text)["accuracy"], abs=1e-9)


def test_without_ray_the_ray_engine_is_one_sentence(
    digits: Path, shipped: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    code, text = _kit("infer", str(shipped / "mnist_cnn"), str(digits), "--out",
                      str(tmp_path / "p"), "--engine", "ray")  # fmt: skip
    assert code == 2 and "pip install 'kit[ray]'" in text and "Traceback" not in text


@pytest.mark.slow
def test_the_ray_engine_gives_the_local_engines_answers(shipped: Path, tmp_path: Path) -> None:
    try:
        import ray
    except ImportError:
        pytest.fail("Ray is missing: kit[ray] is part of kit[test] (pip install -e '.[test]').")
    export = str(shipped / "mnist_cnn")
    local, ray = tmp_path / "local", tmp_path / "ray"
    common = ["--part-rows", "2500", "--raw", "--json"]
    assert _kit("infer", export, "mnist", "--out", str(local), *common)[0] == 0
    code, text = _kit("infer", export, "mnist", "--out", str(ray), *common, "--engine", "ray",
                      "--actors", "2")  # fmt: skip
    assert code == 0, text
    a = sorted(read_predictions(local).to_pylist(), key=lambda r: r["index"])
    b = sorted(read_predictions(ray).to_pylist(), key=lambda r: r["index"])
    assert len(a) == len(b) == 10_000
    assert [r["top1"] for r in a] == [r["top1"] for r in b]
    np.testing.assert_allclose([r["outputs"] for r in a], [r["outputs"] for r in b],
                               rtol=1e-4, atol=1e-4)  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "actors", "batch", "row_bytes", "blocks"),
    [
        (10_000, 2, 64, 4 * 784, 9),  # 1,216 rows a block: 19 batches, 4-5 blocks an actor
        (100, 2, 64, 4 * 784, 2),  # never less than a batch a block
        (10_000, 2, 64, 4 * 3 * 224 * 224, 157),  # 64 MB of input at most: one batch each
        (10_000, 2, 16, 4 * 3 * 512 * 512, 625),
    ],
)
def test_the_ray_engine_cuts_a_few_whole_batches_a_block(
    rows: int, actors: int, batch: int, row_bytes: int, blocks: int
) -> None:
    from kit.infer_ray import _blocks

    assert _blocks(rows, actors, batch, row_bytes) == blocks


def test_a_batch_s_rows_carry_scores_or_their_error_never_both() -> None:
    from kit.infer import Item, Scoring, score_batch

    class Answers:  # three classes; the first row's answer holds a NaN
        class_names = ("a", "b", "c")
        output_names = ("y",)

        def label(self, index: int) -> str:
            return self.class_names[index]

        def predict(self, x: np.ndarray, validate: bool) -> dict[str, np.ndarray]:
            y = np.tile(np.array([[0.0, 2.0, 1.0]], np.float32), (len(x), 1))
            y[0, 1] = np.nan
            return {"y": y}

    items = [Item(i, f"{i}.png", "b") for i in range(3)]
    x = np.zeros((3, 1, 2, 2), np.float32)
    rows = score_batch(Answers(), items, x, [None, "unreadable", None], Scoring(5, True, "f00"))
    first, second, third = rows
    assert first["error"] == "the model answered with NaN or infinite values"
    assert second["error"] == "unreadable"
    for row in (first, second):
        assert row["top1"] is row["labels"] is row["scores"] is row["outputs"] is None
    assert third["error"] is None and third["labels"] == ["b", "c", "a"]  # top 5 of 3: 3
    assert third["scores"] == pytest.approx(np.exp([2.0, 1.0, 0.0]) / np.exp([2.0, 1.0, 0.0]).sum())
    assert third["outputs"] == [0.0, 2.0, 1.0] and third["model_sha256"] == "f00"
