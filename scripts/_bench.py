"""Small helpers shared by the benchmark scripts (never imported by kit)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kit.artifact import INPUT_NAME, SINGLE_OUTPUT

ROOT = Path(__file__).resolve().parent.parent


def median_us(fn: Callable[[], object], *, repeat: int = 2000, warmup: int = 200) -> float:
    """Median wall time of ``fn`` in microseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    directory: Path, *args: str, cwd: Path = ROOT
) -> tuple[subprocess.Popen[bytes], int, float]:
    """Start `kit serve` on a free port; return the process, port and seconds to ready.

    ``cwd`` is the checkout whose ``kit`` runs (``python -m`` imports it first).
    """
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kit",
            "serve",
            str(directory),
            "--port",
            str(port),
            "--log-level",
            "warning",
            *args,
        ],
        cwd=cwd,
    )
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: localhost\r\n\r\n")
                if b" 200 " in s.recv(100):
                    return proc, port, time.perf_counter() - t0
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("kit serve exited")
        time.sleep(0.005)


def binary_request(model: str, x: np.ndarray) -> bytes:
    """A complete HTTP/1.1 binary-tensor infer request."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": INPUT_NAME,
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": SINGLE_OUTPUT, "parameters": {"binary_data": True}}],
        }
    ).encode()
    body = header + x.astype("<f4").tobytes()
    return (
        f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: localhost\r\n"
        f"Inference-Header-Content-Length: {len(header)}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _client(
    port: int, request: bytes, deadline: float, latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(head.lower().split(b"\r\ncontent-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - t)
        if status != 200:
            errors.append(status)
    writer.close()


def load(port: int, request: bytes, *, clients: int, seconds: float) -> dict[str, float]:
    """Closed-loop load: ``clients`` connections each sending ``request`` back to back."""
    latencies: list[float] = []
    errors: list[int] = []

    async def main() -> float:
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(
            *(_client(port, request, deadline, latencies, errors) for _ in range(clients))
        )
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    lat = np.array(latencies)
    return {
        "requests": len(lat),
        "errors": len(errors),
        "throughput_rps": len(lat) / elapsed,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
    }


def env_info() -> str:
    return f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
