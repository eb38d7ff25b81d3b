"""Dynamic batching: merge concurrent requests for one model into one session run.

A request waits at most ``max_delay`` seconds for company; a batch never exceeds
``max_batch`` rows (a single larger request runs alone) and holds one sample size (a model
whose size varies gets requests of several: those of another size wait, in order, for the
next batches). Each caller gets exactly its own rows back. Where a batch runs (a worker
thread, or the event loop for a fast model) is ``run``'s business.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Batch", "BatchStats", "Batcher"]


@dataclass
class BatchStats:
    """What one batch cost, for metrics."""

    rows: int
    requests: int
    compute_seconds: float


class Batch:
    """One run's rows: the requests' arrays, joined by :meth:`array` where the run happens.
    For a large batch that is a worker thread, so the copy leaves the event loop (numpy
    copies without holding the GIL)."""

    def __init__(
        self, parts: list[np.ndarray], join: Callable[[list[np.ndarray]], np.ndarray] | None = None
    ) -> None:
        self.parts = parts
        self.rows = sum(len(p) for p in parts)
        self.nbytes = sum(p.nbytes for p in parts)
        self._join = join or np.concatenate

    def array(self) -> np.ndarray:
        return self.parts[0] if len(self.parts) == 1 else self._join(self.parts)

    def joined(self) -> Batch:
        """The same rows, joined here and now."""
        return self if len(self.parts) == 1 else Batch([self.array()])


@dataclass
class _Pending:
    x: np.ndarray
    future: asyncio.Future[tuple[dict[str, np.ndarray], float]]
    enqueued: float


class Batcher:
    """Collects requests for ``run`` (awaits a batch -> named outputs) and runs them together."""

    def __init__(
        self,
        run: Callable[[Batch], Awaitable[dict[str, np.ndarray]]],
        *,
        max_batch: int,
        max_delay: float,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        self._run = run
        self.max_batch = max_batch
        self.max_delay = max_delay
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._arrived = asyncio.Event()
        #: requests set aside, oldest first: of another size than the batch being
        #: collected, or past its room; the next batches take them before the queue
        self._waiting: collections.deque[_Pending] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._buffer: np.ndarray | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, x: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
        """Queue ``x``; returns its outputs and the seconds it waited in the queue."""
        future: asyncio.Future[tuple[dict[str, np.ndarray], float]] = (
            asyncio.get_running_loop().create_future()
        )
        self._queue.put_nowait(_Pending(x, future, time.perf_counter()))
        self._arrived.set()
        return await future

    async def _next(self) -> _Pending:
        if self._waiting:
            return self._waiting.popleft()
        return await self._queue.get()

    def _take(self, batch: list[_Pending], rows: int, item: _Pending) -> int:
        """``item`` into ``batch`` when it is of the batch's size and fits (the new row
        count), else set aside (``max_batch`` when it did not fit: the batch is full)."""
        if item.x.shape[1:] != batch[0].x.shape[1:]:  # one run takes one size
            self._waiting.append(item)
            return rows
        if rows + len(item.x) > self.max_batch:
            self._waiting.append(item)
            return self.max_batch
        batch.append(item)
        return rows + len(item.x)

    def _rejoin(self, batch: list[_Pending], rows: int) -> int:
        """Requests set aside before, of the batch's size, join it first (once a batch)."""
        waiting, self._waiting = self._waiting, collections.deque()
        for item in waiting:  # set aside again in order, unless taken now
            if rows < self.max_batch:
                rows = self._take(batch, rows, item)
            else:
                self._waiting.append(item)
        return rows

    def _drain(self, batch: list[_Pending], rows: int) -> int:
        size, queue = batch[0].x.shape[1:], self._queue
        while rows < self.max_batch and not queue.empty():
            item = queue.get_nowait()
            if item.x.shape[1:] == size and rows + len(item.x) <= self.max_batch:
                batch.append(item)  # the usual case, without a call
                rows += len(item.x)
            else:
                rows = self._take(batch, rows, item)
        return rows

    async def _collect(self) -> list[_Pending]:
        first = await self._next()
        batch, rows = [first], len(first.x)
        if self._waiting:
            rows = self._rejoin(batch, rows)
        # the delay bounds how long the oldest request waits, not how long collection takes
        deadline = first.enqueued + self.max_delay
        while rows < self.max_batch:
            rows = self._drain(batch, rows)
            remaining = deadline - time.perf_counter()
            if rows >= self.max_batch or remaining <= 0:
                break
            # Event-loop timers count whole milliseconds (uvloop rounds fractions away):
            # sleep the whole milliseconds, then yield loop iterations (each reads what
            # has arrived) for the rest, so the delay is kept to the microsecond. That rest
            # is a busy wait of under a millisecond, only while a batch is being collected.
            whole_ms = math.floor(remaining * 1000) / 1000
            if whole_ms <= 0:
                await asyncio.sleep(0)
                continue
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), whole_ms)
        return batch

    def _concatenate(self, parts: list[np.ndarray]) -> np.ndarray:
        # Into one buffer reused batch after batch: a fresh array for a large batch costs
        # its page faults every time (docs/BENCHMARKS.md, Serving). Safe because one batch
        # runs at a time (``_loop`` awaits each) and onnxruntime's outputs are new arrays.
        rows = sum(len(p) for p in parts)
        shape = (rows, *parts[0].shape[1:])
        buf = self._buffer
        if (
            buf is None
            or buf.shape[1:] != shape[1:]
            or buf.dtype != parts[0].dtype
            or len(buf) < rows
        ):
            buf = self._buffer = np.empty((max(rows, self.max_batch), *shape[1:]), parts[0].dtype)
        return np.concatenate(parts, out=buf[:rows])

    async def _loop(self) -> None:
        while True:
            batch = await self._collect()
            batch = [p for p in batch if not p.future.done()]  # callers that gave up
            if not batch:
                continue
            started = time.perf_counter()
            x = Batch([p.x for p in batch], self._concatenate)
            try:
                outputs = await self._run(x)
            except Exception as exc:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            elapsed = time.perf_counter() - started
            if self._on_batch is not None:
                self._on_batch(BatchStats(x.rows, len(batch), elapsed))
            offset = 0
            for p in batch:
                n = len(p.x)
                mine = {k: v[offset : offset + n] for k, v in outputs.items()}
                offset += n
                if not p.future.done():
                    p.future.set_result((mine, started - p.enqueued))
