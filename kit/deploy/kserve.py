"""``kit triton --kserve``: a KServe ``InferenceService`` for a Triton model repository.

One service serves a whole repository: the predictor runs ``modelFormat: onnx`` over
protocol v2 with KServe's Triton runtime, from the repository uploaded to ``--storage-uri``
(the layout ``kit triton`` writes), and clients call ``/v2/models/NAME/infer`` as before.
Kubernetes cannot run on kit's machines: the manifest is checked by its content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .._files import write_text_atomic
from ..errors import UsageError

__all__ = ["KServeOptions", "inference_service", "service_name", "write_inference_service"]

API_VERSION = "serving.kserve.io/v1beta1"


@dataclass(frozen=True)
class KServeOptions:
    """Where the repository lives and what each predictor pod gets."""

    storage_uri: str
    cpu: str = "1"
    memory: str = "2Gi"
    gpus: int = 0


def service_name(model: str) -> str:
    """A Kubernetes name (DNS-1035 label) for ``model``: ``mnist_cnn`` -> ``mnist-cnn``."""
    name = re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"m-{name}"
    return name[:63].rstrip("-")


def inference_service(name: str, options: KServeOptions) -> dict[str, Any]:
    """An ``InferenceService`` named ``name`` serving every model of the repository at
    ``options.storage_uri`` with KServe's Triton runtime (the one that reads config.pbtxt).

    Raises:
        UsageError: the storage URI is not a URI.
    """
    if "://" not in options.storage_uri:
        raise UsageError(
            f"--storage-uri {options.storage_uri!r} is not a URI; give where the repository "
            "is uploaded, like gs://bucket/models, s3://bucket/models or pvc://claim/models."
        )
    resources: dict[str, Any] = {"cpu": options.cpu, "memory": options.memory}
    limits = dict(resources)
    if options.gpus:
        limits["nvidia.com/gpu"] = str(options.gpus)
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": {"name": service_name(name)},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "onnx"},
                    "protocolVersion": "v2",
                    "runtime": "kserve-tritonserver",
                    "storageUri": options.storage_uri,
                    "resources": {"requests": resources, "limits": limits},
                }
            }
        },
    }


def write_inference_service(path: Path, name: str, options: KServeOptions) -> Path:
    """Write the manifest to ``path`` (through a temporary file, so never half-written)."""
    text = yaml.safe_dump(inference_service(name, options), sort_keys=False)
    try:
        write_text_atomic(path, text)
    except OSError as exc:
        raise UsageError(
            f"Cannot write {path}: {exc.strerror}; pass a writable --kserve path."
        ) from None
    return path
