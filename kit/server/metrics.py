"""The server's Prometheus metrics, in a registry of their own."""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as _generate
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_SECONDS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class Metrics:
    """Requests by model and status, rows per run, queue, compute and request times."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kit_requests",
            "Inference requests by model and HTTP status.",
            ["model", "status"],
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "kit_batch_size",
            "Rows per onnxruntime run.",
            ["model"],
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.queue = self._seconds("kit_queue_seconds", "Time a request waited to be batched.")
        self.compute = self._seconds("kit_compute_seconds", "onnxruntime time per batch.")
        self.latency = self._seconds("kit_request_seconds", "Time from request read to response.")

    def _seconds(self, name: str, doc: str) -> Histogram:
        return Histogram(name, doc, ["model"], registry=self.registry, buckets=_SECONDS)

    def exposition(self) -> bytes:
        """The registry in Prometheus's text format: of every process, added up, when
        ``kit serve --processes`` runs several (prometheus_client's multiprocess mode)."""
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            return _generate(self.registry)
        every = CollectorRegistry()
        MultiProcessCollector(every)
        return _generate(every)
