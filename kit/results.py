"""The results kit's checks save beside an export (``exported/NAME/results/``), for
``kit report``: what ran, when, with which command, about which files, and who made it.

A result is evidence about an export's files, never part of them: the manifest does not
list it, and a re-export drops it. Each one records the sha256 of every file it was about,
so a report can tell a result that still describes the files from a stale one, and carries
this user's HMAC (:mod:`kit._signing`), so a report can tell a result made here from one
that arrived with the folder. A folder someone downloaded can carry results nobody ran
here: every field is validated as it is read (types, ranges, finite numbers, bounded
lengths), and nothing in a result is ever run: its command is text to show.
"""

from __future__ import annotations

import re
import shlex
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import msgspec

from . import __version__
from ._bounded import Count as _Count
from ._bounded import Duration as _Duration
from ._bounded import Name as _Name
from ._bounded import Rate as _Rate
from ._bounded import Share as _Share
from ._bounded import Text as _Text
from ._files import write_inside
from ._signing import sign, signed_here
from .artifact import RESULTS_DIR, read_manifest
from .artifact.facts import validation_sentence
from .errors import KitError
from .parity import ParityData, ParityRow, PipelineData

__all__ = [
    "MAX_RESULT_BYTES",
    "BenchData",
    "CheckData",
    "EvalData",
    "Loaded",
    "ParityData",
    "ParityRow",
    "PipelineData",
    "Saved",
    "VariantData",
    "kit_command",
    "load_results",
    "save_result",
    "seconds_since",
]

#: A result file larger than this is not read (kit's own stay far below it).
MAX_RESULT_BYTES = 4 << 20
#: At most this many result files are read from one export.
MAX_RESULTS = 64
#: ``parity-python``, ``parity-onnxruntime==1.16.3+node``, ``bench``, ``quantize-int8``
_KIND = re.compile(r"[a-z][a-z0-9.=+_-]{0,100}")
#: how far a clock may run ahead of this one before a result counts as dated in the future
_CLOCK_SKEW = timedelta(minutes=5)


class BenchRow(msgspec.Struct, frozen=True):
    artifact: _Name
    runtime: _Name
    batch: _Count
    p50_ms: _Duration | None
    p90_ms: _Duration | None
    p99_ms: _Duration | None
    images_per_s: _Rate | None
    peak_share: Annotated[float, msgspec.Meta(ge=0.0, le=1e3)] | None = None
    size: _Name = ""


class ColdRow(msgspec.Struct, frozen=True):
    artifact: _Name
    runtime: _Name
    import_s: _Duration
    load_s: _Duration
    first_s: _Duration
    total_s: _Duration
    runs: _Count


class BenchData(msgspec.Struct, frozen=True):
    """``kit bench``'s rows, cold starts and the machine's measured peaks."""

    rows: Annotated[list[BenchRow], msgspec.Meta(max_length=5000)]
    macs_per_sample: _Count = 0
    peak_gmacs: Annotated[dict[_Name, _Rate], msgspec.Meta(max_length=20)] = {}
    cold_start: Annotated[list[ColdRow], msgspec.Meta(max_length=500)] = []
    notes: Annotated[list[_Text], msgspec.Meta(max_length=200)] = []


class EvalData(msgspec.Struct, frozen=True):
    """``kit eval``'s accuracy of model.onnx on a test set."""

    accuracy: _Share
    data: _Text = ""
    top1_agreement: _Share | None = None


class LimitsData(msgspec.Struct, frozen=True):
    max_accuracy_drop: _Share = 0.003
    min_agreement: _Share = 0.995


class VariantData(msgspec.Struct, frozen=True):
    """``kit quantize``'s record of a variant (and what export saves when it adds one)."""

    file: _Name
    precision: _Name
    agreement: _Share
    format: _Name = "onnx"
    verified: bool = True
    held_out: _Text = ""
    limits: LimitsData = LimitsData()
    accuracy: _Share | None = None
    accuracy_fp32: _Share | None = None
    nodes_kept_fp32: Annotated[list[_Name], msgspec.Meta(max_length=2000)] = []


class FindingData(msgspec.Struct, frozen=True):
    file: _Name
    target: _Name
    loads: bool | None
    why: _Text


class CheckData(msgspec.Struct, frozen=True):
    """``kit check``'s findings: whether runtime versions load each file."""

    findings: Annotated[list[FindingData], msgspec.Meta(max_length=2000)]


def kit_command(args: list[str]) -> str:
    """``["parity", "exported/x"]`` as a shell line: ``kit parity exported/x``."""
    return shlex.join(["kit", *args])


def data_type(kind: str) -> type | None:
    """The type a result of ``kind`` holds (None: not a kind kit saves)."""
    if kind.startswith("parity-"):
        return ParityData
    if kind.startswith("quantize-"):
        return VariantData
    found: dict[str, type] = {"bench": BenchData, "eval": EvalData, "check": CheckData}
    return found.get(kind)


class Saved(msgspec.Struct, frozen=True):
    """One saved result, as its file holds it.

    Attributes:
        kind: What made it: ``parity-RUNTIMES``, ``parity-export``, ``bench``, ``eval``,
            ``quantize-int8``, ``check``.
        command: The kit command that made it (text to show; never run).
        created: When it was saved (ISO 8601, UTC).
        kit_version: The kit that saved it.
        files: sha256 of each of the export's files when it was saved.
        data: The command's own JSON (a parity report, bench rows, ...).
        signature: This user's HMAC of everything above (:mod:`kit._signing`).
    """

    kind: Annotated[str, msgspec.Meta(max_length=101)]
    command: _Text
    created: Annotated[str, msgspec.Meta(max_length=40)]
    kit_version: Annotated[str, msgspec.Meta(max_length=40)]
    files: Annotated[
        dict[_Text, Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(max_length=5000)
    ]
    data: dict[str, Any]
    signature: Annotated[str, msgspec.Meta(max_length=64)] = ""

    def payload(self) -> bytes:
        """What the signature covers: every field but the signature itself."""
        return msgspec.json.encode(msgspec.structs.replace(self, signature=""))

    def age_s(self, now: datetime | None = None) -> float | None:
        """Seconds since it was saved (None when ``created`` is not a time)."""
        return seconds_since(self.created, now)

    def stale_files(self, files: dict[str, str]) -> list[str]:
        """The files (name -> sha256 now) that changed or appeared since it was saved."""
        return sorted(n for n, digest in files.items() if self.files.get(n) != digest)


@dataclass(frozen=True)
class Loaded:
    """A result as read: the file, its typed data, and whether this user's kit made it."""

    saved: Saved
    data: Any
    here: bool

    @property
    def origin(self) -> str:
        return "made here" if self.here else "carried in"


def _parse_time(text: str) -> datetime | None:
    try:
        then = datetime.fromisoformat(text)
    except ValueError:
        return None
    return then if then.tzinfo else then.replace(tzinfo=UTC)


def seconds_since(created: str, now: datetime | None = None) -> float | None:
    """Seconds from the ISO 8601 time ``created`` (UTC when it names no zone) to ``now``;
    None when ``created`` is not a time."""
    then = _parse_time(created)
    return None if then is None else ((now or datetime.now(UTC)) - then).total_seconds()


def save_result(directory: Path, kind: str, data: dict[str, Any], command: str) -> Path:
    """Write ``data`` as the ``kind`` result of the export in ``directory``, signed by this
    user's kit (atomically, never through a link).

    Raises:
        ArtifactError: ``directory`` is not an export, or a link is on the way to the file.
        KitError: kit's signing key cannot be read or made, or ``data`` holds a value outside
            the bounds the reader checks (a tolerance of 1e308, say).
        OSError: the folder cannot be written (nothing is left behind).
    """
    schema = data_type(kind)
    if not _KIND.fullmatch(kind) or schema is None:
        raise ValueError(f"not a result kind: {kind!r}")
    # what kit saves, kit must read back: checked as the reader checks it (NaN and Inf as null)
    try:
        msgspec.json.decode(msgspec.json.encode(data), type=schema)
    except msgspec.ValidationError as exc:
        raise KitError(f"the {kind} result holds a value kit would not read back ({exc})") from None
    manifest = read_manifest(directory)
    saved = Saved(
        kind=kind,
        command=command,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        kit_version=__version__,
        files={name: record.sha256 for name, record in manifest.files.items()},
        data=data,
    )
    saved = msgspec.structs.replace(saved, signature=sign(saved.payload()))
    text = msgspec.json.format(msgspec.json.encode(saved)).decode() + "\n"
    return write_inside(directory, f"{RESULTS_DIR}/{kind}.json", text)


def load_results(
    directory: Path, *, made: str | None = None, now: datetime | None = None
) -> tuple[dict[str, Loaded], list[str]]:
    """Every result saved in the export at ``directory``, by kind, and one sentence for each
    file that could not be read as one (too large, not kit's JSON, a field out of range, not
    a regular file, dated in the future or before the export was ``made``)."""
    folder = directory / RESULTS_DIR
    if folder.is_symlink():
        return {}, [f"{RESULTS_DIR}/ is a link; kit reads results only from the export itself"]
    if not folder.is_dir():
        return {}, []
    found: dict[str, Loaded] = {}
    problems: list[str] = []
    try:
        paths = sorted(p for p in folder.iterdir() if p.name.endswith(".json"))
    except OSError as exc:
        return {}, [f"{RESULTS_DIR}/ cannot be listed ({exc.strerror or exc})"]
    if len(paths) > MAX_RESULTS:
        problems.append(f"{RESULTS_DIR}/ holds {len(paths)} results; read the first {MAX_RESULTS}")
    window = (_parse_time(made) if made else None, (now or datetime.now(UTC)) + _CLOCK_SKEW)
    for path in paths[:MAX_RESULTS]:
        loaded, problem = _read(path, window)
        if loaded is not None:
            found[loaded.saved.kind] = loaded
        elif problem:
            problems.append(problem)
    return found, problems


def _read(path: Path, window: tuple[datetime | None, datetime]) -> tuple[Loaded | None, str | None]:
    where = f"{RESULTS_DIR}/{path.name}"
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            return None, f"{where} is not a regular file; not read"
        if info.st_size > MAX_RESULT_BYTES:
            return None, f"{where} is {info.st_size} bytes, more than a result kit writes; not read"
        saved = msgspec.json.decode(path.read_bytes(), type=Saved)
    except FileNotFoundError:
        return None, None  # removed while the folder was read: it is simply gone
    except (msgspec.DecodeError, OSError, RecursionError) as exc:
        return None, f"{where} is not a result kit saved ({exc}); not read"
    except msgspec.ValidationError as exc:
        return None, f"{where} is not a result kit saved ({validation_sentence(exc)}); not read"
    schema = data_type(saved.kind)
    if f"{saved.kind}.json" != path.name or not _KIND.fullmatch(saved.kind) or schema is None:
        return None, f"{where} says it is a {saved.kind!r} result; not read"
    try:
        data: Any = msgspec.convert(saved.data, schema)
    except msgspec.ValidationError as exc:
        return (
            None,
            f"{where} holds a value kit never writes ({validation_sentence(exc)}); not read",
        )
    if problem := _dated_wrong(saved.created, window):
        return None, f"{where} is dated {saved.created!r}, {problem}; not read"
    return Loaded(saved, data, signed_here(saved.payload(), saved.signature)), None


def _dated_wrong(created: str, window: tuple[datetime | None, datetime]) -> str | None:
    """Why ``created`` cannot be when a result about this export was saved (None: it can)."""
    then = _parse_time(created)
    earliest, latest = window
    if then is None:
        return "not a time"
    if then > latest:
        return "in the future"
    if earliest is not None and then < earliest - timedelta(seconds=1):
        return "before the export was made"
    return None
