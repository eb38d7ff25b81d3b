"""Parity against a live Open Inference Protocol endpoint (kit serve, Triton, KServe, MLServer).

The endpoint is one more runner: it gets the same inputs as the local checks, through
tritonclient.http, in binary tensors when the server lists the ``binary_tensor_data``
extension and in JSON otherwise, split into requests no larger than the server's
``max_batch_size`` (when it publishes a config). Its model metadata is checked against the
manifest first.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ..artifact import Manifest
from ..datatypes import protocol_datatype
from ..errors import ArtifactError, UsageError, first_line
from ..parity import Runner

__all__ = ["Endpoint", "batch_histogram", "connect", "metadata_problems"]


@dataclass
class Endpoint:
    """One model on a live server, ready to run batches."""

    url: str
    model: str
    client: Any
    binary: bool
    max_batch: int
    server: str
    metadata: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.server} at {self.url} ({'binary' if self.binary else 'JSON'})"

    def runner(self, artifact: str = "endpoint", precision: str = "fp32") -> Runner:
        """This endpoint as a parity runner."""
        return Runner(artifact, self.label, self.run, precision=precision, key="endpoint")

    def concurrent_runner(self, clients: int, precision: str = "fp32") -> Runner:
        """This endpoint as a runner whose every row is its own request, ``clients`` of them
        in flight at once from as many connections (so a batching server merges them).
        Bodies are built and read by Triton's own client codec."""
        from concurrent.futures import ThreadPoolExecutor

        local = threading.local()
        opened: list[Any] = []
        pool = ThreadPoolExecutor(max_workers=clients, thread_name_prefix="kit-endpoint")

        def one(x: np.ndarray) -> list[np.ndarray]:
            if not hasattr(local, "connection"):
                local.connection = self._connection()
                opened.append(local.connection)
            return self._post(local.connection, x)

        def run(x: np.ndarray) -> list[np.ndarray]:
            answers = list(pool.map(one, [x[i : i + 1] for i in range(len(x))]))
            return [np.concatenate(column) for column in zip(*answers, strict=True)]

        def close() -> None:
            pool.shutdown()
            for connection in opened:
                connection.close()

        label = f"{self.label}, {clients} clients at once"
        return Runner("endpoint", label, run, precision=precision, key="endpoint", closer=close)

    def _connection(self) -> Any:
        import http.client

        parts = urlsplit(self.url if "://" in self.url else f"http://{self.url}")
        kind = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        return kind(parts.netloc, timeout=120)

    def _post(self, connection: Any, x: np.ndarray) -> list[np.ndarray]:
        import tritonclient.http as http

        request, wanted = self._tensors(x)
        body, json_size = http.InferenceServerClient.generate_request_body(request, wanted)
        headers = {"Content-Type": "application/octet-stream"}
        if json_size is not None:
            headers["Inference-Header-Content-Length"] = str(json_size)
        connection.request("POST", f"/v2/models/{self.model}/infer", body, headers)
        answer = connection.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise ArtifactError(f"{self.url} answered {answer.status}: {data[:300]!r}")
        length = answer.getheader("Inference-Header-Content-Length")
        result = http.InferenceServerClient.parse_response_body(
            data, header_length=int(length) if length else None
        )
        return self._outputs(result)

    def alone(self, x: np.ndarray) -> list[np.ndarray]:
        """Every row of ``x`` sent by itself, one request after another."""
        answers = [self._infer(x[i : i + 1]) for i in range(len(x))]
        return [np.concatenate(column) for column in zip(*answers, strict=True)]

    def batch_sizes(self) -> dict[int, int] | None:
        """How many batches of each size the server has run for this model, from its
        Prometheus ``/metrics`` (kit serve's ``kit_batch_size`` histogram); None when it
        publishes none."""
        return batch_histogram(self.url, self.model)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Every output for ``x``, in requests of at most ``max_batch`` rows."""
        parts = [self._infer(x[i : i + self.max_batch]) for i in range(0, len(x), self.max_batch)]
        return [np.concatenate(column) for column in zip(*parts, strict=True)]

    def _infer(self, x: np.ndarray) -> list[np.ndarray]:
        request, wanted = self._tensors(x)
        return self._outputs(self.client.infer(self.model, request, outputs=wanted))

    def _tensors(self, x: np.ndarray) -> tuple[list[Any], list[Any]]:
        """The request's input tensor for ``x`` and every output asked for (tritonclient's)."""
        import tritonclient.http as http

        name = self.metadata["inputs"][0]["name"]
        request = http.InferInput(name, list(x.shape), "FP32")
        request.set_data_from_numpy(np.ascontiguousarray(x, np.float32), binary_data=self.binary)
        names = [o["name"] for o in self.metadata["outputs"]]
        return [request], [http.InferRequestedOutput(n, binary_data=self.binary) for n in names]

    def _outputs(self, result: Any) -> list[np.ndarray]:
        return [np.asarray(result.as_numpy(o["name"])) for o in self.metadata["outputs"]]


def _client(url: str) -> Any:
    import tritonclient.http as http

    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--endpoint {url!r} is not an http(s) URL like http://localhost:8000.")
    return http.InferenceServerClient(
        parts.netloc,
        ssl=parts.scheme == "https",
        connection_timeout=10,
        network_timeout=120,
    )


def connect(url: str, model: str) -> Endpoint:
    """Reach ``model`` at ``url`` and read what the server says about it.

    Raises:
        ArtifactError: the server cannot be reached or does not speak the protocol.
        UsageError: the URL is malformed, or the server has no model of that name.
    """
    from tritonclient.utils import InferenceServerException

    client = _client(url)
    try:
        server = client.get_server_metadata()
    except InferenceServerException as exc:
        raise ArtifactError(
            f"{url} does not answer GET /v2 as an Open Inference Protocol server ({first_line(exc)}); "
            "check the URL (the server's HTTP port, without /v2)."
        ) from None
    except Exception as exc:  # refused, DNS, timeouts: gevent and socket errors alike
        raise ArtifactError(
            f"Cannot reach {url} ({first_line(exc)}); is the server running?"
        ) from None
    if not isinstance(server, dict) or "name" not in server:
        raise ArtifactError(f"{url} answered GET /v2 with something that is not server metadata.")
    try:
        metadata = client.get_model_metadata(model)
    except InferenceServerException:
        raise UsageError(
            f"The server at {url} has no model {model!r}{_known(client)}; pass --model-name."
        ) from None
    binary = "binary_tensor_data" in (server.get("extensions") or [])
    label = f"{server['name']} {server.get('version', '')}".strip()
    return Endpoint(url, model, client, binary, _max_batch(client, model), label, metadata)


def _known(client: Any) -> str:
    try:
        names = sorted({m["name"] for m in client.get_model_repository_index()})
    except Exception:  # the repository extension is optional in the protocol
        return ""
    return f" (it has {', '.join(names)})" if names else ""


def _max_batch(client: Any, model: str, fallback: int = 256) -> int:
    """The server's ``max_batch_size`` for ``model`` when it publishes a config."""
    try:
        config = client.get_model_config(model)
    except Exception:  # the config endpoint is Triton's (and kit's), not the protocol's
        return fallback
    size = int(config.get("max_batch_size", 0) or 0)
    return size if size > 0 else fallback


def metadata_problems(endpoint: Endpoint, manifest: Manifest) -> list[str]:
    """Where the server's model metadata disagrees with the manifest (names, shapes, types)."""
    problems = []
    for kind, tensors in (("inputs", manifest.inputs), ("outputs", manifest.outputs)):
        expected = [
            (
                t.name,
                protocol_datatype(t.dtype) or t.dtype,
                [d if isinstance(d, int) else -1 for d in t.shape],
            )
            for t in tensors
        ]
        served = [
            (t.get("name"), t.get("datatype"), [int(d) for d in t.get("shape", [])])
            for t in endpoint.metadata.get(kind, [])
            if isinstance(t, dict)
        ]
        if served != expected:
            problems.append(
                f"the server's {kind} for {endpoint.model} are {served}, the manifest's {expected}; "
                "is it serving another export (re-deploy this one, or check --model-name)?"
            )
    return problems


def batch_histogram(url: str, model: str) -> dict[int, int] | None:
    """Batches run per size (the histogram's bucket bounds) for ``model`` at ``url``'s
    ``/metrics``; None when there is no such histogram."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    base = url if "://" in url else f"http://{url}"
    try:
        with urllib.request.urlopen(base.rstrip("/") + "/metrics", timeout=10) as answer:
            text = answer.read(4 << 20).decode("utf-8", "replace")
    except (OSError, ValueError):
        return None
    buckets: list[tuple[float, float]] = []
    try:
        for family in text_string_to_metric_families(text):
            if family.name != "kit_batch_size":
                continue
            buckets += [(float(b.labels["le"]), b.value) for b in family.samples
                        if b.name.endswith("_bucket") and b.labels.get("model") == model
                        and b.labels["le"] != "+Inf"]  # fmt: skip
    except (ValueError, KeyError, IndexError, TypeError):  # a server's text, not kit's format
        return None
    if not buckets:
        return None
    sizes, before = {}, 0.0
    for le, n in sorted(buckets):
        if n > before:
            sizes[int(le)] = int(n - before)
        before = n
    return sizes
