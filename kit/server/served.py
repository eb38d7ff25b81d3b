"""One model as the server serves it: its protocol metadata, its batcher, its metrics."""

from __future__ import annotations

import asyncio
import json
import math
import time
from concurrent.futures import Executor
from typing import Any

import numpy as np

from ..artifact import LABELS_FILE
from ..datatypes import ONNX_DATATYPES
from ..runtime.session import Model
from .batching import Batch, Batcher, BatchStats
from .metrics import Metrics

__all__ = ["VERSION", "ServedModel", "inline_rows"]

#: Every model is served as version 1 (an export directory holds one version).
VERSION = "1"
#: the most bytes a float32 takes as JSON text ("-1.2345678e-05, "), with room to spare
_JSON_BYTES_PER_VALUE = 24
#: room for a request's JSON apart from its numbers (names, parameters, an id)
_HEADER_ROOM = 64 * 1024


def example_shape(model: Model) -> tuple[int, ...]:
    """One sample at the size the model was exported at (1 where a file without facts
    leaves a dimension free)."""
    return tuple(d or 1 for d in model.example_shape)


def inline_rows(model: Model, budget: float) -> int:
    """How many rows ``model`` runs within ``budget`` seconds: a straight line through its
    best times at two batch sizes it takes, near 1 and 8 (a batch's cost per row only
    falls as it grows, so larger batches take no longer than the line says)."""
    if budget <= 0:
        return 0
    small, large = _timed_batches(model)
    first = _best_time(model, small)
    if first > budget:
        return 0
    if large == small:  # the rule leaves no second size near 8 to draw the line through
        return small
    per_row = max((_best_time(model, large) - first) / (large - small), 1e-9)
    return small + int((budget - first) // per_row)


def _timed_batches(model: Model) -> tuple[int, int]:
    """1 and 8, or the sizes nearest them that the model's batch rule allows."""
    rule = model.rules.batch if model.rules is not None else None
    if rule is None:
        return 1, 8
    step = rule.multiple  # both ends are multiples of it
    return rule.min, max(rule.min, min(rule.max, 8) // step * step)


def _best_time(model: Model, rows: int) -> float:
    x = np.zeros((rows, *example_shape(model)), np.float32)
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        model.predict(x)
        best = min(best, time.perf_counter() - t)
    return best


#: a batch of this many bytes or more is joined on the worker thread that runs it: numpy
#: copies without the GIL, but hands it back and forth once a request, which costs more than
#: a small batch's copy on the event loop
THREAD_JOIN_BYTES = 1 << 20


class ServedModel:
    """A loaded model under a name, with its batcher (None when batching is off)."""

    def __init__(
        self,
        name: str,
        model: Model,
        metrics: Metrics,
        executor: Executor,
        *,
        inline: int = 0,
        max_batch: int = 64,
        max_body: int = 64 << 20,
    ) -> None:
        self.name = name
        self.model = model
        self.max_batch = max_batch
        self.batcher: Batcher | None = None
        self.executor = executor
        self.inline_rows = inline
        # labelled children looked up once, not on every request
        self.ok = metrics.requests.labels(name, "200")
        self.failed = metrics.requests.labels(name, "500")
        self.queue = metrics.queue.labels(name)
        self.latency = metrics.latency.labels(name)
        self.batch_rows = metrics.batch_rows.labels(name)
        self.compute = metrics.compute.labels(name)
        #: one sample's shape, -1 where the model's rules let the size vary
        self.sample_shape = tuple(-1 if d is None else int(d) for d in model.input_shape)
        self.rules = model.rules
        facts = model.facts
        one_output = len(model.output_names) == 1
        #: a classifier's class count (0 otherwise) and names, for the classification extension
        self.classes = facts.num_classes if facts and facts.is_classifier and one_output else 0
        self.labels = tuple(model.class_names) if self.classes else ()
        self.metadata = self._metadata()
        # the largest honest body: max_batch rows as JSON numbers, each at most ~24 bytes
        largest = self.rules.largest(facts.input_shape) if self.rules and facts else None
        values = max_batch * math.prod(largest or example_shape(model))
        self.body_limit = min(max_body, values * _JSON_BYTES_PER_VALUE + _HEADER_ROOM)

    def _metadata(self) -> dict[str, Any]:
        """The protocol's model metadata (``GET /v2/models/NAME``)."""
        return {
            "name": self.name,
            "versions": [VERSION],
            "platform": "onnxruntime_onnx",
            "parameters": self._parameters(),
            "inputs": [
                {
                    "name": self.model.input_name,
                    "datatype": "FP32",
                    "shape": [-1, *self.sample_shape],
                }
            ],
            "outputs": [
                {
                    "name": o.name,
                    "datatype": ONNX_DATATYPES.get(o.type, "FP32"),
                    "shape": [d if isinstance(d, int) else -1 for d in o.shape],
                }
                for o in self.model.session.get_outputs()
            ],
        }

    def _parameters(self) -> dict[str, Any]:
        """The precision, and a model whose size varies: its rules (``height=64..512:32``)."""
        found: dict[str, Any] = {"precision": self.model.precision}
        if self.rules is not None:
            found["dynamic"] = self.rules.flags()
        return found

    def config(self) -> dict[str, Any]:
        """Triton's model configuration (``GET /v2/models/NAME/config``)."""

        def dims(tensor: dict[str, Any]) -> dict[str, Any]:
            data_type = f"TYPE_{tensor['datatype']}"
            return {"name": tensor["name"], "data_type": data_type, "dims": tensor["shape"][1:]}

        md = self.metadata
        outputs = [dims(o) for o in md["outputs"]]
        config: dict[str, Any] = {
            "name": self.name,
            "platform": "onnxruntime_onnx",
            "max_batch_size": self.max_batch,
            "input": [dims(i) for i in md["inputs"]],
            "output": outputs,
        }
        facts = self.model.facts
        if facts is not None:  # as kit triton writes them: clients read the facts back
            config["parameters"] = {
                k: {"string_value": v}
                for k, v in {
                    "kit.class_names": json.dumps(list(self.labels)),
                    "kit.mean": json.dumps(list(facts.mean)),
                    "kit.std": json.dumps(list(facts.std)),
                    "kit.input_shape": json.dumps(list(facts.input_shape)),
                    **({"kit.dynamic": self.rules.flags()} if self.rules else {}),
                }.items()
            }
        if self.classes:
            outputs[0]["label_filename"] = LABELS_FILE
        return config

    def start_batching(self, max_batch: int, max_delay: float) -> None:
        self.batcher = Batcher(
            self.run, max_batch=max_batch, max_delay=max_delay, on_batch=self.observe_batch
        )
        self.batcher.start()

    async def infer(self, x: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
        """Outputs for ``x`` (already validated by the protocol parser) and its queue wait."""
        if self.batcher is not None:
            return await self.batcher.submit(x)
        t = time.perf_counter()
        outputs = await self.run(Batch([x]))
        self.observe_batch(BatchStats(len(x), 1, time.perf_counter() - t))
        return outputs, 0.0

    async def run(self, batch: Batch) -> dict[str, np.ndarray]:
        """The model's outputs for ``batch``: on the event loop when that is cheaper than a
        thread hop (a batch the model answers within ``ServerConfig.inline_seconds``), else
        on a worker thread, which joins the rows of a batch of ``THREAD_JOIN_BYTES`` or more."""
        if batch.rows <= self.inline_rows:
            return self._predict(batch)
        if batch.nbytes < THREAD_JOIN_BYTES:
            batch = batch.joined()
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._predict, batch)

    def _predict(self, batch: Batch) -> dict[str, np.ndarray]:
        return self.model.predict(batch.array(), validate=False)

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_rows.observe(stats.rows)
        self.compute.observe(stats.compute_seconds)
