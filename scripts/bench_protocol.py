"""In-process cost of the v2 protocol codec: parsing JSON and binary requests, encoding responses.

    python scripts/bench_protocol.py
    python scripts/bench_protocol.py --against /tmp/old-kit/kit/runtime/protocol.py

Times `parse_infer_request` on a 784-float JSON request (one MNIST digit), a 150,528-float
one (one 224x224 RGB image) and the same as binary tensors, and `encode_response` for
1,000 output floats as JSON. `--against FILE` times another version of the module in the
same process, interleaved, for an A/B.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import kit.runtime.protocol as current
import numpy as np
from _bench import median_us

from kit.artifact import INPUT_NAME, SINGLE_OUTPUT


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("other_protocol", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def median_ms(fn: Any, repeat: int) -> float:
    return median_us(fn, repeat=repeat, warmup=2) / 1e3


def cases() -> dict[str, tuple[bytes, str | None, tuple[int, ...], int]]:
    rng = np.random.default_rng(0)
    out = {}
    for label, shape in (("784 floats", (1, 28, 28)), ("150,528 floats", (3, 224, 224))):
        x = rng.standard_normal((1, *shape), dtype=np.float32)
        inp = {"name": INPUT_NAME, "shape": list(x.shape), "datatype": "FP32"}
        body = json.dumps({"inputs": [{**inp, "data": x.ravel().tolist()}]}).encode()
        out[f"parse JSON, {label}"] = (body, None, shape, 200 if x.size < 1000 else 20)
        head = json.dumps(
            {"inputs": [{**inp, "parameters": {"binary_data_size": x.nbytes}}]}
        ).encode()
        out[f"parse binary, {label}"] = (head + x.tobytes(), str(len(head)), shape, 200)
    return out


def run(module: ModuleType, case: tuple[bytes, str | None, tuple[int, ...], int]) -> float:
    body, header, shape, repeat = case
    return median_ms(
        lambda: module.parse_infer_request(
            body, header, input_name=INPUT_NAME, sample_shape=shape, output_names=[SINGLE_OUTPUT]
        ),
        repeat,
    )


def encode(module: ModuleType) -> float:
    request = module.parse_infer_request(
        json.dumps(
            {"inputs": [{"name": INPUT_NAME, "shape": [1, 1], "datatype": "FP32", "data": [0.0]}]}
        ).encode(),
        None,
        input_name=INPUT_NAME,
        sample_shape=(1,),
        output_names=[SINGLE_OUTPUT],
    )
    out = {SINGLE_OUTPUT: np.random.default_rng(1).standard_normal((1, 1000), dtype=np.float32)}
    return median_ms(lambda: module.encode_response("m", "1", request, out), 500)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", type=Path, help="another protocol.py to time beside this one")
    args = parser.parse_args()
    modules = {"current": current}
    if args.against:
        modules["against"] = load_module(args.against)
    for label, case in cases().items():
        times = {name: run(m, case) for name, m in modules.items()}
        print(f"{label:28}" + "".join(f"  {n} {t:8.3f} ms" for n, t in times.items()))
    times = {name: encode(m) for name, m in modules.items()}
    print(
        f"{'encode JSON, 1,000 floats':28}"
        + "".join(f"  {n} {t:8.3f} ms" for n, t in times.items())
    )


if __name__ == "__main__":
    main()
