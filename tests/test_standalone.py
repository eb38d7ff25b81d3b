"""A clone of the repository needs nothing beside it: no file reads ../shared."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from kit.cli import cli

from .test_cli import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
# what a path to the seed workspace's shared folder looks like, in any spelling
NEEDLES = ("../shared", "shared/data", "shared/seed")


def _tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    files = [
        ROOT / n for n in names if not n.startswith("kit/sample_data/mnist/") or n.endswith(".md")
    ]
    return [f for f in files if f.suffix not in {".onnx", ".ts", ".pt2", ".safetensors", ".gz"}]


def test_no_tracked_file_points_outside_the_repository() -> None:
    files = _tracked_text_files()
    assert len(files) > 50
    this = Path(__file__).resolve()
    offenders = [
        f"{f.relative_to(ROOT)}: {needle}"
        for f in files
        if f.resolve() != this
        for needle in NEEDLES
        if needle in f.read_text(errors="replace")
    ]
    assert not offenders


@pytest.mark.parametrize("command", COMMANDS)
def test_help_examples_need_nothing_outside_the_repository(command: str) -> None:
    text = CliRunner().invoke(cli, [command, "--help"], prog_name="kit").output
    assert "Usage:" in text and not any(n in text for n in NEEDLES)


def test_the_bundled_mnist_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from architectures import get_spec
    from kit.data import BUNDLED_MNIST, DATA_DIR_ENV, load_dataset
    from kit.errors import DataError

    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    data = load_dataset("mnist", get_spec("lenet"))
    assert len(data.train) == 5000 and len(data.test) == 10_000  # type: ignore[arg-type]
    assert "bundled with kit" in data.description
    assert (BUNDLED_MNIST / "README.md").read_text().count("Creative Commons") == 1
    # $KIT_DATA_DIR still wins over the bundled copy
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(DataError, match="MNIST files are missing in"):
        load_dataset("mnist", get_spec("lenet"))
