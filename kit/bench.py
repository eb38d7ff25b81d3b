"""`kit bench`: latency and throughput of every artifact of an export, against the hardware.

Each artifact (eager PyTorch, TorchScript, torch.export, ONNX on onnxruntime's CPU provider,
each variant, and CUDA with and without IOBinding when a GPU is present) runs the same
random batch repeatedly for a fixed time per batch size. The last rows are the physical
limit: the network's multiply-adds counted from the ONNX graph, divided by this machine's
fp32 and int8 matrix-product peak, measured by onnxruntime itself in the same run.
"""

from __future__ import annotations

import functools
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._table import format_table
from .artifact import MODEL_FILE, open_export, read_manifest
from .catalogue import runtime_record
from .data import DataChoice
from .errors import UsageError
from .parity import Runner, closing

__all__ = ["BenchRow", "bench", "count_macs", "format_rows", "peak_gmacs", "plot_rows"]


@dataclass
class BenchRow:
    """One artifact on one runtime at one batch size."""

    artifact: str
    runtime: str
    batch: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    images_per_s: float
    peak_share: float | None = None
    #: the sample's height x width when it is not the export's own (``kit bench --grid``)
    size: str = ""


def _time(run: Callable[[], object], seconds: float) -> list[float]:
    run()  # warm-up: allocations, kernel choices
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return times


def _row(artifact: str, runtime: str, batch: int, times: list[float]) -> BenchRow:
    q = statistics.quantiles(times, n=100, method="inclusive") if len(times) > 1 else times * 99
    return BenchRow(
        artifact,
        runtime,
        batch,
        statistics.median(times) * 1e3,
        q[89] * 1e3,
        q[98] * 1e3,
        batch / statistics.fmean(times),
    )


def count_macs(onnx_path: Path) -> int:
    """Multiply-adds of one sample through the Conv, Gemm and MatMul nodes of the graph."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    for value in (*model.graph.input, *model.graph.output):  # batch 1 for shape inference
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    model = onnx.shape_inference.infer_shapes(model)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*model.graph.value_info, *model.graph.input, *model.graph.output)
    }
    shapes |= {t.name: list(t.dims) for t in model.graph.initializer}
    macs = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            w, out = shapes.get(node.input[1]), shapes.get(node.output[0])
            if w and out:
                macs += int(np.prod(out)) * int(np.prod(w[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            a, out = shapes.get(node.input[0]), shapes.get(node.output[0])
            if a and out:
                k = a[-1] if node.op_type == "MatMul" or not _transposed(node, "transA") else a[0]
                macs += int(np.prod(out)) * int(k)
    return macs


def _transposed(node: Any, name: str) -> bool:
    return any(a.name == name and a.i for a in node.attribute)


def peak_gmacs(seconds: float = 1.0, sizes: Sequence[int] = (512, 768, 1024)) -> dict[str, float]:
    """Billions of multiply-adds per second onnxruntime's CPU provider reaches on n x n x n
    matrix products, fp32 (MatMul) and int8 (MatMulInteger, uint8 x int8): the best over
    ``sizes`` (larger products fall out of cache and run slower)."""
    per_size = [_peak_at(n, seconds / len(sizes)) for n in sizes]
    return {k: max(p[k] for p in per_size) for k in per_size[0]}


def _peak_at(n: int, seconds: float) -> dict[str, float]:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    cases = {
        "fp32": ("MatMul", TensorProto.FLOAT, np.float32, TensorProto.FLOAT),
        "int8": ("MatMulInteger", TensorProto.UINT8, np.uint8, TensorProto.INT32),
    }
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (op, in_type, np_type, out_type) in cases.items():
            b = (rng.standard_normal((n, n)) * 20).astype(np.float32 if name == "fp32" else np.int8)
            weight = onnx.numpy_helper.from_array(b, "b")
            graph = helper.make_graph(
                [helper.make_node(op, ["a", "b"], ["c"])],
                name,
                [helper.make_tensor_value_info("a", in_type, [n, n])],
                [helper.make_tensor_value_info("c", out_type, [n, n])],
                [weight],
            )
            path = Path(tmp) / f"{name}.onnx"
            opset = [helper.make_opsetid("", 17)]
            onnx.save(helper.make_model(graph, opset_imports=opset, ir_version=8), path)
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            a = (rng.random((n, n)) * 200).astype(np_type)
            times = _time(functools.partial(session.run, None, {"a": a}), seconds)
            peaks[name] = n**3 / min(times) / 1e9
    return peaks


def _runners(directory: Path, factory: str | None, notes: list[str]) -> list[Runner]:
    """Eager PyTorch and every artifact of the export in the runtime it is made for (CUDA
    with and without IOBinding when a GPU is present), from the runner registry; a runtime
    not installed here is a note, not an error."""
    from .errors import RuntimeMissing
    from .runners import RunnerOptions, home_select, make_runners
    from .runners.torch import eager_runner
    from .verify import rebuild_reference

    manifest = open_export(directory, "bench")
    spec, eager = rebuild_reference(directory, manifest, factory)
    options = RunnerOptions(provider="auto", io_binding=True)
    artifacts = manifest.artifacts()
    found = [eager_runner(eager, spec.name)]
    for runtime in dict.fromkeys(home_select(a.format) for a in artifacts):
        try:
            found += make_runners(directory, artifacts, [runtime], options)
        except RuntimeMissing as exc:
            notes.append(f"not timed: {exc}")
    notes += list(dict.fromkeys(r.note for r in found if r.note))
    return found


def _real_pool(
    directory: Path, factory: str | None, data: DataChoice | None, count: int, notes: list[str]
) -> np.ndarray | None:
    """Up to ``count`` real test samples of ``data`` to time on (None: random inputs)."""
    from .data import parity_samples
    from .verify import saved_spec

    if data is None or not data.has_files:
        return None
    spec = saved_spec(read_manifest(directory), factory)
    found = parity_samples(spec, data, count)
    if found is None:
        return None
    notes.append(f"timed on real samples: {found[0]} ({data.describe()})")
    return np.ascontiguousarray(found[1].numpy(), dtype=np.float32)


def bench(
    directory: Path,
    *,
    batch_sizes: Sequence[int] = (1, 8, 32),
    seconds: float = 1.0,
    progress: bool = True,
    factory: str | None = None,
    cold_runs: int = 3,
    data: DataChoice | None = None,
    grid: bool = False,
) -> tuple[list[BenchRow], dict[str, Any]]:
    """Benchmark every artifact of ``directory`` at each batch size, on real test samples
    of ``data`` when it has some (int8 kernels see the values they will meet), else on
    seeded random ones; with ``grid``, an export whose size varies is also timed at batch 1
    at every other size of its rules' grid.

    Returns:
        The rows, and the hardware facts: multiply-adds per sample and the measured peaks.

    Raises:
        ArtifactError: the directory is not a readable, untampered export.
    """
    from tqdm.auto import tqdm

    manifest = read_manifest(directory)
    shape = tuple(manifest.model.input_shape)
    notes: list[str] = []
    runners = _runners(directory, factory, notes)
    pool = _real_pool(directory, factory, data, max(batch_sizes), notes)
    macs = count_macs(directory / MODEL_FILE) if MODEL_FILE in manifest.files else 0
    before = peak_gmacs()
    rows: list[BenchRow] = []
    shares: list[tuple[BenchRow, str]] = []
    bar = tqdm(
        total=len(runners) * len(batch_sizes),
        desc="bench",
        disable=not progress or None,
        leave=False,
    )
    sizes = _grid_sizes(manifest, shape) if grid else []
    bar.total += len(runners) * len(sizes)
    with closing(runners):
        _time_all(runners, batch_sizes, shape, pool, seconds, macs, rows, shares, bar)
        for size in sizes:
            _time_size(runners, size, seconds, rows, bar)
    bar.close()
    # The machine's speed drifts: the peak is the best of a measurement before and after.
    after = peak_gmacs()
    peaks = {k: max(before[k], after[k]) for k in before}
    for row, kind in shares:
        row.peak_share = row.images_per_s * macs / (peaks[kind] * 1e9)
    for precision, peak in peaks.items():  # the physical limit, as rows of their own
        for b in batch_sizes:
            limit = peak * 1e9 / macs if macs else float("nan")
            nan = float("nan")
            name = f"limit ({precision} peak)"
            rows.append(BenchRow(name, "matrix product", b, nan, nan, nan, limit, 1.0))
    hardware = {
        "cold_start": _cold(directory, runners, cold_runs),
        "notes": notes,
        "macs_per_sample": macs,
        "peak_gmacs": peaks,
        "peak_before": before,
        "peak_after": after,
    }
    return rows, hardware


def _cold(directory: Path, runners: list[Runner], runs: int) -> list[dict[str, Any]]:
    """Cold start of every artifact in the runtimes timed here (none when ``runs`` is 0)."""
    if runs <= 0:
        return []
    from .cold import cold_starts

    installed = {r.key for r in runners}
    found = cold_starts(directory, runs=runs, installed=installed)
    return [{**asdict(c), "total_s": c.total_s} for c in found]


def _time_all(
    runners: list[Runner],
    batch_sizes: Sequence[int],
    shape: tuple[int, ...],
    pool: np.ndarray | None,
    seconds: float,
    macs: int,
    rows: list[BenchRow],
    shares: list[tuple[BenchRow, str]],
    bar: Any,
) -> None:
    """Time every runner at every batch size into ``rows`` (and the CPU rows into ``shares``,
    whose share of the peak is filled in once the peak is known)."""
    for runner in runners:
        for b in batch_sizes:
            bar.set_postfix_str(f"{runner.artifact} {runner.runtime} b={b}")
            x = np.random.default_rng(b).standard_normal((b, *shape), dtype=np.float32)
            if pool is not None:
                x = np.ascontiguousarray(np.resize(pool, (b, *shape)))
            times = _time(functools.partial(runner.run, x), seconds)
            row = _row(runner.artifact, runner.runtime, b, times)
            if macs and _on_cpu(runner):  # the share of the CPU's peak, once it is known
                shares.append((row, "int8" if runner.precision == "int8" else "fp32"))
            rows.append(row)
            bar.update()


def _grid_sizes(manifest: Any, shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The samples of the rules' grid other than the export's own size.

    Raises:
        UsageError: the export's size does not vary (there is no grid to time).
    """
    rules = manifest.facts.dynamic
    if rules is None or not rules.spatial:
        raise UsageError(
            "--grid times the sizes an export's rules allow; this export takes one size "
            "(export it with --dynamic height=...,width=...)."
        )
    return [(shape[0], h, w) for h, w in rules.grid(shape) if (h, w) != tuple(shape[1:])]


def _time_size(
    runners: list[Runner], shape: tuple[int, ...], seconds: float, rows: list[BenchRow], bar: Any
) -> None:
    """Every runner at batch 1 at one grid size (no share of the peak: the multiply-adds
    were counted at the export's own size)."""
    x = np.random.default_rng(1).standard_normal((1, *shape), dtype=np.float32)
    label = f"{shape[1]}x{shape[2]}"
    for runner in runners:
        bar.set_postfix_str(f"{runner.artifact} {runner.runtime} {label}")
        row = _row(
            runner.artifact, runner.runtime, 1, _time(functools.partial(runner.run, x), seconds)
        )
        row.size = label
        rows.append(row)
        bar.update()


def _on_cpu(runner: Runner) -> bool:
    record = runtime_record(runner.key)
    return record is not None and record.provider != "cuda"


def format_rows(rows: list[BenchRow], hardware: dict[str, Any]) -> str:
    """A fixed-width table of the rows, with the hardware facts under it."""
    head = ("artifact", "runtime", "batch", "p50 ms", "p90 ms", "p99 ms", "img/s", "of peak")
    table = [
        (
            r.artifact,
            r.runtime,
            f"{r.batch} at {r.size}" if r.size else str(r.batch),
            *("-" if np.isnan(v) else f"{v:.3f}" for v in (r.p50_ms, r.p90_ms, r.p99_ms)),
            f"{r.images_per_s:,.0f}" if r.images_per_s >= 100 else f"{r.images_per_s:.2f}",
            "-" if r.peak_share is None else f"{r.peak_share:.0%}",
        )
        for r in rows
    ]
    lines = [format_table(head, table, last_free=False)]
    peaks = ", ".join(f"{k} {v:.1f} GMAC/s" for k, v in hardware["peak_gmacs"].items())
    lines.append(
        f"{hardware['macs_per_sample'] / 1e6:.1f} M multiply-adds per sample; onnxruntime's "
        f"measured CPU peak here: {peaks}"
    )
    lines += _cold_lines(hardware.get("cold_start", []))
    lines += [f"note: {n}" for n in hardware.get("notes", [])]
    return "\n".join(lines)


def _cold_lines(cold: list[dict[str, Any]]) -> list[str]:
    if not cold:
        return []
    head = ("cold start", "runtime", "import s", "load s", "first s", "total s")
    keys = ("import_s", "load_s", "first_s", "total_s")
    table = [(c["artifact"], c["runtime"], *(f"{c[k]:.3f}" for k in keys)) for c in cold]
    runs = cold[0]["runs"]
    note = f"(median of {runs} fresh processes each: import, load, first inference)"
    return ["", format_table(head, table, last_free=False), note]


def plot_rows(rows: list[BenchRow], path: Path, title: str) -> None:
    """Throughput by batch size, one line per artifact and runtime, as a PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    series: dict[str, list[BenchRow]] = {}
    for r in rows:
        if not r.size:  # the grid's sizes are a table, not a line over batch sizes
            series.setdefault(f"{r.artifact} / {r.runtime}", []).append(r)
    for label, points in series.items():
        style = "--" if label.startswith("limit") else "o-"
        ax.plot([p.batch for p in points], [p.images_per_s for p in points], style, label=label)
    ax.set(xlabel="batch size", ylabel="images per second", title=title, yscale="log")
    ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def rows_as_dicts(rows: list[BenchRow]) -> list[dict[str, Any]]:
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in asdict(r).items()}
        for r in rows
    ]
