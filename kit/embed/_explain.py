"""How the JavaScript runtimes' errors reach a user: the operator they lack, first."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["explain"]


#: onnxruntime's words for an operator it has no kernel for: (domain, op) or (op,)
_MISSING_OP = (
    re.compile(r"(?P<domain>[\w.]*):(?P<op>\w+)\(-?\d+\) is not a registered function/op"),
    re.compile(r"Could not find an implementation for (?P<op>\w+)\("),
)


def explain(runtime: str, error: str, model: Path) -> str:
    """A runtime's error, led by the operator it lacks when that is the cause."""
    for pattern in _MISSING_OP:
        if found := pattern.search(error):
            domain = found.groupdict().get("domain") or "ai.onnx"
            return (
                f"{runtime} has no operator {domain}:{found['op']}, which {model.name} "
                f"uses; export without it (or check the opset), or run elsewhere ({error})"
            )
    return f"{runtime} {error}"
