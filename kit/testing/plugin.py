"""The pytest plugin kit installs: ``pytest --kit-parity exported/`` collects one test per
artifact and comparison of every export found there (and one for its files' sha256).

Parity runs once per export, at collection; each test then reports one row of it, so a CI
page shows which artifact, runtime and input failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..artifact import MANIFEST


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kit", "kit's artifact parity")
    group.addoption(
        "--kit-parity",
        action="append",
        default=[],
        metavar="PATH",
        help="An export directory, or a directory of them: one test per artifact and comparison.",
    )
    group.addoption(
        "--kit-parity-runtime",
        action="append",
        default=[],
        metavar="RUNTIME",
        help="python (default), node or browser; repeat for several.",
    )


def _exports(path: Path) -> list[Path]:
    if (path / MANIFEST).is_file():
        return [path]
    found = sorted(p for p in path.iterdir() if (p / MANIFEST).is_file()) if path.is_dir() else []
    if not found:
        raise pytest.UsageError(
            f"--kit-parity {path}: no export (a directory with {MANIFEST}) there."
        )
    return found


class ParityItem(pytest.Item):
    """One row of a parity report (or the export's file check)."""

    def __init__(self, *, failure: str | None, table: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failure, self.table = failure, table

    def runtest(self) -> None:
        if self.failure is not None:
            raise AssertionError(self.failure)

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        return f"{self.failure}\n\n{self.table}"

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, self.name


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    from ..parity import format_parity
    from . import parity_report

    runtimes = config.getoption("kit_parity_runtime") or ["python"]
    for root in config.getoption("kit_parity"):
        for export in _exports(Path(root)):
            report = parity_report(export, runtimes=runtimes)
            table = format_parity(report)
            passed_files = [] if report.problems else [("files: sha256 match the manifest", None)]
            for name, failure in passed_files + report.cases():
                items.append(
                    ParityItem.from_parent(
                        session,
                        name=f"kit-parity[{export.name}: {name}]",
                        failure=failure,
                        table=table,
                        path=export / MANIFEST,
                    )
                )
