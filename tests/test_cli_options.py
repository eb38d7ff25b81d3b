"""The CLI's data and model options, in combination: every refusal is one sentence and exit
1 or 2, never a traceback, and every flag a message recommends exists on that command."""

from __future__ import annotations

import ast
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kit.cli import cli

from .shapes import make_shapes
from .test_own_network import inside

ROOT = Path(__file__).resolve().parent.parent
#: flags of other programs that kit's messages and help name (with the program)
EXTERNAL_FLAGS = {
    "--disable-pip-version-check": "pip",
    "--only-binary": "pip",
    "--prefix": "npm",
    "--no-audit": "npm",
    "--no-fund": "npm",
    "--no-input": "pip",
    "--quiet": "pip",
    "--version": "npm, node",
    "--no-sandbox": "chromium",
    "--nproc-per-node": "torchrun",
    "--input-data": "perf_analyzer",
    "--model-repository": "tritonserver",
    "--onnx-outputs": "polygraphy",
    "--kit-parity": "pytest (kit's plugin)",
    "--kit-parity-runtime": "pytest (kit's plugin)",
    "--help": "every command",
    "--verbose": "kit itself (kit -v COMMAND)",
}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")


def _options(command: click.Command) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts)}


def test_every_flag_kit_names_exists() -> None:
    """Every ``--flag`` in kit's source text (messages, help) is an option of some kit
    command, or of the program named beside it in EXTERNAL_FLAGS."""
    known = set().union(*(_options(c) for c in cli.commands.values()))
    missing = {}
    for path in (ROOT / "kit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for flag in FLAG.findall(node.value):
                    if flag not in known and flag not in EXTERNAL_FLAGS:
                        missing.setdefault(flag, str(path.relative_to(ROOT)))
    assert missing == {}


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A user's folder with their module, a small data set, an empty folder, a file, and
    two exports (their network, trained; lenet)."""
    folder = tmp_path_factory.mktemp("options")
    shutil.copy(Path(__file__).parent / "user_nets.py", folder / "mynets.py")
    make_shapes(folder / "shapes", train=40, val=10)
    (folder / "empty").mkdir()
    (folder / "file.txt").write_text("not data")
    with inside(folder):
        runner = CliRunner()
        for args in (
            ["train", "--model", "mynets:shapes", "--input-shape", "3,32,32", "--data-dir",
             "shapes", "--epochs", "2", "--out", "run"],
            ["export", "--model", "mynets:shapes", "--input-shape", "3,32,32", "--weights",
             "run/best.safetensors", "--formats", "onnx", "--out", "exported"],
            ["export", "--model", "lenet", "--formats", "onnx", "--out", "exported"],
        ):  # fmt: skip
            result = runner.invoke(cli, args)
            assert result.exit_code == 0, result.output
        yield {"export:shapes": "exported/shapes", "export:lenet": "exported/lenet"}
    sys.modules.pop("mynets", None)


MODELS = st.sampled_from(
    ["lenet", "nope", "mynets:shapes", "mynets:missing", "nomodule:x", ":", "a:b:c"]
)
SHAPES = st.sampled_from([None, "3,32,32", "1,28,28", "0,1", "x"])
DATASETS = st.sampled_from([None, "mnist", "imagefolder", "cifar10", "fake"])
DATA_DIRS = st.sampled_from([None, "shapes", "empty", "file.txt", "missing"])
MEANS = st.sampled_from([None, "0.5", "0.5,0.5", "x", "nan"])
STDS = st.sampled_from([None, "0.25", "0", "-1"])
NAMES = st.sampled_from([None, "a,b,c", "@missing.txt", ","])
FACTORIES = st.sampled_from([None, "mynets:shapes", "nomodule:x"])


def _opt(flag: str, value: str | None) -> list[str]:
    return [] if value is None else [flag, value]


@st.composite
def invocations(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A kit command with some of the data, model and facts options, each maybe wrong."""
    data = [*_opt("--dataset", draw(DATASETS)), *_opt("--data-dir", draw(DATA_DIRS))]
    model = ["--model", draw(MODELS), *_opt("--input-shape", draw(SHAPES))]
    facts = [*_opt("--mean", draw(MEANS)), *_opt("--std", draw(STDS))]
    facts += _opt("--class-names", draw(NAMES))
    export = draw(st.sampled_from(["export:shapes", "export:lenet"]))
    factory = _opt("--factory", draw(FACTORIES))
    command = draw(
        st.sampled_from(["train", "export", "parity", "eval", "quantize", "bench", "compare"])
    )
    args = {
        "train": ["train", *model, *data, *facts, "--epochs", "1", "--fake-size", "16",
                  "--num-classes", "3", "--out", "runs/x"],
        "export": ["export", *model, *data, *facts, "--formats", "onnx", "--out", "out"],
        "parity": ["parity", export, *data, *factory, "--batch-sizes", "1", "--samples", "8"],
        "eval": ["eval", export, *data, *factory],
        "quantize": ["quantize", export, *data, *factory, "--calibration-size", "8"],
        "bench": ["bench", export, *data, *factory, "--seconds", "0.05", "--cold-runs", "0",
                  "--batch-sizes", "1"],
        "compare": ["report", "--compare", export, export, *data, *factory],
    }[command]  # fmt: skip
    return args[0], args


#: how many combinations the property test runs (docs/BENCHMARKS.md records it)
CASES = 150


@settings(
    max_examples=CASES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(invocation=invocations())
def test_every_combination_answers_in_one_sentence(
    place: dict[str, str], invocation: tuple[str, list[str]]
) -> None:
    name, args = invocation
    args = [place.get(a, a) for a in args]
    result = CliRunner().invoke(cli, args, prog_name="kit")  # in the user's folder (``place``)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args,
        result.output,
    )
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1, 2), (args, result.output)
    if result.exit_code == 0:
        return
    verdicts = ("): FAILED (", "gate: FAILED", ": NOT READY")  # a report, not a refusal
    if "Error: " not in result.output and any(v in result.output for v in verdicts):
        return
    said = result.output.rpartition("Error: ")[2].strip()
    assert said and "\n" not in said, (args, result.output)
    allowed = _options(cli.commands[name]) | set(EXTERNAL_FLAGS)
    assert set(FLAG.findall(said)) <= allowed, (args, said)
