"""kit serve against MLServer and against the machine, in one run: the three ratios issue 26
sets targets for, and an interleaved A/B of other checkouts of kit.

    python scripts/bench_serve_ratio.py                             # shipped mnist_cnn
    python scripts/bench_serve_ratio.py --export exported/alexnet --no-mlserver
    python scripts/bench_serve_ratio.py --checkout /tmp/base --rounds 2   # A/B, interleaved
    python scripts/bench_serve_ratio.py --processes 2     # each kit also with --processes 2

Load: wrk (apt-get install wrk), one thread, ``--clients`` keep-alive connections sending
batch-1 requests of a real test sample for ``--seconds`` each: JSON tensors, and the binary
tensor extension. kit serve runs with ``--max-batch-size 32 --max-queue-delay-us 500``.
MLServer (pip, its own venv: ``.venv-mlserver``, made on first use) serves the same
model.onnx with a minimal onnxruntime runtime, one process, its adaptive batching; JSON only.
The ceiling is in-process onnxruntime (kit.runtime) at batch 32, images per second.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from _bench import ROOT, env_info, free_port

import kit.runtime as kr

MLSERVER_VENV = ROOT / ".venv-mlserver"
_LUA = """
wrk.method = "POST"
local f = io.open(os.getenv("KIT_BODY"), "rb")
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "application/json"
local header = os.getenv("KIT_HEADER")
if header ~= nil and header ~= "" then
  wrk.headers["Inference-Header-Content-Length"] = header
  wrk.headers["Content-Type"] = "application/octet-stream"
end
"""


def _sample(export: Path) -> np.ndarray:
    """One real input: the first sample of the export's reference data."""
    from kit.artifact import read_manifest
    from kit.runtime.reference import reference_sets

    sets = reference_sets(export, read_manifest(export))
    real = [x for _, is_real, x, _ in sets if is_real] or [x for _, _, x, _ in sets]
    return np.ascontiguousarray(real[0][:1], dtype=np.float32)


def bodies(x: np.ndarray, input_name: str, work: Path) -> dict[str, tuple[Path, str]]:
    """The JSON and the binary request body, as files wrk reads, with the header length."""
    tensor = {"name": input_name, "shape": list(x.shape), "datatype": "FP32"}
    json_body = json.dumps({"inputs": [{**tensor, "data": x.ravel().tolist()}]}).encode()
    head = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": x.nbytes}}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    (work / "json.body").write_bytes(json_body)
    (work / "binary.body").write_bytes(head + x.astype("<f4").tobytes())
    return {"json": (work / "json.body", ""), "binary": (work / "binary.body", str(len(head)))}


def wrk(url: str, body: tuple[Path, str], seconds: float, clients: int, script: Path) -> float:
    """Requests per second wrk measured (non-2xx answers are an error)."""
    env = {**os.environ, "KIT_BODY": str(body[0]), "KIT_HEADER": body[1]}
    done = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "-s", str(script), url],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    if "Non-2xx" in done.stdout:
        raise RuntimeError(f"{url} answered with errors:\n{done.stdout}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)[1])  # type: ignore[index]


def _wait(port: int, path: str, proc: subprocess.Popen[bytes], what: str) -> None:
    import urllib.request

    for _ in range(600):
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1)
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited")
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not start")


@contextlib.contextmanager
def kit_serve(checkout: Path, export: Path, server_args: list[str]) -> Iterator[tuple[int, int]]:
    """kit serve of ``checkout`` (its kit package first on the path) over ``export``: its
    port and process id."""
    port = free_port()
    folder = Path(tempfile.mkdtemp())
    (folder / export.name).symlink_to(export.resolve())
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    command = [sys.executable, "-m", "kit", "serve", str(folder), "--port", str(port)]
    command += ["--max-batch-size", "32", "--max-queue-delay-us", "500", *server_args]
    proc = subprocess.Popen(command, env=env, cwd=checkout, stderr=subprocess.DEVNULL)
    try:
        _wait(port, "/v2/health/ready", proc, f"kit serve ({checkout})")
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(folder, ignore_errors=True)


_GRANIAN_APP = """
import os
from pathlib import Path
from kit.server.app import ServerConfig, create_app, load_models

cfg = ServerConfig(max_batch_size=32, max_queue_delay_us=500)
app = create_app(load_models(Path(os.environ["KIT_EXPORTS"])), cfg)
"""


@contextlib.contextmanager
def granian(export: Path) -> Iterator[int]:
    """kit's ASGI app (this checkout) under granian (pip install granian) instead of
    uvicorn: the same routes, batching and limits kit's own code keeps."""
    port = free_port()
    folder = Path(tempfile.mkdtemp())
    (folder / export.name).symlink_to(export.resolve())
    (folder / "granian_app.py").write_text(_GRANIAN_APP)
    env = {**os.environ, "KIT_EXPORTS": str(folder), "PYTHONPATH": f"{folder}:{ROOT}"}
    command = [sys.executable, "-m", "granian", "--interface", "asgi", "--loop", "uvloop"]
    command += ["--port", str(port), "granian_app:app"]
    proc = subprocess.Popen(command, env=env, cwd=folder, stderr=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait(port, "/v2/health/ready", proc, "granian")
        yield port
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(folder, ignore_errors=True)


def _mlserver_venv() -> Path:
    if not (MLSERVER_VENV / "bin" / "mlserver").exists():
        subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
        pip = [str(MLSERVER_VENV / "bin" / "pip"), "install", "-q"]
        subprocess.run([*pip, "mlserver", "onnxruntime", "numpy"], check=True)
    return MLSERVER_VENV


def _tensor(t: object) -> dict[str, object]:
    shape = [-1 if isinstance(d, str) else d for d in t.shape]  # type: ignore[attr-defined]
    return {"name": t.name, "datatype": "FP32", "shape": shape}  # type: ignore[attr-defined]


@contextlib.contextmanager
def mlserver(export: Path, input_name: str) -> Iterator[tuple[int, str]]:
    """MLServer with a minimal onnxruntime runtime over the export's model.onnx."""
    from kit.artifact import read_manifest

    venv = _mlserver_venv()
    manifest = read_manifest(export)
    work = Path(tempfile.mkdtemp())
    model = work / manifest.name
    model.mkdir()
    shutil.copy(export / "model.onnx", model / "model.onnx")
    shutil.copy(ROOT / "scripts" / "mlserver_runtime.py", model / "runtime.py")
    settings = {
        "name": manifest.name,
        "implementation": "runtime.OnnxModel",
        "parameters": {"uri": "./model.onnx"},
        "inputs": [_tensor(t) for t in manifest.inputs],
        "outputs": [_tensor(t) for t in manifest.outputs],
    }
    (model / "model-settings.json").write_text(json.dumps(settings))
    port = free_port()
    config = {"http_port": port, "grpc_port": 0, "metrics_port": 0, "parallel_workers": 0}
    (work / "settings.json").write_text(json.dumps(config))
    proc = subprocess.Popen(
        [str(venv / "bin" / "mlserver"), "start", "."], cwd=work,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait(port, f"/v2/models/{manifest.name}/ready", proc, "MLServer")
        yield port, manifest.name
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)


def ceiling(export: Path, seconds: float = 3.0, threads: int | None = None) -> float:
    """In-process onnxruntime at batch 32 (kit.runtime, validation off; ``threads``
    onnxruntime threads, kit's default when None): images per second, the best of five
    timed stretches."""
    model = kr.load(export, threads=threads)
    x = np.ascontiguousarray(np.resize(_sample(export), (32, *model.input_shape)), np.float32)
    best = 0.0
    for _ in range(5):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            model.predict(x, validate=False)
            n += 32
        best = max(best, n / (time.perf_counter() - start))
    return best


def _ratios(label: str, found: dict[str, float], top: float) -> None:
    """The issue's three ratios for kit ``label``."""
    own_json, own_bin = found[f"kit {label} json"], found[f"kit {label} binary"]
    print(f"  kit {label}:")
    if "mlserver json" in found:
        mine = own_json / found["mlserver json"]
        print(f"    JSON vs MLServer JSON: {mine:.2f}x (target >= 3.0x)")
    print(f"    binary vs the ceiling: {own_bin / top:.1%} (target >= 50%; AlexNet >= 90%)")
    print(f"    JSON vs binary: {own_json / own_bin:.1%} (target >= 85%)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--export", type=Path, default=ROOT / "exported" / "mnist_cnn")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--checkout",
        type=Path,
        action="append",
        default=[],
        help="A/B: another kit checkout (repeatable)",
    )
    parser.add_argument("--no-mlserver", action="store_true")
    parser.add_argument("--granian", action="store_true", help="also kit's app under granian")
    parser.add_argument("--server-arg", action="append", default=[], help="passed to kit serve")
    parser.add_argument(
        "--processes", type=int, default=1, help="also each kit with --processes N (N > 1)"
    )
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    print(
        f"# bench_serve_ratio ({env_info()}), kit {commit}, {args.export.name}, {args.clients} clients, {args.seconds:g} s each"
    )
    input_name = kr.load(args.export).input_name
    work = Path(tempfile.mkdtemp())
    script = work / "post.lua"
    script.write_text(_LUA)
    body = bodies(_sample(args.export), input_name, work)
    servers = []
    for checkout in [ROOT, *args.checkout]:
        label = "HEAD" if checkout == ROOT else str(checkout)
        servers.append((label, checkout, args.server_arg))
        if args.processes > 1:
            many = [*args.server_arg, "--processes", str(args.processes)]
            servers.append((f"{label} --processes {args.processes}", checkout, many))
    for round_ in range(1, args.rounds + 1):
        top = ceiling(args.export)
        found: dict[str, float] = {}
        for label, checkout, server_args in servers:
            with kit_serve(checkout, args.export, server_args) as (port, _):
                url = f"http://127.0.0.1:{port}/v2/models/{args.export.name}/infer"
                wrk(url, body["binary"], 1, args.clients, script)  # every process up and warm
                # binary first: large JSON bodies queued in the decoding worker when wrk
                # stops would still be decoded during the next measurement
                for kind in ("binary", "json"):
                    found[f"kit {label} {kind}"] = wrk(
                        url, body[kind], args.seconds, args.clients, script
                    )
        if args.granian:
            with granian(args.export) as port:
                url = f"http://127.0.0.1:{port}/v2/models/{args.export.name}/infer"
                for kind in ("binary", "json"):
                    found[f"kit HEAD under granian {kind}"] = wrk(
                        url, body[kind], args.seconds, args.clients, script
                    )
        if not args.no_mlserver:
            with mlserver(args.export, input_name) as (port, name):
                url = f"http://127.0.0.1:{port}/v2/models/{name}/infer"
                found["mlserver json"] = wrk(url, body["json"], args.seconds, args.clients, script)
        print(f"round {round_}: ceiling (in-process onnxruntime, batch 32) {top:,.0f} img/s")
        for name, rps in found.items():
            print(f"  {name:<40} {rps:>9,.0f} req/s  ({rps / top:.1%} of the ceiling)")
        for label, _, _ in servers[: 1 + (args.processes > 1)]:
            _ratios(label, found, top)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
