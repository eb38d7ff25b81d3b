"""ExecuTorch, LiteRT and OpenVINO against eager: every seed network, the 10k test digits,
int8 .pte, and the export's time.

    python scripts/bench_edge.py networks     # each seed network in each runtime, at f32
    python scripts/bench_edge.py digits       # shipped mnist_cnn, 10k digits, top-1 agreement
    python scripts/bench_edge.py int8         # model.int8.pte: accuracy, speed vs fp32 at batch 8
    python scripts/bench_edge.py export       # kit export --formats onnx,pte,tflite,openvino
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _bench import ROOT, env_info

from architectures import list_models
from kit.artifact import ArtifactFile, read_manifest
from kit.data import arrays, load_dataset
from kit.export import ExportOptions, Provenance, add_formats, export_model
from kit.models import build_model, resolve_spec
from kit.runners import home_select, make_runners
from kit.verify import rebuild_reference

EDGE = ("pte", "tflite", "openvino")


def networks() -> None:
    """Each seed network (random weights, seed 0) exported to the three formats; the worst
    max|diff| against eager of each runtime's rows, and the verdict."""
    for name in list_models():
        spec = resolve_spec(name)
        options = ExportOptions(formats=["onnx", *EDGE], batch_sizes=(1, 2), progress=False)
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            result = export_model(spec, build_model(spec, seed=0), Path(tmp), Provenance(), options)
            seconds = time.perf_counter() - t
        worst: dict[str, float] = {}
        for c in result.report.comparisons:
            # OpenVINO's row at the CPU's default precision is advisory: shown apart
            key = c.runtime.split()[0] + (" default" if "default" in c.runtime else "")
            worst[key] = max(worst.get(key, 0.0), c.max_abs)
        rows = ", ".join(f"{k} {v:.1e}" for k, v in worst.items())
        print(f"{name:<10} passed {result.report.passed}  max|diff| {rows}  ({seconds:.0f} s)")


def _digits_export(work: Path) -> Path:
    shutil.copytree(ROOT / "exported" / "mnist_cnn", work / "mnist_cnn")
    add_formats(work / "mnist_cnn", ExportOptions(formats=list(EDGE), progress=False))
    return work / "mnist_cnn"


def digits() -> None:
    """The shipped mnist_cnn in each runtime on all 10,000 test digits against eager."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = _digits_export(Path(tmp))
        manifest = read_manifest(directory)
        spec, model = rebuild_reference(directory, manifest)
        x, _ = arrays(load_dataset("mnist", spec).test)
        with torch.no_grad():
            eager = np.concatenate(
                [model(torch.from_numpy(x[i : i + 1000])).numpy() for i in range(0, len(x), 1000)]
            )
        files = [ArtifactFile(f"model.{'xml' if f == 'openvino' else f}", f) for f in EDGE]
        runners = make_runners(directory, files, sorted({home_select(f) for f in EDGE}))
        for runner in runners:
            t = time.perf_counter()
            got = np.concatenate([runner.run(x[i : i + 1000])[0] for i in range(0, len(x), 1000)])
            agree = float((got.argmax(1) == eager.argmax(1)).mean())
            diff = float(np.abs(got - eager).max())
            print(
                f"{runner.artifact:<9} {runner.runtime:<48} top-1 agreement {agree:.2%}  max|diff| {diff:.1e}  ({time.perf_counter() - t:.1f} s)"
            )


def _median_ms(run: object, x: np.ndarray, seconds: float = 2.0) -> float:
    times = []
    deadline = time.perf_counter() + seconds
    run(x)  # type: ignore[operator]
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        run(x)  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def int8(rounds: int = 3) -> None:
    """model.int8.pte's accuracy against fp32 on 10k digits, then fp32 and int8 .pte at batch
    8 (eight runs of batch 1), interleaved."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = _digits_export(Path(tmp))
        add_formats(directory, ExportOptions(formats=["pte"], precisions=["int8"], progress=False))
        record = read_manifest(directory).variants["int8-pte"]
        print(
            f"int8 .pte on {record.held_out}: accuracy {record.accuracy:.2%} (fp32 {record.accuracy_fp32:.2%}), top-1 agreement {record.agreement:.2%}"
        )
        files = [ArtifactFile("model.pte", "pte"), ArtifactFile("model.int8.pte", "pte", "int8")]
        fp32, q8 = make_runners(directory, files, ["executorch"])
        x = np.random.default_rng(0).standard_normal((8, 1, 28, 28), dtype=np.float32)
        for i in range(rounds):
            a, b = _median_ms(fp32.run, x), _median_ms(q8.run, x)
            print(
                f"round {i + 1}: batch 8, fp32 .pte {a:.3f} ms, int8 .pte {b:.3f} ms, int8/fp32 {b / a:.2f}"
            )


def export(rounds: int = 3) -> None:
    """``kit export --model mnist_cnn --formats onnx,pte,tflite,openvino``, wall time."""
    for i in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "kit",
                    "export",
                    "--model",
                    "mnist_cnn",
                    "--formats",
                    "onnx,pte,tflite,openvino",
                    "--out",
                    tmp,
                ],
                check=True,
                capture_output=True,
            )
            print(f"round {i + 1}: {time.perf_counter() - t:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["networks", "digits", "int8", "export"])
    args = parser.parse_args()
    print(f"# bench_edge {args.what} ({env_info()})")
    {"networks": networks, "digits": digits, "int8": int8, "export": export}[args.what]()


if __name__ == "__main__":
    main()
