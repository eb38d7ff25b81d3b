"""Request bodies to validated requests: small ones on the event loop, large JSON in a
worker process."""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from .protocol import InferRequest, ProtocolError, parse_infer_request
from .served import ServedModel

__all__ = ["Decoder"]


class Decoder:
    """Parses request bodies: small ones on the event loop, large JSON in a worker process
    (decoding holds the GIL, so a thread would still stall every other client)."""

    def __init__(self, inline_bytes: int) -> None:
        self.inline_bytes = inline_bytes
        self._pool: ProcessPoolExecutor | None = None

    async def parse(self, entry: ServedModel, body: bytes, header: str | None) -> InferRequest:
        # a number, and one short enough to convert (Python refuses ints of 4,300+ digits)
        digits = header is not None and header.isascii() and header.isdigit() and len(header) < 19
        json_bytes = int(header) if digits else len(body)  # type: ignore[arg-type]
        job = functools.partial(
            parse_infer_request,
            body,
            header,
            input_name=entry.model.input_name,
            sample_shape=entry.sample_shape,
            output_names=entry.model.output_names,
            max_batch=entry.max_batch,
            classes=entry.classes,
            rules=entry.rules,
        )
        if json_bytes <= self.inline_bytes:
            return job()
        loop = asyncio.get_running_loop()
        try:  # the job is pickled to the worker: a module function and plain arguments
            return await loop.run_in_executor(self._workers(), job)
        except BrokenProcessPool:
            self.close()
            raise ProtocolError("The decoding worker stopped; retry the request.", 503) from None

    def _workers(self) -> Executor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")  # never fork a threaded server
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
        return self._pool

    def close(self, *, wait: bool = False) -> None:
        """Stop the worker; ``wait`` at shutdown, where uvicorn ends the process with the
        signal it caught, so nothing at exit would reap a worker left running."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None
