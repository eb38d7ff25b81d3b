"""`kit predict` and `kit serve`: the torch-free runtime at work."""

from __future__ import annotations

from pathlib import Path

import click

from ..server.config import ServerConfig
from ._common import (
    PROVIDERS,
    _echo_json,
    _shipped_model,
    cli,
    echo,
    provider_option,
)
from ._images import DEFAULT_MAX_PIXELS, read_image


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--top-k",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Classes to show per image.",
)
@provider_option
@click.option(
    "--precision",
    type=click.Choice(["fp32", "int8", "fp16"]),
    default="fp32",
    show_default=True,
    help="model.onnx, or a variant kit quantize added (model.int8.onnx, model.fp16.onnx).",
)
@click.option(
    "--max-image-pixels",
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Larger images (and decompression bombs) are refused before they are decoded.",
)
@click.option("--json", "as_json", is_flag=True, help="Print predictions as JSON.")
def predict(
    paths: tuple[Path, ...],
    top_k: int,
    provider: str,
    precision: str,
    max_image_pixels: int,
    as_json: bool,
) -> None:
    """Classify image files with an exported model (onnxruntime, no torch).

    The first argument may be an exported model directory (or .onnx file); without one
    the shipped exported/mnist_cnn is used. Images may be PNG, JPEG or BMP, grayscale,
    RGB or RGBA, of any size: they are converted, resized and normalised as the model
    was trained, from the facts its export embedded.

    \b
      kit predict digit.png
      kit predict exported/mnist_cnn a.png b.png --top-k 3 --json
    """
    from .. import runtime

    first = paths[0]
    if first.is_dir() or first.suffix == ".onnx":
        model_path, images = first, paths[1:]
    else:
        model_path, images = _shipped_model(), paths
    if not images:
        raise click.UsageError("Give at least one image file after the model.")
    providers = PROVIDERS[provider]
    if precision != "fp32" and not model_path.is_dir():
        raise click.UsageError("--precision picks a file of an exported directory; pass one.")
    model = runtime.load(model_path, providers=providers, warmup=False, precision=precision)
    size = tuple(d or 1 for d in model.input_shape[1:3])
    arrays = [read_image(p, max_pixels=max_image_pixels, size=size) for p in images]  # type: ignore[arg-type]
    results = model.classify(arrays, top_k=top_k)
    if as_json:
        _echo_json(
            {
                "model": model.name,
                "precision": model.precision,
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
        echo(f"{p}: {tops}")


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
    default=ServerConfig.max_batch_size,
    show_default=True,
    type=click.IntRange(min=1),
    help="The most rows one request may carry (larger ones get 400) and one run may merge.",
)
@click.option(
    "--max-queue-delay-us",
    default=ServerConfig.max_queue_delay_us,
    show_default=True,
    type=click.IntRange(min=0),
    help="Longest a request waits for others to batch with.",
)
@click.option(
    "--batching/--no-batching",
    default=ServerConfig.batching,
    show_default=True,
    help="Merge concurrent requests into one run (dynamic batching).",
)
@click.option(
    "--max-body-mb",
    default=ServerConfig.max_body_bytes >> 20,
    show_default=True,
    type=click.IntRange(min=1),
    help="Larger request bodies get 413 (each model's own limit is smaller when its "
    "--max-batch-size rows need fewer bytes).",
)
@click.option(
    "--header-timeout",
    default=ServerConfig.header_timeout,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds a client has to send its request headers (then 408 and the connection closes).",
)
@click.option(
    "--body-timeout",
    default=ServerConfig.body_timeout,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds a client has to send its whole body (then 408).",
)
@click.option(
    "--max-connections",
    default=ServerConfig.max_connections,
    show_default=True,
    type=click.IntRange(min=1),
    help="Open connections before new ones get 503 (keep it under the file-descriptor limit).",
)
@click.option(
    "--max-header-kb",
    default=ServerConfig.max_header_bytes >> 10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Larger request lines and headers get 431 (as do more than 100 header lines).",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests whose Host is NAME (repeatable). Bound to a loopback address, "
    "kit serve answers only localhost, 127.0.0.1 and ::1 otherwise (DNS rebinding).",
)
@provider_option
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
    batching: bool,
    max_body_mb: int,
    header_timeout: float,
    body_timeout: float,
    max_connections: int,
    max_header_kb: int,
    allow_hosts: tuple[str, ...],
    provider: str,
    threads: int | None,
    log_level: str,
) -> None:
    """Serve exported models over the Open Inference Protocol (KServe v2 / Triton).

    DIRECTORY holds exported models (default: the shipped exported/), or is one; a variant
    kit quantize added is served beside its model as NAME_int8 (its metadata's parameters
    say the precision). Endpoints:
    /v2, /v2/health/live, /v2/health/ready, /v2/models/NAME[/versions/1][/ready|/infer],
    /v2/repository/index, /metrics (Prometheus). JSON and binary tensors both work, so
    Triton's stock client (tritonclient.http) talks to it unchanged.

    Open http://localhost:8000/ in a browser to draw a digit (or drop an image) and see the
    server's top-3 beside onnxruntime-web's, computed in the page from the same model file
    (its files come from kit's cache: kit doctor --install web).

    \b
      kit serve exported/ --port 8000 &
      python -c "import tritonclient.http as h; print(h.InferenceServerClient('localhost:8000').is_server_ready())"

    Concurrent requests are batched up to --max-batch-size rows, each waiting at most
    --max-queue-delay-us. Ctrl-C (or SIGTERM) finishes in-flight requests, then exits.

    Only complete, verified exports are served (each skipped folder is one log line). No
    client can hold a connection past --header-timeout/--body-timeout, open more than
    --max-connections, send larger headers or bodies than the limits, or reach it under
    another Host name than its address's (README: "Running kit serve safely").
    """
    from ..server.app import serve as run_server

    providers = PROVIDERS[provider]
    config = ServerConfig(
        max_batch_size=max_batch_size,
        batching=batching,
        max_queue_delay_us=max_queue_delay_us,
        max_body_bytes=max_body_mb << 20,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        max_connections=max_connections,
        max_header_bytes=max_header_kb << 10,
        allowed_hosts=allow_hosts,
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
