"""Export wall times and ONNX-vs-eager differences for the seed networks.

    python scripts/bench_export.py [--networks lenet,mnist_cnn,alexnet,vgg16]

Runs `kit export --model NAME --json` end to end (all formats + parity at 1, 3, 8) in a
fresh process per network, as a user would, then reads the max |diff| of ONNX (CPU
provider) against eager at batch 1 and 8 from the parity report.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

from _bench import ROOT, env_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--networks", default="lenet,mnist_cnn,alexnet,vgg16")
    args = parser.parse_args()
    print(f"# bench_export ({env_info()})")
    total = 0.0
    with tempfile.TemporaryDirectory() as out:
        for name in args.networks.split(","):
            t = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "kit", "export", "--model", name, "--out", out, "--json"],
                cwd=ROOT, capture_output=True, text=True, check=True,
            )  # fmt: skip
            seconds = time.perf_counter() - t
            total += seconds
            report = json.loads(proc.stdout)
            rows = {
                (c["artifact"], c["runtime"], c["batch"]): c
                for c in report["parity"]["comparisons"]
            }
            onnx = {b: rows[("onnx", "CPUExecutionProvider", b)]["max_abs"] for b in (1, 8)}
            size = sum(f["size"] for f in report["files"].values()) / 1e6
            print(
                f"{name:10} export+parity {seconds:6.1f} s | files {size:7.1f} MB | ONNX vs eager max|diff| b=1 {onnx[1]:.2e}, b=8 {onnx[8]:.2e}"
            )
            subprocess.run(["rm", "-rf", f"{out}/{name}"], check=True)
    print(f"all: {total:.1f} s")


if __name__ == "__main__":
    main()
