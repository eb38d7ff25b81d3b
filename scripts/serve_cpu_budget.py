"""Where kit serve's CPU goes under wrk, per request: each server process's event loop and
its other threads (onnxruntime and the batch's own work), wrk, and the machine's idle time;
the batch sizes the server ran; and what onnxruntime costs in process at that same mix.

    python scripts/serve_cpu_budget.py --export /tmp/alex/alexnet
    python scripts/serve_cpu_budget.py --export /tmp/alex/alexnet --server-arg=--processes=2

Same load and server settings as bench_serve_ratio.py (binary batch-1 requests, wrk with
one thread, --max-batch-size 32 --max-queue-delay-us 500). CPU times come from /proc
(clock ticks), so run 10 s or more. The in-process estimate times a model with as many
onnxruntime threads as each serving process has, at the middle of each batch-size bucket.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import bench_serve_ratio as ratio
import numpy as np

import kit.runtime as kr

HZ = os.sysconf("SC_CLK_TCK")
#: /proc/stat's first fields
STAT = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of ``pid``, by thread id."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        found[int(tid)] = (int(fields[11]) + int(fields[12])) / HZ
    return found


def children(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    tree = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if parent == pid:
                tree += children(int(entry))
    return tree


def machine() -> list[float]:
    """The machine's CPU seconds so far, by the kinds in ``STAT``."""
    return [int(v) / HZ for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def batches(port: int, model: str) -> dict[float, float]:
    """kit_batch_size's cumulative buckets for ``model``: upper bound -> batches run."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    name = re.escape(model)
    line = rf'^kit_batch_size_bucket\{{le="([^"]+)",model="{name}"\}} (\S+)$'
    found = re.findall(line, text, re.M)
    return {float(le): float(n) for le, n in found}


def in_process_ms(export: Path, threads: int, sizes: list[int]) -> dict[int, float]:
    """Core-milliseconds per image of onnxruntime in process at each batch size: wall time
    times ``threads``, which keep their cores busy while a run lasts."""
    model = kr.load(export, threads=threads)
    cost = {}
    for size in sizes:
        x = np.random.default_rng(0).random((size, *model.input_shape), np.float32)
        model.predict(x, validate=False)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < 1.5:
            model.predict(x, validate=False)
            n += size
        cost[size] = (time.perf_counter() - start) / n * 1000 * threads
    return cost


def batch_mix(before: dict[float, float], after: dict[float, float]) -> dict[int, float]:
    """Batches run between two readings of the histogram, by the middle of each bucket."""
    mix, below, lower = {}, 0.0, 0.0
    for bound, count in sorted(after.items()):
        ran = count - before.get(bound, 0.0) - below
        if ran > 0 and bound != float("inf"):
            mix[max(1, round((lower + 1 + bound) / 2))] = ran
        below, lower = below + ran, bound
    return mix


def measure(args: argparse.Namespace, work: Path) -> tuple[str, float, list, list]:
    """wrk's report, the ceiling, and (per-thread CPU, /proc/stat, batch histogram) before
    and after the run, with wrk's CPU seconds appended to the second."""
    script = work / "post.lua"
    script.write_text(ratio._LUA)
    body = ratio.bodies(ratio._sample(args.export), kr.load(args.export).input_name, work)
    top = ratio.ceiling(args.export)
    with ratio.kit_serve(ratio.ROOT, args.export, args.server_arg) as (port, pid):
        url = f"http://127.0.0.1:{port}/v2/models/{args.export.name}/infer"
        ratio.wrk(url, body["binary"], 2, args.clients, script)  # every process up and warm
        tree = children(pid)  # kit serve, its server processes, decoding workers

        def reading() -> list:
            return [{p: thread_cpu(p) for p in tree}, machine(), batches(port, args.export.name)]

        before = reading()
        env = {**os.environ, "KIT_BODY": str(body["binary"][0]), "KIT_HEADER": body["binary"][1]}
        command = ["wrk", "-t1", f"-c{args.clients}", f"-d{args.seconds}s", "-s", str(script)]
        load = subprocess.Popen([*command, url], env=env, stdout=subprocess.PIPE, text=True)
        time.sleep(args.seconds - 0.3)
        load_cpu = sum(thread_cpu(load.pid).values())  # before it exits; it ran ~all along
        out = load.communicate()[0]
        after = [*reading(), load_cpu]
    if "Non-2xx" in out:
        raise SystemExit(f"kit serve answered with errors:\n{out}")
    return out, top, before, after


def report(args: argparse.Namespace, out: str, top: float, before: list, after: list) -> None:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    requests = rps * args.seconds
    print(f"# serve_cpu_budget, {args.export.name}, {args.clients} clients, {args.server_arg}")
    print(f"served {rps:,.1f} req/s = {rps / top:.1%} of the ceiling ({top:,.1f} img/s)")
    print("CPU per request (ms):")
    servers = []
    for p, cpu in after[0].items():
        spent = {t: c - before[0][p].get(t, 0.0) for t, c in cpu.items()}
        loop, rest = spent.get(p, 0.0), sum(c for t, c in spent.items() if t != p)
        if loop + rest < 0.01 * args.seconds:  # the supervisor, idle workers
            continue
        servers.append(p)
        print(
            f"  process {p}: event loop {loop / requests * 1e3:.3f}, other {rest / requests * 1e3:.3f}"
        )
    print(f"  wrk: {after[3] / requests * 1e3:.3f}")
    used = dict(zip(STAT, [a - b for a, b in zip(after[1], before[1], strict=True)], strict=True))
    print("machine (s):", ", ".join(f"{k} {v:.2f}" for k, v in used.items() if v >= 0.01))
    mix = batch_mix(before[2], after[2])
    print("batches run, by rows (bucket middle: batches):", mix)
    if not mix:
        return
    threads = max(1, (os.cpu_count() or 1) // max(1, len(servers)))
    cost = in_process_ms(args.export, threads, sorted(mix))
    mixed = sum(cost[n] * n * k for n, k in mix.items()) / sum(n * k for n, k in mix.items())
    full = in_process_ms(args.export, os.cpu_count() or 1, [32])[32]
    shown = {size: round(ms, 2) for size, ms in cost.items()}
    print(f"onnxruntime in process, {threads} thread(s), CPU ms per image: {shown}")
    print(f"  at this mix {mixed:.2f} ms; at the ceiling's batch 32 on every core {full:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--export", type=Path, default=ratio.ROOT / "exported" / "mnist_cnn")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--server-arg", action="append", default=[], help="passed to kit serve")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    try:
        report(args, *measure(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
