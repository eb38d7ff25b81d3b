"""kit serve with its HTTP work kept off the core onnxruntime computes on: how much of that
core's own batch-32 ceiling the server keeps when nothing else runs there.

    python scripts/serve_pinned.py --export /tmp/alex/alexnet --rounds 3

On a machine of two cores, the event loop (and wrk) run on core 0 and every other thread of
kit serve (one onnxruntime thread: ``--threads 1``) on core 1; the ceiling is in-process
onnxruntime with one thread on core 1 at batch 32, the best of five stretches, measured
before and after each server run. Same load as bench_serve_ratio.py: binary batch-1
requests, 32 clients, ``--max-batch-size 32 --max-queue-delay-us 500``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import bench_serve_ratio as ratio
from serve_cpu_budget import batch_mix, batches

import kit.runtime as kr

LOOP_CORE, COMPUTE_CORE = 0, 1


def ceiling_one_core(export: Path) -> float:
    """Images per second of one onnxruntime thread on the compute core, batch 32."""
    os.sched_setaffinity(0, {COMPUTE_CORE})
    try:
        return ratio.ceiling(export, threads=1)
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def pin(pid: int) -> None:
    """The server's event loop (its main thread) on the loop core, every other thread on
    the compute core."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(tid), {LOOP_CORE} if int(tid) == pid else {COMPUTE_CORE})


def served(export: Path, work: Path, seconds: int) -> tuple[float, dict[int, float]]:
    """kit serve's binary req/s with the cores split, and the batches it ran."""
    script = work / "post.lua"
    body = ratio.bodies(ratio._sample(export), kr.load(export).input_name, work)["binary"]
    with ratio.kit_serve(ratio.ROOT, export, ["--threads", "1"]) as (port, pid):
        url = f"http://127.0.0.1:{port}/v2/models/{export.name}/infer"
        env = {**os.environ, "KIT_BODY": str(body[0]), "KIT_HEADER": body[1]}

        def load(duration: int) -> str:
            command = ["taskset", "-c", str(LOOP_CORE), "wrk", "-t1", "-c32", f"-d{duration}s"]
            command += ["-s", str(script), url]
            return subprocess.run(command, env=env, capture_output=True, text=True).stdout

        load(2)  # every thread started, then pinned
        pin(pid)
        before = batches(port, export.name)
        out = load(seconds)
        mix = batch_mix(before, batches(port, export.name))
    if "Non-2xx" in out:
        raise SystemExit(f"kit serve answered with errors:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]), mix  # type: ignore[index]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--export", type=Path, default=ratio.ROOT / "exported" / "mnist_cnn")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("This benchmark splits two cores; this machine has one.")
    work = Path(tempfile.mkdtemp())
    (work / "post.lua").write_text(ratio._LUA)
    print(f"# serve_pinned, {args.export.name}: loop and wrk on core 0, onnxruntime on core 1")
    try:
        for n in range(1, args.rounds + 1):
            top = ceiling_one_core(args.export)
            rps, mix = served(args.export, work, args.seconds)
            after = ceiling_one_core(args.export)
            print(
                f"round {n}: one-thread ceiling {top:.1f} / {after:.1f} img/s (before / after); "
                f"served {rps:.1f} req/s = {rps / top:.1%} / {rps / after:.1%}"
            )
            print(f"  batches run, by rows (bucket middle: batches): {mix}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
