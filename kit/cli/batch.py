"""``kit infer``: batch inference over many images, into Parquet, every row accounted for."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..runtime.images import DEFAULT_MAX_PIXELS
from ._common import PROVIDERS, _echo_json, cli, echo, provider_option

_EXAMPLES = """\\b
Examples:
  kit infer exported/mnist_cnn mnist --out preds.parquet          # the bundled test set
  kit infer exported/shapes photos/ --out preds.parquet --top-k 3
  kit infer exported/shapes val/ --out preds.parquet              # an ImageFolder: accuracy too
  kit infer exported/shapes list.csv --path-column file --label-column truth --out p.parquet
  kit infer exported/shapes s3-mirror/ --out p.parquet --engine ray --address auto
  kit infer exported/shapes photos/ --out preds.parquet --resume  # after a kill
"""


@dataclass(frozen=True)
class _InferArgs:
    export: Path
    source: str
    out: Path
    engine: str
    address: str | None
    actors: int
    workers: int | None
    batch_size: int
    part_rows: int
    top_k: int
    raw: bool
    path_column: str
    label_column: str | None
    resume: bool
    force: bool
    provider: str
    max_image_pixels: int
    as_json: bool


@cli.command(epilog=_EXAMPLES)
@click.argument("export", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("source")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="The predictions: a Parquet dataset (a folder of part-NNNNN.parquet).",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this process; ray: Ray Data actors (pip install 'kit[ray]').",
)
@click.option(
    "--address", help="A Ray cluster to join (ray start's address, or auto); default: a local one."
)
@click.option(
    "--actors",
    type=click.IntRange(1),
    default=2,
    show_default=True,
    help="Ray actors, one model each, one CPU each (onnxruntime threads to match).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    help="Local engine: threads, each reading, decoding and scoring a batch on one "
    "onnxruntime thread [default: the CPUs, plus one].",
)
@click.option("--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True)
@click.option(
    "--part-rows",
    type=click.IntRange(1),
    default=4096,
    show_default=True,
    help="Rows per output part (the unit written whole and resumed).",
)
@click.option("--top-k", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option("--raw", is_flag=True, help="Keep every row's raw outputs (logits) too.")
@click.option(
    "--path-column",
    default="path",
    show_default=True,
    help="A table source's column of image paths (relative to the table).",
)
@click.option("--label-column", help="A table source's column of true labels.")
@click.option("--resume", is_flag=True, help="Score only the parts --out does not hold yet.")
@click.option("--force", is_flag=True, help="Replace what --out holds.")
@provider_option
@click.option(
    "--max-image-pixels",
    type=click.IntRange(1),
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    help="Larger images are error rows (decompression bombs).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")  # fmt: skip
def infer(**given: Any) -> None:
    """Score SOURCE with EXPORT into Parquet: one row per input with its top-k labels and
    scores (the model's class names), the model file's sha256 and an error column.

    SOURCE is a folder of images (recursive), an ImageFolder (each image one folder down,
    in a folder named after one of the model's classes: the folder is its true label), a
    .csv or .parquet table with a path column, or mnist (the bundled test set). An image
    that cannot be read (truncated, 16-bit, a decompression bomb) is a row with its error,
    never a dead job. Before the first row the model proves itself against the reference
    data inside the export; the job ends with rows in = predicted + errors (exit 1 when
    they do not balance, or when any row is an error). Parts are written whole or not at
    all: after a kill, --resume scores only what is missing.
    """
    from ..infer import Scoring, list_source, open_job, summarise

    a = _InferArgs(**given)
    model = _proven_model(a)
    source = list_source(
        a.source, model.class_names, path_column=a.path_column, label_column=a.label_column
    )
    job = open_job(a.out, a.export, a.source, len(source.items), a.part_rows,
                   resume=a.resume, force=a.force)  # fmt: skip
    manifest = model.export[1]
    how = Scoring(a.top_k, a.raw, manifest.files[model.path.name].sha256)
    skipped = _run(a, model, source, job, how)
    summary = summarise(a.out, len(source.items))
    summary.skipped_parts = skipped
    _report(a, summary, source.kind)
    if not summary.balanced or summary.errors:
        sys.exit(1)


def _proven_model(a: _InferArgs) -> Any:
    from .. import runtime

    # the local engine's workers each run a batch on one thread (kit.infer.run_local)
    threads = 1 if a.engine == "local" else None
    model = runtime.load(a.export, providers=PROVIDERS[a.provider], warmup=False, threads=threads)
    model.self_check()  # nothing is scored by a model that disagrees with its own export
    return model


def _run(a: _InferArgs, model: Any, source: Any, job: Any, how: Any) -> int:
    if a.engine == "ray":
        from ..infer_ray import run_ray

        facts = (model.facts.input_shape, model.facts.mean, model.facts.std)
        return run_ray(a.export, source, job, how, address=a.address, actors=a.actors,
                       batch_size=a.batch_size, max_pixels=a.max_image_pixels,
                       providers=PROVIDERS[a.provider], facts=facts)  # fmt: skip
    from tqdm.auto import tqdm

    from ..infer import run_local

    todo = sum(len(job.part_items(source.items, n)) for n in range(job.parts) if not job.done(n))
    with tqdm(total=todo, desc=f"infer {model.name}", unit="img", leave=False, disable=None) as bar:
        workers = a.workers or (os.cpu_count() or 1) + 1
        return run_local(model, source, job, how, batch_size=a.batch_size, workers=workers,
                         max_pixels=a.max_image_pixels, progress=bar.update)  # fmt: skip


def _report(a: _InferArgs, summary: Any, kind: str) -> None:
    result = {
        "out": str(a.out),
        "source": kind,
        "rows": summary.rows,
        "predicted": summary.predicted,
        "errors": summary.errors,
        "balanced": summary.balanced,
        "parts_already_written": summary.skipped_parts,
        "accuracy": summary.correct / summary.labelled if summary.labelled else None,
        "per_class": {k: {"correct": v[0], "total": v[1]} for k, v in summary.per_class.items()},
    }
    if a.as_json:
        _echo_json(result)
        return
    echo(f"{summary.rows} rows in: {summary.predicted} predicted, {summary.errors} errors"
         + ("" if summary.balanced else "  (DOES NOT BALANCE)") + f"; written to {a.out}/")  # fmt: skip
    if summary.labelled:
        echo(f"accuracy {result['accuracy']:.2%} on {summary.labelled} labelled rows")
        for label, (right, total) in sorted(summary.per_class.items()):
            echo(f"  {label:<20} {right / total:7.2%}  ({right}/{total})")
