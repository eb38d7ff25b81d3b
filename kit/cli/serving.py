"""`kit predict` and `kit serve`: the torch-free runtime at work."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..runtime.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, image_size, read_image
from ..server.config import ServerConfig
from ._common import (
    PROVIDERS,
    _echo_json,
    _shipped_model,
    cli,
    echo,
    provider_option,
)

#: file name endings kit predict reads from a folder
#: a picture this many times the default model's side (a photo, not a digit) is refused
_PHOTO_FACTOR = 2


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
@click.option(
    "--any-image",
    is_flag=True,
    help="Let the default digit model classify colour pictures larger than a digit too.",
)
@click.option("--json", "as_json", is_flag=True, help="Print predictions as JSON.")
def predict(
    paths: tuple[Path, ...],
    top_k: int,
    provider: str,
    precision: str,
    max_image_pixels: int,
    any_image: bool,
    as_json: bool,
) -> None:
    """Classify image files (or folders of them) with an exported model (onnxruntime, no
    torch); exit 1 when an image could not be classified.

    The first argument may be an exported model directory (or .onnx file); without one
    the shipped exported/mnist_cnn, a digit model, is used, and it refuses colour pictures
    larger than a digit (--any-image lets it try). Images may be PNG, JPEG, BMP, GIF, WebP
    or TIFF, grey, RGB or RGBA, of any size: each is converted, resized and normalised as
    the model was trained, from the facts its export embedded, and the output says what
    was done to it. A file that cannot be read is an error row; the others are classified.

    \b
      kit predict digit.png
      kit predict exported/shapes photos/ --top-k 3
      kit predict exported/mnist_cnn a.png b.png --top-k 3 --json
    """
    from .. import runtime

    model_path, images, default = _model_and_images(paths)
    files = _image_files(images)
    providers = PROVIDERS[provider]
    if precision != "fp32" and not model_path.is_dir():
        raise click.UsageError("--precision picks a file of an exported directory; pass one.")
    model = runtime.load(model_path, providers=providers, warmup=False, precision=precision)
    rows = _classify_files(model, files, top_k, max_image_pixels, default and not any_image)
    used = {
        "model": model.name,
        "path": str(model_path),
        "default": default,
        "precision": model.precision,
        "provider": model.provider,
    }
    if as_json:
        _echo_json({**used, "predictions": rows})
    else:
        _print_predictions(used, rows)
    if any("error" in r for r in rows):
        sys.exit(1)


def _model_and_images(paths: tuple[Path, ...]) -> tuple[Path, tuple[Path, ...], bool]:
    """The model the first path names (an export, or a .onnx file), or the shipped one."""
    from ..artifact import MANIFEST

    first = paths[0]
    if (first / MANIFEST).is_file() or first.suffix == ".onnx":
        if not paths[1:]:
            raise click.UsageError("Give at least one image file (or folder) after the model.")
        return first, paths[1:], False
    return _shipped_model(), paths, True


def _image_files(paths: tuple[Path, ...]) -> list[Path]:
    """Each path, a folder's image files (recursively, sorted) in its place."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not inside:
                raise click.UsageError(
                    f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)})."
                )
            found += [p for p in inside if p.is_file()]
        else:
            found.append(path)
    return found


def _classify_files(
    model: Any, files: list[Path], top_k: int, max_pixels: int, refuse_photos: bool
) -> list[dict[str, Any]]:
    """One row per file: its top classes and what was done to the image, or its error."""
    from ..errors import InputError, UsageError
    from ..runtime.preprocess import conversion_notes, is_colour

    fixed = model.rules is None or not model.rules.spatial
    size = tuple(d or 1 for d in model.input_shape[1:3]) if fixed else None
    side = max(size or (0,)) * _PHOTO_FACTOR
    rows: list[dict[str, Any]] = []
    for path in files:
        try:
            image = read_image(path, max_pixels=max_pixels, size=size)  # type: ignore[arg-type]
            width, height = image_size(path)  # as the file holds it (a JPEG decodes smaller)
            if refuse_photos and size and is_colour(image) and max(width, height) > side:
                raise InputError(
                    f"{path} is a {width}x{height} colour picture, and the default model reads "
                    f"{size[1]}x{size[0]} grey digits; pass an export that takes such pictures "
                    "(kit predict EXPORT IMAGE), or --any-image."
                )
            (top,) = model.classify([image], top_k=top_k)
        except (InputError, UsageError) as exc:
            rows.append({"file": str(path), "error": str(exc)})
            continue
        rows.append(
            {
                "file": str(path),
                "notes": conversion_notes(
                    image, model.fitted_shape(*image.shape[:2]), (height, width)
                ),
                "top": [
                    {"label": r.label, "index": r.index, "probability": r.probability} for r in top
                ],
            }
        )
    return rows


def _print_predictions(used: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    which = " (the default digit model; pass an export to use another)" if used["default"] else ""
    echo(f"model {used['model']}: {used['path']}, {used['precision']}, {used['provider']}{which}")
    for row in rows:
        if "error" in row:
            echo(f"{row['file']}: error: {row['error']}")
            continue
        tops = ", ".join(f"{t['label']} ({t['probability']:.1%})" for t in row["top"])
        notes = f"  [{'; '.join(row['notes'])}]" if row["notes"] else ""
        echo(f"{row['file']}: {tops}{notes}")


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
    "--threads",
    type=click.IntRange(min=1),
    help="onnxruntime intra-op threads per model (default: onnxruntime's, one per core; "
    "with --processes, the CPUs shared out between the processes).",
)
@click.option(
    "--processes",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Server processes answering on the one port, each with its own event loop and its "
    "own copy of every model (memory x N). On a CPU, 2 or more keep the cores busy while "
    "one process parses requests; /metrics adds all processes up, and --max-connections "
    "holds for them together.",
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
    processes: int,
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
    from ..server.main import serve as run_server

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
        processes=processes,
    )
