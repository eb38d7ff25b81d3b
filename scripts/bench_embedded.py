"""The runtimes apps embed against eager PyTorch: Node.js (onnxruntime-node) and the browser
(onnxruntime-web wasm in headless Chromium).

    python scripts/bench_embedded.py [--networks lenet,mnist_cnn,...] [--skip-digits] [--skip-page]

1. mnist_cnn (shipped) on all 10k MNIST test digits in Node.js and in the browser: top-1
   agreement with eager and the largest |difference|.
2. Every seed network (random weights, seed 0), exported to ONNX and checked in Node.js and
   the browser at batch 1 and 2 against eager with its own fp32 tolerance (`kit parity`).
3. kit serve's page: strokes drawn with the mouse, one classification per stroke; the
   in-page onnxruntime-web time and the server round trip, side by side.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _bench import ROOT, env_info, start_server

from architectures import get_spec, list_models
from kit.artifact import MODEL_FILE, read_manifest
from kit.data import BUNDLED_MNIST, read_idx
from kit.embed.browser import run_in_browser
from kit.embed.node import run_in_node
from kit.embed.packages import find_browser
from kit.export import ExportOptions, Provenance, export_model
from kit.models import build_model, resolve_spec
from kit.verify import rebuild_reference, verify_saved

SHIPPED = ROOT / "exported"


def digits() -> np.ndarray:
    images = read_idx(BUNDLED_MNIST / "t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    spec = get_spec("mnist_cnn")
    return ((images - spec.mean[0]) / spec.std[0])[:, None]


def ten_thousand_digits(chunk: int = 500) -> None:
    directory = SHIPPED / "mnist_cnn"
    _, model = rebuild_reference(directory, read_manifest(directory))
    x = digits()
    with torch.no_grad():
        eager = np.concatenate(
            [model(torch.from_numpy(x[i : i + 2000])).numpy() for i in range(0, len(x), 2000)]
        )
    batches = [x[i : i + chunk] for i in range(0, len(x), chunk)]
    for name, run in (("node", run_in_node), ("browser", run_in_browser)):
        t = time.perf_counter()
        got = np.concatenate([o[0] for o in run(directory / MODEL_FILE, batches)])
        seconds = time.perf_counter() - t
        agree = float((got.argmax(1) == eager.argmax(1)).mean())
        print(
            f"mnist_cnn 10k digits  {name:<8} top-1 agreement {agree:.2%}  "
            f"max|diff| {np.abs(got - eager).max():.2e}  ({seconds:.1f} s, batches of {chunk})"
        )


def every_network(names: list[str]) -> None:
    for name in names:
        spec = resolve_spec(name)
        with tempfile.TemporaryDirectory() as tmp:
            classes = None if spec.num_classes == 10 else 10
            model = build_model(spec, num_classes=classes, seed=0)
            options = ExportOptions(formats=["onnx"], batch_sizes=(1,), progress=False)
            export_model(spec, model, Path(tmp), Provenance(num_classes=classes), options)
            del model
            for runtime in ("node", "browser"):
                t = time.perf_counter()
                try:
                    report = verify_saved(Path(tmp) / name, batch_sizes=(1, 2), runtimes=(runtime,))
                except Exception as exc:  # a runtime that cannot hold the network: say so
                    print(f"{name:<10} {runtime:<8} could not run: {str(exc)[:150]}")
                    continue
                rows = report.comparisons
                worst = max(r.max_abs for r in rows)
                needed = max(
                    (r.needed_rtol for r in rows if r.needed_rtol == r.needed_rtol), default=0
                )
                print(
                    f"{name:<10} {runtime:<8} {'PASS' if report.passed else 'FAIL'}  "
                    f"max|diff| {worst:.2e}  (atol {report.atol:g}, rtol {report.rtol:g}"
                    f"{f', needs rtol {needed:.1e}' if needed else ''})  "
                    f"{time.perf_counter() - t:.1f} s"
                )
            sys.stdout.flush()


def page_timings(strokes: int = 30) -> None:
    from playwright.sync_api import sync_playwright

    proc, port, _ = start_server(SHIPPED)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=find_browser(), args=["--no-sandbox"])
            tab = browser.new_page()
            tab.goto(f"http://127.0.0.1:{port}/")
            tab.wait_for_selector("body[data-ready=true]", timeout=60_000)
            box = tab.locator("#pad").bounding_box()
            page_ms, server_ms = [], []
            for i in range(strokes):
                x = box["x"] + 60 + 5 * i
                tab.mouse.move(x, box["y"] + 40)
                tab.mouse.down()
                for y in range(40, 250, 15):
                    tab.mouse.move(x + (y % 30), box["y"] + y)
                tab.mouse.up()
                tab.wait_for_selector(f"body[data-done='{i + 1}']", timeout=30_000)
                last: dict[str, Any] = tab.evaluate("window.kitPage.last")
                page_ms.append(last["page"]["ms"])
                server_ms.append(last["server"]["ms"])
            browser.close()
    finally:
        proc.terminate()
        proc.wait()
    for name, ms in (
        ("in-page onnxruntime-web (wasm, 1 thread)", page_ms),
        ("server round trip (JSON over HTTP)", server_ms),
    ):
        ms_sorted = sorted(ms)
        print(
            f"page, mnist_cnn, {strokes} strokes  {name:<42} first {ms[0]:.1f} ms  "
            f"median {statistics.median(ms):.1f} ms  p90 {ms_sorted[int(0.9 * len(ms)) - 1]:.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default=",".join(list_models()))
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--skip-page", action="store_true")
    args = parser.parse_args()
    print(f"# {env_info()}; Chromium {find_browser()}")
    if not args.skip_page:
        page_timings()
    if not args.skip_digits:
        ten_thousand_digits()
    every_network(args.networks.split(","))


if __name__ == "__main__":
    main()
