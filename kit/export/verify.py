"""Loading saved artifacts and re-verifying an export directory against eager PyTorch.

:func:`check_artifacts` runs every artifact file and the eager network on the same inputs
and hands both to :func:`kit.parity.run_parity`; :func:`verify_saved` first checks every
file's sha256 against the manifest and rebuilds the eager reference it records.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._files import sha256_file
from ..artifact import (
    DEFAULT_ATOL,
    DEFAULT_BATCH_SIZES,
    DEFAULT_RTOL,
    FILE_NAMES,
    Limits,
    read_manifest,
    verify_files,
)
from ..embed.browser import BROWSER_RUNTIME, BrowserError, browser_ready, run_in_browser
from ..embed.node import NODE_RUNTIME, NodeError, run_in_node
from ..embed.packages import install_node_package
from ..errors import ArtifactError, ProviderError, UsageError, first_line
from ..models import load_network, read_state_dict, resolve_spec
from ..outputs import flatten_outputs
from ..parity import Comparison, ParityReport, Runner, random_inputs, run_parity
from ..runtime.session import check_providers, cuda_available, cuda_providers
from .endpoint import connect, metadata_problems
from .program import load_program
from .torchscript import load_torchscript

__all__ = [
    "RUNTIMES",
    "artifact_runners",
    "check_artifacts",
    "check_endpoint",
    "js_runners",
    "rebuild_reference",
    "saved_spec",
    "torch_runner",
    "verify_saved",
]


def _onnx_requests(provider: str) -> list[list[Any]]:
    """The provider lists to run ONNX on: CPU always, CUDA when asked or (auto) present.

    Raises:
        ProviderError: ``cuda`` asked for on a machine where it cannot run.
    """
    cpu: list[Any] = ["CPUExecutionProvider"]
    if provider == "cpu":
        return [cpu]
    if provider == "cuda":
        cuda = cuda_providers(tf32=False)
        check_providers(cuda)
        return [cpu, cuda]
    return [cpu, cuda_providers(tf32=False)] if cuda_available() else [cpu]


def _onnx_runners(path: Path, *, provider: str = "auto") -> list[tuple[str, Runner]]:
    import onnxruntime as ort

    runners: list[tuple[str, Runner]] = []
    for providers in _onnx_requests(provider):
        session = ort.InferenceSession(str(path), providers=providers)
        actual = session.get_providers()[0]
        asked = providers[0] if isinstance(providers[0], str) else providers[0][0]
        if actual != asked and provider == "cuda":
            raise ProviderError(
                f"onnxruntime could not start {asked} (CUDA or cuDNN libraries missing or "
                "mismatched); run with -v for its log, or use --provider cpu (or auto)."
            )
        label = actual if actual == asked else f"{actual} (asked {asked})"
        name = session.get_inputs()[0].name

        def run(x: np.ndarray, _s: Any = session, _n: str = name) -> list[np.ndarray]:
            return [np.asarray(o) for o in _s.run(None, {_n: x})]

        runners.append((label, run))
    return runners


def torch_runner(module: Any, network: str) -> Runner:
    """A torch module (eager, TorchScript or torch.export) as a parity runner."""

    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            out = module(torch.from_numpy(x))
        return [t.numpy() for t in flatten_outputs(out, network=network)]

    return run


#: the runtimes parity can check artifacts in
RUNTIMES = ("python", "node", "browser")

#: a JavaScript runtime: (its name in reports, run every batch of one file, its error)
_JS_RUNTIMES: dict[
    str, tuple[str, Callable[[Path, Sequence[np.ndarray]], Any], type[Exception]]
] = {
    "node": (NODE_RUNTIME, run_in_node, NodeError),
    "browser": (BROWSER_RUNTIME, run_in_browser, BrowserError),
}


def _prefetched(runtime: str, path: Path, inputs: Sequence[np.ndarray]) -> Runner:
    """One process (Node.js, or a browser page) answers every input at the first call;
    later calls look theirs up (starting one per batch would cost more than the batches)."""
    _, run_all, failure = _JS_RUNTIMES[runtime]
    answers: dict[int, list[np.ndarray]] = {}
    failed: list[Exception] = []

    def run(x: np.ndarray) -> list[np.ndarray]:
        if not answers and not failed:
            try:
                answers.update(zip(map(id, inputs), run_all(path, inputs), strict=True))
            except failure as exc:
                failed.append(exc)
        if failed:
            raise failed[0]
        return answers.get(id(x)) or run_all(path, [x])[0]

    return run


def js_runners(
    runtime: str, files: dict[str, Path], inputs: Sequence[np.ndarray]
) -> list[tuple[str, str, Runner]]:
    """``(artifact, runtime, run)`` for each ONNX and ORT file in ``runtime`` (node or
    browser).

    Raises:
        RuntimeMissing: Node.js or npm, or Chromium or playwright, is missing.
    """
    if runtime == "node":
        install_node_package()
    else:
        browser_ready()
    label = _JS_RUNTIMES[runtime][0]
    return [
        (fmt, label, _prefetched(runtime, path, inputs))
        for fmt, path in files.items()
        if fmt in ("onnx", "ort")
    ]


def artifact_runners(
    files: dict[str, Path], *, network: str = "the network", provider: str = "auto"
) -> list[tuple[str, str, Runner]]:
    """``(artifact, runtime, run)`` for each artifact file in Python, keyed by format name.

    ``provider`` (auto, cpu or cuda) picks onnxruntime's providers for ONNX files.
    """
    runners: list[tuple[str, str, Runner]] = []
    for fmt, path in files.items():
        if fmt == "torchscript":
            runners.append((fmt, "torch.jit (cpu)", torch_runner(load_torchscript(path), network)))
        elif fmt == "pt2":
            runners.append((fmt, "torch.export (cpu)", torch_runner(load_program(path), network)))
        elif fmt == "onnx":
            runners += [(fmt, label, run) for label, run in _onnx_runners(path, provider=provider)]
        elif fmt == "ort":  # optimised for the CPU provider when converted
            runners += [(fmt, label, run) for label, run in _onnx_runners(path, provider="cpu")]
    return runners


def check_artifacts(
    model: nn.Module,
    files: dict[str, Path],
    *,
    name: str,
    input_shape: Sequence[int],
    atol: float,
    rtol: float,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    real: tuple[str, torch.Tensor] | None = None,
    seed: int = 0,
    output_names: Sequence[str] | None = None,
    provider: str = "auto",
    runtimes: Sequence[str] = ("python",),
    report: ParityReport | None = None,
) -> ParityReport:
    """Parity of every artifact in ``files`` (by format) against the eager ``model``.

    Inputs: seeded random batches at ``batch_sizes`` plus the ``real`` samples. A file
    that cannot be loaded is a problem in the report, not a crash. ``runtimes``: python
    (every format), node (the ONNX and ORT files in onnxruntime-node) and/or browser (the
    same in onnxruntime-web, in a headless system Chromium).

    Raises:
        ProviderError: ``provider`` names a provider that cannot run here.
        RuntimeMissing: node or browser is asked for and cannot run here.
    """
    report = report or ParityReport(model=name, atol=atol, rtol=rtol)
    inputs = _inputs(input_shape, batch_sizes, seed, real)
    try:
        runners = []
        if "python" in runtimes:
            runners += artifact_runners(files, network=name, provider=provider)
        for runtime in ("node", "browser"):
            if runtime in runtimes:
                runners += js_runners(runtime, files, [x for _, x in inputs])
    except UsageError:  # a provider or a runtime that cannot run here
        raise
    except Exception as exc:  # a corrupt artifact: report it, do not crash
        report.problems.append(f"cannot load an artifact: {first_line(exc)}")
        return report
    reference = torch_runner(model.eval(), name)
    return run_parity(
        reference,
        runners,
        inputs,
        name=name,
        atol=atol,
        rtol=rtol,
        output_names=output_names,
        report=report,
    )


def _inputs(
    input_shape: Sequence[int],
    batch_sizes: Sequence[int],
    seed: int,
    real: tuple[str, torch.Tensor] | None,
) -> list[tuple[str, np.ndarray]]:
    """Parity's inputs: seeded random batches at ``batch_sizes``, then the real samples."""
    inputs = random_inputs(input_shape, batch_sizes, seed=seed)
    if real is not None:
        inputs.append((real[0], np.ascontiguousarray(real[1].numpy(), dtype=np.float32)))
    return inputs


#: a variant's top-1 agreement says little on fewer samples than this
_MIN_VARIANT_SAMPLES = 100


def check_variants(
    artifact_dir: Path,
    manifest: dict[str, Any],
    model: nn.Module,
    real: tuple[str, torch.Tensor] | None,
    report: ParityReport,
    runtimes: Sequence[str] = ("python",),
) -> None:
    """Each variant (``kit quantize``) against eager on the real samples, by top-1
    agreement at the limit recorded with it; without real samples, a note says so."""
    variants = manifest.get("variants") or {}
    if not variants:
        return
    if real is None or len(real[1]) < _MIN_VARIANT_SAMPLES:
        report.notes.append(
            f"variants {', '.join(variants)} not checked: they are judged by top-1 agreement "
            f"on at least {_MIN_VARIANT_SAMPLES} real samples; pass --data-dir"
        )
        return
    x = np.ascontiguousarray(real[1].numpy(), dtype=np.float32)
    expected = torch_runner(model.eval(), report.model)(x)[0]
    for precision, record in variants.items():
        limits = Limits(**record.get("limits", {}))
        report.notes.append(
            f"the {precision} variant is judged by top-1 agreement with eager "
            f">= {limits.min_agreement:.1%} (its limit), not by atol/rtol"
        )
        for runtime, run in _variant_runners(artifact_dir / record["file"], runtimes):
            try:
                row = _agreement(f"onnx {precision}", runtime, real[0], run(x)[0], expected, limits)
            except (NodeError, BrowserError) as exc:
                row = Comparison(f"onnx {precision}", runtime, real[0], len(x), kind="error")
                row.error = first_line(exc, 400)
            report.comparisons.append(row)


def _variant_runners(path: Path, runtimes: Sequence[str]) -> list[tuple[str, Runner]]:
    runners = _onnx_runners(path, provider="cpu") if "python" in runtimes else []
    for runtime, (label, run_all, _) in _JS_RUNTIMES.items():
        if runtime in runtimes:
            runners.append((label, functools.partial(_first, run_all, path)))
    return runners


def _first(run_all: Callable[[Path, Sequence[np.ndarray]], Any], path: Path, x: np.ndarray) -> Any:
    return run_all(path, [x])[0]


def _agreement(
    artifact: str,
    runtime: str,
    label: str,
    actual: np.ndarray,
    expected: np.ndarray,
    limits: Limits,
) -> Comparison:
    row = Comparison(artifact, runtime, label, len(actual))
    diff = np.abs(actual.astype(np.float64) - expected)
    row.max_abs, row.mean_abs = float(diff.max()), float(diff.mean())
    row.max_rel = float((diff / np.maximum(np.abs(expected), np.finfo(np.float32).tiny)).max())
    row.top1_agreement = float((actual.argmax(1) == expected.argmax(1)).mean())
    row.passed = row.top1_agreement >= limits.min_agreement
    if not row.passed:
        row.kind = "agreement"
        row.error = f"top-1 agreement under {limits.min_agreement:.1%}"
    return row


def saved_spec(manifest: dict[str, Any]) -> Any:
    """The network's spec as an export's manifest records it (a registered name or a
    user's factory, at the input shape it was exported with)."""
    info = manifest["model"]
    return resolve_spec(info.get("factory") or info["name"], tuple(info["input_shape"]))


def rebuild_reference(artifact_dir: Path, manifest: dict[str, Any]) -> tuple[Any, nn.Module]:
    """The spec and eager network an export was made from, as its manifest records.

    Raises:
        ArtifactError: the weights file is missing or does not match its sha256.
    """
    info = manifest["model"]
    spec = saved_spec(manifest)
    weights = info.get("weights")
    path = None
    if weights:
        path = artifact_dir / weights["file"]
        if not path.is_file() or sha256_file(path) != weights["sha256"]:
            raise ArtifactError(f"{path} is missing or does not match its sha256 in the manifest.")
    asked = info.get("num_classes") or None
    try:
        network = load_network(spec, weights=path, num_classes=asked, seed=info.get("seed", 0))
    except UsageError:  # the weights' head disagrees with the manifest's class count
        found = spec.classes_in(read_state_dict(path)) if path else None
        raise ArtifactError(
            f"The manifest in {artifact_dir} says num_classes {asked} but {path} holds "
            f"{found} classes; re-export the model (kit export --weights alone reads the count)."
        ) from None
    return spec, network.model


def verify_saved(
    artifact_dir: Path,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    real: tuple[str, torch.Tensor] | None = None,
    provider: str = "auto",
    runtimes: Sequence[str] = ("python",),
    endpoint: tuple[str, str | None] | None = None,
) -> ParityReport:
    """Re-verify a saved export: every file's sha256, then parity against eager, in each
    of ``runtimes`` (python, node, browser), or (``endpoint``: URL and model name, the
    manifest's by default) the model a live inference server serves.

    The eager reference is rebuilt from the manifest (model, weights file or seed).

    Raises:
        ArtifactError: the directory has no readable manifest.
    """
    manifest = read_manifest(artifact_dir)
    facts = manifest.get("facts", {})
    atol = facts.get("atol", DEFAULT_ATOL) if atol is None else atol
    rtol = facts.get("rtol", DEFAULT_RTOL) if rtol is None else rtol
    report = ParityReport(model=manifest["model"]["name"], atol=atol, rtol=rtol)
    report.problems += verify_files(artifact_dir, manifest["files"])
    if report.problems:
        return report  # do not execute files that are not what export wrote
    spec, model = rebuild_reference(artifact_dir, manifest)
    if endpoint is not None:
        url, served = endpoint
        inputs = _inputs(spec.input_shape, batch_sizes, 0, real)
        check_endpoint(url, served or spec.name, manifest, model, inputs, report, real is not None)
        return report
    names = {fmt: artifact_dir / name for fmt, name in FILE_NAMES.items()}
    files = {fmt: path for fmt, path in names.items() if path.name in manifest["files"]}
    report = check_artifacts(
        model,
        files,
        name=spec.name,
        input_shape=spec.input_shape,
        atol=atol,
        rtol=rtol,
        batch_sizes=batch_sizes,
        real=real,
        output_names=[o["name"] for o in manifest.get("outputs", [])] or None,
        provider=provider,
        runtimes=runtimes,
        report=report,
    )
    check_variants(artifact_dir, manifest, model, real, report, runtimes)
    return report


def check_endpoint(
    url: str,
    served: str,
    manifest: dict[str, Any],
    model: nn.Module,
    inputs: list[tuple[str, np.ndarray]],
    report: ParityReport,
    has_real: bool = True,
) -> None:
    """The model ``served`` at ``url`` against eager ``model``: its metadata against the
    manifest, then every input (a variant, ``NAME_int8``, by top-1 agreement on the real
    samples, as locally).

    Raises:
        ArtifactError: the server cannot be reached or does not speak the protocol.
        UsageError: the URL is malformed or the server has no such model.
    """
    endpoint = connect(url, served)
    report.problems += metadata_problems(endpoint, manifest)
    if report.problems:
        return
    variants = manifest.get("variants") or {}
    precision = next((p for p in variants if served == f"{manifest['model']['name']}_{p}"), None)
    if precision is None:
        outputs = [o["name"] for o in manifest.get("outputs", [])] or None
        reference = torch_runner(model.eval(), report.model)
        run_parity(
            reference,
            [("endpoint", endpoint.label, endpoint.run)],
            inputs,
            name=report.model,
            atol=report.atol,
            rtol=report.rtol,
            output_names=outputs,
            report=report,
        )
        return
    if not has_real:
        report.problems.append(
            f"{served} is the {precision} variant, judged by top-1 agreement on real samples; "
            "pass --data-dir"
        )
        return
    limits = Limits(**variants[precision].get("limits", {}))
    label, x = inputs[-1]
    expected = torch_runner(model.eval(), report.model)(x)[0]
    artifact = f"endpoint {precision}"
    report.comparisons.append(
        _agreement(artifact, endpoint.label, label, endpoint.run(x)[0], expected, limits)
    )
