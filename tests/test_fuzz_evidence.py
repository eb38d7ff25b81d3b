"""Property-based fuzzing of the evidence a downloaded export carries: result files and
manifests through ``kit report`` (data, page and terminal), ``--compare``, ``/report/NAME``,
``self_check()`` and ``kit parity --reference``.

Nothing here comes from this machine's kit (every result is signed by another key, or
forged), so whatever the mutation: no exception but a kit error, no 5xx, bounded time, and
never READY. The number of cases each property runs is printed in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kit.runtime as kr
from kit.artifact import MANIFEST, RESULTS_DIR, read_manifest
from kit.cli import cli
from kit.errors import KitError
from kit.report import build_report, format_text, render_report
from kit.results import save_result

from .server_utils import request, running_server
from .test_evidence import passing_parity
from .test_fuzz_files import _paths, json_values

#: per property; docs/BENCHMARKS.md records the totals
CASES = int(os.environ.get("KIT_FUZZ_CASES", "150"))
FUZZ = settings(
    max_examples=CASES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: the longest any one case may take (a hang is a failure, not a slow test)
BOUND_S = 20.0

KINDS = ["parity-python", "parity-node", "bench", "eval", "check", "quantize-int8", "parity-x"]


@contextlib.contextmanager
def _bounded() -> Iterator[None]:
    start = time.monotonic()
    yield
    assert time.monotonic() - start < BOUND_S


@pytest.fixture(scope="module")
def seeds(lenet_export: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A result of each kind as kit writes it, signed by another user's kit."""
    folder = tmp_path_factory.mktemp("seed") / "lenet"
    shutil.copytree(lenet_export, folder, ignore=shutil.ignore_patterns(RESULTS_DIR))
    data = {
        "parity-python": passing_parity("lenet"),
        "parity-node": passing_parity("lenet"),
        "bench": {
            "rows": [
                {
                    "artifact": "onnx",
                    "runtime": "CPUExecutionProvider",
                    "batch": 8,
                    "p50_ms": 0.2,
                    "p90_ms": 0.3,
                    "p99_ms": 0.4,
                    "images_per_s": 40000.0,
                }
            ],
            "macs_per_sample": 1000,
            "peak_gmacs": {"fp32": 50.0},
        },
        "eval": {"accuracy": 0.99, "data": "MNIST test", "top1_agreement": 1.0},
        "check": {"findings": [{"file": "model.onnx", "target": "x", "loads": True, "why": "w"}]},
        "quantize-int8": {"file": "model.int8.onnx", "precision": "int8", "agreement": 1.0},
        "parity-x": passing_parity("lenet"),
    }
    before = os.environ["KIT_CONFIG_DIR"]
    os.environ["KIT_CONFIG_DIR"] = str(folder.parent / "someone-else")
    try:
        texts = {k: save_result(folder, k, v, f"kit {k}").read_text() for k, v in data.items()}
    finally:
        os.environ["KIT_CONFIG_DIR"] = before
    return {"folder": folder, "results": {k: json.loads(t) for k, t in texts.items()}}


def _mutate(data: Any, choice: int, value: Any, delete: bool) -> Any:
    paths = _paths(data)
    container, key = paths[choice % len(paths)]
    if delete and isinstance(container, dict):
        del container[key]
    else:
        container[key] = value
    return data


def _plant(folder: Path, seeds: dict[str, Any], kind: str, mutated: Any) -> None:
    """Every seed result as it was, and one of them replaced by ``mutated``."""
    results = folder / RESULTS_DIR
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir()
    for k, v in seeds["results"].items():
        (results / f"{k}.json").write_text(json.dumps(v))
    (results / f"{kind}.json").write_text(json.dumps(mutated))


@pytest.fixture(scope="module")
def folder(seeds: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    into = tmp_path_factory.mktemp("fuzz") / "lenet"
    shutil.copytree(seeds["folder"], into, ignore=shutil.ignore_patterns(RESULTS_DIR))
    return into


mutation = st.tuples(st.sampled_from(KINDS), st.integers(min_value=0), json_values, st.booleans())


@FUZZ
@given(change=mutation)
def test_a_mutated_result_never_crashes_the_report_nor_makes_it_ready(
    seeds: dict[str, Any], folder: Path, change: tuple[str, int, Any, bool]
) -> None:
    kind, choice, value, delete = change
    mutated = _mutate(json.loads(json.dumps(seeds["results"][kind])), choice, value, delete)
    _plant(folder, seeds, kind, mutated)
    with _bounded():
        report = build_report(folder)
        render_report(report)
        format_text(report)
    assert report["verdict"]["state"] != "ready"
    assert all(
        c["status"] not in ("pass", "warn", "fail", "stale")
        for r in report["matrix"]["rows"]
        for c in r["cells"].values()
    )


@FUZZ
@given(choice=st.integers(min_value=0), value=json_values, delete=st.booleans())
def test_a_mutated_manifest_is_refused_or_reported_never_ready(
    seeds: dict[str, Any], folder: Path, choice: int, value: Any, delete: bool
) -> None:
    _plant(folder, seeds, "parity-python", seeds["results"]["parity-python"])
    original = (seeds["folder"] / MANIFEST).read_text()
    (folder / MANIFEST).write_text(json.dumps(_mutate(json.loads(original), choice, value, delete)))
    try:
        with _bounded():
            report = build_report(folder)
            render_report(report)
    except KitError as exc:
        assert "\n" not in str(exc)
        return
    finally:
        (folder / MANIFEST).write_text(original)
    assert report["verdict"]["state"] != "ready"


@pytest.fixture(scope="module")
def served(
    seeds: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    from kit.server.repository import load_models

    root = tmp_path_factory.mktemp("served")
    shutil.copytree(seeds["folder"], root / "lenet", ignore=shutil.ignore_patterns(RESULTS_DIR))
    with running_server(load_models(root)) as (url, _):
        yield url, root / "lenet"


@FUZZ
@given(change=mutation, manifest=st.booleans())
def test_report_route_never_answers_5xx_but_503(
    seeds: dict[str, Any],
    served: tuple[str, Path],
    change: tuple[str, int, Any, bool],
    manifest: bool,
) -> None:
    url, folder = served
    kind, choice, value, delete = change
    original = (seeds["folder"] / MANIFEST).read_text()
    if manifest:
        mutated = _mutate(json.loads(original), choice, value, delete)
        (folder / MANIFEST).write_text(json.dumps(mutated))
        _plant(folder, seeds, kind, seeds["results"][kind])
    else:
        mutated = _mutate(json.loads(json.dumps(seeds["results"][kind])), choice, value, delete)
        _plant(folder, seeds, kind, mutated)
    try:
        with _bounded():
            status, _, body = request(url, "GET", "/report/lenet")
    finally:
        (folder / MANIFEST).write_text(original)
    assert status in (200, 503), body[:300]
    if status == 200:
        assert b'data-state="ready"' not in body


def _reference_names(folder: Path) -> list[str]:
    return [n for n, f in read_manifest(folder).files.items() if f.format == "reference"]


@settings(
    max_examples=max(CASES // 3, 10),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    which=st.integers(min_value=0),
    at=st.integers(min_value=0),
    chunk=st.binary(min_size=1, max_size=24),
    cut=st.booleans(),
    record=st.tuples(st.integers(min_value=0), json_values, st.booleans()),
    edit_record=st.booleans(),
)
def test_reference_data_is_checked_or_refused_never_passed_blind(
    seeds: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
    which: int,
    at: int,
    chunk: bytes,
    cut: bool,
    record: tuple[int, Any, bool],
    edit_record: bool,
) -> None:
    """A corrupted tensor (its sha256 updated, as a forger would) or a mutated reference
    record: self_check and kit parity --reference say one sentence, or check what is there."""
    from kit.artifact import describe_files, write_manifest

    folder = tmp_path_factory.mktemp("ref") / "lenet"
    shutil.copytree(seeds["folder"], folder)
    names = _reference_names(folder)
    name = names[which % len(names)]
    raw = (folder / name).read_bytes()
    at %= len(raw)
    (folder / name).write_bytes(raw[:at] if cut else raw[:at] + chunk + raw[at + len(chunk) :])
    manifest = read_manifest(folder)
    write_manifest(folder, manifest.with_files(describe_files(folder, {name: "reference"})))
    if edit_record:
        data = json.loads((folder / MANIFEST).read_text())
        data["reference"] = _mutate(data["reference"], *record)
        (folder / MANIFEST).write_text(json.dumps(data))
    with _bounded():
        try:
            check = kr.load(folder).self_check()
            assert check.rows and check.passed
        except KitError as exc:
            assert "\n" not in str(exc)
        result = CliRunner().invoke(cli, ["parity", str(folder), "--reference"])
    assert result.exit_code in (0, 1, 2), result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


@settings(
    max_examples=max(CASES // 20, 5),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    choice=st.integers(min_value=0), value=json_values, delete=st.booleans(), bench=st.booleans()
)
def test_compare_refuses_or_compares_never_crashes(
    shipped: Path,
    seeds: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
    choice: int,
    value: Any,
    delete: bool,
    bench: bool,
) -> None:
    from kit.artifact import Limits
    from kit.evaluate.compare import compare_exports

    b = tmp_path_factory.mktemp("b") / "mnist_cnn"
    shutil.copytree(shipped / "mnist_cnn", b, ignore=shutil.ignore_patterns(RESULTS_DIR))
    if bench:
        mutated = _mutate(json.loads(json.dumps(seeds["results"]["bench"])), choice, value, delete)
        _plant(b, seeds, "bench", mutated)
    else:
        data = _mutate(json.loads((b / MANIFEST).read_text()), choice, value, delete)
        (b / MANIFEST).write_text(json.dumps(data))
    try:
        found = compare_exports(shipped / "mnist_cnn", b, limits=Limits())
    except KitError as exc:
        assert "\n" not in str(exc)
        return
    assert found["speed"]["rows"] == []  # B's timings were not made here
