"""What an export proved, kept as evidence kit signed on this machine (:mod:`kit.results`).

The manifest's own parity record travels with the folder, so ``kit report`` shows it as
carried in wherever it lands; the signed result saved here is what lets the report count
the export's checks on the machine that made them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import KitError, first_line
from ..results import kit_command, save_result

__all__ = ["vouch"]

log = logging.getLogger(__name__)


def vouch(directory: Path, kind: str, data: dict[str, Any], args: list[str]) -> None:
    """Save ``data`` as the signed ``kind`` result of the export in ``directory``; a folder
    that cannot take it gets a warning (the export itself stands)."""
    try:
        save_result(directory, kind, data, kit_command(args))
    except (OSError, KitError) as exc:
        log.warning("%s: not saved for kit report: %s", directory, first_line(exc))
