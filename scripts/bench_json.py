"""JSON tensors against binary tensors: `kit serve` throughput under wrk (a C load generator).

    python scripts/bench_json.py                         # mnist_cnn, 32 connections, 3 rounds
    python scripts/bench_json.py --code /tmp/old-kit     # the same against another checkout

Starts `kit serve` on the shipped models (batching on), then alternates 10-second wrk runs
of JSON-tensor and binary-tensor batch-1 requests for one real test digit, and prints each
run's requests per second and JSON as a share of binary. `--code DIR` puts another checkout's
`kit` first on the server's path, for an A/B of two versions in one sitting. Needs `wrk`
(Debian: `apt-get install wrk`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _bench import ROOT, env_info, start_server

from architectures import get_spec
from kit.artifact import INPUT_NAME, SINGLE_OUTPUT
from kit.data import BUNDLED_MNIST, read_idx

LUA = """
wrk.method = "POST"
wrk.path = "{path}"
local f = io.open("{body}", "rb")
wrk.body = f:read("*all")
f:close()
{headers}
"""


def bodies(model: str, out: Path) -> dict[str, tuple[Path, dict[str, str]]]:
    """The request bodies for one real test digit, as JSON and as a binary tensor."""
    digit = read_idx(BUNDLED_MNIST / "t10k-images-idx3-ubyte.gz")[0].astype(np.float32) / 255.0
    spec = get_spec(model)
    x = ((digit - spec.mean[0]) / spec.std[0]).reshape(1, 1, 28, 28).astype(np.float32)
    inp = {"name": INPUT_NAME, "shape": list(x.shape), "datatype": "FP32"}
    as_json = json.dumps({"inputs": [{**inp, "data": x.ravel().tolist()}]}).encode()
    head = json.dumps(
        {
            "inputs": [{**inp, "parameters": {"binary_data_size": x.nbytes}}],
            "outputs": [{"name": SINGLE_OUTPUT, "parameters": {"binary_data": True}}],
        }
    ).encode()
    (out / "json.body").write_bytes(as_json)
    (out / "binary.body").write_bytes(head + x.tobytes())
    return {
        "json": (out / "json.body", {"Content-Type": "application/json"}),
        "binary": (out / "binary.body", {"Inference-Header-Content-Length": str(len(head))}),
    }


def wrk(
    port: int, model: str, body: Path, headers: dict[str, str], args: argparse.Namespace
) -> float:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    script.write_text(LUA.format(path=f"/v2/models/{model}/infer", body=body, headers=lines))
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(args.connections), "-d", f"{args.seconds}s", "-s",
         str(script), f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    script.unlink()
    if "Non-2xx" in out:
        raise RuntimeError(f"the server refused requests:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mnist_cnn")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--code", type=Path, help="another checkout whose kit the server runs")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk).")
    print(env_info())
    with tempfile.TemporaryDirectory() as tmp:
        requests = bodies(args.model, Path(tmp))
        proc, port, _ = start_server(ROOT / "exported", cwd=(args.code or ROOT).resolve())
        try:
            for body, headers in requests.values():  # warm up both paths
                wrk(port, args.model, body, headers, argparse.Namespace(connections=4, seconds=2))
            for r in range(args.rounds):
                rates = {k: wrk(port, args.model, b, h, args) for k, (b, h) in requests.items()}
                print(
                    f"round {r + 1}: json {rates['json']:7.0f} req/s  binary {rates['binary']:7.0f} "
                    f"req/s  json/binary {rates['json'] / rates['binary']:.0%}"
                )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


if __name__ == "__main__":
    main()
