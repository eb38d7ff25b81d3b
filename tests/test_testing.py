"""Parity in users' CI: the pytest plugin (--kit-parity), kit.testing.assert_parity and
kit parity --junit."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from kit.cli import cli
from kit.testing import assert_parity

from .conftest import perturb

pytest_plugins = ["pytester"]


def test_assert_parity(lenet_export: Path, tmp_path: Path) -> None:
    assert_parity(lenet_export)
    broken = perturb(lenet_export, tmp_path / "lenet", "layer3.fc2.weight")
    with pytest.raises(AssertionError, match=r"parity failed for .*lenet:\nartifact"):
        assert_parity(broken, batch_sizes=(1,))


def test_the_plugin_collects_one_test_per_comparison(
    pytester: pytest.Pytester, lenet_export: Path, tmp_path: Path
) -> None:
    broken = perturb(lenet_export, tmp_path / "exports" / "lenet", "layer3.fc2.weight")
    result = pytester.runpytest_subprocess("--kit-parity", str(broken.parent), "-v")
    # 1 file check + 3 formats x 3 random batch sizes + 3 formats x the real digits = 13
    result.assert_outcomes(passed=1 + 2 * 4, failed=4)
    result.stdout.fnmatch_lines(
        [
            "*kit-parity?lenet: files: sha256 match the manifest? PASSED*",
            "*kit-parity?lenet: onnx on CPUExecutionProvider, random b=1, logits? FAILED*",
            "*max|diff| * exceeds atol 0.0001*",
        ]
    )


def test_the_plugin_says_when_there_is_no_export(pytester: pytest.Pytester, tmp_path: Path) -> None:
    result = pytester.runpytest_subprocess("--kit-parity", str(tmp_path))
    assert result.ret != 0
    result.stderr.fnmatch_lines(
        ["*--kit-parity *: no export (a directory with manifest.json) there.*"]
    )


def test_junit_report(lenet_export: Path, tmp_path: Path) -> None:
    broken = perturb(lenet_export, tmp_path / "lenet", "layer3.fc2.weight")
    junit = tmp_path / "parity.xml"
    args = ["parity", str(broken), "--batch-sizes", "1,3", "--junit", str(junit)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    suite = ET.parse(junit).getroot()
    cases = suite.findall("testcase")
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert suite.get("tests") == str(len(cases)) == "9" and suite.get("failures") == str(
        len(failed)
    )
    assert failed == [
        "onnx on CPUExecutionProvider, random b=1, logits",
        "onnx on CPUExecutionProvider, random b=3, logits",
        "onnx on CPUExecutionProvider, mnist test b=256, logits",
    ]
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code = CliRunner().invoke(cli, ["parity", str(broken), "--junit", str(blocker / "x.xml")])
    assert code.exit_code == 2 and "Cannot write" in code.output


def test_ci_runs_the_readme_commands_in_order_and_the_workflow_too() -> None:
    import re
    import subprocess

    import yaml

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", quick_start)
    assert len(commands) == 2 and "kit export" in commands[0] and "scripts/test.sh" in commands[1]
    printed = subprocess.run(
        [str(root / ".ci" / "run"), "--print"], capture_output=True, text=True, check=True
    ).stdout
    assert printed.splitlines() == commands  # the main job first, then the tests
    workflow = yaml.safe_load((root / ".github" / "workflows" / "ci.yml").read_text())
    runs = [step.get("run", "") for step in workflow["jobs"]["test"]["steps"]]
    assert ".ci/run" in runs
    assert any("kit parity exported/" in r and "--junit" in r for r in runs)
