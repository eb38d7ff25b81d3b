"""Issue 28's targets in one run: sizes that vary, declared once and proven on a grid.

    python scripts/bench_dynamic.py [--rounds 2] [--skip-time] [--skip-edge] [--skip-segmenter]

1. Export time: torchvision resnet18 (random weights), ONNX + TorchScript + .pt2, at one
   size against ``--dynamic height=64..512:32,width=64..512:32`` (the grid's parity
   included), interleaved rounds, each a fresh ``kit export`` process.
2. Every format kit writes (onnx, torchscript, pt2, ort, pte, tflite, openvino) with those
   rules: the sizes each file passed at, in each runtime.
3. A segmenter whose mask follows the input (torchvision's LR-ASPP, MobileNetV3, 3 classes,
   random weights) with ``--dynamic height=128..512:32,width=128..512:32`` in onnxruntime,
   torch.export, OpenVINO and ExecuTorch; the output's height and width checked against the
   input's at every grid size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _bench import ROOT, env_info

from kit.parity import input_size

RESNET = ["--model", "torchvision.models:resnet18", "--input-shape", "3,224,224"]
RULES = "height=64..512:32,width=64..512:32"


def kit_export(args: list[str], out: Path) -> tuple[float, dict]:
    """One ``kit export`` in a fresh process: its wall time and its ``--json`` answer."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "kit", "export", *args, "--out", str(out), "--json"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"kit export {' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return took, json.loads(done.stdout)


def _sizes(parity: dict) -> dict[tuple[str, str], set[str]]:
    """The sizes each (file, runtime) passed at (every row of a size passed)."""
    passed: dict[tuple[str, str], dict[str, bool]] = defaultdict(dict)
    for c in parity["comparisons"]:
        size = input_size(c["inputs"]) or "example"
        key = (c["artifact"], c["runtime"])
        passed[key][size] = passed[key].get(size, True) and c["passed"]
    return {k: {s for s, ok in v.items() if ok} for k, v in passed.items()}


def export_time(rounds: int, work: Path) -> None:
    formats = ["--formats", "onnx,torchscript,pt2"]
    print("export time, resnet18, onnx + torchscript + pt2 (a fresh process each):")
    ratios = []
    for r in range(rounds):
        one, _ = kit_export([*RESNET, *formats], work / f"one{r}")
        grid, answer = kit_export([*RESNET, *formats, "--dynamic", RULES], work / f"grid{r}")
        sizes = len(set().union(*_sizes(answer["parity"]).values()))
        ratios.append(grid / one)
        print(f"  round {r + 1}: one size {one:.1f} s, --dynamic with a grid of {sizes} sizes "
              f"{grid:.1f} s: {grid / one:.2f}x")  # fmt: skip
    print(f"  grid / one size: {min(ratios):.2f}-{max(ratios):.2f}x (target <= 2x)")


def every_format(work: Path) -> None:
    formats = "onnx,torchscript,pt2,ort,pte,tflite,openvino"
    took, answer = kit_export([*RESNET, "--formats", formats, "--dynamic", RULES], work / "all")
    print(f"\nresnet18, --dynamic {RULES}, every format ({took:.0f} s):")
    for (artifact, runtime), sizes in sorted(_sizes(answer["parity"]).items()):
        corners = {"64x512", "512x64"} <= sizes
        print(f"  {artifact:<12} {runtime:<52} {len(sizes):>2} sizes passed"
              f"{'' if corners else '  (64x512/512x64 missing)'}")  # fmt: skip
    for note in answer["parity"]["notes"]:
        print(f"  note: {note}")
    print(f"  verdict: {'PASSED' if answer['parity']['passed'] else 'FAILED'}")


def segmenter(work: Path) -> None:
    import numpy as np

    import kit.runtime as kr

    args = ["--model", "tests.user_nets:lraspp", "--input-shape", "3,224,224",
            "--formats", "onnx,pt2,pte,openvino",
            "--dynamic", "height=128..512:32,width=128..512:32"]  # fmt: skip
    took, answer = kit_export(args, work / "seg")
    print(f"\nLR-ASPP (MobileNetV3, 3 classes), every format it runs in ({took:.0f} s):")
    for (artifact, runtime), sizes in sorted(_sizes(answer["parity"]).items()):
        print(f"  {artifact:<9} {runtime:<52} {len(sizes):>2} sizes passed")
    model = kr.load(Path(answer["directory"]))
    rules = model.rules
    assert rules is not None
    follows = []
    for h, w in rules.grid((3, 224, 224)):
        mask = model.predict(np.zeros((1, 3, h, w), np.float32))[model.output_names[0]]
        follows.append(mask.shape[2:] == (h, w))
    print(f"  mask follows the input at {sum(follows)} of {len(follows)} grid sizes "
          f"(onnxruntime, kit.runtime); verdict: "
          f"{'PASSED' if answer['parity']['passed'] else 'FAILED'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-time", action="store_true")
    parser.add_argument("--skip-edge", action="store_true")
    parser.add_argument("--skip-segmenter", action="store_true")
    a = parser.parse_args()
    print(f"# bench_dynamic ({env_info()})")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not a.skip_time:
            export_time(a.rounds, work)
        if not a.skip_edge:
            every_format(work)
        if not a.skip_segmenter:
            segmenter(work)


if __name__ == "__main__":
    main()
