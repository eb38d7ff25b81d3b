"""kit parity --endpoint against kit serve: mnist_cnn (shipped) on all 10k MNIST test digits.

    cd scripts && python bench_endpoint.py [--rounds 3]

Starts kit serve with --max-batch-size 256 (so requests carry 256 rows, binary tensors),
then times the endpoint check (verify_saved, the CLI's work without its start-up) per round.
"""

from __future__ import annotations

import argparse
import time

from _bench import ROOT, env_info, start_server

from kit.artifact import read_manifest
from kit.data import real_samples
from kit.models import resolve_spec
from kit.verify import verify_saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    export = ROOT / "exported" / "mnist_cnn"
    spec = resolve_spec(read_manifest(export).name)
    real = real_samples(spec, None, count=10_000)
    proc, port, ready = start_server(export, "--max-batch-size", "256")
    print(f"# {env_info()}; kit serve ready in {ready:.1f} s")
    try:
        for i in range(args.rounds):
            t = time.perf_counter()
            report = verify_saved(export, real=real, endpoint=(f"http://127.0.0.1:{port}", None))
            seconds = time.perf_counter() - t
            row = report.comparisons[-1]
            print(
                f"round {i + 1}: {row.inputs} via {row.runtime}: top-1 agreement "
                f"{row.top1_agreement:.2%}, max|diff| {row.max_abs:.2e}, passed {report.passed}, "
                f"{seconds:.2f} s for the whole check"
            )
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
