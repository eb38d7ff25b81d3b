"""The ``kit`` command line: one thin command per verb (parse, call, print).

Heavy libraries (torch, onnx, onnxruntime) are imported inside the commands, so
``kit --help`` answers at once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import KitError, UsageError

DEFAULT_EXPORT_DIR = Path("exported")


class _KitGroup(click.Group):
    """Turns kit's errors into one-sentence messages (a traceback only with --verbose)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KitError as exc:
            if ctx.obj and ctx.obj.get("verbose"):
                traceback.print_exc()
            if isinstance(exc, UsageError):
                raise click.UsageError(str(exc)) from None
            raise click.ClickException(str(exc)) from None


def _int_list(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        items = tuple(int(v) for v in value.split(","))
    except ValueError:
        items = ()
    if not items or any(v <= 0 for v in items):
        raise click.BadParameter(
            f"{value!r} must be positive integers separated by commas, like 1,3,8."
        )
    return items


def _shape(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    from .models import parse_shape

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


def _parity_options(f: Any) -> Any:
    """The options export and parity share: tolerances, batch sizes, real samples, --json."""
    options = [
        click.option("--atol", type=float, help="Absolute tolerance (default: the network's)."),
        click.option("--rtol", type=float, help="Relative tolerance (default: the network's)."),
        click.option(
            "--batch-sizes",
            default="1,3,8",
            callback=_int_list,
            show_default=True,
            help="Random batch sizes checked.",
        ),
        click.option(
            "--data-dir",
            type=click.Path(path_type=Path),
            help="Also compare on real test samples from here.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the report as JSON."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


@click.group(cls=_KitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kit")
@click.option("-v", "--verbose", is_flag=True, help="Log progress and show tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Train, export, verify and serve PyTorch CNNs.

    \b
    A typical session:
      kit list                                  # the networks kit knows
      kit train --model mnist_cnn --data-dir ../shared/data/mnist --export
      kit export --model alexnet                # TorchScript, torch.export, ONNX + parity
      kit parity exported/alexnet               # re-verify saved artifacts (CI-friendly)
      kit predict exported/mnist_cnn digit.png  # classify images with onnxruntime
      kit serve exported/                       # Open Inference Protocol (Triton/KServe v2)

    Run `kit COMMAND --help` for each command's options.
    """
    ctx.obj = {"verbose": verbose}
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("onnxscript", "onnx_ir"):  # the exporter narrates every pass at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON.")
def list_cmd(as_json: bool) -> None:
    """List the registered networks and their facts.

    The facts (input shape, normalisation, classes, parity tolerances, training recipe)
    are what export embeds in the ONNX file and what the runtime reads back.
    """
    from architectures import get_spec, list_models

    specs = [get_spec(n) for n in list_models()]
    if as_json:
        _echo_json({s.name: s.facts() for s in specs})
        return
    rows = [("name", "input", "classes", "atol/rtol", "description")]
    rows += [
        (
            s.name,
            "x".join(map(str, s.input_shape)),
            str(s.num_classes),
            f"{s.atol:g}/{s.rtol:g}",
            s.description,
        )
        for s in specs
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) + "  " + r[4])


def _report_out(report: Any, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    if as_json:
        _echo_json({**report.to_dict(), **(extra or {})})
    else:
        click.echo(report.format_table())


@cli.command()
@click.option(
    "--model",
    "-m",
    "model_name",
    required=True,
    help="Registered name (see `kit list`) or package.module:factory.",
)
@click.option(
    "--weights",
    type=click.Path(path_type=Path),
    help="state_dict as .safetensors or .pt (loaded with weights_only=True). Default: random weights from --seed.",
)
@click.option(
    "--num-classes",
    type=click.IntRange(min=1),
    help="Classes of the head (default: the network's).",
)
@click.option(
    "--input-shape", callback=_shape, help="One sample's shape, C,H,W (needed for a factory)."
)
@click.option(
    "--formats",
    default="onnx,torchscript,pt2",
    show_default=True,
    help="Comma-separated: onnx, torchscript, pt2.",
)
@click.option("--opset", type=click.IntRange(min=7), help="ONNX opset (default: the exporter's).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_EXPORT_DIR,
    show_default=True,
    help="Artifacts go to OUT/NAME/.",
)
@click.option(
    "--seed", default=0, show_default=True, help="Seed of random weights and parity inputs."
)
@_parity_options
def export(
    model_name: str,
    weights: Path | None,
    num_classes: int | None,
    input_shape: tuple[int, ...] | None,
    formats: str,
    opset: int | None,
    out_dir: Path,
    seed: int,
    atol: float | None,
    rtol: float | None,
    batch_sizes: tuple[int, ...],
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Export a network and prove each artifact matches eager PyTorch.

    Writes OUT/NAME/ with model.onnx (dynamo exporter, dynamic batch axis, facts in its
    metadata), model.ts (TorchScript), model.pt2 (torch.export) and manifest.json (sha256
    of every file, library versions, the parity report). Parity runs at batch sizes the
    export never saw; any mismatch fails the command and nothing is written.

    \b
    Examples:
      kit export --model alexnet
      kit export --model mnist_cnn --weights runs/mnist_cnn/best.safetensors --data-dir ../shared/data/mnist
      kit export --model mypkg.nets:tiny --input-shape 3,32,32 --formats onnx
    """
    from .export import export_model, parse_formats

    try:
        fmt_list = parse_formats(formats)
    except UsageError as exc:
        raise click.BadParameter(str(exc), param_hint="--formats") from None
    from .data import real_samples
    from .models import build_model, load_weights, resolve_spec

    spec = resolve_spec(model_name, input_shape)
    model = build_model(spec, num_classes=num_classes, seed=seed)
    sha = load_weights(model, weights) if weights is not None else None
    classes = num_classes or spec.num_classes or _output_width(model, spec.input_shape)
    real = real_samples(spec, data_dir) if data_dir is not None else None
    result = export_model(
        spec,
        model,
        out_dir,
        formats=fmt_list,
        opset=opset,
        num_classes=classes,
        seed=seed,
        weights=weights,
        weights_sha256=sha,
        factory=model_name if ":" in model_name else None,
        atol=atol,
        rtol=rtol,
        batch_sizes=batch_sizes,
        real=real,
    )
    files = result.manifest["files"]
    if as_json:
        _echo_json(
            {"directory": str(result.directory), "files": files, "parity": result.report.to_dict()}
        )
        return
    click.echo(result.report.format_table())
    click.echo(f"wrote {result.directory}/")
    for name, info in files.items():
        click.echo(f"  {name:<20} {info['size'] / 1e6:9.1f} MB  sha256 {info['sha256'][:16]}")
    manifest_size = (result.directory / "manifest.json").stat().st_size
    click.echo(f"  {'manifest.json':<20} {manifest_size / 1e6:9.1f} MB")


def _output_width(model: Any, input_shape: tuple[int, ...]) -> int:
    import torch

    with torch.no_grad():
        return int(model(torch.zeros(1, *input_shape)).shape[-1])


@cli.command()
@click.argument("artifact_dir", type=click.Path(path_type=Path))
@_parity_options
def parity(
    artifact_dir: Path,
    atol: float | None,
    rtol: float | None,
    batch_sizes: tuple[int, ...],
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Re-verify saved artifacts against eager PyTorch; exit 1 on any mismatch.

    Checks every file's sha256 against manifest.json, rebuilds the eager network from the
    manifest (the weights file, or the seed it was drawn from), and compares TorchScript,
    torch.export and ONNX (onnxruntime CPU, and CUDA when a GPU is present) on seeded
    random batches and optional real samples. Use it in CI:

    \b
      kit parity exported/alexnet --json > parity.json
    """
    from .data import real_samples
    from .export.manifest import read_manifest
    from .models import resolve_spec
    from .parity import verify_saved

    real = None
    if data_dir is not None:
        info = read_manifest(artifact_dir)["model"]
        spec = resolve_spec(info.get("factory") or info["name"], tuple(info["input_shape"]))
        real = real_samples(spec, data_dir)
    report = verify_saved(artifact_dir, atol=atol, rtol=rtol, batch_sizes=batch_sizes, real=real)
    _report_out(report, as_json)
    if not report.passed:
        sys.exit(1)


@cli.command()
@click.option(
    "--model", "-m", "model_name", required=True, help="Registered name (see `kit list`)."
)
@click.option(
    "--dataset",
    type=click.Choice(["mnist", "imagefolder", "cifar10", "fake"]),
    help="Default: the network's recipe (mnist for the digit networks).",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="KIT_DATA_DIR",
    help="Where the data lives ($KIT_DATA_DIR).",
)
@click.option(
    "--download", is_flag=True, help="Let torchvision download MNIST or CIFAR-10 into --data-dir."
)
@click.option("--epochs", type=click.IntRange(min=1), help="Default: the recipe's.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Global batch size (split across torchrun processes).",
)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Peak learning rate.")
@click.option("--weight-decay", type=click.FloatRange(min=0), help="Default: the recipe's.")
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), help="Default: the recipe's.")
@click.option(
    "--augment/--no-augment", default=None, help="Random affine augmentation (recipe default)."
)
@click.option(
    "--device", default="auto", show_default=True, help="auto (CUDA when present), cpu or cuda."
)
@click.option("--out", type=click.Path(path_type=Path), help="Run directory [default: runs/NAME].")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out.")
@click.option(
    "--seed", default=0, show_default=True, help="Seed of weights, shuffling and augmentation."
)
@click.option(
    "--num-classes", type=click.IntRange(min=1), help="Classes (default: the data set's)."
)
@click.option("--fake-size", default=256, show_default=True, help="Images in --dataset fake.")
@click.option(
    "--export",
    "do_export",
    is_flag=True,
    help="Export the best checkpoint (parity on real test samples).",
)
@click.option(
    "--export-dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_EXPORT_DIR,
    show_default=True,
    help="Where --export writes NAME/.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def train(
    model_name: str,
    dataset: str | None,
    data_dir: Path | None,
    download: bool,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    weight_decay: float | None,
    optimizer: str | None,
    augment: bool | None,
    device: str,
    out: Path | None,
    resume: bool,
    seed: int,
    num_classes: int | None,
    fake_size: int,
    do_export: bool,
    export_dir: Path,
    as_json: bool,
) -> None:
    """Train a network on real data, on CUDA when there is one.

    Every option defaults to the network's recipe in the registry, so

    \b
      kit train --model mnist_cnn --data-dir ../shared/data/mnist

    alone trains the MNIST CNN the recommended way. After every epoch it writes
    last.safetensors (and best.safetensors when test accuracy improved), metrics.json,
    metrics.csv and curves.png to --out; --resume continues an interrupted run.
    Several processes or GPUs: the same command under torchrun uses DDP, e.g.

    \b
      torchrun --nproc-per-node 2 -m kit train --model lenet --data-dir DIR
    """
    from architectures import get_spec

    from .data import load_dataset, real_samples
    from .models import resolve_spec
    from .train import TrainConfig, format_metrics
    from .train import train as run_training

    spec = resolve_spec(model_name)
    recipe = get_spec(spec.name).recipe
    data = load_dataset(
        dataset or recipe.dataset,
        spec,
        data_dir=data_dir,
        download=download,
        num_classes=num_classes,
        fake_size=fake_size,
    )
    cfg = TrainConfig(
        model=spec.name,
        epochs=epochs or recipe.epochs,
        batch_size=batch_size or recipe.batch_size,
        lr=lr or recipe.lr,
        weight_decay=recipe.weight_decay if weight_decay is None else weight_decay,
        optimizer=optimizer or recipe.optimizer,
        schedule=recipe.schedule,
        label_smoothing=recipe.label_smoothing,
        augment=("affine" if augment else "none") if augment is not None else recipe.augment,
        augment_strength=recipe.augment_strength,
        ema=recipe.ema,
        out=out or Path("runs") / spec.name,
        device=device,
        seed=seed,
        num_classes=num_classes,
    )
    result = run_training(cfg, spec, data, resume=resume)
    import os

    if int(os.environ.get("RANK", 0)) != 0:
        return
    summary: dict[str, Any] = {
        "out": str(cfg.out),
        "best_epoch": result.best_epoch,
        "best_test_acc": result.best_test_acc,
        "metrics": result.metrics,
    }
    if not as_json:
        click.echo(f"{spec.name} on {data.description}")
        click.echo(format_metrics(result.metrics))
        click.echo(
            f"best test accuracy {result.best_test_acc:.2%} at epoch {result.best_epoch}; run files in {cfg.out}/"
        )
    if do_export:
        from .export import export_model
        from .models import build_model, load_weights

        best = cfg.out / "best.safetensors"
        model = build_model(spec, num_classes=num_classes or data.num_classes, seed=seed)
        sha = load_weights(model, best)
        real = (
            real_samples(spec, data_dir, dataset=data.name)
            if data_dir is not None and data.name != "fake"
            else None
        )
        exported = export_model(
            spec,
            model,
            export_dir,
            num_classes=num_classes or data.num_classes,
            seed=seed,
            weights=best,
            weights_sha256=sha,
            real=real,
            extra={
                "training": {
                    "data": data.description,
                    "best_epoch": result.best_epoch,
                    "test_accuracy": result.best_test_acc,
                    "final_test_accuracy": result.metrics[-1]["test_acc"],
                    "config": {
                        k: str(v) if isinstance(v, Path) else v
                        for k, v in dataclasses.asdict(cfg).items()
                    },
                }
            },
        )
        summary["exported"] = str(exported.directory)
        if not as_json:
            click.echo(exported.report.format_table())
            click.echo(f"exported to {exported.directory}/")
    if as_json:
        _echo_json(summary)


@cli.command("eval")
@click.argument("artifact_dir", required=False, type=click.Path(path_type=Path))
@click.option("--model", "-m", "model_name", help="Registered name, to evaluate eager weights.")
@click.option(
    "--weights", type=click.Path(path_type=Path), help="state_dict to evaluate with --model."
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="KIT_DATA_DIR",
    required=True,
    help="Where the test data lives ($KIT_DATA_DIR).",
)
@click.option(
    "--dataset",
    type=click.Choice(["mnist", "imagefolder", "cifar10", "fake"]),
    help="Default: the network's recipe.",
)
@click.option(
    "--device", default="auto", show_default=True, help="For eager evaluation: auto, cpu or cuda."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def eval_cmd(
    artifact_dir: Path | None,
    model_name: str | None,
    weights: Path | None,
    data_dir: Path,
    dataset: str | None,
    device: str,
    as_json: bool,
) -> None:
    """Accuracy on the test set, eager or exported.

    \b
      kit eval --model mnist_cnn --weights runs/mnist_cnn/best.safetensors --data-dir DIR
      kit eval exported/mnist_cnn --data-dir DIR

    An exported model runs through onnxruntime (kit.runtime); its top-1 agreement with the
    eager network rebuilt from the manifest is reported too.
    """
    if (artifact_dir is None) == (model_name is None):
        raise click.UsageError("Give either an exported directory or --model with --weights.")
    from .evaluate import evaluate_eager, evaluate_exported

    if artifact_dir is not None:
        result = evaluate_exported(artifact_dir, data_dir, dataset=dataset)
    else:
        assert model_name is not None
        if weights is None:
            raise click.UsageError("--model needs --weights (a .safetensors or .pt state_dict).")
        result = evaluate_eager(model_name, weights, data_dir, dataset=dataset, device=device)
    if as_json:
        _echo_json(result)
        return
    click.echo(f"{result['model']} ({result['runtime']}) on {result['data']}")
    click.echo(f"accuracy: {result['accuracy']:.2%} ({result['correct']}/{result['total']})")
    if "top1_agreement" in result:
        click.echo(
            f"top-1 agreement with eager: {result['top1_agreement']:.2%} ({result['disagreements']} disagreements)"
        )


def _shipped_model() -> Path:
    """The reference mnist_cnn that ships in the repository's exported/."""
    here = Path(__file__).resolve().parent.parent / "exported" / "mnist_cnn"
    return here if here.is_dir() else DEFAULT_EXPORT_DIR / "mnist_cnn"


def _read_image(path: Path) -> Any:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            opened.load()
            img: Image.Image = opened
            if img.mode not in ("L", "RGB", "RGBA"):
                img = img.convert(
                    "RGBA" if "A" in img.getbands() or "transparency" in img.info else "RGB"
                )
            return np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise UsageError(f"Image {path} does not exist.") from None
    except (UnidentifiedImageError, OSError) as exc:
        from .errors import InputError

        raise InputError(f"Cannot read image {path}: {exc}.") from None


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--top-k",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Classes to show per image.",
)
@click.option(
    "--provider",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="onnxruntime execution provider.",
)
@click.option("--json", "as_json", is_flag=True, help="Print predictions as JSON.")
def predict(paths: tuple[Path, ...], top_k: int, provider: str, as_json: bool) -> None:
    """Classify image files with an exported model (onnxruntime, no torch).

    The first argument may be an exported model directory (or .onnx file); without one
    the shipped exported/mnist_cnn is used. Images may be PNG, JPEG or BMP, grayscale,
    RGB or RGBA, of any size: they are converted, resized and normalised as the model
    was trained, from the facts its export embedded.

    \b
      kit predict digit.png
      kit predict exported/mnist_cnn a.png b.png --top-k 3 --json
    """
    from . import runtime

    first = paths[0]
    if first.is_dir() or first.suffix == ".onnx":
        model_path, images = first, paths[1:]
    else:
        model_path, images = _shipped_model(), paths
    if not images:
        raise click.UsageError("Give at least one image file after the model.")
    providers = PROVIDERS[provider]
    model = runtime.load(model_path, providers=providers, warmup=False)
    arrays = [_read_image(p) for p in images]
    results = model.classify(arrays, top_k=top_k)
    if as_json:
        _echo_json(
            {
                "model": model.name,
                "provider": model.provider,
                "predictions": [
                    {
                        "file": str(p),
                        "top": [
                            {"label": r.label, "index": r.index, "probability": r.probability}
                            for r in res
                        ],
                    }
                    for p, res in zip(images, results, strict=True)
                ],
            }
        )
        return
    for p, res in zip(images, results, strict=True):
        tops = ", ".join(f"{r.label} ({r.probability:.1%})" for r in res)
        click.echo(f"{p}: {tops}")


@cli.command()
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to bind (0.0.0.0 exposes the server to the network).",
)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--max-batch-size",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rows merged into one run; 1 turns dynamic batching off.",
)
@click.option(
    "--max-queue-delay-us",
    default=500,
    show_default=True,
    type=click.IntRange(min=0),
    help="Longest a request waits for others to batch with.",
)
@click.option(
    "--max-body-mb",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="Larger request bodies get 413.",
)
@click.option(
    "--provider",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="onnxruntime execution provider.",
)
@click.option(
    "--threads", type=click.IntRange(min=1), help="onnxruntime intra-op threads per model."
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def serve(
    directory: Path | None,
    host: str,
    port: int,
    max_batch_size: int,
    max_queue_delay_us: int,
    max_body_mb: int,
    provider: str,
    threads: int | None,
    log_level: str,
) -> None:
    """Serve exported models over the Open Inference Protocol (KServe v2 / Triton).

    DIRECTORY holds exported models (default: the shipped exported/), or is one. Endpoints:
    /v2, /v2/health/live, /v2/health/ready, /v2/models/NAME[/versions/1][/ready|/infer],
    /metrics (Prometheus). JSON and binary tensors both work, so Triton's stock client
    (tritonclient.http) talks to it unchanged:

    \b
      kit serve exported/ --port 8000 &
      python -c "import tritonclient.http as h; print(h.InferenceServerClient('localhost:8000').is_server_ready())"

    Concurrent requests are batched up to --max-batch-size rows, each waiting at most
    --max-queue-delay-us. Ctrl-C (or SIGTERM) finishes in-flight requests, then exits.
    """
    from .runtime.server import ServerConfig
    from .runtime.server import serve as run_server

    providers = PROVIDERS[provider]
    config = ServerConfig(
        max_batch_size=max_batch_size,
        max_queue_delay_us=max_queue_delay_us,
        max_body_bytes=max_body_mb << 20,
    )
    run_server(
        directory or _shipped_model().parent,
        host=host,
        port=port,
        config=config,
        providers=providers,
        threads=threads,
        log_level=log_level,
    )


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="kit")


if __name__ == "__main__":
    main()
