"""Reading MNIST IDX files, and each way a data set can be wrong."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from architectures import get_spec
from kit.data import load_dataset, read_idx
from kit.errors import DataError


def write_idx(
    path: Path, array: np.ndarray, *, magic_type: int = 0x08, compress: bool = True
) -> Path:
    header = struct.pack(">BBBB", 0, 0, magic_type, array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    raw = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def test_real_mnist_loads_with_official_counts(mnist_dir: Path) -> None:
    data = load_dataset("mnist", get_spec("mnist_cnn"), data_dir=mnist_dir)
    x_test, y_test = data.test.tensors  # type: ignore[attr-defined]
    x_train, y_train = data.train.tensors  # type: ignore[attr-defined]
    assert x_test.shape == (10_000, 1, 28, 28) and x_train.shape == (5_000, 1, 28, 28)
    counts = torch.bincount(y_test, minlength=10).tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert torch.bincount(y_train).tolist() == [500] * 10
    # normalised with the registry's mean/std: the background is (0 - mean) / std
    assert float(x_test.min()) == pytest.approx(-0.1307 / 0.3081, rel=1e-5)


def test_raw_and_gz_files_read_the_same(tmp_path: Path) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    a = read_idx(write_idx(tmp_path / "a", arr))
    b = read_idx(write_idx(tmp_path / "b", arr, compress=False))
    assert np.array_equal(a, arr) and np.array_equal(b, arr)


def test_bad_magic_number(tmp_path: Path) -> None:
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(b"\x12\x34\x08\x03" + b"\x00" * 20)
    with pytest.raises(DataError, match="bad magic number"):
        read_idx(path)


def test_truncated_file(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x", np.zeros((4, 28, 28), np.uint8), compress=False)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="Cannot read"):
        read_idx(path)


def _mnist_files(root: Path, n_train: int, n_train_labels: int) -> Path:
    root.mkdir()
    write_idx(root / "t10k-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8))
    write_idx(root / "t10k-labels-idx1-ubyte", np.zeros(5, np.uint8))
    write_idx(root / "train5k-images-idx3-ubyte", np.zeros((n_train, 28, 28), np.uint8))
    write_idx(root / "train5k-labels-idx1-ubyte", np.zeros(n_train_labels, np.uint8))
    return root


def test_label_and_image_counts_must_match(tmp_path: Path) -> None:
    root = _mnist_files(tmp_path / "m", 6, 5)
    with pytest.raises(DataError, match="holds 6 images but .* holds 5 labels"):
        load_dataset("mnist", get_spec("lenet"), data_dir=root)


def test_missing_directory_lists_expected_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist; expected t10k-images-idx3-ubyte"):
        load_dataset("mnist", get_spec("lenet"), data_dir=tmp_path / "nowhere")


def test_missing_files_list_expected_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="files are missing .* train5k-images-idx3-ubyte"):
        load_dataset("mnist", get_spec("lenet"), data_dir=tmp_path / "empty")


def test_mnist_refuses_rgb_networks(mnist_dir: Path) -> None:
    with pytest.raises(DataError, match="1-channel"):
        load_dataset("mnist", get_spec("alexnet"), data_dir=mnist_dir)


def test_unknown_dataset() -> None:
    with pytest.raises(DataError, match="choose one of: mnist, imagefolder, cifar10, fake"):
        load_dataset("svhn", get_spec("lenet"), data_dir=Path("."))


def test_fake_data_matches_the_network() -> None:
    data = load_dataset("fake", get_spec("alexnet"), fake_size=8, num_classes=5)
    x, y = data.train[0]
    assert x.shape == (3, 224, 224) and 0 <= y < 5 and data.num_classes == 5


def test_imagefolder_reads_a_tree(tmp_path: Path) -> None:
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            Image.fromarray(np.full((40, 30, 3), 100, np.uint8)).save(folder / "a.png")
    data = load_dataset("imagefolder", get_spec("vgg11"), data_dir=tmp_path)
    x, y = data.test[1]
    assert x.shape == (3, 224, 224) and y == 1 and data.num_classes == 2


def test_imagefolder_without_splits(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="train/<class>"):
        load_dataset("imagefolder", get_spec("vgg11"), data_dir=tmp_path)
