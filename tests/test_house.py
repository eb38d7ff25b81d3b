"""The house rules CI keeps: functions small enough to read at a glance, classes too."""

from __future__ import annotations

import ast
from pathlib import Path

KIT = Path(__file__).resolve().parents[1] / "kit"


def _sizes(kind: type[ast.AST] | tuple[type[ast.AST], ...], limit: int) -> list[str]:
    found = []
    for path in sorted(KIT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, kind):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[attr-defined]
                if lines > limit:
                    found.append(
                        f"{path.relative_to(KIT.parent)}:{node.lineno} {node.name} {lines}"
                    )  # type: ignore[attr-defined]
    return found


def test_no_function_is_over_80_lines() -> None:
    assert _sizes((ast.FunctionDef, ast.AsyncFunctionDef), 80) == []


def test_no_class_is_over_150_lines() -> None:
    assert _sizes(ast.ClassDef, 150) == []
