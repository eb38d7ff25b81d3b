"""Datasets for training and evaluation.

``mnist`` reads the standard IDX files (gzip-compressed or raw) into memory, from the copy
bundled with kit (the official 10k test set and 5k training digits) unless a directory is
named; ``imagefolder``, ``cifar10`` and ``fake`` come from torchvision. Resizing and normalisation follow the
network's facts in the registry, the same facts export writes into the ONNX metadata, so the
runtime preprocesses exactly as training did.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from architectures import ModelSpec

from .artifact import DATASETS
from .errors import DataError, UsageError

__all__ = [
    "BUNDLED_MNIST",
    "DATASETS",
    "DataBundle",
    "DataChoice",
    "RawSamples",
    "arrays",
    "calibration_sets",
    "channel_stats",
    "choose_data",
    "data_channels",
    "default_data_dir",
    "load_dataset",
    "parity_samples",
    "raw_test_images",
    "read_idx",
    "real_samples",
]

DATA_DIR_ENV = "KIT_DATA_DIR"
#: Real MNIST shipped inside the package (provenance and licence in its README.md).
BUNDLED_MNIST = Path(__file__).with_name("sample_data") / "mnist"

_IDX_DTYPES: dict[int, Any] = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_MNIST_HELP = (
    "expected t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz] and either "
    "train-images-idx3-ubyte[.gz]/train-labels-idx1-ubyte[.gz] or "
    "train5k-images-idx3-ubyte[.gz]/train5k-labels-idx1-ubyte[.gz]; get them from "
    "https://yann.lecun.com/exdb/mnist/, or leave out --data-dir to use the copy bundled with "
    "kit"
)


@dataclass
class DataBundle:
    """A train and a test split, plus what a report should say about them."""

    train: Dataset
    test: Dataset
    name: str
    num_classes: int
    description: str
    #: the data's own name for each class (an ImageFolder's folder names), when it has them
    class_names: tuple[str, ...] = ()


def default_data_dir() -> Path | None:
    """The data directory from ``$KIT_DATA_DIR``, if set."""
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value) if value else None


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzip-compressed when its name ends in ``.gz``).

    Raises:
        DataError: the file is unreadable, has a bad magic number or is truncated.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as exc:
        raise DataError(f"Cannot read {path}: {exc}.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path} is truncated: its header is incomplete.")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path} is truncated or padded: its header promises {expected} bytes of data "
            f"for shape {dims}, the file holds {len(raw) - header}."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _find(data_dir: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def _mnist_split(data_dir: Path, prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
    images = _find(data_dir, f"{prefix}-images-idx3-ubyte")
    labels = _find(data_dir, f"{prefix}-labels-idx1-ubyte")
    if images is None or labels is None:
        return None
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or y.ndim != 1:
        raise DataError(f"{images} must hold N x H x W images and {labels} N labels.")
    if len(x) != len(y):
        raise DataError(
            f"{images.name} holds {len(x)} images but {labels.name} holds {len(y)} labels."
        )
    return x, y


def load_mnist(data_dir: Path, spec: ModelSpec) -> DataBundle:
    """MNIST from IDX files in ``data_dir`` as in-memory tensors, normalised for ``spec``.

    The full ``train-*`` files are used when present, else the ``train5k-*`` subset.
    """
    if not data_dir.is_dir():
        raise DataError(f"MNIST data directory {data_dir} does not exist; {_MNIST_HELP}.")
    if spec.input_shape[0] != 1:
        raise DataError(
            f"MNIST is 1-channel but {spec.name} takes {spec.input_shape}; "
            "use --dataset imagefolder, cifar10 or fake."
        )
    test = _mnist_split(data_dir, "t10k")
    train = _mnist_split(data_dir, "train") or _mnist_split(data_dir, "train5k")
    if test is None or train is None:
        raise DataError(f"MNIST files are missing in {data_dir}; {_MNIST_HELP}.")

    def to_tensors(x: np.ndarray, y: np.ndarray) -> TensorDataset:
        images = torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)
        images = _resize(images, spec.input_shape[1:])
        images = (images - spec.mean[0]) / spec.std[0]
        return TensorDataset(images, torch.from_numpy(y.astype(np.int64)))

    return DataBundle(
        train=to_tensors(*train),
        test=to_tensors(*test),
        name="mnist",
        num_classes=10,
        description=f"MNIST from {_where(data_dir)}: {len(train[1])} training, "
        f"{len(test[1])} test images",
        class_names=tuple(str(i) for i in range(10)),
    )


def _where(data_dir: Path) -> str:
    return "the copy bundled with kit" if data_dir == BUNDLED_MNIST else str(data_dir)


def _resize(images: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return torch.nn.functional.interpolate(
        images, size=tuple(size), mode="bilinear", antialias=True
    )


def _torchvision_transform(spec: ModelSpec):  # type: ignore[no-untyped-def]
    from torchvision import transforms

    steps = [transforms.Resize(tuple(spec.input_shape[1:]))]
    if spec.input_shape[0] == 1:
        steps.append(transforms.Grayscale(1))
    steps += [transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)]
    return transforms.Compose(steps)


def load_dataset(
    name: str,
    spec: ModelSpec,
    *,
    data_dir: Path | None = None,
    download: bool = False,
    num_classes: int | None = None,
    fake_size: int = 256,
) -> DataBundle:
    """Load dataset ``name`` preprocessed for the network ``spec``.

    Args:
        name: One of ``DATASETS``.
        spec: The network's facts (input shape, mean, std).
        data_dir: Where the files are (``$KIT_DATA_DIR`` when None; for ``mnist``, the
            copy bundled with kit when that is unset too).
        download: Let torchvision fetch MNIST or CIFAR-10 into ``data_dir``.
        num_classes: Classes for ``fake`` data (the network's default when None).
        fake_size: Training images in ``fake`` data (the test split is a quarter of it).

    Raises:
        DataError: unknown dataset, missing or corrupt files.
    """
    data_dir = data_dir or default_data_dir()
    if name == "fake":
        return _fake(spec, num_classes or spec.num_classes, fake_size)
    if name == "mnist" and data_dir is None and not download:
        data_dir = BUNDLED_MNIST
    if name not in DATASETS:
        raise DataError(f"Unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}.")
    if data_dir is None:
        raise DataError(f"Dataset {name!r} needs --data-dir (or ${DATA_DIR_ENV}).")
    if name == "mnist":
        if download:
            from torchvision.datasets import MNIST

            MNIST(str(data_dir), download=True)
            data_dir = data_dir / "MNIST" / "raw"
        return load_mnist(data_dir, spec)
    if name == "cifar10":
        return _cifar10(data_dir, spec, download)
    return _imagefolder(data_dir, spec)


def _fake(spec: ModelSpec, n: int, size: int) -> DataBundle:
    from torchvision.datasets import FakeData

    tf = _torchvision_transform(spec)
    shape = tuple(spec.input_shape)
    return DataBundle(
        train=FakeData(size, shape, n, transform=tf, random_offset=0),
        test=FakeData(max(size // 4, 1), shape, n, transform=tf, random_offset=10_000),
        name="fake",
        num_classes=n,
        description=f"torchvision FakeData: {size} random {shape} images",
    )


def _cifar10(data_dir: Path, spec: ModelSpec, download: bool) -> DataBundle:
    from torchvision.datasets import CIFAR10

    tf = _torchvision_transform(spec)
    try:
        train = CIFAR10(str(data_dir), train=True, transform=tf, download=download)
        test = CIFAR10(str(data_dir), train=False, transform=tf, download=download)
    except RuntimeError as exc:
        raise DataError(
            f"CIFAR-10 not found in {data_dir} ({exc}); get it from https://www.cs.toronto.edu/~kriz/cifar.html."
        ) from None
    return DataBundle(train, test, "cifar10", 10, f"CIFAR-10 from {data_dir}", tuple(train.classes))


def _imagefolder(data_dir: Path, spec: ModelSpec) -> DataBundle:
    from torchvision.datasets import ImageFolder

    tf = _torchvision_transform(spec)
    splits = []
    for split in ("train", "val"):
        root = data_dir / split
        if not root.is_dir():
            raise DataError(
                f"ImageFolder data needs {data_dir}/train/<class>/*.jpg and "
                f"{data_dir}/val/<class>/*.jpg; {root} does not exist."
            )
        try:
            splits.append(ImageFolder(str(root), transform=tf))
        except (FileNotFoundError, RuntimeError) as exc:
            raise DataError(f"Cannot read image folder {root}: {exc}.") from None
    train_ds, test_ds = splits
    return DataBundle(
        train_ds,
        test_ds,
        "imagefolder",
        len(train_ds.classes),
        f"ImageFolder {data_dir}: {len(train_ds)} training, {len(test_ds)} val images",
        tuple(train_ds.classes),
    )


@dataclass(frozen=True)
class DataChoice:
    """Which data a command reads: a data set kit knows, where it lives (None: the copy
    bundled with kit for MNIST, else ``$KIT_DATA_DIR``), and who said so."""

    dataset: str
    data_dir: Path | None = None
    said_by: str = "the network's recipe"

    @property
    def has_files(self) -> bool:
        """Whether there are real images to read (MNIST is bundled; ``fake`` has none)."""
        if self.dataset == "fake":
            return False
        return self.dataset == "mnist" or (self.data_dir or default_data_dir()) is not None

    def args(self) -> list[str]:
        """The ``--dataset``/``--data-dir`` that choose this data again."""
        found = ["--dataset", self.dataset]
        return found + (["--data-dir", str(self.data_dir)] if self.data_dir else [])

    def describe(self) -> str:
        where = f" in {self.data_dir}" if self.data_dir else ""
        return f"{self.dataset}{where} ({self.said_by})"


def choose_data(
    spec: ModelSpec,
    *,
    dataset: str | None = None,
    data_dir: Path | None = None,
    recorded: Any = None,
) -> DataChoice:
    """The data a command reads: what the user named (``--dataset``, ``--data-dir``, or
    ``$KIT_DATA_DIR``), else what the export's manifest ``recorded`` (its ``model.data``:
    the data the model was trained and validated on), else the network's recipe.

    Raises:
        UsageError: an unknown data set.
    """
    if dataset is not None and dataset not in DATASETS:
        raise UsageError(f"Unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}.")
    data_dir = data_dir or default_data_dir()
    if (
        recorded is not None
        and recorded.dataset in DATASETS
        and dataset in (None, recorded.dataset)
    ):
        place = data_dir or (Path(recorded.directory) if recorded.directory else None)
        said = "--data-dir" if data_dir else "the manifest"
        return DataChoice(recorded.dataset, place, said)
    if dataset is not None:
        return DataChoice(dataset, data_dir, "--dataset")
    said = "--data-dir" if data_dir else "the network's recipe"
    name = spec.recipe.dataset
    if name == "fake" and data_dir is not None:
        name = "imagefolder"  # a folder of the user's images, for a network with no data
    return DataChoice(name, data_dir, said)


def real_samples(
    spec: ModelSpec, choice: DataChoice, *, count: int = 256
) -> tuple[str, torch.Tensor]:
    """The first ``count`` test samples of the data ``choice`` names.

    Returns:
        ``(label, batch)`` for :func:`kit.parity.run_parity`.
    """
    bundle = load_dataset(choice.dataset, spec, data_dir=choice.data_dir)
    n = min(count, len(bundle.test))  # type: ignore[arg-type]
    if isinstance(bundle.test, TensorDataset):
        batch = bundle.test.tensors[0][:n]
    else:
        batch = torch.stack([bundle.test[i][0] for i in range(n)])
    return f"{choice.dataset} test b={n}", batch.contiguous()


def parity_samples(
    spec: ModelSpec, choice: DataChoice, count: int = 256
) -> tuple[str, torch.Tensor] | None:
    """Real test samples for parity from the data ``choice`` names; None when it has none."""
    if not choice.has_files:
        return None
    return real_samples(spec, choice, count=count)


def calibration_sets(
    spec: Any,
    *,
    choice: DataChoice,
    size: int,
    random: bool,
    seed: int = 0,
) -> tuple[tuple[str, np.ndarray], tuple[str, np.ndarray, np.ndarray | None]]:
    """``(calibration, held_out)`` for ``spec``: training samples and the labelled test split
    of the data ``choice`` names, or seeded random inputs when ``random`` (accuracy then
    unverified).

    Raises:
        UsageError: no real data to calibrate on and ``random`` not asked for.
        DataError: the data set is missing or does not fit the network.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(spec.input_shape)
    if random:
        calibration = rng.standard_normal((size, *shape), dtype=np.float32)
        held_out = rng.standard_normal((256, *shape), dtype=np.float32)
        return (f"{size} random normal inputs (accuracy unverified)", calibration), (
            "256 random normal inputs (top-1 agreement only)",
            held_out,
            None,
        )
    if not choice.has_files:
        raise UsageError(
            f"{spec.name} has no training data to calibrate on: pass --dataset and --data-dir, "
            "or --random-calibration to accept an unverified accuracy."
        )
    name = choice.dataset
    data = load_dataset(name, spec, data_dir=choice.data_dir)
    train_x, _ = arrays(data.train, rng.permutation(len(data.train))[:size])  # type: ignore[arg-type]
    test_x, test_y = arrays(data.test)
    return (f"{len(train_x)} {name} training samples", train_x), (
        f"{len(test_x)} {name} test samples",
        test_x,
        test_y,
    )


def arrays(dataset: Any, index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Samples ``index`` (default: all) of a dataset as float32 images and int labels."""
    if index is None:
        index = np.arange(len(dataset))
    if isinstance(dataset, TensorDataset):
        images, labels = dataset.tensors
        i = torch.from_numpy(index)
        return images[i].numpy().astype(np.float32), labels[i].numpy()
    pairs = [dataset[int(j)] for j in index]
    return (
        np.stack([np.asarray(p[0], dtype=np.float32) for p in pairs]),
        np.asarray([int(p[1]) for p in pairs]),
    )


@dataclass
class RawSamples:
    """Test images as their files hold them (uint8, before any preprocessing), their labels,
    and the indexes of the same samples in :func:`load_dataset`'s test split."""

    images: list[np.ndarray]
    labels: np.ndarray
    index: np.ndarray
    description: str


def _spread(total: int, count: int) -> np.ndarray:
    """``count`` indexes spread evenly over ``total`` (every class of a sorted folder)."""
    n = min(total, count)
    return np.unique(np.linspace(0, total - 1, n).round().astype(np.int64))


def raw_test_images(name: str, data_dir: Path | None, *, count: int = 512) -> RawSamples | None:
    """Up to ``count`` test images of data set ``name`` as their files hold them, for the
    whole-pipeline check (None for data with no files: ``fake``).

    Raises:
        DataError: the data set is missing or unreadable.
    """
    data_dir = data_dir or default_data_dir()
    if name == "mnist":
        folder = data_dir or BUNDLED_MNIST
        split = _mnist_split(folder, "t10k")
        if split is None:
            raise DataError(f"MNIST files are missing in {folder}; {_MNIST_HELP}.")
        index = _spread(len(split[1]), count)
        images = [split[0][i] for i in index]
        return RawSamples(
            images, split[1][index].astype(np.int64), index, f"MNIST test ({_where(folder)})"
        )
    if name == "cifar10" and data_dir is not None:
        from torchvision.datasets import CIFAR10

        test = CIFAR10(str(data_dir), train=False)
        index = _spread(len(test.targets), count)
        labels = np.asarray(test.targets)[index]
        return RawSamples([test.data[i] for i in index], labels, index, f"CIFAR-10 {data_dir}")
    if name == "imagefolder" and data_dir is not None:
        return _raw_folder(data_dir / "val", count)
    return None


def _raw_folder(root: Path, count: int) -> RawSamples:
    from torchvision.datasets import ImageFolder

    from .runtime.images import read_image

    try:
        samples = ImageFolder(str(root)).samples
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"Cannot read image folder {root}: {exc}.") from None
    index = _spread(len(samples), count)
    images = [read_image(Path(samples[i][0])) for i in index]
    labels = np.asarray([samples[i][1] for i in index], dtype=np.int64)
    return RawSamples(images, labels, index, f"ImageFolder {root}")


def data_channels(name: str, data_dir: Path | None) -> int | None:
    """How many channels a data set's images have (1 grey, 3 colour; None: any, or unknown)."""
    if name == "mnist":
        return 1
    if name == "cifar10":
        return 3
    data_dir = data_dir or default_data_dir()
    if name != "imagefolder" or data_dir is None or not (data_dir / "train").is_dir():
        return None
    from PIL import Image

    for path in sorted((data_dir / "train").rglob("*")):
        if path.is_file():
            try:
                with Image.open(path) as img:
                    return 1 if img.mode in ("1", "L", "I", "I;16", "LA") else 3
            except OSError:
                continue
    return None


def channel_stats(
    name: str, spec: ModelSpec, data_dir: Path | None, *, count: int = 2000
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of up to ``count`` training images of ``name`` (pixels in
    [0, 1], at the network's input size), as a user's network is normalised by default.

    Raises:
        DataError: the data set is missing or unreadable.
    """
    from dataclasses import replace

    plain = replace(spec, mean=(0.0,) * spec.input_shape[0], std=(1.0,) * spec.input_shape[0])
    bundle = load_dataset(name, plain, data_dir=data_dir)
    x, _ = arrays(bundle.train, _spread(len(bundle.train), count))  # type: ignore[arg-type]
    flat = x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1).astype(np.float64)
    mean = tuple(round(float(v), 4) for v in flat.mean(axis=1))
    std = tuple(round(max(float(v), 1e-3), 4) for v in flat.std(axis=1))
    return mean, std
