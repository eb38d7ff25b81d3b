"""The wheel carries the reference models the repository ships in exported/ (as
``kit/_shipped``), so an installed kit's defaults (``kit predict IMAGE``, ``kit serve``,
``kit list``, ``kit report``) work without the source tree. Everything else is in
pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("lenet", "mnist_cnn")


class BuildWithModels(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # a checkout reads exported/ where it is
            return
        for name in SHIPPED:
            target = Path(self.build_lib) / "kit" / "_shipped" / name
            shutil.copytree(
                Path("exported") / name,
                target,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("results", ".*"),
            )


setup(cmdclass={"build_py": BuildWithModels})
