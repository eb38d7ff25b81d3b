"""What kit.runtime's validation costs: Model.predict vs a bare InferenceSession.run.

    python scripts/bench_runtime.py [--repeat 500] [--rounds 20]

Medians over many calls, same process, same input, batch 1, CPU provider, on the shipped
models in exported/; the two are timed in alternating blocks and the overhead is the
median of the per-round differences, which cancels most of a noisy machine's drift.
"""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort
from _bench import ROOT, env_info, median_us

import kit.runtime as kr
from kit.artifact import INPUT_NAME


def bench(name: str, repeat: int, rounds: int) -> None:
    model = kr.load(ROOT / "exported" / name, providers=["CPUExecutionProvider"])
    session = model.session
    x = np.random.default_rng(0).standard_normal((1, *model.input_shape), dtype=np.float32)  # type: ignore[misc]
    feed = {INPUT_NAME: x}
    bare, wrapped = [], []
    # Alternate short blocks of each, so the machine's drift hits both alike; the overhead
    # is the median over rounds of (predict - bare) within the same round.
    for _ in range(rounds):
        bare.append(median_us(lambda: session.run(None, feed), repeat=repeat, warmup=20))
        wrapped.append(median_us(lambda: model.predict(x), repeat=repeat, warmup=20))
    b, w = np.median(bare), np.median(wrapped)
    diff = float(np.median(np.subtract(wrapped, bare)))
    check = median_us(lambda: model._check(x), repeat=repeat * 4)
    print(
        f"{name:10} bare run {b:7.1f} us | predict {w:7.1f} us | "
        f"overhead {diff:+6.1f} us ({diff / b * 100:+.1f} %) | validation alone {check:.1f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=500, help="calls per block")
    parser.add_argument("--rounds", type=int, default=20, help="alternating blocks of each")
    args = parser.parse_args()
    print(f"# bench_runtime ({env_info()}, onnxruntime {ort.__version__})")
    for name in ("mnist_cnn", "lenet"):
        bench(name, args.repeat, args.rounds)


if __name__ == "__main__":
    main()
