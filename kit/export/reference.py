"""Reference data in every export: the samples parity used and eager's outputs for them,
in ONNX's test-data layout (``test_data_set_N/input_0.pb``, ``output_K.pb``), readable with
``onnx.numpy_helper``, by ONNX's backend-test runners and by ``kit.runtime`` without torch.

Kept small: sets are taken in order (random batches, then the real samples, truncated) while
they fit in ``REFERENCE_BYTES`` of inputs, or four samples for networks whose samples are
larger than that allows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import (
    BUNDLED_PTE,
    FILE_NAMES,
    INPUT_NAME,
    REFERENCE_BYTES,
    REFERENCE_SET,
    FileRecord,
    ReferenceRecord,
    ReferenceSet,
    describe_files,
)
from ..rule import Tolerance

__all__ = ["Reference", "add_reference", "choose_sets", "write_reference"]

Inputs = Sequence[tuple[str, np.ndarray]]


def choose_sets(inputs: Inputs, budget: int = REFERENCE_BYTES) -> list[tuple[str, np.ndarray]]:
    """The parity inputs that fit the budget: random sets whole, the real set truncated;
    sets at other sizes than the example's (a model whose height or width varies) within a
    budget of their own, so that every size kept is proven where the model lands."""
    if not inputs:
        return []
    sample = inputs[0][1][:1].nbytes
    room = max(budget, 4 * sample)
    sized = [(label, x) for label, x in inputs if x.shape[1:] != inputs[0][1].shape[1:]]
    chosen = _within(room, sample, [i for i in inputs if i[1].shape[1:] == inputs[0][1].shape[1:]])
    kept = 0
    for label, x in sized:
        if kept + x.nbytes <= room:
            chosen.append((label, x))
            kept += x.nbytes
    return chosen


def _within(room: int, sample: int, inputs: Inputs) -> list[tuple[str, np.ndarray]]:
    chosen: list[tuple[str, np.ndarray]] = []
    for label, x in inputs:
        left = room - sum(c.nbytes for _, c in chosen)
        if x.nbytes <= left:
            chosen.append((label, x))
        elif not label.startswith("random") and left >= sample:
            rows = left // sample
            chosen.append((f"{label.split(' b=')[0]} b={rows}", x[:rows]))
    return chosen


def write_reference(
    directory: Path,
    eager: Callable[[np.ndarray], list[np.ndarray]],
    inputs: Inputs,
    rule: Tolerance,
    output_names: Sequence[str],
) -> tuple[dict[str, str], ReferenceRecord]:
    """Write the chosen sets with eager's outputs into ``directory``; returns the files
    written (for the manifest) and the record of them."""
    from onnx import numpy_helper

    files: dict[str, str] = {}
    sets = []
    for i, (label, x) in enumerate(choose_sets(inputs)):
        folder = REFERENCE_SET.format(i)
        (directory / folder).mkdir()
        tensors = {"input_0.pb": numpy_helper.from_array(np.ascontiguousarray(x), INPUT_NAME)}
        for k, (name, y) in enumerate(zip(output_names, eager(x), strict=True)):
            tensors[f"output_{k}.pb"] = numpy_helper.from_array(np.ascontiguousarray(y), name)
        for name, tensor in tensors.items():
            (directory / folder / name).write_bytes(tensor.SerializeToString())
            files[f"{folder}/{name}"] = "reference"
        sets.append(ReferenceSet(folder, label, len(x), real=not label.startswith("random")))
    size = sum((directory / f).stat().st_size for f in files)
    return files, ReferenceRecord(tuple(sets), rule.atol, rule.rtol, rule.describe(), size)


@dataclass
class Reference:
    """What :func:`add_reference` wrote: the manifest's file records and its record."""

    files: dict[str, FileRecord]
    record: ReferenceRecord


def add_reference(
    directory: Path,
    model: Any,
    name: str,
    inputs: Inputs,
    rule: Tolerance,
    output_names: Sequence[str],
) -> Reference:
    """Eager ``model``'s reference data in ``directory`` and, when there is a ``model.pte``,
    the same samples inside an ExecuTorch ``BundledProgram`` beside it."""
    from ..runners.torch import eager_run

    formats, record = write_reference(directory, eager_run(model, name), inputs, rule, output_names)
    if (directory / FILE_NAMES["pte"]).is_file():
        from .edge import bundle_pte

        bundle_pte(directory / FILE_NAMES["pte"], directory / BUNDLED_PTE, directory, record)
        formats[BUNDLED_PTE] = "pte-bundled"
    return Reference(describe_files(directory, formats), record)
