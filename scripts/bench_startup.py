"""Start-up costs: `kit --help`, `import kit.runtime`, and `kit serve` ready time.

python scripts/bench_startup.py
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import time

from _bench import ROOT, env_info, start_server


def wall(cmd: list[str], n: int = 7) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    print(f"# bench_startup ({env_info()})")
    print(
        f"kit --help:                      {wall([sys.executable, '-m', 'kit', '--help']):.3f} s (median of 7)"
    )
    print(
        f"python -c 'import kit.runtime':  {wall([sys.executable, '-c', 'import kit.runtime']):.3f} s (median of 7)"
    )
    # kit.runtime imports onnxruntime on first use; this is what an app pays before a load
    touch = "import kit.runtime; kit.runtime.load"
    print(
        f"... and kit.runtime.load:        {wall([sys.executable, '-c', touch]):.3f} s (median of 7)"
    )
    print(
        f"python -c 'import numpy' alone:  {wall([sys.executable, '-c', 'import numpy']):.3f} s (median of 7)"
    )
    ready = []
    for _ in range(3):
        proc, _, seconds = start_server(ROOT / "exported")
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        ready.append(seconds)
    print(
        f"kit serve exported/ ready:       {statistics.median(ready):.2f} s (median of 3; shipped models loaded, sha256-checked, warmed)"
    )


if __name__ == "__main__":
    main()
