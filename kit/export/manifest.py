"""``manifest.json``: what an export wrote, with which versions, and how it verified.

The manifest also says how to rebuild the eager reference (model name or factory,
``num_classes``, and the weights file with its sha256 or the seed), so ``kit parity
exported/NAME`` can re-verify saved artifacts on another machine. Its file name, reader
and writer are the artifact contract's (:mod:`kit.artifact`); this module assembles it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifact import (
    BATCH_AXIS,
    FORMAT_VERSION,
    INPUT_NAME,
    WEIGHTS_FILE,
    DataRecord,
    FileRecord,
    Manifest,
    MobileRecord,
    ModelFacts,
    ModelRecord,
    ReferenceRecord,
    TensorRecord,
    WeightsRecord,
)

__all__ = ["Provenance", "build_manifest", "library_versions"]


def library_versions() -> dict[str, str]:
    """Versions of the libraries that made (and check) the artifacts."""
    import onnx
    import onnxruntime
    import torch

    import kit

    versions = {
        "kit": kit.__version__,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    from importlib.metadata import PackageNotFoundError, version

    for name in ("onnxscript", "executorch", "ai-edge-litert", "litert-torch", "openvino"):
        with contextlib.suppress(PackageNotFoundError):
            versions[name] = version(name)
    return versions


@dataclass(frozen=True)
class Provenance:
    """How to rebuild the eager network an export was made from.

    Attributes:
        factory: ``module:factory`` of a user's network (None for a registered one).
        num_classes: The class count the network was built with (None: a factory
            called without one).
        seed: Seed of the random weights when there is no weights file.
        weights: The state_dict file the weights came from.
        weights_sha256: That file's sha256.
    """

    factory: str | None = None
    num_classes: int | None = None
    seed: int = 0
    weights: Path | None = None
    weights_sha256: str | None = None
    #: the data the network was trained and validated on (later commands' default)
    data: DataRecord | None = None
    #: lines for people about what the export holds (recorded in the manifest's note)
    notes: tuple[str, ...] = ()

    def random_weights_note(self, name: str) -> str | None:
        """One line saying the export holds untrained weights (None when it does not)."""
        if self.weights is not None:
            return None
        return (
            f"{name} has random weights drawn from seed {self.seed} (no --weights given); "
            "pass --weights FILE to export trained weights"
        )

    def all_notes(self, name: str) -> list[str]:
        return [n for n in (self.random_weights_note(name), *self.notes) if n]


def build_manifest(
    facts: ModelFacts,
    source: Provenance,
    *,
    output_shapes: Sequence[tuple[int, ...]],
    files: dict[str, FileRecord],
    opset: int | None,
    parity: dict[str, Any],
    mobile: MobileRecord | None = None,
    training: dict[str, Any] | None = None,
    reference: ReferenceRecord | None = None,
    targets: tuple[str, ...] = (),
    planned: dict[str, int] | None = None,
    static: dict[str, str] | None = None,
) -> Manifest:
    """The manifest of one export: the model, its facts, tensors, files and parity."""
    weights = None
    if source.weights is not None:
        weights = WeightsRecord(
            WEIGHTS_FILE, files[WEIGHTS_FILE].sha256, str(source.weights), source.weights_sha256
        )
    model = ModelRecord(
        name=facts.name,
        input_shape=facts.input_shape,
        factory=source.factory,
        num_classes=source.num_classes,
        seed=source.seed,
        weights=weights,
        note="; ".join(source.all_notes(facts.name)) or None,
        data=source.data,
    )
    outputs = zip(facts.outputs, output_shapes, strict=True)
    return Manifest(
        model=model,
        facts=facts,
        files=files,
        format_version=FORMAT_VERSION,
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        inputs=(TensorRecord(INPUT_NAME, (BATCH_AXIS, *_axes(facts))),),
        outputs=tuple(TensorRecord(n, (BATCH_AXIS, *shape)) for n, shape in outputs),
        opset=opset,
        versions=library_versions(),
        parity=parity,
        training=training,
        mobile=mobile,
        reference=reference,
        targets=targets,
        planned=dict(planned or {}),
        static=dict(static or {}),
    )


def _axes(facts: ModelFacts) -> tuple[int | str, ...]:
    """One sample's dims, a varying one by its axis's name (``height``, ``width``)."""
    names = ("channels", "height", "width")
    return tuple(d if d is not None else names[i] for i, d in enumerate(facts.sample_shape()))
