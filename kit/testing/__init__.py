"""Parity in users' own tests: ``assert_parity`` and the pytest plugin (``--kit-parity``).

>>> from kit.testing import assert_parity
>>> assert_parity("exported/mnist_cnn")                    # every artifact, every comparison
>>> assert_parity("exported/mnist_cnn", runtimes=["python", "node"])
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

__all__ = ["assert_parity", "parity_report"]


def parity_report(
    artifact_dir: str | PathLike[str],
    *,
    runtimes: Sequence[str] = ("python",),
    dataset: str | None = None,
    data_dir: str | PathLike[str] | None = None,
    **options: Any,
) -> Any:
    """``kit parity``'s report for an export (a :class:`kit.parity.ParityRun`).

    Real samples come from ``dataset``/``data_dir``, else the data the manifest records,
    else the bundled MNIST for the digit networks;
    ``options`` go to :func:`kit.verify.verify_saved` (atol, rtol, batch_sizes, provider,
    endpoint, factory).
    """
    from ..artifact import read_manifest
    from ..data import choose_data, parity_samples
    from ..verify import saved_spec, verify_saved

    path = Path(artifact_dir)
    manifest = read_manifest(path)
    spec = saved_spec(manifest, options.get("factory"))
    folder = Path(data_dir) if data_dir else None
    choice = choose_data(spec, dataset=dataset, data_dir=folder, recorded=manifest.model.data)
    real = parity_samples(spec, choice)
    return verify_saved(path, real=real, runtimes=runtimes, data=choice, **options)


def assert_parity(artifact_dir: str | PathLike[str], **options: Any) -> None:
    """Fail (``AssertionError``, with the whole table) unless every artifact of the export
    computes what the eager network computes; options as :func:`parity_report`."""
    from ..parity import format_parity

    report = parity_report(artifact_dir, **options)
    if not report.passed:
        raise AssertionError(f"parity failed for {artifact_dir}:\n{format_parity(report)}")
