"""kit serve on loopback: HTTP round-trip cost and dynamic batching throughput.

    python scripts/bench_server.py --model mnist_cnn               # shipped models
    python scripts/bench_server.py --models-dir /tmp/bench --model alexnet --clients 32

Starts `kit serve` in its own process (batching on, then off), drives it with closed-loop
asyncio clients sending binary-tensor batch-1 requests, and compares with in-process
onnxruntime: a bare batch-1 run (round-trip overhead) and a batch-N run (throughput ceiling).
"""

from __future__ import annotations

import argparse
import signal
import statistics
import time
from pathlib import Path

import numpy as np
from _bench import ROOT, binary_request, env_info, load, median_us, start_server

import kit.runtime as kr
from kit.artifact import INPUT_NAME


def round_trip_us(port: int, request: bytes, n: int = 2000) -> float:
    import socket

    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")
        times = []
        for i in range(n + 200):
            t = time.perf_counter()
            s.sendall(request)
            length = 0
            while line := f.readline():
                if line == b"\r\n":
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            f.read(length)
            if i >= 200:
                times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def batch_sizes(port: int, model: str) -> str:
    """The server's batch-size histogram as 'rows<=B: count' pairs, from /metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    cumulative = sorted(
        (float(s.labels["le"]), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "kit_batch_size_bucket" and s.labels.get("model") == model
    )
    parts, previous = [], 0.0
    for le, count in cumulative:
        if count > previous:
            parts.append(f"<={le:g}: {count - previous:.0f}")
        previous = count
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "exported")
    parser.add_argument("--model", default="mnist_cnn")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-batch-size", type=int, default=None, help="default: --clients")
    parser.add_argument("--max-queue-delay-us", type=int, default=500)
    parser.add_argument("--provider", choices=["auto", "cpu", "cuda"], default="cpu")
    parser.add_argument("--processes", type=int, default=1, help="kit serve --processes")
    args = parser.parse_args()
    max_batch = args.max_batch_size or args.clients
    providers = {
        "auto": None,
        "cpu": ["CPUExecutionProvider"],
        "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    }[args.provider]
    model = kr.load(args.models_dir / args.model, providers=providers)
    x1 = np.random.default_rng(0).standard_normal((1, *model.input_shape), dtype=np.float32)  # type: ignore[misc]
    xn = np.repeat(x1, args.clients, axis=0)
    print(f"# bench_server {args.model} ({env_info()}, provider {model.provider})")
    bare1 = median_us(lambda: model.session.run(None, {INPUT_NAME: x1}), repeat=300, warmup=30)
    repeat_n = max(5, int(2e6 / max(bare1 * args.clients, 1)))

    def batch_n_us() -> float:
        return median_us(
            lambda: model.session.run(None, {INPUT_NAME: xn}), repeat=repeat_n, warmup=2
        )

    print(f"in-process session.run: batch 1 {bare1 / 1e3:.3f} ms")
    request = binary_request(args.model, x1)
    baselines = []
    for label, extra in (
        (
            "batching on",
            [
                "--max-batch-size",
                str(max_batch),
                "--max-queue-delay-us",
                str(args.max_queue_delay_us),
            ],
        ),
        ("batching off", ["--max-batch-size", "1"]),
    ):
        # the batch-N ceiling is measured right before and after each run (the machine drifts)
        before = batch_n_us()
        proc, port, ready_s = start_server(
            args.models_dir, "--provider", args.provider, "--processes", str(args.processes), *extra
        )
        try:
            rt = round_trip_us(port, request, n=300 if bare1 > 5000 else 2000)
            stats = load(port, request, clients=args.clients, seconds=args.seconds)
            batches = batch_sizes(port, args.model)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        after = batch_n_us()
        baren = (before + after) / 2
        baselines.append(baren)
        ceiling = args.clients / (baren / 1e6)
        print(
            f"{label:12} | ready in {ready_s:.2f} s | 1-client round trip p50 {rt / 1e3:.3f} ms "
            f"(+{(rt - bare1) / 1e3:.3f} ms over bare run) | {args.clients} clients: {stats['throughput_rps']:.1f} req/s "
            f"({stats['throughput_rps'] / ceiling:.0%} of in-process batch {args.clients}: "
            f"{before / 1e3:.1f}/{after / 1e3:.1f} ms before/after), p50 {stats['p50_ms']:.1f} ms, "
            f"p99 {stats['p99_ms']:.1f} ms, {stats['errors']} errors / {stats['requests']}\n"
            f"{'':12} | runs by rows (from /metrics, round trips included): {batches}"
        )
    baren = float(np.median(baselines))
    bound = args.max_queue_delay_us / 1e3 + 1.5 * baren / 1e3
    print(f"p99 bound (queue delay + 1.5 x full-batch compute): {bound:.1f} ms")


if __name__ == "__main__":
    main()
