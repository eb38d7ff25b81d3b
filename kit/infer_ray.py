"""The ray engine of ``kit infer``: Ray Data does the distribution, kit only says what to run.

The inputs not yet written become a Ray dataset of a few blocks per actor. Decoding and
preprocessing (``map_batches``, which Ray fuses into the actors) and scoring run in a pool
of actors, each holding one :class:`kit.runtime.Model` loaded once, proven by its
self-check before it scores a row, with onnxruntime's threads set to the CPUs Ray gave it
(no oversubscription). Rows come back to this process in order and are written by the
same part writer as the local engine's, so parts are whole or absent and ``--resume``
works the same. A CUDA provider asks Ray for a GPU per actor (not tested on a GPU here).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArtifactError, RuntimeMissing
from .infer import Item, Job, Scoring, Source, decode_batch, score_batch

__all__ = ["run_ray"]

#: Ray pays a scheduling cost per block; a few blocks per actor pay it a few times, not once
#: per model batch, and still let a fast actor take the blocks a slow one has not started.
BLOCKS_PER_ACTOR = 4
#: At most this much model input (float32) in one block.
BLOCK_BYTES = 64 << 20


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RuntimeMissing("--engine ray needs Ray: pip install 'kit[ray]'.") from None
    return ray


class _Decode:
    """A Ray task's work: each row's image read, converted and normalised as the model was
    trained (:func:`kit.infer.decode_batch`; an unreadable one gets its error and zeros)."""

    def __init__(self, facts: tuple[Any, Any, Any], max_pixels: int) -> None:
        self.facts, self.max_pixels = facts, max_pixels

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        arrays = batch.get("pixels")
        x, errors = decode_batch(paths, arrays, self.facts, self.max_pixels)
        out = {k: v for k, v in batch.items() if k != "pixels"}
        return {**out, "x": x, "error": np.array([e or "" for e in errors], dtype=object)}


class _Score:
    """A Ray actor: one model, loaded once and proven by its self-check before any row."""

    def __init__(
        self, export: str, how: Scoring, threads: int, providers: Any, batch_size: int
    ) -> None:
        import socket

        import kit.runtime as kr

        self.how, self.batch_size = how, batch_size
        try:
            self.model = kr.load(export, threads=threads, warmup=False, providers=providers)
            self.model.self_check()
        except Exception as exc:
            raise ArtifactError(f"on {socket.gethostname()}: {exc}") from None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [Item(int(i), str(p), str(lab) or None)
                 for i, p, lab in zip(batch["index"], batch["path"], batch["label"], strict=True)]  # fmt: skip
        errors = [str(e) or None for e in batch["error"]]
        rows, size = [], self.batch_size
        for start in range(0, len(items), size):  # a block is many of the model's batches
            end = start + size
            rows += score_batch(self.model, items[start:end], batch["x"][start:end],
                                errors[start:end], self.how)  # fmt: skip
        return {"row": np.array([json.dumps(r) for r in rows], dtype=object)}


def _blocks(rows: int, actors: int, batch_size: int, row_bytes: int) -> int:
    """How many Ray blocks ``rows`` make: BLOCKS_PER_ACTOR per actor, each a whole number of
    model batches and no larger than BLOCK_BYTES of model input."""
    per_block = -(-rows // (actors * BLOCKS_PER_ACTOR))
    per_block = min(per_block, max(1, BLOCK_BYTES // row_bytes))
    per_block = max(batch_size, per_block - per_block % batch_size)
    return max(1, -(-rows // per_block))


def _dataset(ray: Any, source: Source, items: list[Item], blocks: int) -> Any:
    records = []
    for item in items:
        record: dict[str, Any] = {"index": item.index, "path": item.path, "label": item.label or ""}
        if source.arrays is not None:
            record["pixels"] = source.arrays[item.index]
        records.append(record)
    return ray.data.from_items(records, override_num_blocks=blocks)


def run_ray(
    export: Path,
    source: Source,
    job: Job,
    how: Scoring,
    *,
    address: str | None,
    actors: int,
    batch_size: int,
    max_pixels: int,
    providers: Any = None,
    facts: tuple[Any, Any, Any],
) -> int:
    """Score every part not yet written on a Ray cluster (``address``, or a local one).
    Returns how many parts were already written.

    Raises:
        RuntimeMissing: Ray is not installed.
        ArtifactError: an actor's model failed its self-check (the message names its host).
    """
    ray = _ray()
    todo = [n for n in range(job.parts) if not job.done(n)]
    if not todo:
        return job.parts
    ray.init(address=address, include_dashboard=False, log_to_driver=False,
             ignore_reinit_error=True, num_cpus=None if address else (os.cpu_count() or 1))  # fmt: skip
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    items = [it for n in todo for it in job.part_items(source.items, n)]
    gpu = providers is not None and any("CUDA" in str(p) for p in providers)
    row_bytes = 4 * int(np.prod(facts[0]))
    scored = (
        _dataset(ray, source, items, _blocks(len(items), actors, batch_size, row_bytes))
        .map_batches(_Decode(facts, max_pixels), batch_size=None)
        .map_batches(
            _Score,
            fn_constructor_args=(str(export), how, 1, providers, batch_size),
            batch_size=None,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=1,
            num_gpus=1 if gpu else 0,
        )
    )
    _write_in_order(scored, job, todo, source)
    return job.parts - len(todo)


def _write_in_order(scored: Any, job: Job, todo: list[int], source: Source) -> None:
    """Collect the rows as they come (in order) and write each part once it is whole."""
    waiting = iter(todo)
    number = next(waiting)
    want = len(job.part_items(source.items, number))
    rows: list[dict[str, Any]] = []
    for batch in scored.iter_batches(batch_format="numpy", batch_size=None):
        for text in batch["row"]:
            rows.append(json.loads(str(text)))
            if len(rows) == want:
                job.write(number, rows)
                rows, number = [], next(waiting, -1)
                want = len(job.part_items(source.items, number)) if number >= 0 else 0
