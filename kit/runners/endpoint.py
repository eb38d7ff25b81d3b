"""Parity against a live Open Inference Protocol endpoint (kit serve, Triton, KServe, MLServer).

The endpoint is one more runner: it gets the same inputs as the local checks, through
tritonclient.http, in binary tensors when the server lists the ``binary_tensor_data``
extension and in JSON otherwise, split into requests no larger than the server's
``max_batch_size`` (when it publishes a config). Its model metadata is checked against the
manifest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ..artifact import Manifest
from ..datatypes import protocol_datatype
from ..errors import ArtifactError, UsageError, first_line
from ..parity import Runner

__all__ = ["Endpoint", "connect", "metadata_problems"]


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

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Every output for ``x``, in requests of at most ``max_batch`` rows."""
        parts = [self._infer(x[i : i + self.max_batch]) for i in range(0, len(x), self.max_batch)]
        return [np.concatenate(column) for column in zip(*parts, strict=True)]

    def _infer(self, x: np.ndarray) -> list[np.ndarray]:
        import tritonclient.http as http

        name = self.metadata["inputs"][0]["name"]
        request = http.InferInput(name, list(x.shape), "FP32")
        request.set_data_from_numpy(np.ascontiguousarray(x, np.float32), binary_data=self.binary)
        names = [o["name"] for o in self.metadata["outputs"]]
        wanted = [http.InferRequestedOutput(n, binary_data=self.binary) for n in names]
        result = self.client.infer(self.model, [request], outputs=wanted)
        return [np.asarray(result.as_numpy(n)) for n in names]


def _client(url: str) -> Any:
    import tritonclient.http as http

    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--endpoint {url!r} is not an http(s) URL like http://localhost:8000.")
    return http.InferenceServerClient(
        parts.netloc, ssl=parts.scheme == "https", connection_timeout=10, network_timeout=120
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
