"""kit.runtime: torch-free loading, sha256 checks, validation, classification, threads."""

from __future__ import annotations

import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import kit.runtime as kr
from kit.artifact import MODEL_FILE
from kit.runtime.preprocess import prepare_images, resize, to_channels


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys, kit.runtime\n"
        "heavy = [m for m in ('torch', 'torchvision', 'kit.export', 'onnx', 'architectures') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_load_directory_and_file(lenet_export: Path) -> None:
    model = kr.load(lenet_export)
    assert model.name == "lenet" and model.input_shape == (1, 28, 28)
    assert model.provider == "CPUExecutionProvider"
    assert model.class_names == [str(i) for i in range(10)]
    same = kr.load(lenet_export / MODEL_FILE)
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(model.predict(x)["logits"], same.predict(x)["logits"])


def test_sha256_mismatch_is_refused(lenet_export: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(lenet_export, copy)
    data = bytearray((copy / MODEL_FILE).read_bytes())
    data[-1] ^= 0xFF
    (copy / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(kr.ArtifactError, match="model.onnx does not match the sha256"):
        kr.load(copy)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(kr.ArtifactError, match="does not exist"):
        kr.load(tmp_path / "nothing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(kr.ArtifactError, match="onnxruntime cannot load"):
        kr.load(bad)


def test_predict_matches_onnxruntime(lenet_export: Path) -> None:
    import onnxruntime as ort

    model = kr.load(lenet_export)
    sess = ort.InferenceSession(str(lenet_export / MODEL_FILE), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((3, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(model.predict(x)["logits"], sess.run(None, {"input": x})[0])


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.zeros((2, 1, 28, 28), np.float64), "dtype float64; the model takes float32"),
        (np.zeros((1, 28, 28), np.float32), "has 3 dimensions"),
        (np.zeros((2, 3, 28, 28), np.float32), "Dimension 1 of the input is 3; the model takes 1"),
        (np.zeros((0, 1, 28, 28), np.float32), "batch is empty"),
        (np.full((2, 1, 28, 28), np.nan, np.float32), "holds 1568 NaN or infinite"),
        ([[0.0]], "must be a numpy array, not list"),
    ],
)
def test_predict_rejects_bad_input(lenet_export: Path, x: object, message: str) -> None:
    model = kr.load(lenet_export)
    with pytest.raises(kr.InputError, match=message):
        model.predict(x)  # type: ignore[arg-type]


def test_every_problem_is_reported_at_once(lenet_export: Path) -> None:
    model = kr.load(lenet_export)
    x = np.full((2, 2, 27, 28), np.inf, np.float64)
    with pytest.raises(kr.InputError) as info:
        model.predict(x)  # type: ignore[arg-type]
    text = str(info.value)
    assert (
        "float64" in text and "Dimension 1" in text and "Dimension 2" in text and "infinite" in text
    )


def test_inf_hidden_in_a_large_finite_sum_is_caught(lenet_export: Path) -> None:
    model = kr.load(lenet_export)
    x = np.zeros((1, 1, 28, 28), np.float32)
    x[0, 0, 0, 0] = np.inf
    x[0, 0, 0, 1] = -np.inf  # inf + -inf = nan, but also a single inf must be caught
    with pytest.raises(kr.InputError, match="infinite"):
        model.predict(x)
    y = np.full((1, 1, 28, 28), 3e38, np.float32)  # the sum overflows, the values are finite
    assert model.predict(y)["logits"].shape == (1, 10)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("batch", [1, 3, 12])  # 12 x 784 values take the large-input path
def test_one_bad_value_anywhere_is_caught(lenet_export: Path, bad: float, batch: int) -> None:
    # Every position of the first and the last sample must count.
    model = kr.load(lenet_export)
    x = np.random.default_rng(4).standard_normal((batch, 1, 28, 28), dtype=np.float32) * 1e37
    model.predict(x)  # huge but finite values pass
    for sample in sorted({0, batch - 1}):
        for i in range(28 * 28):
            y = x.copy()
            y[sample, 0, i // 28, i % 28] = bad
            with pytest.raises(kr.InputError, match="holds 1 NaN or infinite"):
                model.predict(y)
    strided = np.repeat(x, 2, axis=3)[..., ::2]  # not contiguous
    strided[-1, 0, 5, 5] = bad
    with pytest.raises(kr.InputError, match="holds 1 NaN"):
        model.predict(strided)


def test_io_binding_gives_the_same_result(lenet_export: Path) -> None:
    plain = kr.load(lenet_export)
    bound = kr.load(lenet_export, io_binding=True)
    x = np.random.default_rng(2).standard_normal((5, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(plain.predict(x)["logits"], bound.predict(x)["logits"])


def test_validate_false_skips_only_the_check(lenet_export: Path) -> None:
    model = kr.load(lenet_export)
    x = np.random.default_rng(7).standard_normal((2, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(
        model.predict(x, validate=False)["logits"], model.predict(x)["logits"]
    )
    x[1, 0, 0, 0] = np.nan
    with pytest.raises(kr.InputError, match="NaN"):
        model.predict(x)
    out = model.predict(x, validate=False)["logits"]  # the caller vouched for it: it runs
    assert out.shape == (2, 10) and np.isfinite(out[0]).all()


def test_thread_safety(lenet_export: Path) -> None:
    model = kr.load(lenet_export, threads=1)
    rng = np.random.default_rng(3)
    inputs = [rng.standard_normal((b % 4 + 1, 1, 28, 28), dtype=np.float32) for b in range(64)]
    expected = [model.predict(x)["logits"] for x in inputs]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda x: model.predict(x)["logits"], inputs))
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(e, g)


def test_preprocess_modes_and_sizes() -> None:
    gray = np.zeros((56, 56), np.uint8)
    gray[10:40, 20:30] = 255
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full((56, 56, 1), 255, np.uint8)], axis=2)
    out = prepare_images([gray, rgb, rgba], (1, 28, 28), [0.5], [0.5])
    assert out.shape == (3, 1, 28, 28) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], out[1], atol=1e-4)
    np.testing.assert_allclose(out[0], out[2], atol=1e-4)
    assert out.min() == pytest.approx(-1.0) and out.max() == pytest.approx(1.0)
    assert prepare_images(gray, (3, 20, 30), [0, 0, 0], [1, 1, 1]).shape == (1, 3, 20, 30)


def test_resize_preserves_constant_and_mean() -> None:
    img = np.full((100, 80, 1), 7.0, np.float32)
    np.testing.assert_allclose(resize(img, 28, 28), 7.0, rtol=1e-5)
    ramp = np.tile(np.arange(64, dtype=np.float32)[None, :, None], (64, 1, 1))
    assert resize(ramp, 16, 16).mean() == pytest.approx(ramp.mean(), rel=1e-3)


def test_bad_images() -> None:
    with pytest.raises(kr.InputError, match="uint8"):
        prepare_images([np.zeros((5, 5), np.float32)], (1, 28, 28), [0], [1])
    with pytest.raises(kr.InputError, match="HxWx3"):
        to_channels(np.zeros((5, 5, 2), np.uint8), 1)
    with pytest.raises(kr.InputError, match="empty"):
        prepare_images([np.zeros((0, 5), np.uint8)], (1, 28, 28), [0], [1])


def test_shipped_model_classifies_real_digits(shipped_mnist_cnn: Path, mnist_dir: Path) -> None:
    from kit.data import read_idx

    images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[:200]
    labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")[:200]
    model = kr.load(shipped_mnist_cnn)
    preds = model.classify(list(images), top_k=3)
    top1 = np.array([int(p[0].label) for p in preds])
    assert (top1 == labels).mean() >= 0.98
    assert all(
        len(p) == 3 and p[0].probability >= p[1].probability >= p[2].probability for p in preds
    )
    # a digit scaled up and given colour still reads the same
    big = np.kron(images[0], np.ones((4, 4), np.uint8))
    coloured = np.stack([big, big, big, np.full_like(big, 255)], axis=2)
    assert model.classify(coloured)[0][0].label == str(labels[0])
