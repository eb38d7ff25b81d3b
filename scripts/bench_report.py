"""`kit report`'s targets on the shipped mnist_cnn: its report from saved results (3 s),
`--run` on a fresh copy with nothing saved (3 minutes), the page's size (1 MB).

    python scripts/bench_report.py            # a markdown table for docs/BENCHMARKS.md
    python scripts/bench_report.py --shot docs/report.png   # and the README's screenshot
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import ROOT, env_info

KIT = [sys.executable, "-m", "kit"]


def _timed(args: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run([*KIT, *args], capture_output=True, text=True, cwd=ROOT)
    return time.perf_counter() - start, done


def _shot(page: Path, into: Path) -> None:
    """The top of the page as the README shows it, in the system Chromium."""
    from playwright.sync_api import sync_playwright

    from kit.embed.packages import find_browser

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=find_browser())
        tab = browser.new_page(viewport={"width": 1280, "height": 1000})
        tab.goto(page.as_uri())
        tab.screenshot(path=str(into))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shot", type=Path, help="Write a screenshot of the report here.")
    parser.add_argument("--repeat", type=int, default=5)
    given = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(shutil.copytree(ROOT / "exported" / "mnist_cnn", Path(tmp) / "mnist_cnn"))
        run_s, done = _timed(["report", str(export), "--run", "--json"])
        if done.returncode:
            sys.exit(f"kit report --run failed: {done.stderr[-2000:]}")
        counts = json.loads(done.stdout)["verdict"]["counts"]
        steps = [
            line for line in done.stderr.splitlines() if "] done in" in line or "] exit" in line
        ]
        saved = [_timed(["report", str(export)])[0] for _ in range(given.repeat)]
        size = (export / "results" / "report.html").stat().st_size
        if given.shot:
            _shot(export / "results" / "report.html", given.shot)
    print(env_info())
    print("| measure | target | result |")
    print("|---|---|---|")
    print(f"| `kit report --run`, fresh copy, nothing saved | 180 s | {run_s:.1f} s |")
    print(
        f"| `kit report` from saved results, median of {given.repeat} "
        f"(min {min(saved):.2f}, max {max(saved):.2f}) | 3 s | {statistics.median(saved):.2f} s |"
    )
    print(f"| report.html | 1 MB | {size / 1024:.0f} KiB |")
    print(f"\ncells after --run: {counts}")
    print("\n".join(f"    {s}" for s in steps))


if __name__ == "__main__":
    main()
