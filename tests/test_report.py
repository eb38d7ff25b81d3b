"""`kit report`: results saved beside an export become one page whose every cell says
something; stale, failed, tampered and hostile inputs are named; `--compare` gates an
update on the test set."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from kit.artifact import MANIFEST, RESULTS_DIR
from kit.cli import cli
from kit.parity import ParityRun
from kit.report import build_report, render_report
from kit.results import MAX_RESULT_BYTES, load_results, save_result
from kit.rule import Comparison, Tolerance
from kit.runtime.providers import cuda_available

STATUSES = {"pass", "warn", "fail", "stale", "carried", "not-run", "n/a"}


def _kit(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def export(shipped_mnist_cnn: Path, tmp_path: Path) -> Path:
    """A fresh copy of the shipped mnist_cnn without the results other tests saved."""
    into = tmp_path / "mnist_cnn"
    return Path(
        shutil.copytree(shipped_mnist_cnn, into, ignore=shutil.ignore_patterns(RESULTS_DIR))
    )


def _cells(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (row["artifact"], key): cell
        for row in report["matrix"]["rows"]
        for key, cell in row["cells"].items()
    }


def _failed_parity(model: str) -> dict[str, Any]:
    report = ParityRun(model, Tolerance(1e-4, 1e-4))
    report.comparisons.append(
        Comparison(
            "onnx",
            "CPUExecutionProvider",
            "random b=1",
            1,
            max_abs=0.5,
            scale=1.0,
            kind="tolerance",
            key="onnxruntime-cpu",
        )
    )
    return report.to_dict()


def test_every_cell_says_something(export: Path) -> None:
    report = build_report(export)
    columns = [c["key"] for c in report["matrix"]["columns"]]
    assert {"onnxruntime-cpu", "onnxruntime-cuda", "node", "browser", "executorch"} <= set(columns)
    for (artifact, column), cell in _cells(report).items():
        assert cell["status"] in STATUSES, (artifact, column)
        assert cell["text"], (artifact, column)
        if cell["status"] in ("not-run", "n/a"):
            assert cell["why"], (artifact, column)
        if cell["status"] == "not-run":
            assert cell["command"].startswith("kit "), (artifact, column)
    cells = _cells(report)
    # the shipped model's own parity record came with it: shown, claimed, never counted
    for key in (("onnx", "onnxruntime-cpu"), ("pt2", "torch")):
        assert (cells[key]["status"], cells[key]["claimed"]) == ("carried", "pass"), key
        assert cells[key]["runnable"] and cells[key]["command"].startswith("kit parity ")
    assert report["verdict"]["state"] == "incomplete"
    assert cells[("torchscript", "node")]["status"] == "n/a"
    assert cells[("pte", "executorch")]["text"] == "not exported"
    cuda = cells[("onnx", "onnxruntime-cuda")]
    if cuda_available():
        assert cuda["why"] != "no GPU on this machine"
    else:
        assert (cuda["status"], cuda["why"]) == ("not-run", "no GPU on this machine")


def test_commands_save_results_the_report_shows(export: Path) -> None:
    _kit("parity", str(export), "--batch-sizes", "1", "--samples", "16")
    _kit("check", str(export), "--target", "onnxruntime==1.16.3", code=1)
    saved, problems = load_results(export)
    assert problems == []
    assert set(saved) == {"parity-python", "check"}
    made = saved["parity-python"].saved.command
    assert made == f"kit parity {export} --samples 16 --batch-sizes 1"
    assert saved["parity-python"].here and saved["check"].here
    report = json.loads(_kit("report", str(export), "--json", code=1).output)
    onnx = _cells(report)[("onnx", "onnxruntime-cpu")]
    assert (onnx["status"], onnx["source"], onnx["saved_command"]) == (
        "pass",
        "parity-python",
        made,
    )
    assert onnx["command"] == f"kit parity {export}"  # kit's own, not the result's
    assert onnx["age_s"] < 600
    loads = {r["file"]: r for r in report["loads_in"]}
    assert loads["model.onnx"]["checked"][0]["loads"] is False  # opset 20 > what 1.16 reads
    assert loads["model.onnx"]["reads"] == "onnxruntime 1.18 or newer"  # IR 10
    assert not (export / RESULTS_DIR / "report.html").exists()  # --json alone writes no page


def test_a_result_about_changed_files_is_stale(export: Path) -> None:
    save_result(export, "parity-node", _failed_parity("mnist_cnn"), "kit parity X")
    manifest = json.loads((export / MANIFEST).read_text())
    manifest["files"]["model.onnx"]["sha256"] = "0" * 64  # as if model.onnx changed since
    (export / MANIFEST).write_text(json.dumps(manifest))
    report = build_report(export, verify=False)
    cell = _cells(report)[("onnx", "onnxruntime-cpu")]
    assert (cell["status"], cell["was"]) == ("stale", "fail")
    assert "model.onnx changed" in cell["why"]
    assert report["verdict"]["state"] == "incomplete"


def test_a_failed_result_fails_the_report(export: Path) -> None:
    save_result(export, "parity-python", _failed_parity("mnist_cnn"), "kit parity X")
    result = _kit("report", str(export), code=1)
    assert "NOT READY" in result.output
    cell = _cells(build_report(export))[("onnx", "onnxruntime-cpu")]
    assert cell["status"] == "fail" and "outside the rule" in cell["why"]
    page = (export / RESULTS_DIR / "report.html").read_text()
    assert 'data-status="fail"' in page


def test_a_tampered_export_is_not_ready(export: Path) -> None:
    with open(export / "model.int8.onnx", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    report = build_report(export)
    assert report["verdict"]["state"] == "not ready"
    assert any("model.int8.onnx does not match the sha256" in p for p in report["problems"])


def test_hostile_results_are_named_and_escaped(export: Path, tmp_path: Path) -> None:
    folder = export / RESULTS_DIR
    folder.mkdir()
    (folder / "eval.json").write_text("{not json")
    (folder / "bench.json").write_bytes(b" " * (MAX_RESULT_BYTES + 1))
    (folder / "check.json").symlink_to(tmp_path)
    (folder / "parity-x.json").write_text(json.dumps({"kind": "bench"}))
    deep = b"[" * 100_000 + b"]" * 100_000
    (folder / "parity-deep.json").write_bytes(b'{"kind": "parity-deep", "data": ' + deep + b"}")
    script = "</script><script>alert(1)</script>"
    save_result(export, "parity-node", _failed_parity(script), f"kit parity {script}")
    report = build_report(export)
    assert len(report["problems"]) == 5, report["problems"]
    page = render_report(report)
    assert "<script>alert" not in page
    assert page.count("<script") == 1  # the report's JSON, which no browser runs
    data = page.split('id="report-data">')[1].split("</script>")[0]
    assert json.loads(data)["problems"] == report["problems"]


def test_report_page_stays_small(export: Path) -> None:
    assert len(render_report(build_report(export)).encode()) < 1 << 20


@pytest.mark.slow
def test_run_fills_what_this_machine_can(export: Path) -> None:
    """--run runs the missing parity runtimes, kit eval and kit bench, each saving its result;
    a second --run has nothing left to do."""
    before = build_report(export)
    runnable = {k for k, c in _cells(before).items() if c.get("runnable")}
    assert runnable, "nothing for --run to do on a fresh copy"
    result = CliRunner().invoke(cli, ["report", str(export), "--run", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    cells = _cells(report)
    for key in runnable:
        assert cells[key]["status"] == "pass", (key, cells[key])
    assert report["accuracy"][0]["source"] == "kit eval"
    assert report["accuracy"][0]["accuracy"] > 0.98
    assert report["speed"]["status"] == "ran"
    assert {r["artifact"] for r in report["speed"]["rows"]} >= {"onnx", "onnx int8"}
    again = CliRunner().invoke(cli, ["report", str(export), "--run", "--json"])
    assert "nothing to run" in again.stderr


def test_compare_the_same_model_passes(shipped_mnist_cnn: Path, tmp_path: Path) -> None:
    out = tmp_path / "compare.html"
    result = _kit(
        "report", "--compare", str(shipped_mnist_cnn), str(shipped_mnist_cnn), "-o", str(out)
    )
    assert "gate: PASSED" in result.output
    page = out.read_text()
    assert "The update passes the gate" in page
    data = json.loads(page.split('id="report-data">')[1].split("</script>")[0])
    assert (data["agreement"], data["disagreements"], data["samples"]) == (1.0, 0, 10000)
    assert all(f["change"] == "same" for f in data["files"])


def test_compare_gates_an_update(shipped: Path) -> None:
    a, b = str(shipped / "mnist_cnn"), str(shipped / "lenet")
    found = json.loads(_kit("report", "--compare", a, b, "--json", code=1).output)
    assert not found["gate"]["passed"] and len(found["gate"]["reasons"]) == 2
    assert found["agreement"] < 0.995
    assert found["accuracy_delta"] == pytest.approx(found["b"]["accuracy"] - found["a"]["accuracy"])
    # every sample is predicted once by each: each true class's row of B - A sums to zero
    assert all(sum(row) == 0 for row in found["confusion_difference"])
    per_class = sum(c["samples"] * c["delta"] for c in found["classes"]) / found["samples"]
    assert per_class == pytest.approx(found["accuracy_delta"])
    looser = ["--min-agreement", "90", "--max-accuracy-drop", "5"]
    _kit("report", "--compare", a, b, *looser)


def test_compare_refuses_two_different_tasks(shipped_mnist_cnn: Path, tmp_path: Path) -> None:
    other = Path(shutil.copytree(shipped_mnist_cnn, tmp_path / "other"))
    manifest = json.loads((other / MANIFEST).read_text())
    manifest["facts"]["num_classes"] = 7  # as a 7-class model's manifest says
    manifest["facts"]["class_names"] = manifest["facts"]["class_names"][:7]
    (other / MANIFEST).write_text(json.dumps(manifest))
    result = _kit("report", "--compare", str(shipped_mnist_cnn), str(other), code=2)
    assert "not two versions of one model" in result.output


def test_report_needs_a_directory_or_compare() -> None:
    assert "Give an export directory" in _kit("report", code=2).output


def test_saved_results_are_typed(export: Path) -> None:
    path = save_result(export, "eval", {"accuracy": 0.5}, "kit eval X")
    saved = msgspec.json.decode(path.read_bytes())
    assert saved["kind"] == "eval" and len(saved["files"]) == len(
        json.loads((export / MANIFEST).read_text())["files"]
    )
    assert os.stat(path).st_mode & 0o777 == 0o644
    with pytest.raises(ValueError):
        save_result(export, "../escape", {}, "kit x")


@pytest.mark.slow
def test_the_page_in_chromium(chromium: Any, export: Path, kit_server: str) -> None:
    """No console error, no request beyond the page itself, and the cells the page shows are
    the report's JSON; kit serve serves the same page at /report/NAME and links it."""
    from kit.embed.packages import install_web_files

    _kit("parity", str(export), "--batch-sizes", "1")  # made here: the page can say READY
    _kit("report", str(export))
    path = export / RESULTS_DIR / "report.html"
    report = build_report(export)
    tab = chromium.new_page()
    errors: list[str] = []
    requests: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.on("request", lambda r: requests.append(r.url))
    tab.goto(path.as_uri())
    shown = tab.eval_on_selector_all(
        "td.cell", "cells => cells.map(c => [c.dataset.row, c.dataset.col, c.dataset.status])"
    )
    assert shown == [[a, k, c["status"]] for (a, k), c in _cells(report).items()]
    embedded = json.loads(tab.text_content("#report-data") or "")
    assert _timeless(embedded) == _timeless(report)
    assert tab.text_content("#verdict") == "Ready to ship: every check that ran passed"

    install_web_files(quiet=True)
    served = tab.goto(f"{kit_server}/report/mnist_cnn")
    assert served is not None and served.status == 200
    assert "default-src 'none'" in served.headers["content-security-policy"]
    assert tab.title() == "kit report: mnist_cnn"
    tab.goto(f"{kit_server}/")
    tab.wait_for_selector("body[data-ready=true]", timeout=60_000)
    assert tab.get_attribute("#report", "href") == "/report/mnist_cnn"
    assert errors == []
    assert [u for u in requests if not u.startswith((path.as_uri(), kit_server))] == []
    tab.close()
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(f"{kit_server}/report/nope", timeout=10)
    assert answer.value.code == 404
    assert "Unknown model 'nope'" in json.loads(answer.value.read())["error"]


def _timeless(data: Any) -> Any:
    """``data`` without what changes from one build to the next (ages, the build time)."""
    if isinstance(data, dict):
        return {k: _timeless(v) for k, v in data.items() if k not in ("age_s", "generated")}
    if isinstance(data, list):
        return [_timeless(v) for v in data]
    return data


def test_served_page_follows_saved_results(kit_server: str, shipped_mnist_cnn: Path) -> None:
    """kit serve renders a page once and again only when a result changes."""

    def page() -> str:
        with urllib.request.urlopen(f"{kit_server}/report/mnist_cnn", timeout=30) as answer:
            assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
            return str(answer.read().decode())

    for _ in range(2):  # a page is also rendered again each minute (its ages)
        minute = time.time() // 60
        first, again = page(), page()
        if time.time() // 60 == minute:
            break
    assert again == first
    path = save_result(shipped_mnist_cnn, "eval", {"accuracy": 0.5}, "kit eval served-test")
    try:
        changed = page()
        assert "kit eval served-test" in changed and "50.00%" in changed
    finally:
        path.unlink()


def test_a_result_from_before_runtime_keys_renders_and_names_its_renewal(export: Path) -> None:
    """Rows saved before parity rows carried their runtime's catalogue key are placed in no
    column (nothing reads a runtime from a label); the report says so and how to renew."""
    old = _failed_parity("mnist_cnn")
    for row in old["comparisons"]:
        del row["key"]
    save_result(export, "parity-python", old, "kit parity X")
    report = build_report(export, verify=False)
    cell = _cells(report)[("onnx", "onnxruntime-cpu")]
    assert cell["status"] != "fail"  # the failing row is not read as the CPU column's
    said = [p for p in report["problems"] if "older kit" in p]
    assert said and "kit parity" in said[0], report["problems"]
