"""Soak kit serve with good and hostile clients at once; say whether it held.

One server (the shipped mnist_cnn), ``--clients`` connections for ``--seconds``: three in
four send real test digits as binary tensors and check every answer; the rest cycle through
hostile requests (oversized batches and bodies, headers that never end or never stop,
bodies that stop half-way, strings for numbers, foreign Host names, a client that hangs up,
large JSON bodies to decode). A prober asks /v2/health/live every 50 ms. It holds when no
good request fails, the server's RSS stays within ``--rss-mb`` of its start (after warm-up)
and no health check takes over 100 ms.

    python scripts/soak_server.py --seconds 60 --clients 32
    python scripts/soak_server.py --seconds 60 --clients 32 --processes 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from pathlib import Path

import numpy as np
from _bench import ROOT, binary_request, env_info, start_server

from architectures import get_spec
from kit.data import BUNDLED_MNIST, read_idx

MODEL = "mnist_cnn"
INFER = f"/v2/models/{MODEL}/infer"


def _digits(count: int) -> np.ndarray:
    spec = get_spec(MODEL)
    images = read_idx(BUNDLED_MNIST / "t10k-images-idx3-ubyte.gz")[:count].astype(np.float32)
    return ((images / 255.0 - spec.mean[0]) / spec.std[0])[:, None]


def _post(body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {INFER} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def _hostile() -> dict[str, bytes]:
    """Requests no client should be able to hurt the server with, each complete on the wire
    unless its name says it stops."""
    big_rows = json.dumps(
        {"inputs": [{"name": "input", "shape": [20000, 1, 28, 28], "datatype": "FP32",
                     "parameters": {"binary_data_size": 20000 * 3136}}]}
    ).encode()  # fmt: skip
    strings = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32",
                     "data": ["0.5"] * 784}]}
    ).encode()  # fmt: skip
    near_limit = json.dumps(
        {"inputs": [{"name": "input", "shape": [64, 1, 28, 28], "datatype": "FP32",
                     "data": [0.5] * (64 * 784 - 1) + ["x"]}]}
    ).encode()  # fmt: skip
    return {
        "batch over the limit": _post(
            big_rows, f"Inference-Header-Content-Length: {len(big_rows)}\r\n"
        ),
        "62 MB body announced": (
            f"POST {INFER} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 62000000\r\n\r\n{{"
        ).encode(),
        "strings for numbers": _post(strings),
        "1.2 MB JSON to decode": _post(near_limit),
        "foreign Host": b"GET /ui/models/mnist_cnn/model.onnx HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        "100,000 headers (stops)": b"GET /v2 HTTP/1.1\r\nHost: localhost\r\n"
        + b"X-A: 1\r\n" * 100_000,
        "header that never ends (stops)": b"GET /v2 HTTP/1.1\r\nHost: localhost\r\nX-Slow: ",
        "body that stops half-way (stops)": _post(b'{"inputs": [')[:-1].replace(
            b"Content-Length: 12", b"Content-Length: 5000"
        ),
        "junk": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200),
    }


async def _exchange(port: int, request: bytes, *, wait: float = 15.0) -> int | None:
    """Send ``request`` on a new connection; the status answered, or None if none came."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait)
        return int(head.split(b" ", 2)[1])
    except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, asyncio.LimitOverrunError):
        return None
    finally:
        writer.close()


async def _good(port: int, digits: np.ndarray, deadline: float, tally: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while time.perf_counter() < deadline:
        x = digits[random.randrange(len(digits))][None]
        writer.write(binary_request(MODEL, x))
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"\r\ncontent-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            ok = b" 200 " in head[:16]
        except (asyncio.IncompleteReadError, ConnectionError):
            ok = False
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        tally["good"] += 1
        tally["good failed"] += not ok
    writer.close()


async def _bad(port: int, deadline: float, answers: dict[str, list[int | None]]) -> None:
    kinds = list(_hostile().items())
    while time.perf_counter() < deadline:
        name, request = random.choice(kinds)
        status = await _exchange(port, request)
        answers.setdefault(name, []).append(status)


async def _probe(port: int, deadline: float, latencies: list[float]) -> None:
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        status = await _exchange(port, b"GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
        latencies.append(time.perf_counter() - t if status == 200 else float("inf"))
        await asyncio.sleep(0.05)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _server_rss_mb(pid: int, processes: int) -> float:
    """The server's RSS: with ``--processes``, its serving processes' together (the
    supervisor's direct children; their decoding workers are not counted, as in one
    process)."""
    if processes == 1:
        return _rss_mb(pid)
    children = [
        int(stat.parent.name)
        for stat in Path("/proc").glob("[0-9]*/stat")
        if stat.exists() and int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid
    ]
    return sum(_rss_mb(child) for child in children)


async def _soak(port: int, pid: int, args: argparse.Namespace) -> dict[str, object]:
    digits = _digits(2000)
    tally = {"good": 0, "good failed": 0}
    answers: dict[str, list[int | None]] = {}
    latencies: list[float] = []
    rss: list[float] = []
    warm = time.perf_counter() + args.warmup
    await asyncio.gather(*(_good(port, digits, warm, tally) for _ in range(4)))
    start_rss = _server_rss_mb(pid, args.processes)
    deadline = time.perf_counter() + args.seconds

    async def sample() -> None:
        while time.perf_counter() < deadline:
            rss.append(_server_rss_mb(pid, args.processes))
            await asyncio.sleep(1)

    hostile = max(1, args.clients // 4)
    await asyncio.gather(
        *(_good(port, digits, deadline, tally) for _ in range(args.clients - hostile)),
        *(_bad(port, deadline, answers) for _ in range(hostile)),
        _probe(port, deadline, latencies),
        sample(),
    )
    await asyncio.sleep(2)  # let the server drop what hostile clients left open
    rss.append(_server_rss_mb(pid, args.processes))
    return {
        "rss_start_mb": round(start_rss, 1),
        "rss_max_mb": round(max(rss), 1),
        "rss_end_mb": round(rss[-1], 1),
        "good_requests": tally["good"],
        "good_failed": tally["good failed"],
        "health_checks": len(latencies),
        "health_median_ms": round(statistics.median(latencies) * 1e3, 2),
        "health_max_ms": round(max(latencies) * 1e3, 2),
        "hostile": {k: dict(sorted(_count(v).items())) for k, v in sorted(answers.items())},
    }


def _count(statuses: list[int | None]) -> dict[str, int]:
    found: dict[str, int] = {}
    for s in statuses:
        key = "no answer" if s is None else str(s)
        found[key] = found.get(key, 0) + 1
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--rss-mb", type=float, default=50)
    parser.add_argument("--processes", type=int, default=1, help="kit serve --processes")
    args = parser.parse_args()
    print(
        f"# soak_server {MODEL} ({env_info()}): {args.clients} clients, {args.seconds:g} s, "
        f"{args.processes} process(es)"
    )
    proc, port, _ = start_server(
        ROOT / "exported" / MODEL, "--header-timeout", "5", "--body-timeout", "5",
        "--processes", str(args.processes),
    )  # fmt: skip
    try:
        result = asyncio.run(_soak(port, proc.pid, args))
    finally:
        proc.terminate()
        proc.wait(30)
    grew = result["rss_max_mb"] - result["rss_start_mb"]  # type: ignore[operator]
    broken = [
        what
        for what, bad in [
            (f"{result['good_failed']} good requests failed", result["good_failed"] != 0),
            (f"RSS grew past {args.rss_mb:g} MB", grew > args.rss_mb),
            ("a health check took 100 ms or more", result["health_max_ms"] >= 100),  # type: ignore[operator]
        ]
        if bad
    ]
    held = not broken
    print(json.dumps(result, indent=2))
    print(
        f"held: {held} (RSS grew {grew:.1f} MB; limit {args.rss_mb:g} MB){'; '.join(['', *broken])}"
    )
    raise SystemExit(0 if held else 1)


if __name__ == "__main__":
    main()
