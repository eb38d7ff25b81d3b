"""What kit.runtime's validation costs: Model.predict vs a bare InferenceSession.run.

    python scripts/bench_runtime.py [--repeat 5000]

Medians over many calls, same process, same input, batch 1, CPU provider, on the shipped
models in exported/.
"""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort
from _bench import ROOT, env_info, median_us

import kit.runtime as kr


def bench(name: str, repeat: int) -> None:
    model = kr.load(ROOT / "exported" / name, providers=["CPUExecutionProvider"])
    session = model.session
    x = np.random.default_rng(0).standard_normal((1, *model.input_shape), dtype=np.float32)  # type: ignore[misc]
    feed = {"input": x}
    rounds = []
    for _ in range(3):  # interleave to cancel drift
        bare = median_us(lambda: session.run(None, feed), repeat=repeat)
        wrapped = median_us(lambda: model.predict(x), repeat=repeat)
        rounds.append((bare, wrapped))
    bare = float(np.median([r[0] for r in rounds]))
    wrapped = float(np.median([r[1] for r in rounds]))
    check = median_us(lambda: model._check(x), repeat=repeat)
    print(
        f"{name:10} bare run {bare:7.1f} us | predict {wrapped:7.1f} us | "
        f"overhead {wrapped - bare:+6.1f} us ({(wrapped / bare - 1) * 100:+.1f} %) | validation alone {check:.1f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5000)
    args = parser.parse_args()
    print(f"# bench_runtime ({env_info()}, onnxruntime {ort.__version__})")
    for name in ("mnist_cnn", "lenet"):
        bench(name, args.repeat)


if __name__ == "__main__":
    main()
