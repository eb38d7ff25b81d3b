"""The dynamic batcher on its own: the queue delay, the batch limit, each caller's rows."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import uvloop

from kit.server.batching import Batch, Batcher, BatchStats


def _double(batch: Batch) -> dict[str, np.ndarray]:
    return {"y": batch.array() * 2}


def _on(pool: ThreadPoolExecutor) -> Callable[[Batch], Awaitable[dict[str, np.ndarray]]]:
    """``_double`` on a worker thread, as the server runs a model (the rows joined there)."""

    async def run(batch: Batch) -> dict[str, np.ndarray]:
        return await asyncio.get_running_loop().run_in_executor(pool, _double, batch)

    return run


def _run(loop_kind: str, main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    if loop_kind == "uvloop":  # what kit serve runs on
        return uvloop.run(main())
    return asyncio.run(main())


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
@pytest.mark.parametrize("delay_us", [500, 2500])
def test_a_lone_request_waits_the_whole_delay_and_no_longer(loop_kind: str, delay_us: int) -> None:
    # uvloop's timers count whole milliseconds and round 0.5 ms down to nothing; the batcher
    # must still hold a lone request for the full delay (and not pathologically longer).
    async def main() -> list[float]:
        with ThreadPoolExecutor(1) as pool:
            batcher = Batcher(_on(pool), max_batch=8, max_delay=delay_us / 1e6)
            batcher.start()
            waits = []
            for _ in range(5):
                _, waited = await batcher.submit(np.ones((1, 2), np.float32))
                waits.append(waited)
            await batcher.stop()
            return waits

    waits = _run(loop_kind, main)
    assert min(waits) >= delay_us / 1e6
    assert max(waits) < delay_us / 1e6 + 0.25


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_concurrent_requests_share_runs_and_get_their_rows(loop_kind: str) -> None:
    stats: list[BatchStats] = []

    async def main() -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        with ThreadPoolExecutor(1) as pool:
            batcher = Batcher(_on(pool), max_batch=8, max_delay=0.05, on_batch=stats.append)
            batcher.start()
            xs = [np.full((1 + i % 3, 2), i, np.float32) for i in range(12)]
            results = await asyncio.gather(*(batcher.submit(x) for x in xs))
            await batcher.stop()
            return [(x, r[0]) for x, r in zip(xs, results, strict=True)]

    for x, out in _run(loop_kind, main):
        np.testing.assert_array_equal(out["y"], x * 2)
    assert sum(s.rows for s in stats) == 24
    assert all(s.rows <= 8 for s in stats)
    assert len(stats) < 12, "no two requests were merged"
