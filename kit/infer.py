"""Batch inference: an export scores a folder of images, an ImageFolder, a table of paths or
the bundled MNIST into Parquet, every row accounted for.

The inputs are listed once, in a fixed order, and cut into parts of ``part_rows`` rows; each
part is scored and written to ``OUT/part-NNNNN.parquet`` through a temporary name and a
rename, so a part is there whole or not at all. ``resume`` scores only the parts not yet
written; after a kill and a resume every input appears exactly once. An image that cannot
be read is a row with its error, never a dead job. Before the first row, the model proves
itself against the reference data inside the export (``self_check``). Where the rows are
scored is an engine's business: this process (``local``) or a Ray cluster (:mod:`kit.infer_ray`).
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, UsageError
from .runtime.images import IMAGE_SUFFIXES

__all__ = [
    "Item",
    "Job",
    "Scoring",
    "Source",
    "Summary",
    "decode_batch",
    "list_source",
    "run_local",
    "score_batch",
]

#: what marks the output folder as kit's (and records the job it holds)
JOB_FILE = "_kit_infer.json"
_MNIST = "mnist"


@dataclass(frozen=True)
class Item:
    """One input: its row number in the job, where it is, and its true label when known."""

    index: int
    path: str
    label: str | None = None


@dataclass
class Source:
    """The listed inputs and how they were read."""

    items: list[Item]
    kind: str  # folder, imagefolder, table, mnist
    #: the bundled MNIST's images, indexed by an item's number (no file to decode)
    arrays: np.ndarray | None = None


@dataclass
class Summary:
    """Rows in, rows predicted, rows with an error: they must balance."""

    rows: int
    predicted: int = 0
    errors: int = 0
    skipped_parts: int = 0
    correct: int = 0
    labelled: int = 0
    per_class: dict[str, list[int]] = field(default_factory=dict)  # label -> [right, total]

    @property
    def balanced(self) -> bool:
        return self.predicted + self.errors == self.rows

    def add(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if row["error"] is not None:
                self.errors += 1
                continue
            self.predicted += 1
            if row["label"] is not None:
                right = row["label"] == row["top1"]
                self.labelled += 1
                self.correct += right
                cell = self.per_class.setdefault(row["label"], [0, 0])
                cell[0] += right
                cell[1] += 1


def _images_in(folder: Path) -> list[Path]:
    """Every entry named like an image (a link or a pipe among them is a row whose error
    says so: listed, never opened)."""
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [p for p in found if p.is_symlink() or not p.is_dir()]


def _folder(folder: Path, class_names: Sequence[str]) -> Source:
    """A folder's images, recursively; an ImageFolder (every image one level down, in a
    folder named after one of the model's classes) gives each its folder's name as label."""
    files = _images_in(folder)
    if not files:
        raise UsageError(f"{folder} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
    parents = {p.parent.relative_to(folder) for p in files}
    classes = set(class_names)
    image_folder = all(len(d.parts) == 1 and d.parts[0] in classes for d in parents)
    items = [Item(i, str(p), p.parent.name if image_folder else None) for i, p in enumerate(files)]
    return Source(items, "imagefolder" if image_folder else "folder")


def _table(path: Path, path_column: str, label_column: str | None) -> Source:
    """A CSV or Parquet table naming one image per row (paths relative to the table)."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path) if path.suffix == ".parquet" else pcsv.read_csv(path)
    except Exception as exc:  # pyarrow's own types for a file it cannot parse
        raise UsageError(f"Cannot read {path} as a table: {str(exc).splitlines()[0]}.") from None
    for column in filter(None, (path_column, label_column)):
        if column not in table.column_names:
            have = ", ".join(table.column_names)
            raise UsageError(f"{path} has no column {column!r} (it has {have}).")
    paths = table.column(path_column).to_pylist()
    labels = table.column(label_column).to_pylist() if label_column else [None] * len(paths)
    items = [
        Item(i, str(path.parent / str(p)), None if lab is None else str(lab))
        for i, (p, lab) in enumerate(zip(paths, labels, strict=True))
    ]
    return Source(items, "table")


def _mnist(class_names: Sequence[str]) -> Source:
    """The bundled MNIST test set (or ``$KIT_DATA_DIR``'s), as its files hold it, labelled
    with the model's class names."""
    from .data import raw_test_images

    raw = raw_test_images(_MNIST, None, count=1 << 30)
    assert raw is not None
    name = list(class_names) if len(class_names) == 10 else [str(d) for d in range(10)]
    items = [Item(i, f"mnist-test/{int(n):05d}", name[int(y)])
             for i, (n, y) in enumerate(zip(raw.index, raw.labels, strict=True))]  # fmt: skip
    return Source(items, _MNIST, arrays=np.stack(raw.images))


def list_source(
    source: str,
    class_names: Sequence[str],
    *,
    path_column: str = "path",
    label_column: str | None = None,
) -> Source:
    """The inputs ``source`` names, in a fixed order.

    Raises:
        UsageError: no such source, no images in it, or a table without the column.
    """
    if source == _MNIST:
        return _mnist(class_names)
    path = Path(source)
    if path.is_dir():
        return _folder(path, class_names)
    if path.is_file() and path.suffix in (".csv", ".parquet"):
        return _table(path, path_column, label_column)
    raise UsageError(
        f"{source} is not a folder of images, a .csv or .parquet table of paths, or 'mnist'."
    )


@dataclass(frozen=True)
class Scoring:
    """How rows are scored: the top ``top_k`` classes, the raw outputs too when ``raw``,
    each row stamped with the model file's sha256."""

    top_k: int = 5
    raw: bool = False
    sha256: str | None = None


def _row(item: Item, sha256: str | None, error: str | None) -> dict[str, Any]:
    return {
        "index": item.index,
        "path": item.path,
        "label": item.label,
        "top1": None,
        "labels": None,
        "scores": None,
        "outputs": None,
        "model_sha256": sha256,
        "error": error,
    }


def _tops(model: Any, logits: np.ndarray, how: Scoring) -> list[dict[str, Any]]:
    """Each row's top-k labels and softmax scores (and raw outputs), the batch at once."""
    z = logits.astype(np.float64)
    finite: list[bool] = np.asarray(np.isfinite(z).all(axis=1)).tolist()
    z = np.where(np.asarray(finite)[:, None], z, 0.0)
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    k = max(1, min(how.top_k, probs.shape[1]))
    best = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    names = np.array([model.label(i) for i in range(probs.shape[1])], dtype=object)
    labels, scores = names[best].tolist(), np.take_along_axis(probs, best, axis=1).tolist()
    outputs = logits.astype(np.float64).tolist() if how.raw else [None] * len(finite)
    return [
        {"top1": top[0], "labels": top, "scores": score, "outputs": raw}
        if ok
        else {"error": "the model answered with NaN or infinite values"}
        for top, score, raw, ok in zip(labels, scores, outputs, finite, strict=True)
    ]


# -- the output: parts written whole or not at all ---------------------------------------------


def _part_name(number: int) -> str:
    return f"part-{number:05d}.parquet"


@dataclass(frozen=True)
class Job:
    """Where the parts go, how the inputs are cut into them, and what is already done."""

    out: Path
    part_rows: int
    parts: int

    def part_items(self, items: Sequence[Item], number: int) -> Sequence[Item]:
        return items[number * self.part_rows : (number + 1) * self.part_rows]

    def done(self, number: int) -> bool:
        return (self.out / _part_name(number)).is_file()

    def write(self, number: int, rows: list[dict[str, Any]]) -> None:
        """Write one part through a temporary name: it is there whole or not at all."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(rows, schema=_schema())
        final = self.out / _part_name(number)
        staging = self.out / f".{final.name}.{os.getpid()}.tmp"
        pq.write_table(table, staging)
        os.replace(staging, final)


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("index", pa.int64()),
            ("path", pa.string()),
            ("label", pa.string()),
            ("top1", pa.string()),
            ("labels", pa.list_(pa.string())),
            ("scores", pa.list_(pa.float64())),
            ("outputs", pa.list_(pa.float64())),
            ("model_sha256", pa.string()),
            ("error", pa.string()),
        ]
    )


def open_job(
    out: Path, export: Path, source: str, rows: int, part_rows: int, *, resume: bool, force: bool
) -> Job:
    """The output folder for this job: new, resumed (the same job), or replaced (``force``).

    Raises:
        UsageError: it holds another job's output, or this job's without --resume/--force.
    """
    import shutil

    record = {
        "export": str(export.resolve()),
        "source": source,
        "rows": rows,
        "part_rows": part_rows,
    }
    marker = out / JOB_FILE
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; --out names a folder for the predictions' parts.")
    if out.exists() and not marker.is_file() and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not a kit infer output; pick another --out.")
    if marker.is_file():
        if resume:
            if json.loads(marker.read_text()) != record:
                raise UsageError(
                    f"{out} holds the output of another job (export, source or --part-rows "
                    "differ); resume with the same ones, or pass --force to replace it."
                )
        elif force:
            shutil.rmtree(out)
        else:
            raise UsageError(
                f"{out} already holds predictions; --resume scores the rows not yet written, "
                "--force replaces them."
            )
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".part-*.tmp"):  # what a killed job left half-written
        stale.unlink()
    marker.write_text(json.dumps(record))
    return Job(out, part_rows, -(-rows // part_rows))


def run_local(
    model: Any,
    source: Source,
    job: Job,
    how: Scoring,
    *,
    batch_size: int = 64,
    max_pixels: int,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Score every part not yet written, in this process: ``workers`` threads each read,
    decode and score one batch at a time, so that one's Python work overlaps another's
    inference (onnxruntime's run and libspng's decoding leave the interpreter lock). Give
    it a model whose session runs a batch on one thread (``load(threads=1)``): threads
    that each own a core beat one run spread over every core, with decoding taking cores
    away from it. Returns how many parts were already written."""
    from concurrent.futures import ThreadPoolExecutor

    todo = [n for n in range(job.parts) if not job.done(n)]
    facts = (model.facts.input_shape, model.facts.mean, model.facts.std)

    def scored(batch: Sequence[Item]) -> list[dict[str, Any]]:
        x, errors = decode_batch(*_decode_args(batch, source, facts, max_pixels))
        return score_batch(model, batch, x, errors, how)

    parts = {n: job.part_items(source.items, n) for n in todo}
    work = ((n, b) for n, items in parts.items() for b in _batches(items, batch_size))
    rows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kit-infer") as pool:
        for (number, batch), found in _in_order(pool, scored, work, 2 * workers):
            rows += found
            if progress is not None:
                progress(len(batch))
            if len(rows) == len(parts[number]):  # the part's last batch
                job.write(number, rows)
                rows = []
    return job.parts - len(todo)


def _decode_args(
    batch: Sequence[Item], source: Source, facts: tuple[Any, Any, Any], max_pixels: int
) -> tuple[Any, ...]:
    arrays = None if source.arrays is None else source.arrays[[i.index for i in batch]]
    return ([i.path for i in batch], arrays, facts, max_pixels)


def decode_batch(
    paths: list[str], arrays: np.ndarray | None, facts: tuple[Any, Any, Any], max_pixels: int
) -> tuple[np.ndarray, list[str | None]]:
    """A batch's images read and preprocessed as the model was trained: the model's input
    (zeros for an image that could not be read) and each row's error. Images already at the
    model's size and channels are normalised together, the others one by one (the same
    arithmetic as ``prepare_images``)."""
    from .runtime.preprocess import prepare_images

    shape, mean, std = facts
    c, h, w = (int(v) for v in shape)
    x = np.zeros((len(paths), c, h, w), np.float32)
    errors: list[str | None] = []
    ready: list[int] = []
    native = (h, w) if c == 1 else (h, w, c)
    for i, path in enumerate(paths):
        image = arrays[i] if arrays is not None else _read(path, (h, w), max_pixels)
        if isinstance(image, str):
            errors.append(image)
            continue
        errors.append(None)
        if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.shape == native:
            ready.append(i)
            x[i] = _as_chw(image, c)  # raw pixels for now, normalised below with the rest
            continue
        try:
            x[i] = prepare_images([image], shape, mean, std)[0]
        except InputError as exc:
            errors[i] = str(exc)
    if ready:
        m = np.asarray(mean, dtype=np.float32)[:, None, None]
        s = np.asarray(std, dtype=np.float32)[:, None, None]
        x[ready] = (x[ready] / 255.0 - m) / s  # float32 throughout, as prepare_images
    return x, errors


def _as_chw(image: np.ndarray, channels: int) -> np.ndarray:
    return image[None] if channels == 1 else image.transpose(2, 0, 1)


def _read(path: str, size: tuple[int, int], max_pixels: int) -> Any:
    """The image at ``path`` (uint8), or the sentence saying why there is none. A link, a
    pipe or a device is refused without being opened; a small PNG decodes from the one
    read of the file."""
    from .runtime.images import SMALL_FILE_BYTES, read_image, small_png

    try:
        head = _regular_file_head(path, SMALL_FILE_BYTES)
        if head is None:
            return f"{path} is not a regular file (a link, a pipe or a device): not read."
        if (image := small_png(head, max_pixels)) is not None:
            return image
        return read_image(Path(path), max_pixels=max_pixels, size=size, small_png_tried=True)
    except (InputError, UsageError) as exc:
        return str(exc)
    except OSError as exc:
        return f"Cannot read image {path}: {exc.strerror or exc}."


def _regular_file_head(path: str, size: int) -> bytes | None:
    """The first ``size`` bytes of ``path``; None when it is a link, a pipe, a device or a
    folder, which is never opened (and a regular file that became a link since is not
    followed)."""
    if not stat.S_ISREG(os.lstat(path).st_mode):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW's answer to a link
            return None
        raise
    try:
        return os.read(fd, size) if stat.S_ISREG(os.fstat(fd).st_mode) else None
    finally:
        os.close(fd)


def score_batch(
    model: Any, items: Sequence[Item], x: np.ndarray, errors: list[str | None], how: Scoring
) -> list[dict[str, Any]]:
    """One row per item: its top-k labels and scores (and raw outputs), or its error."""
    rows = [_row(item, how.sha256, error) for item, error in zip(items, errors, strict=True)]
    good = [i for i, e in enumerate(errors) if e is None]
    if good:
        # decode_batch's own batch: uint8 pixels normalised by the facts (std > 0), so
        # finite and of the model's shape; the check would only cost time
        batch = x[good] if len(good) < len(x) else x
        logits = model.predict(batch, validate=False)[model.output_names[0]]
        for i, update in zip(good, _tops(model, logits, how), strict=True):
            rows[i].update(update)
    return rows


def _in_order(
    pool: Any, fn: Callable[[Any], Any], jobs: Iterator[tuple[Any, Any]], depth: int
) -> Iterator[tuple[tuple[Any, Any], Any]]:
    """Each ``(key, arg)`` of ``jobs`` with ``fn(arg)``, in order; up to ``depth`` running
    or done ahead of the one yielded."""
    pending: deque[tuple[tuple[Any, Any], Any]] = deque()
    for job in jobs:
        pending.append((job, pool.submit(fn, job[1])))
        if len(pending) > depth:
            done, future = pending.popleft()
            yield done, future.result()
    while pending:
        done, future = pending.popleft()
        yield done, future.result()


def _batches(items: Sequence[Item], size: int) -> Iterator[Sequence[Item]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def read_predictions(out: Path, columns: Sequence[str] | None = None) -> Any:
    """Every written part of ``out`` (those ``columns`` only, when given) as one table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = sorted(out.glob("part-*.parquet"))
    if not parts:
        return _schema().empty_table().select(list(columns or _schema().names))
    return pa.concat_tables([pq.read_table(p, columns=columns) for p in parts])


def summarise(out: Path, rows: int) -> Summary:
    """The summary of everything written to ``out`` (resumed parts included), read a part's
    three small columns at a time."""
    import pyarrow.parquet as pq

    summary = Summary(rows=rows)
    for part in sorted(out.glob("part-*.parquet")):
        summary.add(pq.read_table(part, columns=["label", "top1", "error"]).to_pylist())
    return summary
