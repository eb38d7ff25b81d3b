"""The runtime catalogue: its tables agree with the code, and a runtime (with a format of its
own) added as one module and one record runs through export, parity, ``kit report``,
``kit bench``, cold start and ``kit doctor`` (docs/DESIGN.md, "How to add a runtime")."""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from kit import catalogue
from kit.artifact import FILE_NAMES, read_manifest
from kit.cli import cli
from kit.report import build_report
from kit.runners import registry

# The one module a new runtime is: its records, its backend and its format's writer.
FAKE_RUNTIME = '''
"""fakert: runs model.fake (a copy of model.onnx) with onnxruntime, as a new runtime would."""
import shutil

import numpy as np

from kit import catalogue
from kit.parity import Runner
from kit.runners import Backend, artifact_label, register

catalogue.add(catalogue.Format("fake", "model.fake", "fakert", "numpy", write="fakert:write"))
catalogue.add(
    catalogue.Runtime(
        "fakert", "fakert", "Fake RT", ("fake",), ("fakert",), ("onnxruntime",),
        ("module:fakert",), extra="fake", package="numpy",
    )
)


def write(model, example, path, onnx_path):
    shutil.copyfile(onnx_path, path)


def _make(path, artifact, options):
    from kit.runtime.providers import CPU, create_session

    session = create_session(path, [CPU])
    name = session.get_inputs()[0].name

    def run(x):
        return [np.asarray(v) for v in session.run(None, {name: x})]

    label = artifact_label(artifact)
    return [Runner(label, "fakert 1.0", run, precision=artifact.precision, key="fakert")]


register(Backend("fakert", "fakert", ("fake",), _make))
'''


@pytest.fixture
def fakert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The fake runtime's module importable here and in every child (cold start)."""
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / "fakert.py").write_text(FAKE_RUNTIME)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", str(folder))
    formats, runtimes = dict(catalogue.FORMATS), dict(catalogue.RUNTIMES)
    backends = dict(registry._BACKENDS)
    importlib.import_module("fakert")
    try:
        yield
    finally:
        sys.modules.pop("fakert", None)
        for table, before in ((catalogue.FORMATS, formats), (catalogue.RUNTIMES, runtimes)):
            table.clear()
            table.update(before)  # type: ignore[arg-type]
        registry._BACKENDS.clear()
        registry._BACKENDS.update(backends)


def _kit(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="kit")
    return result.exit_code, result.output


def test_a_runtime_added_as_one_module_runs_everywhere(
    fakert: None, lenet_export: Path, tmp_path: Path
) -> None:
    export = tmp_path / "lenet"
    shutil.copytree(lenet_export, export)
    # export: the new format is written by its writer and checked in its home runtime
    code, out = _kit("export", str(export), "--formats", "fake")
    assert code == 0, out
    manifest = read_manifest(export)
    assert FILE_NAMES["fake"] == "model.fake" and "model.fake" in manifest.files
    assert any(a.format == "fake" for a in manifest.artifacts())
    # parity in the new runtime, saved with its key
    code, out = _kit("parity", str(export), "--runtime", "fakert")
    assert code == 0 and "fakert 1.0" in out, out
    saved = json.loads((export / "results" / "parity-fakert.json").read_text())
    assert {c["key"] for c in saved["data"]["comparisons"]} == {"fakert"}
    # kit report: a column of its own, the new format's cell passed
    report = build_report(export)
    assert "fakert" in [c["key"] for c in report["matrix"]["columns"]]
    row = next(r for r in report["matrix"]["rows"] if r["format"] == "fake")
    assert row["cells"]["fakert"]["status"] == "pass", row["cells"]["fakert"]
    assert row["cells"]["onnxruntime-cpu"]["status"] == "n/a"
    # kit bench times it, and its cold start runs in a fresh process that imports it
    args = ("--seconds", "0.05", "--batch-sizes", "1", "--cold-runs", "1", "--json")
    code, out = _kit("bench", str(export), *args)
    assert code == 0, out
    bench = json.loads(out)
    assert any(r["runtime"] == "fakert 1.0" for r in bench["rows"])
    assert any(c["artifact"] == "fake" and c["runtime"] == "fakert" for c in bench["cold_start"])
    # kit doctor lists it with its extra
    _, out = _kit("doctor", "--json")
    assert any(c["name"] == "fakert" and c["ready"] for c in json.loads(out))


def test_every_record_names_code_that_exists() -> None:
    for record in catalogue.RUNTIMES.values():
        for module in record.modules:
            assert importlib.util.find_spec(module) is not None, (record.key, module)
        assert set(record.formats) <= set(catalogue.FORMATS), record.key
    for fmt in catalogue.FORMATS.values():
        home = catalogue.RUNTIMES[fmt.home]
        assert fmt.key in home.formats, fmt.key  # a format's home runs it
        assert fmt.file == FILE_NAMES[fmt.key]
    assert {r.select for r in catalogue.RUNTIMES.values() if r.select} <= set(registry.runtimes())


def test_runners_carry_keys_the_catalogue_knows(shipped: Path) -> None:
    from kit.runners import make_runners

    export = shipped / "lenet"
    runners = make_runners(export, read_manifest(export).artifacts(), ["python"])
    assert runners and all(catalogue.runtime_record(r.key) is not None for r in runners)
    assert {r.key for r in runners} >= {"onnxruntime-cpu", "torch"}
