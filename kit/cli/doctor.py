"""``kit doctor``: which runtimes and providers this machine can check artifacts in."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import asdict, dataclass
from typing import Any

import click

from ._common import _echo_json, cli, echo


@dataclass
class Check:
    """One runtime or provider: whether kit can use it here, and how to get it if not."""

    name: str
    ready: bool
    detail: str
    fix: str = ""


def _onnxruntime_checks() -> list[Check]:
    """Each provider onnxruntime lists, tried on a one-node model: what it really gets."""
    import onnxruntime as ort

    from ..runtime.providers import cuda_available, cuda_providers

    checks = []
    for name in ("CPUExecutionProvider", "CUDAExecutionProvider"):
        cuda = name.startswith("CUDA")
        if name not in ort.get_available_providers():
            detail = "not in this onnxruntime build"
        elif cuda and not cuda_available():
            detail = "in this build, but this machine has no NVIDIA GPU"
        else:
            detail = "gets " + _provider_got(cuda_providers() if cuda else [name])
        ready = detail == f"gets {name}"
        fix = "an NVIDIA GPU and its driver (kit parity --provider cuda)" if cuda else ""
        checks.append(
            Check(
                f"python {name}",
                ready,
                f"onnxruntime {ort.__version__}: {detail}",
                fix * (not ready),
            )
        )
    return checks


def _provider_got(providers: list[Any]) -> str:
    """The provider a one-node model really gets when ``providers`` are asked for."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in "xy")
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=providers)
    except Exception as exc:  # listed, but it cannot start
        return f"an error: {str(exc).splitlines()[0][:120]}"
    return str(session.get_providers()[0])


def _embedded_checks() -> list[Check]:
    from ..embed.packages import (
        ORT_JS_VERSION,
        WEB_FILES,
        find_browser,
        node_modules,
        node_version,
        web_dir,
    )

    node = node_version()
    cached = (node_modules() / "onnxruntime-node" / "package.json").is_file()
    web = all((web_dir() / f).is_file() for f in WEB_FILES)
    browser = find_browser()
    playwright = importlib.util.find_spec("playwright") is not None
    return [
        Check(
            "node onnxruntime-node",
            bool(node) and cached,
            f"Node.js {node or 'missing'}; onnxruntime-node {ORT_JS_VERSION} "
            + (f"in {node_modules()}" if cached else "not installed"),
            ""
            if node and cached
            else "install Node.js 18+ (apt-get install nodejs npm)"
            if not node
            else "kit doctor --install node (or the first kit parity --runtime node)",
        ),
        Check(
            "browser onnxruntime-web",
            web,
            f"onnxruntime-web {ORT_JS_VERSION} wasm "
            + (f"in {web_dir()}" if web else "not fetched"),
            "" if web else "kit doctor --install web (the page kit serve shows at / needs it)",
        ),
        Check(
            "browser chromium",
            browser is not None and playwright,
            f"{browser or 'no system Chromium on PATH'}; playwright "
            + ("installed" if playwright else "missing")
            + " (kit parity --runtime browser)",
            ""
            if browser and playwright
            else "apt-get install chromium (or set $KIT_CHROMIUM)"
            if not browser
            else "pip install playwright",
        ),
        Check(
            "mobile ORT format",
            _has_ort_converter(),
            "onnxruntime.tools.convert_onnx_models_to_ort (kit export --formats onnx,ort)",
        ),
    ]


def _runtime_checks() -> list[Check]:
    """A line per runtime of the catalogue (any added too): whether it can run here, the
    version its package reports, and how to get it."""
    from importlib.metadata import PackageNotFoundError, version

    from ..catalogue import RUNTIMES
    from ..report.columns import missing

    checks = []
    for r in RUNTIMES.values():
        if r.shown != "always" or "gpu" in r.needs:  # CUDA: the provider line below tries it
            continue
        why = missing(r)
        try:
            got = f"{r.package} {version(r.package)}: " if r.package else ""
        except PackageNotFoundError:  # another distribution may provide it (onnxruntime-gpu)
            got = ""
        formats = ", ".join(r.formats)
        detail = f"{got}{r.title} runs {formats} (kit parity --runtime {r.select})"
        fix = "" if why is None else why + (f"; pip install 'kit[{r.extra}]'" if r.extra else "")
        checks.append(Check(r.key, why is None, detail, fix))
    return checks


def _has_ort_converter() -> bool:
    return importlib.util.find_spec("onnxruntime.tools.convert_onnx_models_to_ort") is not None


@cli.command()
@click.option(
    "--install",
    type=click.Choice(["node", "web", "all"]),
    help="Install what kit fetches itself first: onnxruntime-node (needs npm) and/or the "
    "onnxruntime-web files the browser page loads (Python alone), into kit's cache.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor(install: str | None, as_json: bool) -> None:
    """List the runtimes and providers this machine can check artifacts in.

    Python's onnxruntime providers are tried on a one-node model (what
    get_providers() really gets, not what the build lists); Node.js, onnxruntime-node,
    the onnxruntime-web files, a system Chromium with playwright, ORT's mobile converter,
    ExecuTorch, LiteRT and OpenVINO are looked up. Exits 1 when something this machine could use is missing
    (each with how to get it); with --install, the exit status says whether the
    installation worked. kit's cache is $KIT_CACHE_DIR, else ~/.cache/kit.

    \b
      kit doctor
      kit doctor --install web     # the README's set-up runs this
    """
    from ..embed.packages import install_node_package, install_web_files

    if install in ("web", "all"):
        install_web_files()
    if install in ("node", "all"):
        install_node_package()
    checks = _runtime_checks() + _onnxruntime_checks() + _embedded_checks()
    if as_json:
        _echo_json([asdict(c) for c in checks])
    else:
        _print_checks(checks)
    usable = [c for c in checks if c.name != "python CUDAExecutionProvider"]
    if install is None and not all(c.ready for c in usable):
        sys.exit(1)


def _print_checks(checks: list[Any]) -> None:
    width = max(len(c.name) for c in checks)
    for c in checks:
        mark = "ok " if c.ready else "-- "
        echo(f"{mark} {c.name:<{width}}  {c.detail}")
        if c.fix:
            echo(f"    {'':<{width}}  -> {c.fix}")
