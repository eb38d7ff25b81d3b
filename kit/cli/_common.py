"""The ``kit`` click group and what its commands share: options, parsers, error handling."""

from __future__ import annotations

import json
import logging
import math
import traceback
from pathlib import Path
from typing import Any

import click

from .. import __version__
from .._text import inert
from ..artifact import DATASETS, DEFAULT_BATCH_SIZES
from ..errors import KitError, UsageError

DEFAULT_EXPORT_DIR = Path("exported")


def echo(message: Any = "", *, err: bool = False, nl: bool = True) -> None:
    """``click.echo`` for everything kit prints: much of it (names, notes, class names,
    problems) comes from files someone else wrote, so control characters are shown as
    escapes, never sent to the terminal (no retitled window, no cleared screen, no verdict
    overwritten by a carriage return)."""
    click.echo(inert(str(message), lines=True), err=err, nl=nl)


class _InertFormatter(logging.Formatter):
    """Log lines with control characters shown as escapes (a logged name is file data)."""

    def format(self, record: logging.LogRecord) -> str:
        return inert(super().format(record), lines=True)


class _KitGroup(click.Group):
    """Turns kit's errors into one-sentence messages (a traceback only with --verbose), each
    shown inert."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KitError as exc:
            if ctx.obj and ctx.obj.get("verbose"):
                traceback.print_exc()
            if isinstance(exc, UsageError):
                raise click.UsageError(inert(str(exc))) from None
            raise click.ClickException(inert(str(exc))) from None
        except click.ClickException as exc:
            exc.message = inert(exc.message, lines=True)  # type: ignore[misc]
            raise


def _int_list_from(minimum: int, example: str) -> Any:
    """A click callback: ``"1,3,8"`` -> ``(1, 3, 8)``, every item at least ``minimum``."""
    kind = "positive integers" if minimum == 1 else f"integers from {minimum}"

    def parse(
        ctx: click.Context, param: click.Parameter, value: str | None
    ) -> tuple[int, ...] | None:
        if value is None:
            return None
        try:
            items = tuple(int(v) for v in value.split(","))
        except ValueError:
            items = ()
        if not items or any(v < minimum for v in items):
            raise click.BadParameter(
                f"{value!r} must be {kind} separated by commas, like {example}."
            )
        return items

    return parse


_int_list = _int_list_from(1, "1,3,8")


def _shape(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    from ..models import parse_shape

    try:
        return parse_shape(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from None


#: ``--provider`` choices -> onnxruntime providers (None: CUDA when a GPU is present, else CPU).
PROVIDERS: dict[str, list[str] | None] = {
    "auto": None,
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
}


provider_option = click.option(
    "--provider",
    type=click.Choice(sorted(PROVIDERS)),
    default="auto",
    show_default=True,
    help="onnxruntime execution provider. auto: CUDA when a GPU is present, else the CPU "
    "(saying so); cuda: CUDA or exit 2 with the reason.",
)


factory_option = click.option(
    "--factory",
    metavar="MODULE:FN",
    help="Rebuild a user's network with this factory (the one its manifest names). kit "
    "never imports code because a manifest, a file people download, names it.",
)


def _parity_options(f: Any) -> Any:
    """The options export and parity share: tolerances, batch sizes, real samples, --json."""
    options = [
        click.option("--atol", type=float, help="Absolute tolerance (default: the network's)."),
        click.option("--rtol", type=float, help="Relative tolerance (default: the network's)."),
        click.option(
            "--batch-sizes",
            default=",".join(map(str, DEFAULT_BATCH_SIZES)),
            callback=_int_list,
            show_default=True,
            help="Random batch sizes checked.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the report as JSON."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def data_options(f: Any) -> Any:
    """``--dataset`` and ``--data-dir``, the same on every command that reads data."""
    f = click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        envvar="KIT_DATA_DIR",
        help="Where the data lives ($KIT_DATA_DIR) [default: what the export's manifest "
        "records, else the network's recipe; MNIST is bundled with kit].",
    )(f)
    return click.option(
        "--dataset",
        type=click.Choice(DATASETS),
        help="mnist (bundled), imagefolder (DIR/train/CLASS/* and DIR/val/CLASS/*), cifar10 "
        "or fake [default: what the export's manifest records, else the network's recipe].",
    )(f)


def _numbers(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        numbers = tuple(float(v) for v in value.split(","))
    except ValueError:
        numbers = ()
    if not numbers or not all(math.isfinite(v) for v in numbers):
        raise click.BadParameter(
            f"{value!r} must be numbers separated by commas, like 0.5,0.5,0.5."
        )
    return numbers


def _class_names(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """``a,b,c``, or ``@FILE`` with one name per line."""
    if value is None:
        return None
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise click.BadParameter(f"cannot read {value[1:]}: {exc}.") from None
        names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        names = [n.strip() for n in value.split(",")]
    if not names or any(not n or len(n) > 200 for n in names) or len(names) > 100_000:
        raise click.BadParameter(
            "give one name per class, 1 to 200 characters each: a,b,c or @labels.txt."
        )
    return tuple(names)


def facts_options(f: Any) -> Any:
    """What a network's input and output mean, given once (``kit train`` records them in
    its checkpoints; ``kit export`` reads them from there, a flag overriding)."""
    f = click.option(
        "--class-names",
        callback=_class_names,
        metavar="A,B,C|@FILE",
        help="The classes' names in output order, or @FILE with one per line [default: the "
        "checkpoint's, the data's folders, else the network's].",
    )(f)
    f = click.option(
        "--std",
        callback=_numbers,
        metavar="S[,S,S]",
        help="Per-channel std of pixels in [0, 1] the network was trained with (one value "
        "for all channels) [default: the checkpoint's, else the network's].",
    )(f)
    return click.option(
        "--mean",
        callback=_numbers,
        metavar="M[,M,M]",
        help="Per-channel mean of pixels in [0, 1] the network was trained with (one value "
        "for all channels) [default: the checkpoint's, else the network's].",
    )(f)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))  # json escapes every control character


@click.group(cls=_KitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kit")
@click.option("-v", "--verbose", is_flag=True, help="Log progress and show tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Train, export, verify and serve PyTorch CNNs.

    \b
    A typical session:
      kit list                                  # the networks kit knows
      kit train --model mnist_cnn --export      # real MNIST, bundled with kit
      kit export --model alexnet                # TorchScript, torch.export, ONNX + parity
      kit parity exported/alexnet               # re-verify saved artifacts (CI-friendly)
      kit parity exported/mnist_cnn --runtime node   # ... as a Node.js app runs them
      kit predict exported/mnist_cnn digit.png  # classify images with onnxruntime
      kit serve exported/                       # Open Inference Protocol (Triton/KServe v2),
                                                # and a page at / to draw digits on
      kit doctor                                # the runtimes this machine can check in
      kit report exported/mnist_cnn --run       # one page: ready to ship?
      kit triton exported/mnist_cnn --repo models/  # a Triton model repository
      kit parity exported/mnist_cnn --endpoint http://triton:8000  # the live model vs eager

    Run `kit COMMAND --help` for each command's options.
    """
    ctx.obj = {"verbose": verbose}
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    for handler in logging.getLogger().handlers:
        if not isinstance(handler.formatter, _InertFormatter):
            handler.setFormatter(_InertFormatter("%(levelname)s %(name)s: %(message)s"))
    for noisy in ("onnxscript", "onnx_ir"):  # the exporter narrates every pass at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _report_out(report: Any, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    from ..parity import format_parity

    if as_json:
        _echo_json({**report.to_dict(), **(extra or {})})
    else:
        echo(format_parity(report))


def _shipped_model() -> Path:
    """The reference mnist_cnn: the copy an installed kit carries (``kit/_shipped``), else
    the one in ./exported (a checkout, run from its root)."""
    installed = Path(__file__).resolve().parent.parent / "_shipped" / "mnist_cnn"
    return installed if installed.is_dir() else DEFAULT_EXPORT_DIR / "mnist_cnn"


def _save_result(directory: Path, kind: str, data: dict[str, Any], args: list[str]) -> None:
    """Keep a command's result beside the export for ``kit report`` (a note when the
    folder cannot be written: the command's own answer stands)."""
    from ..errors import first_line
    from ..report import kit_command
    from ..results import save_result

    try:
        save_result(directory, kind, data, kit_command(args))
    except (OSError, KitError) as exc:
        echo(f"note: not saved for kit report: {first_line(exc)}", err=True)


def _write_text(path: Path, text: str) -> None:
    """Write a file the user asked for, whole or not at all (one sentence when it cannot)."""
    from .._files import write_text_atomic

    try:
        write_text_atomic(path, text)
    except OSError as exc:
        raise UsageError(f"Cannot write {path}: {exc.strerror}.") from None


def _write_inside(directory: Path, relative: str, text: str) -> None:
    """Write a file inside an export folder, never through a link (one sentence when it
    cannot)."""
    from .._files import write_inside

    try:
        write_inside(directory, relative, text)
    except OSError as exc:
        raise UsageError(f"Cannot write {directory / relative}: {exc.strerror}.") from None


def limit_options(drop_help: str, agreement_help: str) -> Any:
    """``--max-accuracy-drop`` and ``--min-agreement`` in points and percent (quantize's
    limits for a variant, ``report --compare``'s gate for an update)."""
    from ..artifact import Limits

    def add(f: Any) -> Any:
        f = click.option(
            "--min-agreement",
            type=click.FloatRange(0, 100),
            default=Limits().min_agreement * 100,
            show_default=True,
            help=agreement_help,
        )(f)
        return click.option(
            "--max-accuracy-drop",
            type=click.FloatRange(min=0),
            default=Limits().max_accuracy_drop * 100,
            show_default=True,
            help=drop_help,
        )(f)

    return add
