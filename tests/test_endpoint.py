"""kit parity --endpoint: a live inference server's model against eager, as the local checks
compare files; and every way an endpoint can be wrong."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from kit.artifact import MANIFEST
from kit.cli import cli
from kit.runners.endpoint import connect

from .conftest import free_port


def parity(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["parity", *args], prog_name="kit")
    return result.exit_code, result.output


def test_the_served_model_matches_eager(shipped_mnist_cnn: Path, kit_server: str) -> None:
    code, out = parity(str(shipped_mnist_cnn), "--endpoint", kit_server, "--json")
    report = json.loads(out)
    assert code == 0 and report["passed"], out
    rows = report["comparisons"]
    assert {r["runtime"] for r in rows} == {f"kit 0.1.0 at {kit_server} (binary)"}
    assert [r["inputs"] for r in rows] == [
        "random b=1",
        "random b=3",
        "random b=8",
        "mnist test b=256",
    ]
    assert all(r["top1_agreement"] == 1.0 for r in rows)


def test_a_variant_is_judged_by_agreement(shipped_mnist_cnn: Path, kit_server: str) -> None:
    code, out = parity(
        str(shipped_mnist_cnn), "--endpoint", kit_server, "--model-name", "mnist_cnn_int8", "--json"
    )
    report = json.loads(out)
    assert code == 0 and [r["artifact"] for r in report["comparisons"]] == ["endpoint int8"]


def test_json_tensors_give_the_binary_answers(kit_server: str) -> None:
    endpoint = connect(kit_server, "lenet")
    assert endpoint.binary and endpoint.max_batch == 64
    x = np.random.default_rng(0).standard_normal((130, 1, 28, 28), dtype=np.float32)  # 3 requests
    binary = endpoint.run(x)
    endpoint.binary = False
    np.testing.assert_array_equal(endpoint.run(x)[0], binary[0])
    assert binary[0].shape == (130, 10)


def test_a_server_whose_metadata_disagrees(
    lenet_export: Path, kit_server: str, tmp_path: Path
) -> None:
    copy = tmp_path / "lenet"
    shutil.copytree(lenet_export, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["outputs"][0]["name"] = "scores"
    (copy / MANIFEST).write_text(json.dumps(manifest))
    code, out = parity(str(copy), "--endpoint", kit_server)
    assert (
        code == 1
        and "the server's outputs for lenet are [('logits'" in out
        and "the manifest's [('scores'" in out
    )


def test_a_model_the_server_does_not_have(lenet_export: Path, kit_server: str) -> None:
    code, out = parity(str(lenet_export), "--endpoint", kit_server, "--model-name", "nope")
    assert (
        code == 2
        and "has no model 'nope' (it has lenet, lenet_int8, mnist_cnn, mnist_cnn_int8)" in out
    )


def test_an_unreachable_endpoint(lenet_export: Path) -> None:
    code, out = parity(str(lenet_export), "--endpoint", f"http://127.0.0.1:{free_port()}")
    assert code == 1 and "Cannot reach http://127.0.0.1:" in out and "is the server running?" in out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def not_a_protocol_server(tmp_path: Path) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tmp_path))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_an_endpoint_that_does_not_speak_the_protocol(
    lenet_export: Path, not_a_protocol_server: str
) -> None:
    code, out = parity(str(lenet_export), "--endpoint", not_a_protocol_server)
    assert code == 1 and "does not answer GET /v2 as an Open Inference Protocol server" in out


def test_bad_options(lenet_export: Path) -> None:
    code, out = parity(str(lenet_export), "--endpoint", "ftp://example")
    assert code == 2 and "is not an http(s) URL" in out
    code, out = parity(str(lenet_export), "--model-name", "lenet")
    assert code == 2 and "give --endpoint too" in out


def _batches(note: str) -> tuple[int, int]:
    import re

    found = re.search(r"these (\d+) requests as (\d+) batches", note)
    assert found, note
    return int(found[1]), int(found[2])


def test_concurrent_requests_are_merged_and_each_answer_agrees(
    shipped_mnist_cnn: Path, kit_server: str
) -> None:
    code, out = parity(str(shipped_mnist_cnn), "--endpoint", kit_server, "--concurrency", "16",
                       "--samples", "400", "--json")  # fmt: skip
    report = json.loads(out)
    assert code == 0 and report["passed"], out
    runtimes = {r["runtime"] for r in report["comparisons"]}
    assert len(runtimes) == 2 and any(r.endswith("against each sent alone") for r in runtimes)
    requests, batches = _batches(next(n for n in report["notes"] if "batches" in n))
    assert requests == 1 + 3 + 8 + 400 and batches < requests  # the server merged them


def test_a_server_whose_answers_depend_on_the_batch_fails(lenet_export: Path) -> None:
    """A server that gets batching wrong (each answer shifted by its batch's size) passes a
    request at a time and fails once requests are merged."""
    import kit.runtime as kr
    from kit.server.app import ServerConfig

    from .server_utils import running_server

    class BatchDependent(kr.Model):
        def predict(self, x: np.ndarray, *, validate: bool = True) -> dict[str, np.ndarray]:
            out = super().predict(x, validate=validate)
            return {k: v + 0.1 * (len(x) - 1) for k, v in out.items()}

    model = kr.load(lenet_export, warmup=False)
    model.__class__ = BatchDependent
    config = ServerConfig(max_batch_size=32, max_queue_delay_us=20_000)
    with running_server({"lenet": model}, config) as (url, _):
        args = ["parity", str(lenet_export), "--endpoint", f"http://{url}", "--concurrency", "16"]
        result = CliRunner().invoke(cli, [*args, "--batch-sizes", "8", "--json"], prog_name="kit")
    report = json.loads(result.stdout)  # the hint to relax goes to stderr
    assert result.exit_code == 1 and not report["passed"]
    failed = {r["runtime"] for r in report["comparisons"] if not r["passed"]}
    assert any(r.endswith("against each sent alone") for r in failed), failed
