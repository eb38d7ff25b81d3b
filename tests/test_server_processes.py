"""kit serve --processes: several server processes on one port, each keeping every limit,
with one /metrics for all of them."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kit.server.config import ServerConfig
from kit.server.main import PROCESS_INLINE_SECONDS, per_process, threads_each
from kit.server.metrics import Metrics

from .server_utils import json_body, request
from .test_server_limits import _children, _raw, _status_and_error

INFER = "/v2/models/lenet/infer"


def test_the_limits_all_clients_share_are_split_between_the_processes() -> None:
    cfg = ServerConfig(max_connections=256, max_inflight_body_bytes=300, header_timeout=3.0)
    each = per_process(cfg, 3)
    assert (each.max_connections, each.max_inflight_body_bytes) == (85, 100)
    assert each.header_timeout == 3.0 and each.max_header_bytes == cfg.max_header_bytes
    assert each.inline_seconds == max(cfg.inline_seconds, PROCESS_INLINE_SECONDS)
    assert per_process(cfg, 1000).max_connections == 1  # never none at all
    assert threads_each(1) == (os.cpu_count() or 1)
    assert threads_each(10_000) == 1


def test_metrics_add_up_what_every_process_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = (
        "from kit.server.metrics import Metrics; import sys; "
        "Metrics().requests.labels('lenet', '200').inc(int(sys.argv[1]))"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in (3, 4):  # two processes, as kit serve --processes 2 runs them
        subprocess.run([sys.executable, "-c", count, str(n)], env=env, check=True)
    assert len(list(tmp_path.glob("counter_*.db"))) == 2
    alone = Metrics().exposition().decode()  # a single process: its own counts (none)
    assert 'kit_requests_total{model="lenet",status="200"}' not in alone
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    text = Metrics().exposition().decode()
    assert 'kit_requests_total{model="lenet",status="200"} 7.0' in text


def _as_a_process(monkeypatch: pytest.MonkeyPatch, directory: Path) -> Any:
    """``main.app()`` as each server process runs it, with the settings kit serve passes on
    for ``directory`` (default limits, automatic providers, one thread)."""
    from kit.server import main

    spec = {
        "directory": str(directory),
        "host": "127.0.0.1",
        "providers": None,
        "threads": 1,
        "log_level": "info",
        "config": dataclasses.asdict(ServerConfig()),
    }
    monkeypatch.setenv(main.SPEC_ENV, json.dumps(spec))
    main._spec.cache_clear()
    try:
        return main.app()
    finally:
        main._spec.cache_clear()


def test_a_process_that_cannot_load_stops_the_server_not_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn's supervisor starts a process again when it dies, unless it exits with the
    start-up failure code: a folder that became unreadable must not loop forever."""
    from uvicorn.config import STARTUP_FAILURE

    from kit.server import main

    monkeypatch.setattr(main, "json_logs", lambda level: None)  # keep pytest's log capture
    with pytest.raises(SystemExit) as stopped:
        _as_a_process(monkeypatch, tmp_path / "gone")
    assert stopped.value.code == STARTUP_FAILURE
    assert [r.message for r in caplog.records if r.levelname == "ERROR"] == ["could not start"]


def test_the_parent_of_several_processes_checks_every_export_on_the_cpu(
    lenet_export: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """It serves nothing, so it must not start a GPU (whose memory it would hold for good);
    each process then loads its own copy with the providers asked for, and says so."""
    from kit.server import main

    asked: list[Any] = []
    loaded, listen = main.load_models, main.listen_socket

    def recording(directory: Path, *, providers: Any, threads: Any) -> Any:
        asked.append(providers)
        return loaded(directory, providers=providers, threads=threads)

    monkeypatch.setattr(main, "load_models", recording)
    monkeypatch.setattr(main, "json_logs", lambda level: None)  # keep pytest's log capture
    monkeypatch.setattr(main, "_run_processes", lambda *a, **k: None)
    sockets: list[Any] = []

    def listening(host: str, port: int) -> Any:  # kept, to close it here
        sockets.append(listen(host, port))
        return sockets[-1]

    monkeypatch.setattr(main, "listen_socket", listening)
    caplog.set_level("INFO", logger=main.log.name)
    main.serve(lenet_export, port=0, processes=2)
    sockets[0].close()
    assert asked == [["CPUExecutionProvider"]]
    _as_a_process(monkeypatch, lenet_export)
    assert asked[1] is None  # the process's own choice: CUDA where a GPU is, else the CPU
    said = [r for r in caplog.records if r.name == main.log.name]
    assert [getattr(r, "event", None) for r in said] == ["checked", "listening", "loaded"]
    assert list(said[2].models) == ["lenet"]  # type: ignore[attr-defined]


@contextlib.contextmanager
def _serving(export: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    command = [sys.executable, "-m", "kit", "serve", str(export), "--port", "0", *args]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        deadline, port = time.monotonic() + 60, None
        while port is None and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stderr.readline()
            if '"listening"' in line:
                port = json.loads(line)["port"]
        assert port, "kit serve did not say its port"
        # ready once every process answers: each loaded its models before accepting
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        url = f"127.0.0.1:{port}"
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if request(url, "GET", "/v2/health/ready")[0] == 200:
                    break
            time.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(30)


def test_processes_answer_on_one_port_keep_the_limits_and_stop_together(
    lenet_export: Path,
) -> None:
    with _serving(lenet_export, "--processes", "2", "--max-header-kb", "1") as (url, proc):
        workers = _children(proc.pid)
        assert len(workers) >= 2
        x = np.random.default_rng(0).standard_normal((1, 1, 28, 28), dtype=np.float32)
        statuses = [request(url, "POST", INFER, json_body(x))[0] for _ in range(12)]
        assert statuses == [200] * 12
        metrics = request(url, "GET", "/metrics")[2].decode()
        found = re.search(r'kit_requests_total\{model="lenet",status="200"\} (\S+)', metrics)
        assert found and float(found[1]) == 12.0, metrics[:2000]
        # the limits reach every process: built there from what kit serve passed on
        for _ in range(8):
            big = b"GET /v2 HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"a" * 2048 + b"\r\n\r\n"
            assert _status_and_error(_raw(url, big))[0] == 431
    assert proc.returncode in (0, -signal.SIGTERM)
    deadline = time.monotonic() + 10
    while [p for p in workers if Path(f"/proc/{p}").exists()] and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in workers if Path(f"/proc/{p}").exists()]
    for pid in left:  # do not leave them running past a failure
        os.kill(pid, signal.SIGKILL)
    assert not left
