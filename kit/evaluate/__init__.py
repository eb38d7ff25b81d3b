"""Test-set accuracy of eager weights or of an exported model (``kit eval``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import DataBundle, arrays, choose_data, load_dataset
from ..errors import DataError, UsageError
from ..models import load_network, resolve_spec, with_facts
from ..train import evaluate, pick_device

__all__ = ["evaluate_eager", "evaluate_exported", "top1"]


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
    network = load_network(spec, weights=weights)
    spec = with_facts(spec, network.facts)
    choice = choose_data(spec, dataset=dataset, data_dir=data_dir)
    data = load_dataset(choice.dataset, spec, data_dir=choice.data_dir)
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
            f"{name} has {classes} classes but {data.description} has {data.num_classes}; "
            "evaluate it on data with its own classes (--dataset, --data-dir)."
        )


def evaluate_exported(
    artifact_dir: Path,
    data_dir: Path | None,
    *,
    dataset: str | None = None,
    factory: str | None = None,
) -> dict[str, Any]:
    """Accuracy of an exported ONNX model and of each variant on onnxruntime (runners from
    :mod:`kit.runners`, as apps run them), and their top-1 agreement with the eager network
    rebuilt from the manifest."""
    from ..artifact import open_export
    from ..runners import make_runners
    from ..runners.torch import eager_run
    from ..verify import rebuild_reference

    manifest = open_export(artifact_dir, "evaluate")
    spec, reference = rebuild_reference(artifact_dir, manifest, factory)
    choice = choose_data(spec, dataset=dataset, data_dir=data_dir, recorded=manifest.model.data)
    if not choice.has_files:
        raise UsageError(
            f"kit has no labelled test data for {spec.name}: pass --dataset and --data-dir."
        )
    data = load_dataset(choice.dataset, spec, data_dir=choice.data_dir)
    _check_classes(spec.name, manifest.facts.num_classes or None, data)
    images, labels = arrays(data.test)
    eager = top1(eager_run(reference, spec.name), images)
    onnx_files = [a for a in manifest.artifacts() if a.format == "onnx"]
    result: dict[str, Any] = {"model": spec.name, "data": data.description}
    for runner in make_runners(artifact_dir, onnx_files, options=_cpu()):
        scores = _scores(top1(runner.run, images), labels, eager)
        if runner.precision == "fp32":
            result |= {"runtime": f"onnxruntime {runner.runtime}", **scores}
        else:
            result.setdefault("variants", {})[runner.precision] = scores
    return result


def _cpu() -> Any:
    from ..runners import RunnerOptions

    return RunnerOptions(provider="cpu")


def top1(run: Any, images: np.ndarray, size: int = 500) -> np.ndarray:
    """The top-1 class ``run`` gives each image, ``size`` images at a time."""
    with torch.no_grad():
        return np.concatenate(
            [
                run(np.ascontiguousarray(images[i : i + size]))[0].argmax(1)
                for i in range(0, len(images), size)
            ]
        )


def _scores(pred: np.ndarray, labels: np.ndarray, eager: np.ndarray) -> dict[str, Any]:
    correct = int((pred == labels).sum())
    return {
        "accuracy": correct / len(labels),
        "correct": correct,
        "total": len(labels),
        "top1_agreement": float((pred == eager).mean()),
        "disagreements": int((pred != eager).sum()),
    }
