"""Test-set accuracy of eager weights or of an exported model (``kit eval``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .data import DataBundle, load_dataset
from .errors import DataError
from .models import load_network, resolve_spec
from .train import evaluate, pick_device

__all__ = ["evaluate_eager", "evaluate_exported"]


def evaluate_eager(
    model_name: str,
    weights: Path,
    data_dir: Path | None,
    *,
    dataset: str | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Accuracy of ``weights`` loaded into the registered network ``model_name``."""
    spec = resolve_spec(model_name)
    data = load_dataset(dataset or spec.recipe.dataset, spec, data_dir=data_dir)
    network = load_network(spec, weights=weights)
    _check_classes(spec.name, network.num_classes, data)
    dev = pick_device(device)
    _, acc, preds = evaluate(network.model.to(dev), data.test, dev)
    total = len(preds)
    return {
        "model": spec.name,
        "runtime": f"eager torch ({dev.type})",
        "data": data.description,
        "accuracy": acc,
        "correct": round(acc * total),
        "total": total,
    }


def _check_classes(name: str, classes: int | None, data: DataBundle) -> None:
    if classes is not None and classes != data.num_classes:
        raise DataError(
            f"{name} has {classes} classes but {data.name} has {data.num_classes}; evaluate it "
            "on data with its own classes (--dataset, --data-dir)."
        )


def evaluate_exported(
    artifact_dir: Path, data_dir: Path | None, *, dataset: str | None = None
) -> dict[str, Any]:
    """Accuracy of an exported ONNX model through kit.runtime, and its top-1 agreement
    with the eager network rebuilt from the manifest; the same for each variant."""
    from . import runtime
    from .artifact import read_manifest
    from .export.verify import rebuild_reference

    manifest = read_manifest(artifact_dir)
    spec, reference = rebuild_reference(artifact_dir, manifest)
    data = load_dataset(dataset or spec.recipe.dataset, spec, data_dir=data_dir)
    images, labels = _test_arrays(data)
    with torch.no_grad():
        ref = np.concatenate([reference(x).argmax(1).numpy() for x in _chunks(images)])
    result: dict[str, Any] = {"model": spec.name, "data": data.description}
    for precision in ["fp32", *(manifest.get("variants") or {})]:
        model = runtime.load(artifact_dir, precision=precision)
        pred = np.concatenate(
            [model.predict(x.numpy())[model.output_names[0]].argmax(1) for x in _chunks(images)]
        )
        scores = _scores(pred, labels, ref)
        if precision == "fp32":
            result |= {"runtime": f"onnxruntime {model.provider}", **scores}
        else:
            result.setdefault("variants", {})[precision] = scores
    return result


def _test_arrays(data: DataBundle) -> tuple[torch.Tensor, np.ndarray]:
    test = data.test
    if isinstance(test, TensorDataset):
        images, labels = test.tensors
    else:
        pairs = [test[i] for i in range(len(test))]  # type: ignore[arg-type]
        images = torch.stack([p[0] for p in pairs])
        labels = torch.tensor([p[1] for p in pairs])
    return images, labels.numpy()


def _chunks(images: torch.Tensor, size: int = 500) -> list[torch.Tensor]:
    return [images[i : i + size].contiguous() for i in range(0, len(images), size)]


def _scores(pred: np.ndarray, labels: np.ndarray, eager: np.ndarray) -> dict[str, Any]:
    correct = int((pred == labels).sum())
    return {
        "accuracy": correct / len(labels),
        "correct": correct,
        "total": len(labels),
        "top1_agreement": float((pred == eager).mean()),
        "disagreements": int((pred != eager).sum()),
    }
