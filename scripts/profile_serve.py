"""Where kit serve's time goes under load: py-spy samples the server while wrk drives it,
and the collapsed stacks are summed by function (self time and time inside).

    python scripts/profile_serve.py [--kind binary|json] [--seconds 10] [--checkout DIR]

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
    return f"{name} ({Path(where.split(':')[0]).name})" if where else name


def summarize(collapsed: Path, top: int) -> None:
    own: collections.Counter[str] = collections.Counter()
    inside: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_frame(f) for f in stack.split(";")[1:]]  # drop the thread name
        n = int(count)
        total += n
        if frames:
            own[frames[-1]] += n
        for f in set(frames):
            inside[f] += n
    print(f"{total} samples")
    print("self time (where the CPU was):")
    for f, n in own.most_common(top):
        print(f"  {n / total:6.1%}  {f}")
    print("time inside (the flame graph's widest frames):")
    for f, n in inside.most_common(top):
        print(f"  {n / total:6.1%}  {f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--export", type=Path, default=ROOT / "exported" / "mnist_cnn")
    parser.add_argument("--kind", choices=["binary", "json"], default="binary")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--checkout", type=Path, default=ROOT)
    parser.add_argument("--top", type=int, default=25)
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
        ]
        subprocess.run([*spy, "--format", "raw", "-o", f"{out}.txt"], check=True,
                       capture_output=True)  # fmt: skip
        load.join()
    summarize(Path(f"{out}.txt"), args.top)
    print(f"collapsed stacks: {out}.txt")


if __name__ == "__main__":
    sys.exit(main())
