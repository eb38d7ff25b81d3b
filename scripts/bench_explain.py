"""The extra cost of kit parity --explain on VGG16 (random weights, 10 classes, batch 1).

    cd scripts && python bench_explain.py [--network vgg16] [--rounds 3]

Times, interleaved per round: the ONNX parity check alone (kit parity's work for
model.onnx at one batch of 1) and the layer-by-layer localisation on the same batch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _bench import env_info

from kit.artifact import MODEL_FILE, read_manifest
from kit.export import ExportOptions, Provenance, export_model
from kit.models import build_model, resolve_spec
from kit.rule import Tolerance
from kit.verify import rebuild_reference, verify_saved
from kit.verify.explain import localise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="vgg16")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    spec = resolve_spec(args.network)
    print(f"# {env_info()}")
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(spec, num_classes=10, seed=0)
        options = ExportOptions(formats=["onnx"], batch_sizes=(1,), progress=False)
        result = export_model(spec, model, Path(tmp), Provenance(num_classes=10), options)
        _, reference = rebuild_reference(result.directory, read_manifest(result.directory))
        x = np.random.default_rng(0).standard_normal((1, *spec.input_shape), dtype=np.float32)
        for i in range(args.rounds):
            t = time.perf_counter()
            verify_saved(result.directory, batch_sizes=(1,), provider="cpu")
            check = time.perf_counter() - t
            t = time.perf_counter()
            rule = Tolerance(spec.atol, spec.rtol)
            found = localise(result.directory / MODEL_FILE, reference, x, rule=rule)
            explain = time.perf_counter() - t
            print(
                f"round {i + 1}: parity check {check:.2f} s, --explain {explain:.2f} s "
                f"({explain / check:.2f}x the check), {len(found.layers)} layers, "
                f"first over: {found.first_over.module if found.first_over else None}"
            )


if __name__ == "__main__":
    main()
