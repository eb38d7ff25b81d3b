"""``kit report --compare``: two versions of a model on the same test set.

Top-1 agreement between them, accuracy of each and the delta, per-class accuracy and the
confusion-matrix difference, speed from each export's saved ``kit bench``, and which files
changed. The gate (``--min-agreement``, ``--max-accuracy-drop``) is what CI acts on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import (
    MODEL_FILE,
    ArtifactFile,
    Limits,
    Manifest,
    open_export,
)
from ..data import arrays, choose_data, load_dataset
from ..errors import UsageError
from ..models import GivenFacts, with_facts
from ..results import load_results
from . import top1

__all__ = ["compare_exports"]


def compare_exports(
    a: Path,
    b: Path,
    *,
    limits: Limits | None = None,
    data_dir: Path | None = None,
    dataset: str | None = None,
    factory: str | None = None,
) -> dict[str, Any]:
    """Compare the exports ``a`` (the version in use) and ``b`` (its update) on A's test set.

    Raises:
        ArtifactError: either is not a complete, untampered export with a model.onnx.
        UsageError: they do not take the same input or predict the same classes.
    """
    from ..verify import saved_spec

    limits = limits or Limits()
    first, second = _checked(a), _checked(b)
    _same_task(first, second)
    spec = saved_spec(first, factory)
    choice = choose_data(spec, dataset=dataset, data_dir=data_dir, recorded=first.model.data)
    if not choice.has_files:
        raise UsageError(
            f"kit has no labelled test data to compare {a} and {b} on: pass --dataset and "
            "--data-dir (the data they were trained and validated on)."
        )
    data = load_dataset(choice.dataset, spec, data_dir=choice.data_dir)
    if data.num_classes != first.facts.num_classes:
        raise UsageError(
            f"{a} has {first.facts.num_classes} classes but {data.description} has "
            f"{data.num_classes}; compare them on their own data (--dataset, --data-dir)."
        )
    images, labels = arrays(data.test)
    images_b = images
    if (second.facts.mean, second.facts.std) != (first.facts.mean, first.facts.std):
        facts = second.facts  # B normalises its own way: feed it as it was trained
        spec_b = with_facts(spec, GivenFacts(facts.mean, facts.std))
        images_b, _ = arrays(load_dataset(choice.dataset, spec_b, data_dir=choice.data_dir).test)
    pred_a, pred_b = _predict(a, images), _predict(b, images_b)
    names = list(first.facts.class_names or [str(i) for i in range(first.facts.num_classes)])
    accuracy_a, accuracy_b = float((pred_a == labels).mean()), float((pred_b == labels).mean())
    agreement = float((pred_a == pred_b).mean())
    found = {
        "kit_compare": 1,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": f"{data.description} ({choice.said_by})",
        "samples": len(labels),
        "a": {"name": first.model.name, "directory": str(a), "accuracy": accuracy_a},
        "b": {"name": second.model.name, "directory": str(b), "accuracy": accuracy_b},
        "agreement": agreement,
        "disagreements": int((pred_a != pred_b).sum()),
        "accuracy_delta": accuracy_b - accuracy_a,
        "classes": _per_class(pred_a, pred_b, labels, names),
        "confusion_difference": _confusion(pred_b, labels, len(names))
        - _confusion(pred_a, labels, len(names)),
        "speed": _speed(a, b),
        "files": _files(first, second),
    }
    found["confusion_difference"] = found["confusion_difference"].tolist()
    found["gate"] = _gate(agreement, accuracy_a - accuracy_b, limits)
    return found


def _checked(directory: Path) -> Manifest:
    return open_export(directory, "compare", needs=(MODEL_FILE,))


def _same_task(first: Manifest, second: Manifest) -> None:
    if not first.facts.is_classifier:
        raise UsageError(
            f"{first.model.name} is not a classifier (one output of class scores), and "
            "--compare gates a classifier's update by its accuracy."
        )
    shape_a, shape_b = tuple(first.facts.input_shape), tuple(second.facts.input_shape)
    if shape_a != shape_b or first.facts.num_classes != second.facts.num_classes:
        raise UsageError(
            f"{first.model.name} takes {shape_a} and predicts {first.facts.num_classes} classes, "
            f"{second.model.name} takes {shape_b} and predicts {second.facts.num_classes}: not "
            "two versions of one model."
        )


def _predict(directory: Path, images: np.ndarray) -> np.ndarray:
    from ..runners import RunnerOptions, make_runners

    onnx = ArtifactFile(MODEL_FILE, "onnx")
    (runner,) = make_runners(directory, [onnx], options=RunnerOptions(provider="cpu"))
    return top1(runner.run, images)


def _confusion(pred: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """Counts by (true class, predicted class)."""
    flat = labels.astype(np.int64) * classes + pred.astype(np.int64)
    return np.bincount(flat, minlength=classes * classes).reshape(classes, classes)


def _per_class(
    pred_a: np.ndarray, pred_b: np.ndarray, labels: np.ndarray, names: list[str]
) -> list[dict[str, Any]]:
    found = []
    for k, name in enumerate(names):
        mask = labels == k
        n = int(mask.sum())
        acc_a = float((pred_a[mask] == k).mean()) if n else None
        acc_b = float((pred_b[mask] == k).mean()) if n else None
        delta = None if acc_a is None or acc_b is None else acc_b - acc_a
        found.append(
            {"name": name, "samples": n, "accuracy_a": acc_a, "accuracy_b": acc_b, "delta": delta}
        )
    return found


def _speed(a: Path, b: Path) -> dict[str, Any]:
    """Images per second of the rows both exports' saved ``kit bench`` timed (only timings
    kit made on this machine: a folder's own claims are not compared)."""
    saved = {d: load_results(d)[0].get("bench") for d in (a, b)}
    missing = [str(d) for d, r in saved.items() if r is None or not r.here]
    if missing:
        return {
            "rows": [],
            "why": f"not measured here: run kit bench on {' and '.join(missing)} first",
        }
    bench_a, bench_b = saved[a], saved[b]
    assert bench_a is not None and bench_b is not None
    rows_a = {(r.artifact, r.runtime, r.batch): r for r in bench_a.data.rows}
    rows = []
    for r in bench_b.data.rows:
        before = rows_a.get((r.artifact, r.runtime, r.batch))
        if before is not None and before.images_per_s and r.images_per_s:
            rows.append(
                {
                    "artifact": r.artifact,
                    "runtime": r.runtime,
                    "batch": r.batch,
                    "a": before.images_per_s,
                    "b": r.images_per_s,
                    "change": r.images_per_s / before.images_per_s - 1,
                }
            )
    why = (
        f"A measured {bench_a.saved.created}, B {bench_b.saved.created}: speeds from different "
        "runs compare only on the same machine under the same load"
    )
    return {"rows": rows, "why": why}


def _files(first: Manifest, second: Manifest) -> list[dict[str, Any]]:
    found = []
    for name in dict.fromkeys([*first.files, *second.files]):
        ra, rb = first.files.get(name), second.files.get(name)
        if ra is None or rb is None:
            change = "only in B" if ra is None else "only in A"
        else:
            change = "same" if ra.sha256 == rb.sha256 else "changed"
        size_a, size_b = ra.size if ra else None, rb.size if rb else None
        found.append({"name": name, "change": change, "size_a": size_a, "size_b": size_b})
    return found


def _gate(agreement: float, drop: float, limits: Limits) -> dict[str, Any]:
    reasons = []
    if agreement < limits.min_agreement:
        reasons.append(
            f"top-1 agreement {agreement:.2%} is below the {limits.min_agreement:.2%} asked for"
        )
    if drop > limits.max_accuracy_drop:
        reasons.append(
            f"accuracy drops {drop:.2%}, more than the {limits.max_accuracy_drop:.2%} allowed"
        )
    return {
        "passed": not reasons,
        "reasons": reasons,
        "min_agreement": limits.min_agreement,
        "max_accuracy_drop": limits.max_accuracy_drop,
    }
