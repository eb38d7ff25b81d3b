"""`kit bench`: every artifact timed, the graph's arithmetic counted, the hardware's peak."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from kit.artifact import MODEL_FILE
from kit.bench import count_macs, peak_gmacs
from kit.cli import cli


def test_multiply_adds_are_counted_from_the_graph(lenet_export: Path) -> None:
    conv1 = 28 * 28 * 6 * (1 * 3 * 3)
    conv2 = 10 * 10 * 16 * (6 * 5 * 5)
    linear = 400 * 120 + 120 * 84 + 84 * 10
    assert count_macs(lenet_export / MODEL_FILE) == conv1 + conv2 + linear


def test_the_peak_is_measured_for_fp32_and_int8() -> None:
    peaks = peak_gmacs(seconds=0.1, sizes=(128, 256))
    assert set(peaks) == {"fp32", "int8"} and all(v > 0.1 for v in peaks.values())


def test_bench_times_every_artifact_at_every_batch_size(lenet_export: Path, tmp_path: Path) -> None:
    plot = tmp_path / "bench.png"
    args = [
        "bench",
        str(lenet_export),
        "--seconds",
        "0.05",
        "--batch-sizes",
        "1,2",
        "--cold-runs",
        "0",
    ]
    result = CliRunner().invoke(cli, [*args, "--json", "--plot", str(plot)], prog_name="kit")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    seen = {(r["artifact"], r["batch"]) for r in data["rows"]}
    for artifact in (
        "eager",
        "torchscript",
        "pt2",
        "onnx",
        "limit (fp32 peak)",
        "limit (int8 peak)",
    ):
        assert {(artifact, 1), (artifact, 2)} <= seen
    timed = [r for r in data["rows"] if not r["artifact"].startswith("limit")]
    assert all(
        0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] and r["images_per_s"] > 0 for r in timed
    )
    assert all(r["peak_share"] > 0 for r in timed)
    assert data["macs_per_sample"] == count_macs(lenet_export / MODEL_FILE)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
