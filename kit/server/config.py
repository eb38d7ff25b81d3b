"""The server's knobs, light enough for the CLI to read its defaults at start-up."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServerConfig"]


@dataclass
class ServerConfig:
    """Serving knobs; ``kit serve``'s options take their defaults from here."""

    max_batch_size: int = 64
    max_queue_delay_us: int = 500
    max_body_bytes: int = 64 * 1024 * 1024
    workers: int = 4
    #: batches expected to run faster than this run on the event loop, not a worker thread
    inline_seconds: float = 1e-3
