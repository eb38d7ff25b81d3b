"""What a network's forward returns, as named tensors.

kit exports networks whose forward returns a tensor, a tuple or list of tensors, or a
dict of tensors (segmenters, detectors, multi-head networks). Each tensor becomes one
named ONNX output, in the order torch's exporters flatten them (a dict's own order):
a lone tensor is ``logits``, a sequence ``output_0, output_1, ...``, a dict its keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .artifact import SINGLE_OUTPUT
from .errors import ArtifactError, UsageError

__all__ = ["default_output_names", "flatten_outputs", "output_names"]


def flatten_outputs(out: Any, *, network: str) -> list[torch.Tensor]:
    """``out`` as a flat list of tensors, in the exporters' order.

    Raises:
        ArtifactError: ``out`` is something else (nested, or holds non-tensors).
    """
    if isinstance(out, torch.Tensor):
        return [out]
    values: list[Any] = []
    if isinstance(out, Mapping):
        values = list(out.values())
    elif isinstance(out, Sequence) and not isinstance(out, str):
        values = list(out)
    if values and all(isinstance(v, torch.Tensor) for v in values):
        return values
    raise ArtifactError(
        f"{network} returns {_describe(out)}; kit exports networks whose forward returns a "
        "tensor, a tuple/list of tensors or a dict of tensors: wrap the network in a module "
        "that returns one of those."
    )


def default_output_names(out: Any) -> list[str]:
    """``logits`` for a tensor, ``output_0..`` for a sequence, the keys of a dict."""
    if isinstance(out, torch.Tensor):
        return [SINGLE_OUTPUT]
    if isinstance(out, Mapping):
        return [str(k) for k in out]
    return [f"output_{i}" for i in range(len(out))]


def output_names(out: Any, override: Sequence[str] | None, *, network: str) -> list[str]:
    """The ONNX output names for ``out`` (``override`` when given, checked against it).

    Raises:
        UsageError: ``override`` has the wrong count or repeats a name.
    """
    count = len(flatten_outputs(out, network=network))
    names = list(override) if override else default_output_names(out)
    if len(names) != count:
        raise UsageError(
            f"--output-names gives {len(names)} name(s) but {network} returns {count} tensor(s)."
        )
    if len(set(names)) != len(names) or not all(names):
        raise UsageError(f"Output names must be distinct and non-empty; got {names}.")
    return names


def _describe(out: Any) -> str:
    if isinstance(out, Mapping):
        inner = {type(v).__name__ for v in out.values()}
        return f"a dict of {', '.join(sorted(inner)) or 'nothing'}"
    if isinstance(out, Sequence) and not isinstance(out, str):
        inner = {type(v).__name__ for v in out}
        return f"a {type(out).__name__} of {', '.join(sorted(inner)) or 'nothing'}"
    return f"a {type(out).__name__}"
