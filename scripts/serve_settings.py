"""kit serve's settings side by side for one model, interleaved: each round measures the
in-process ceiling, then every setting under the same wrk load, with the batches it ran.

    python scripts/serve_settings.py --export /tmp/alex/alexnet --rounds 3 \\
        --setting "default=" \\
        --setting "2 processes=--processes 2" \\
        --setting "2 processes, 10 ms=--processes 2 --max-queue-delay-us 10000"

A setting is LABEL=ARGS, the arguments added to bench_serve_ratio.py's kit serve command
(binary batch-1 requests, wrk with one thread, --max-batch-size 32 --max-queue-delay-us 500;
a later flag wins). Batches come from /metrics' kit_batch_size around the measured run, all
processes added up: how many ran, their mean rows, and how many held a single row.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import tempfile
from pathlib import Path

import bench_serve_ratio as ratio
from serve_cpu_budget import batch_mix, batches

import kit.runtime as kr


def setting(text: str) -> tuple[str, list[str]]:
    label, sep, args = text.partition("=")
    if not sep or not label:
        raise argparse.ArgumentTypeError(f"{text!r} is not LABEL=ARGS")
    return label, shlex.split(args)


def one(export: Path, args: list[str], seconds: int, clients: int, work: Path) -> tuple[float, str]:
    """Requests per second one setting served, and the batches it ran, in words."""
    script = work / "post.lua"
    script.write_text(ratio._LUA)
    body = ratio.bodies(ratio._sample(export), kr.load(export).input_name, work)
    with ratio.kit_serve(ratio.ROOT, export, args) as (port, _):
        url = f"http://127.0.0.1:{port}/v2/models/{export.name}/infer"
        ratio.wrk(url, body["binary"], 2, clients, script)  # every process up and warm
        before = batches(port, export.name)
        served = ratio.wrk(url, body["binary"], seconds, clients, script)
        mix = batch_mix(before, batches(port, export.name))
    count = sum(mix.values())
    rows = sum(size * n for size, n in mix.items())  # by bucket middles: approximate
    mean = rows / max(count, 1)
    return served, f"{count:.0f} batches, mean ~{mean:.1f} rows, {mix.get(1, 0):.0f} of 1 row"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--export", type=Path, default=ratio.ROOT / "exported" / "mnist_cnn")
    parser.add_argument("--setting", type=setting, action="append", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    try:
        for r in range(args.rounds):
            top = ratio.ceiling(args.export)
            print(f"round {r + 1}: ceiling {top:,.1f} img/s", flush=True)
            for label, extra in args.setting:
                served, mix = one(args.export, extra, args.seconds, args.clients, work)
                print(f"  {label:28} {served:7,.1f} req/s ({served / top:.1%})  {mix}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
