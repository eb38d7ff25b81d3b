"""Where kit serve's time goes under load: py-spy samples the server while wrk drives it,
and the collapsed stacks are summed by function (self time and time inside).

    python scripts/profile_serve.py [--kind binary|json] [--seconds 10] [--checkout DIR]
    python scripts/profile_serve.py --export /tmp/alex/alexnet --native   # C frames too

Prints the top entries (the flame graph's widest frames) and writes the collapsed stacks and
an SVG flame graph beside them (/tmp/kit-profile.*).
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from _bench import ROOT
from bench_serve_ratio import _LUA, _sample, bodies, kit_serve, wrk

import kit.runtime as kr


def _frame(entry: str) -> str:
    """``fn (path/to/file.py:12)`` -> ``fn (file.py)``."""
    name, _, where = entry.partition(" (")
    return f"{name} ({Path(where.rstrip(')').split(':')[0]).name})" if where else name


def summarize(collapsed: Path, top: int) -> None:
    """Per thread: its share of the samples, where its CPU was (self time) and the widest
    frames below the ones every one of its samples shares (the entry points)."""
    threads: dict[str, list[tuple[list[str], int]]] = collections.defaultdict(list)
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_frame(f) for f in stack.split(";")]
        kind = "workers" if "Thread._bootstrap (threading.py)" in frames else "main"
        threads[kind].append((frames, int(count)))
        total += int(count)
    print(f"{total} samples")
    for kind, stacks in sorted(threads.items()):
        own: collections.Counter[str] = collections.Counter()
        inside: collections.Counter[str] = collections.Counter()
        mine = sum(n for _, n in stacks)
        for frames, n in stacks:
            if frames:
                own[frames[-1]] += n
            for f in set(frames):
                inside[f] += n
        shared = {f for f, n in inside.items() if n >= 0.99 * mine}
        print(f"{kind} thread(s): {mine / total:.1%} of the samples")
        print("  self time (where the CPU was):")
        for f, n in own.most_common(top):
            print(f"    {n / total:6.1%}  {f}")
        print("  time inside, below the entry points:")
        for f, n in [(f, n) for f, n in inside.most_common() if f not in shared][:top]:
            print(f"    {n / total:6.1%}  {f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--export", type=Path, default=ROOT / "exported" / "mnist_cnn")
    parser.add_argument("--kind", choices=["binary", "json"], default="binary")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--checkout", type=Path, default=ROOT)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--native", action="store_true", help="C frames too (uvloop, httptools, numpy, libc)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    (work / "post.lua").write_text(_LUA)
    body = bodies(_sample(args.export), kr.load(args.export).input_name, work)[args.kind]
    out = Path("/tmp/kit-profile")
    with kit_serve(args.checkout, args.export, []) as (port, pid):
        url = f"http://127.0.0.1:{port}/v2/models/{args.export.name}/infer"
        load = threading.Thread(
            target=wrk, args=(url, body, args.seconds + 2, args.clients, work / "post.lua")
        )
        load.start()
        spy = [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(args.seconds),
            *(["--native"] if args.native else []),
        ]
        subprocess.run([*spy, "--format", "raw", "-o", f"{out}.txt"], check=True,
                       capture_output=True)  # fmt: skip
        load.join()
    summarize(Path(f"{out}.txt"), args.top)
    print(f"collapsed stacks: {out}.txt")


if __name__ == "__main__":
    sys.exit(main())
