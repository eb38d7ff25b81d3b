"""Cold start: what a fresh process pays to import a runtime, load an artifact and answer
its first inference (a serverless deployment's request, an app's launch), the median over
several processes, for every artifact of an export in the runtime it is made for."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .artifact import ArtifactFile, read_manifest
from .catalogue import RUNTIMES, Runtime, home_runtime

__all__ = ["ColdStart", "cold_starts"]

#: the program each fresh process runs: import, load, first inference, each timed
_PROGRAM = """
import importlib, json, sys, time
t0 = time.perf_counter()
directory, name, fmt, precision, runtime, modules = sys.argv[1:7]
import numpy as np
for module in filter(None, modules.split(",")):
    importlib.import_module(module)
t1 = time.perf_counter()
from pathlib import Path
from kit.artifact import ArtifactFile, read_manifest
from kit.runners import RunnerOptions, make_runners
if fmt == "eager":  # EAGER
    from kit.runners.torch import eager_run
    from kit.verify import rebuild_reference
    manifest = read_manifest(Path(directory))
    spec, model = rebuild_reference(Path(directory), manifest)
    run = eager_run(model, spec.name)
else:
    manifest = read_manifest(Path(directory))
    artifact = ArtifactFile(name, fmt, precision)
    options = RunnerOptions(isolated=True)  # this process is the throwaway one
    run = make_runners(Path(directory), [artifact], [runtime], options)[0].run
t2 = time.perf_counter()
run(np.zeros((1, *manifest.model.input_shape), np.float32))
t3 = time.perf_counter()
print(json.dumps([t1 - t0, t2 - t1, t3 - t2]))
"""

#: eager PyTorch, timed beside the files as if it were one more format
EAGER = "eager"


def _home(fmt: str) -> Runtime:
    """The runtime a format's cold start is timed in (eager: PyTorch)."""
    return RUNTIMES["torch"] if fmt == EAGER else home_runtime(fmt)


@dataclass
class ColdStart:
    """Median seconds over ``runs`` fresh processes: import, load, first inference."""

    artifact: str
    runtime: str
    import_s: float
    load_s: float
    first_s: float
    runs: int

    @property
    def total_s(self) -> float:
        return self.import_s + self.load_s + self.first_s


def _once(directory: Path, artifact: ArtifactFile, runtime: Runtime) -> list[float] | None:
    """One fresh process: import the runtime (what it imports first, then kit's modules for
    it), load the file, run it once."""
    modules = ",".join([*runtime.imports, *runtime.modules])
    args = [str(directory), artifact.name, artifact.format, artifact.precision, runtime.select]
    command = [sys.executable, "-c", _PROGRAM, *args, modules]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        return None
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def cold_starts(
    directory: Path, *, runs: int = 3, installed: set[str] | None = None
) -> list[ColdStart]:
    """The cold start of eager PyTorch and of each artifact in its home runtime (those whose
    catalogue key is in ``installed`` when given: a runtime missing here is left out by the
    caller)."""
    manifest = read_manifest(directory)
    found = []
    for artifact in [ArtifactFile("", EAGER), *manifest.artifacts()]:
        runtime = _home(artifact.format)
        if installed is not None and runtime.key not in installed:
            continue
        times = [t for t in (_once(directory, artifact, runtime) for _ in range(runs)) if t]
        if not times:
            continue
        label = (
            artifact.format
            if artifact.precision == "fp32"
            else f"{artifact.format} {artifact.precision}"
        )
        first, load, infer = (statistics.median(t[i] for t in times) for i in range(3))
        found.append(ColdStart(label, runtime.select, first, load, infer, len(times)))
    return found
