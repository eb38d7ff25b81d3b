"""The whole pipeline, not only the graph: test images as their files hold them, through
kit's own preprocessing (:mod:`kit.runtime`) into the exported ONNX file, against the eager
network fed the same images as its data set feeds them in training, and both against the
labels.

Parity compares graph with graph on tensors both sides are given, so an export whose facts
record the wrong normalisation passes it while every app gets wrong answers. This check
catches that: an export of trained weights whose answers through kit's preprocessing are
at chance level fails, and so does one that disagrees with eager on the same images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from architectures import ModelSpec

from ..data import DataChoice, arrays, load_dataset, raw_test_images
from ..rule import at_chance
from ..runners.torch import eager_run

__all__ = ["MIN_AGREEMENT", "PipelineCheck", "check_pipeline"]

#: top-1 agreement between the two pipelines on the same images (resizing may differ a
#: little between Pillow and kit's numpy resize; normalisation may not)
MIN_AGREEMENT = 0.99
#: test images the check reads
DEFAULT_IMAGES = 512


@dataclass
class PipelineCheck:
    """Images -> kit's preprocessing -> the artifact, against eager on the data set's own
    tensors of the same images, and against the labels."""

    data: str
    images: int
    classes: int
    agreement: float
    accuracy: float
    accuracy_eager: float
    trained: bool
    passed: bool
    why: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        line = (
            f"whole pipeline on {self.images} images of {self.data}: through kit's "
            f"preprocessing {self.accuracy:.2%} accurate, eager on the data set's tensors "
            f"{self.accuracy_eager:.2%}, top-1 agreement {self.agreement:.2%}"
        )
        return line + ("" if self.passed else f": FAILED, {self.why}")


def _top1(run: Any, x: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [
            np.asarray(run(np.ascontiguousarray(x[i : i + 256]))[0]).argmax(1)
            for i in range(0, len(x), 256)
        ]
    )


def check_pipeline(
    onnx_file: Path,
    spec: ModelSpec,
    model: nn.Module,
    choice: DataChoice,
    *,
    trained: bool,
    count: int = DEFAULT_IMAGES,
    trained_accuracy: float | None = None,
) -> PipelineCheck | None:
    """The check on up to ``count`` test images of the data ``choice`` names (None when the
    data has no image files or the network is not a classifier).

    ``trained_accuracy``: the test accuracy its training measured, when known; a network
    that was at chance level in its own training is untrained, not mis-normalised.

    Raises:
        DataError: the data is missing or unreadable.
    """
    import kit.runtime as kr
    from kit.runtime.preprocess import prepare_images

    artifact = kr.load(onnx_file, warmup=False)
    facts = artifact.facts
    if facts is None or not facts.is_classifier or not choice.has_files:
        return None
    raw = raw_test_images(choice.dataset, choice.data_dir, count=count)
    if raw is None or not len(raw.labels) or raw.labels.max() >= facts.num_classes:
        return None
    bundle = load_dataset(choice.dataset, spec, data_dir=choice.data_dir)
    tensors, _ = arrays(bundle.test, raw.index)
    eager = _top1(eager_run(model, spec.name), tensors)
    batch = prepare_images(raw.images, facts.input_shape, facts.mean, facts.std)
    ours = _top1(lambda x: [artifact.predict(x, validate=False)[artifact.output_names[0]]], batch)
    found = PipelineCheck(
        data=raw.description,
        images=len(raw.labels),
        classes=facts.num_classes,
        agreement=float((ours == eager).mean()),
        accuracy=float((ours == raw.labels).mean()),
        accuracy_eager=float((eager == raw.labels).mean()),
        trained=trained,
        passed=True,
    )
    untrained = trained_accuracy is not None and at_chance(
        trained_accuracy, facts.num_classes, found.images
    )
    found.trained = trained and not untrained
    found.why = _why(found, facts.mean, facts.std)
    found.passed = found.why is None
    return found


def _why(c: PipelineCheck, mean: Any, std: Any) -> str | None:
    if c.agreement < MIN_AGREEMENT:
        return (
            f"through kit's preprocessing the artifact agrees with eager on only "
            f"{c.agreement:.2%} of the images (at least {MIN_AGREEMENT:.0%} needed): the "
            "input shape, mean or std the export records is not how the data feeds the network"
        )
    if c.trained and at_chance(c.accuracy, c.classes, c.images):
        return (
            f"with trained weights it scores {c.accuracy:.2%}, chance level for {c.classes} "
            f"classes: either the network is not trained, or the normalisation it records "
            f"(mean {list(mean)}, std {list(std)}) is not what it was trained with; export "
            "again with --mean and --std as trained (or --data-dir: the data these labels "
            "come from)"
        )
    return None
