"""int8 against fp32 on onnxruntime's CPU provider: throughput of the shipped variants.

    python scripts/bench_int8.py [--rounds 5]

For each shipped model with an int8 variant (`kit quantize`), times model.onnx and
model.int8.onnx in alternating blocks at batch 1, 8 and 64 (median seconds per run of each
block, same input) and prints images per second and the int8 speed-up of every round.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from _bench import ROOT, env_info

from kit.artifact import INPUT_NAME, MODEL_FILE, VARIANT_FILES


def seconds_per_run(session: ort.InferenceSession, x: np.ndarray, repeat: int) -> float:
    session.run(None, {INPUT_NAME: x})
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        session.run(None, {INPUT_NAME: x})
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(
        next((ln.split(":")[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    )
    return (
        ", ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f in flags)
        or "unknown"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"# bench_int8 ({env_info()}, onnxruntime {ort.__version__}, CPU flags: {cpu_flags()})")
    for name in ("mnist_cnn", "lenet"):
        folder = ROOT / "exported" / name
        sessions = {
            p: ort.InferenceSession(str(folder / f), providers=["CPUExecutionProvider"])
            for p, f in (("fp32", MODEL_FILE), ("int8", VARIANT_FILES["int8"]))
        }
        for batch in (1, 8, 64):
            x = np.random.default_rng(0).standard_normal((batch, 1, 28, 28), dtype=np.float32)
            repeat = max(20, 2000 // batch)
            ratios, rates = [], {"fp32": [], "int8": []}
            for _ in range(args.rounds):
                t = {p: seconds_per_run(s, x, repeat) for p, s in sessions.items()}
                ratios.append(t["fp32"] / t["int8"])
                for p in t:
                    rates[p].append(batch / t[p])
            print(
                f"{name:10} batch {batch:3}: fp32 {statistics.median(rates['fp32']):8.0f} img/s  "
                f"int8 {statistics.median(rates['int8']):8.0f} img/s  int8 speed-up per round "
                + " ".join(f"{r:.2f}x" for r in ratios)
            )


if __name__ == "__main__":
    main()
