"""Evidence that cannot lie: what a downloaded export carries is data, never a command, never
code, never a verdict. One test (or more) per way a planted folder fooled kit before."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

import kit.runtime as kr
from kit.artifact import MANIFEST, MODEL_FILE, RESULTS_DIR, describe_files, read_manifest
from kit.artifact import write_manifest as _write_manifest
from kit.cli import cli
from kit.errors import ArtifactError
from kit.parity import ParityRun
from kit.report import build_report
from kit.results import load_results, save_result
from kit.rule import Comparison, Tolerance

from .server_utils import request, running_server

ESC = "\x1b"


def kit(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="kit")
    return result.exit_code, result.output


@pytest.fixture
def lenet(lenet_export: Path, tmp_path: Path) -> Path:
    """A copy of the session's lenet export with nothing in results/."""
    into = tmp_path / "lenet"
    shutil.copytree(lenet_export, into, ignore=shutil.ignore_patterns(RESULTS_DIR))
    return into


@contextlib.contextmanager
def elsewhere(tmp_path: Path) -> Iterator[None]:
    """Results saved inside the block are signed by another user's kit (another key)."""
    before = os.environ["KIT_CONFIG_DIR"]
    os.environ["KIT_CONFIG_DIR"] = str(tmp_path / "someone-else")
    try:
        yield
    finally:
        os.environ["KIT_CONFIG_DIR"] = before


def passing_parity(model: str) -> dict[str, Any]:
    report = ParityRun(model, Tolerance(1e-4, 1e-4))
    for artifact, runtime, key in (
        ("onnx", "CPUExecutionProvider", "onnxruntime-cpu"),
        ("torchscript", "torch.jit (cpu)", "torch"),
        ("pt2", "torch.export (cpu)", "torch"),
    ):
        report.comparisons.append(
            Comparison(
                artifact, runtime, "random b=1", 1, max_abs=0.0, scale=1.0, passed=True, key=key
            )
        )
    return report.to_dict()


def edit_manifest(folder: Path, change: Any) -> None:
    data = json.loads((folder / MANIFEST).read_text())
    change(data)
    (folder / MANIFEST).write_text(json.dumps(data))


def cells(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["artifact"], k): c for r in report["matrix"]["rows"] for k, c in r["cells"].items()}


# -- 1. results are evidence, never instructions ------------------------------------------------


def test_report_run_never_runs_a_command_a_result_holds(lenet: Path, tmp_path: Path) -> None:
    """A carried result whose command exports elsewhere or imports a module: --run runs
    kit's own checks, and the planted commands stay text."""
    somewhere = tmp_path / "somewhere"
    (tmp_path / "evil_mod.py").write_text("from pathlib import Path\nPath('IMPORTED').touch()\n")
    planted = {
        "parity-python": f"kit export --model lenet --out {somewhere}",
        "parity-node": "kit parity X --factory evil_mod:net",
    }
    with elsewhere(tmp_path):
        for kind, command in planted.items():
            path = save_result(lenet, kind, passing_parity("lenet"), command)
            data = json.loads(path.read_text())
            data["files"][MODEL_FILE] = "0" * 64  # stale: about another model.onnx
            path.write_text(json.dumps(data))
    sys.path.insert(0, str(tmp_path))
    try:
        result = CliRunner().invoke(cli, ["report", str(lenet), "--run", "--json"])
    finally:
        sys.path.remove(str(tmp_path))
    assert not somewhere.exists() and not Path("IMPORTED").exists()
    assert "evil_mod" not in sys.modules
    ran = [line for line in result.stderr.splitlines() if line.startswith("[") and " kit " in line]
    assert ran and all("--out" not in line and "evil_mod" not in line for line in ran), ran
    assert f"kit parity {lenet}" in result.stderr


# -- 2. where a result came from is known, not claimed ----------------------------------------


def test_a_result_from_elsewhere_never_makes_a_cell_pass(lenet: Path, tmp_path: Path) -> None:
    with elsewhere(tmp_path):
        save_result(lenet, "parity-python", passing_parity("lenet"), "kit parity X")
    loaded, problems = load_results(lenet)
    assert problems == [] and not loaded["parity-python"].here
    report = build_report(lenet)
    onnx = cells(report)[("onnx", "onnxruntime-cpu")]
    assert (onnx["status"], onnx["claimed"], onnx["origin"]) == ("carried", "pass", "carried in")
    assert report["verdict"]["state"] != "ready"
    code, out = kit("report", str(lenet))
    assert code == 1 and "INCOMPLETE" in out and "arrived with the folder" in out


def test_a_planted_pass_dated_in_the_future_cannot_hide_a_failure_made_here(
    lenet: Path, tmp_path: Path
) -> None:
    code, _ = kit("parity", str(lenet), "--atol", "0", "--rtol", "0", "--batch-sizes", "8")
    assert code == 1  # a real failure, made and signed here
    failed = json.loads((lenet / RESULTS_DIR / "parity-python.json").read_text())
    with elsewhere(tmp_path):  # a pass under another key, saved as another kind
        save_result(lenet, "parity-node", passing_parity("lenet"), "kit parity X")
    forged = dict(failed, created="9999-12-31T00:00:00+00:00", data=passing_parity("lenet"))
    (lenet / RESULTS_DIR / "parity-python.json").write_text(json.dumps(forged))
    report = build_report(lenet)
    assert any("in the future" in p for p in report["problems"])
    forged["created"] = failed["created"]  # the right date, the wrong signature
    (lenet / RESULTS_DIR / "parity-python.json").write_text(json.dumps(forged))
    assert not load_results(lenet)[0]["parity-python"].here
    (lenet / RESULTS_DIR / "parity-python.json").write_text(json.dumps(failed))
    report = build_report(lenet)
    assert cells(report)[("onnx", "onnxruntime-cpu")]["status"] == "fail"
    code, out = kit("report", str(lenet))
    assert code == 1 and "NOT READY" in out


def test_a_result_dated_before_the_export_is_invalid(lenet: Path) -> None:
    path = save_result(lenet, "parity-python", passing_parity("lenet"), "kit parity X")
    data = json.loads(path.read_text())
    data["created"] = "2001-01-01T00:00:00+00:00"
    path.write_text(json.dumps(data))
    loaded, problems = load_results(lenet, made=read_manifest(lenet).created)
    assert loaded == {} and "before the export was made" in problems[0]


def test_the_manifests_own_parity_record_is_carried(lenet: Path) -> None:
    """Made on this machine, the export's check is signed evidence; the record inside the
    manifest travels with the folder and never counts by itself."""
    shutil.rmtree(lenet / RESULTS_DIR, ignore_errors=True)
    report = build_report(lenet)
    assert cells(report)[("onnx", "onnxruntime-cpu")]["status"] == "carried"


def test_a_fresh_export_is_vouched_for_here(tmp_path: Path) -> None:
    code, out = kit("export", "--model", "lenet", "--formats", "onnx", "--out", str(tmp_path))
    assert code == 0, out
    loaded, _ = load_results(tmp_path / "lenet")
    assert loaded["parity-export"].here
    report = build_report(tmp_path / "lenet")
    assert cells(report)[("onnx", "onnxruntime-cpu")]["status"] == "pass"


def test_a_truncated_file_with_its_sha256_updated_is_not_ready(lenet: Path) -> None:
    assert kit("parity", str(lenet), "--batch-sizes", "1")[0] == 0
    with open(lenet / MODEL_FILE, "r+b") as f:
        f.truncate(1000)
    manifest = read_manifest(lenet)
    _write_manifest(lenet, manifest.with_files(describe_files(lenet, {MODEL_FILE: "onnx"})))
    report = build_report(lenet)
    assert report["verdict"]["state"] == "not ready"
    assert any(p.startswith("model.onnx cannot be read") for p in report["problems"])
    assert cells(report)[("onnx", "onnxruntime-cpu")]["status"] == "stale"
    assert kit("report", str(lenet))[0] == 1


# -- 3. a manifest never names code -----------------------------------------------------------


@pytest.mark.parametrize("field", ["name", "factory"])
def test_a_name_that_looks_like_code_is_never_imported(
    lenet: Path, tmp_path: Path, field: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "evil_mod.py").write_text(
        "from pathlib import Path\nPath('imported').write_text('yes')\ndef net(): pass\n"
    )
    edit_manifest(lenet, lambda d: d["model"].__setitem__(field, "evil_mod:net"))
    (lenet / "evil_mod.py").write_text((work / "evil_mod.py").read_text())  # beside it too
    every = [
        (work, ["parity", str(lenet)]),
        (lenet, ["parity", "."]),
        (work, ["report", "--compare", str(lenet), str(lenet)]),
        (work, ["eval", str(lenet)]),
        (work, ["bench", str(lenet), "--cold-runs", "0"]),
        (work, ["quantize", str(lenet)]),
    ]
    for cwd, args in every if field == "factory" else every[:3]:  # one path decides both
        done = subprocess.run(
            [sys.executable, "-m", "kit", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 2, (args, done.stderr)
        assert "--factory" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (work / "imported").exists() and not (lenet / "imported").exists()


# -- 4. reference data is read as the manifest lists it ---------------------------------------


def _sets(folder: Path) -> Path:
    return folder / read_manifest(folder).reference.sets[0].directory  # type: ignore[union-attr]


def test_an_unlisted_fifo_or_device_link_is_never_opened(lenet: Path) -> None:
    """self_check and --reference in a child with 4 GiB of address space and a deadline: a
    FIFO among the sets would hang a reader that globs, a link to /dev/zero would fill it."""
    folder = _sets(lenet)
    os.mkfifo(folder / "output_7.pb")
    (folder / "output_8.pb").symlink_to("/dev/zero")
    program = (
        "import resource, sys, kit.runtime as kr\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        f"print(kr.load({str(lenet)!r}).self_check().passed)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "True", done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "kit", "parity", str(lenet), "--reference"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_stray_output_file_never_replaces_the_hashed_one(lenet: Path) -> None:
    from onnx import numpy_helper

    from kit.runtime.reference import read_tensor

    folder = _sets(lenet)
    wrong = read_tensor(folder / "output_0.pb") + 5.0  # not what eager answered
    (folder / "output_-1.pb").write_bytes(numpy_helper.from_array(wrong).SerializeToString())
    assert kr.load(lenet).self_check().passed


@pytest.mark.parametrize(
    "break_it, said",
    [
        (lambda d: d["reference"].__setitem__("sets", []), "lists no reference sets"),
        (
            lambda d: d["files"].pop(d["reference"]["sets"][0]["directory"] + "/output_0.pb"),
            "is not listed",
        ),
    ],
)
def test_no_sets_or_no_outputs_is_a_failure(lenet: Path, break_it: Any, said: str) -> None:
    edit_manifest(lenet, break_it)
    with pytest.raises(ArtifactError, match=said):
        kr.load(lenet).self_check()
    code, out = kit("parity", str(lenet), "--reference")
    assert code == 1 and said in out and "PASSED" not in out, out


def test_an_empty_batch_is_a_failure_naming_its_file(lenet: Path) -> None:
    import numpy as np
    from onnx import numpy_helper

    name = f"{read_manifest(lenet).reference.sets[0].directory}/input_0.pb"  # type: ignore[union-attr]
    tensor = numpy_helper.from_array(np.zeros((0, 1, 28, 28), np.float32))
    (lenet / name).write_bytes(tensor.SerializeToString())
    _write_manifest(
        lenet, read_manifest(lenet).with_files(describe_files(lenet, {name: "reference"}))
    )
    with pytest.raises(ArtifactError, match="input_0.pb holds an empty batch"):
        kr.load(lenet).self_check()


def test_a_listed_file_that_became_a_link_is_refused(lenet: Path, tmp_path: Path) -> None:
    name = f"{read_manifest(lenet).reference.sets[0].directory}/output_0.pb"  # type: ignore[union-attr]
    shutil.move(lenet / name, tmp_path / "moved.pb")
    (lenet / name).symlink_to(tmp_path / "moved.pb")
    with pytest.raises(ArtifactError):
        kr.load(lenet)  # the sha256 check of every file refuses a link out first


# -- 5. the verdict follows the files ---------------------------------------------------------


def test_ready_needs_every_file_checked_here(lenet: Path) -> None:
    assert build_report(lenet)["verdict"]["state"] != "ready"
    assert kit("parity", str(lenet), "--batch-sizes", "1")[0] == 0
    assert build_report(lenet)["verdict"]["state"] == "ready"
    assert kit("report", str(lenet))[0] == 0


# -- 6. writes stay inside --------------------------------------------------------------------


def test_a_linked_results_folder_or_page_is_refused(lenet: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (lenet / RESULTS_DIR).symlink_to(outside)
    code, out = kit("parity", str(lenet), "--batch-sizes", "1")
    assert code == 0 and "not saved for kit report" in out and "link" in out, out
    code, out = kit("report", str(lenet))
    assert code == 1 and "Refusing to write" in out and "link" in out, out
    assert list(outside.iterdir()) == []
    (lenet / RESULTS_DIR).unlink()
    (lenet / RESULTS_DIR).mkdir()
    (lenet / RESULTS_DIR / "report.html").symlink_to(outside / "page.html")
    code, out = kit("report", str(lenet))
    assert code == 1 and "Refusing to write" in out and not (outside / "page.html").exists()


# -- 7. forged values fail soft ---------------------------------------------------------------


FORGED = {
    "check": {"findings": [{"file": "model.onnx", "target": "x", "loads": "yes", "why": "w"}]},
    "eval": {"accuracy": "all of it"},
    "bench": {
        "rows": [
            {
                "artifact": "onnx",
                "runtime": "CPUExecutionProvider",
                "batch": 1,
                "p50_ms": 5e-324,
                "p90_ms": 1.0,
                "p99_ms": 1.0,
                "images_per_s": 5e-324,
            }
        ]
    },
    "quantize-int8": {"file": "model.int8.onnx", "precision": "int8", "agreement": 5},
}


@pytest.mark.parametrize("kind", sorted(FORGED))
def test_a_forged_value_is_a_problem_never_a_traceback(lenet: Path, kind: str) -> None:
    path = save_result(lenet, "parity-python", passing_parity("lenet"), "x")  # a real one
    data = json.loads(path.read_text())
    data |= {"kind": kind, "data": FORGED[kind]}
    (lenet / RESULTS_DIR / f"{kind}.json").write_text(json.dumps(data))
    report = build_report(lenet)
    assert any(f"{RESULTS_DIR}/{kind}.json" in p for p in report["problems"]), report["problems"]
    code, out = kit("report", str(lenet))
    assert code == 1 and "Traceback" not in out


def test_findings_that_are_not_a_list_are_a_problem(lenet: Path) -> None:
    path = save_result(lenet, "check", {"findings": []}, "x")
    data = json.loads(path.read_text()) | {"data": {"findings": 5}}
    path.write_text(json.dumps(data))
    assert any("check.json" in p for p in build_report(lenet)["problems"])


def test_report_page_survives_results_changing_under_it(shipped: Path, tmp_path: Path) -> None:
    """/report/NAME while another thread saves and deletes results in a loop: 200, or 503
    with Retry-After, never another 5xx."""
    from kit.server.repository import load_models

    root = tmp_path / "models"
    shutil.copytree(shipped / "lenet", root / "lenet", ignore=shutil.ignore_patterns(RESULTS_DIR))
    folder = root / "lenet"
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError, ArtifactError):
                save_result(folder, "parity-python", passing_parity("lenet"), "x")
                shutil.rmtree(folder / RESULTS_DIR, ignore_errors=True)

    writer = threading.Thread(target=churn, daemon=True)
    statuses = []
    with running_server(load_models(root)) as (url, _):
        writer.start()
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            status, headers, _ = request(url, "GET", "/report/lenet")
            statuses.append(status)
            if status == 503:
                assert headers.get("retry-after") == "1"
        stop.set()
        writer.join(10)
    assert statuses and set(statuses) <= {200, 503}, sorted(set(statuses))


# -- 8. text is inert -------------------------------------------------------------------------


HOSTILE = f"mnist{ESC}]0;pwned\x07{ESC}[2J\rREADY \u202eevil\u2066" + "w" * 100_000


def test_hostile_text_reaches_neither_terminal_nor_page_raw(lenet: Path) -> None:
    def rename(d: dict[str, Any]) -> None:
        d["model"]["name"] = HOSTILE[:300]
        d["model"]["note"] = HOSTILE
        d["facts"]["class_names"] = [HOSTILE[:200]] + [str(i) for i in range(1, 10)]

    edit_manifest(lenet, rename)
    code, out = kit("report", str(lenet))
    assert code == 1
    for raw in (ESC, "\r", "\x07", "\u202e", "\u2066"):
        assert raw not in out
    assert "mnist\\x1b]0;pwned\\x07\\x1b[2J\\x0dREADY \\u202eevil\\u2066" in out
    page = (lenet / RESULTS_DIR / "report.html").read_text()
    body = page.split('<script type="application/json"')[0]
    for raw in (ESC, "\r", "\x07", "\u202e", "\u2066"):
        assert raw not in body
    assert "overflow-wrap:anywhere" in page


def test_an_error_naming_hostile_text_is_escaped(tmp_path: Path) -> None:
    code, out = kit("parity", str(tmp_path / f"x{ESC}[2J\ry"))
    assert code == 1 and ESC not in out and "\r" not in out and "x\\x1b[2J\\x0dy" in out, out


# -- 9. untrusted files are opened where a crash cannot take kit down -------------------------


def _plant(folder: Path, name: str, fmt: str, data: bytes) -> None:
    (folder / name).write_bytes(data)
    manifest = read_manifest(folder)
    _write_manifest(folder, manifest.with_files(describe_files(folder, {name: fmt})))


def test_a_random_pte_is_one_sentence_not_an_abort(lenet: Path) -> None:
    # random bytes: ExecuTorch aborts on most (the child it loads in dies of SIGABRT, named
    # in the sentence) and refuses some with an error code; either way one sentence
    _plant(lenet, "model.pte", "pte", random.Random(0).randbytes(4096))
    done = subprocess.run(
        [sys.executable, "-m", "kit", "parity", str(lenet), "--runtime", "executorch"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    said = done.stdout + done.stderr
    assert "ExecuTorch cannot load model.pte" in said, said
    assert "Traceback" not in said


def test_openvino_keeps_its_cause(lenet: Path) -> None:
    _plant(lenet, "model.xml", "openvino", b"<net><layers></layers></net>")
    _plant(lenet, "model.bin", "openvino-weights", b"")
    code, out = kit("parity", str(lenet), "--runtime", "openvino")
    assert code == 1 and "OpenVINO cannot load model.xml" in out, out
    assert "Exception from src" not in out


# -- 10. small ones ---------------------------------------------------------------------------


def test_targets_name_their_own_runtime(lenet: Path, tmp_path: Path) -> None:
    code, out = kit(
        "export", "--model", "lenet", "--target", "executorch==0.4.0", "--out", str(tmp_path)
    )
    assert code == 2 and "ExecuTorch" in out and "onnxruntime 0.4.0" not in out, out
    code, out = kit("check", str(lenet), "--target", "executorch==0.4.0", "--json")
    assert code == 0 and "no .pte file" in out


@pytest.mark.parametrize("runtime", ["python\n", "onnxruntime==1.16.3\n", " node"])
def test_runtime_names_match_whole(lenet: Path, runtime: str) -> None:
    code, out = kit("parity", str(lenet), "--runtime", runtime)
    assert code == 2 and "Unknown runtime" in out, out
    assert not (lenet / RESULTS_DIR).exists() or all(
        "\n" not in p.name for p in (lenet / RESULTS_DIR).iterdir()
    )


def test_target_names_match_whole(lenet: Path) -> None:
    code, out = kit("check", str(lenet), "--target", "onnxruntime==1.16.3\n")
    assert code == 2 and "is not one kit checks" in out


def test_the_signing_key_is_private_and_refused_when_not(tmp_path: Path) -> None:
    from kit._signing import key_path, sign

    with elsewhere(tmp_path):
        sign(b"x")
        path = key_path()
        assert path.stat().st_mode & 0o777 == 0o600
        path.chmod(0o644)
        with pytest.raises(Exception, match="can be read by others"):
            sign(b"x")


def test_saved_results_decode_through_their_types(lenet: Path) -> None:
    path = save_result(lenet, "parity-python", passing_parity("lenet"), "x")
    data = msgspec.json.decode(path.read_bytes())
    assert len(data["signature"]) == 64


def test_a_tolerance_the_reader_would_refuse_is_a_note_not_a_traceback(lenet: Path) -> None:
    """What kit saves it must read back; a run whose --atol is past the reader's bound says
    so and keeps its own answer."""
    code, out = kit("parity", str(lenet), "--atol", "1e308", "--batch-sizes", "1")
    assert code == 0 and "Traceback" not in out
    assert "not saved for kit report" in out and "would not read back" in out
    assert not (lenet / RESULTS_DIR / "parity-python.json").exists()


@pytest.mark.parametrize("atol", [-1e-300, 1e308])
def test_a_reference_tolerance_out_of_bounds_is_refused(lenet: Path, atol: float) -> None:
    edit_manifest(lenet, lambda m: m["reference"].update(atol=atol))
    code, out = kit("parity", str(lenet), "--reference")
    assert code in (1, 2) and "Traceback" not in out
    assert "atol" in out and out.count("\n") <= 2, out
