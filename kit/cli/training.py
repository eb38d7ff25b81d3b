"""`kit train` and `kit eval`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ._common import (
    DEFAULT_EXPORT_DIR,
    _echo_json,
    _save_result,
    _shape,
    cli,
    data_options,
    echo,
    factory_option,
    facts_options,
)


@dataclass(frozen=True)
class _TrainArgs:
    """``kit train``'s options, as click parsed them."""

    model_name: str
    input_shape: tuple[int, ...] | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    class_names: tuple[str, ...] | None
    dataset: str | None
    data_dir: Path | None
    download: bool
    epochs: int | None
    batch_size: int | None
    lr: float | None
    weight_decay: float | None
    optimizer: str | None
    augment: bool | None
    device: str
    out: Path | None
    resume: bool
    seed: int
    num_classes: int | None
    fake_size: int
    do_export: bool
    export_dir: Path
    as_json: bool


@cli.command()
@click.option(
    "--model",
    "-m",
    "model_name",
    required=True,
    help="Registered name (see `kit list`) or package.module:factory (your own network, "
    "imported from the current folder; needs --input-shape).",
)
@click.option(
    "--input-shape",
    callback=_shape,
    help="One sample's shape, C,H,W (your own network's; a registered one's by default).",
)
@facts_options
@data_options
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
@click.option(
    "--optimizer", type=click.Choice(["adam", "adamw", "sgd"]), help="Default: the recipe's."
)
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
    help="Export the best checkpoint (parity and the whole-pipeline check on real test data).",
)
@click.option(
    "--export-dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_EXPORT_DIR,
    show_default=True,
    help="Where --export writes NAME/.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
# Long only by its parameter list (one per option) and its docstring (the --help text).
def train(**given: Any) -> None:
    """Train a network on real data, on CUDA when there is one.

    Every option defaults to the network's recipe in the registry, so

    \b
      kit train --model mnist_cnn

    alone trains the MNIST CNN the recommended way, on the real MNIST digits bundled with
    kit (the official 10k test set, 5k training digits); --data-dir or $KIT_DATA_DIR
    point it at another copy (the full 60k training set, say). After every epoch it writes
    last.safetensors (and best.safetensors when test accuracy improved), metrics.json,
    metrics.csv, run.json and curves.png to --out; --resume continues an interrupted run.

    Your own network trains on your ImageFolder (DIR/train/CLASS/*, DIR/val/CLASS/*) with
    the seed's recipe (Adam, lr 1e-3, batch 100, 3 epochs), normalised with the data's own
    per-channel mean and std unless --mean/--std say otherwise; each checkpoint carries the
    input shape, mean, std and the folders' class names, so kit export needs none of them:

    \b
      kit train --model mynets:tiny --input-shape 3,32,32 --data-dir shapes/ --export

    Several processes or GPUs: the same command under torchrun uses DDP, e.g.

    \b
      torchrun --nproc-per-node 2 -m kit train --model lenet --data-dir DIR
    """
    from ..runfiles import format_metrics

    a = _TrainArgs(**given)
    cfg, spec, data, choice, result = _train(a)
    if int(os.environ.get("RANK", 0)) != 0:
        return
    summary: dict[str, Any] = {
        "out": str(cfg.out),
        "best_epoch": result.best_epoch,
        "best_test_acc": result.best_test_acc,
        "metrics": result.metrics,
    }
    if not a.as_json:
        echo(f"{spec.name} on {data.description}")
        echo(format_metrics(result.metrics))
        echo(
            f"best test accuracy {result.best_test_acc:.2%} at epoch {result.best_epoch}; run files in {cfg.out}/"
        )
    if a.do_export:
        from ..export import export_trained
        from ..parity import format_parity

        exported = export_trained(cfg, spec, data, result, choice.data_dir, a.export_dir)
        summary["exported"] = str(exported.directory)
        if not a.as_json:
            echo(format_parity(exported.report))
            echo(f"exported to {exported.directory}/")
    if a.as_json:
        _echo_json(summary)


def _train(a: _TrainArgs) -> tuple[Any, Any, Any, Any, Any]:
    """Prepare the data and the run, then train: (config, spec, data, choice, result)."""
    from ..models import GivenFacts
    from ..runfiles import RunFiles
    from ..train import TrainConfig, prepare_training
    from ..train import train as run_training

    facts = GivenFacts(mean=a.mean, std=a.std, class_names=a.class_names, input_shape=a.input_shape)
    plan = prepare_training(
        a.model_name,
        facts,
        dataset=a.dataset,
        data_dir=a.data_dir,
        download=a.download,
        num_classes=a.num_classes,
        fake_size=a.fake_size,
    )
    spec, data, choice = plan.spec, plan.data, plan.choice
    for note in plan.notes:
        echo(f"note: {note}", err=True)
    cfg = TrainConfig.from_recipe(
        a.model_name,
        spec.recipe,
        out=a.out or Path("runs") / spec.name,
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        weight_decay=a.weight_decay,
        optimizer=a.optimizer,
        augment=None if a.augment is None else ("affine" if a.augment else "none"),
        device=a.device,
        seed=a.seed,
        num_classes=a.num_classes,
    )
    result = run_training(cfg, spec, data, resume=a.resume, run_files=RunFiles(cfg, spec, data))
    return cfg, spec, data, choice, result


@cli.command("eval")
@click.argument("artifact_dir", required=False, type=click.Path(path_type=Path))
@click.option(
    "--model",
    "-m",
    "model_name",
    help="Registered name or package.module:factory, to evaluate eager weights.",
)
@click.option(
    "--weights", type=click.Path(path_type=Path), help="state_dict to evaluate with --model."
)
@data_options
@click.option(
    "--device", default="auto", show_default=True, help="For eager evaluation: auto, cpu or cuda."
)
@factory_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def eval_cmd(
    artifact_dir: Path | None,
    model_name: str | None,
    weights: Path | None,
    data_dir: Path | None,
    dataset: str | None,
    device: str,
    factory: str | None,
    as_json: bool,
) -> None:
    """Accuracy on the test set, eager or exported.

    \b
      kit eval exported/mnist_cnn               # the official 10k MNIST test set, bundled
      kit eval --model mnist_cnn --weights runs/mnist_cnn/best.safetensors
      kit eval exported/vgg16 --dataset imagefolder --data-dir DIR

    An exported model runs through onnxruntime (kit.runtime); its top-1 agreement with the
    eager network rebuilt from the manifest is reported too, and saved in DIR/results/
    for kit report.
    """
    if (artifact_dir is None) == (model_name is None):
        raise click.UsageError("Give either an exported directory or --model with --weights.")
    from ..evaluate import evaluate_eager, evaluate_exported

    if artifact_dir is not None:
        result = evaluate_exported(artifact_dir, data_dir, dataset=dataset, factory=factory)
        args = ["eval", str(artifact_dir)]
        args += ["--dataset", dataset] if dataset else []
        args += ["--data-dir", str(data_dir)] if data_dir else []
        args += ["--factory", factory] if factory else []
        _save_result(artifact_dir, "eval", result, args)
    else:
        assert model_name is not None
        if weights is None:
            raise click.UsageError("--model needs --weights (a .safetensors or .pt state_dict).")
        result = evaluate_eager(model_name, weights, data_dir, dataset=dataset, device=device)
    if as_json:
        _echo_json(result)
        return
    echo(f"{result['model']} ({result['runtime']}) on {result['data']}")
    echo(f"accuracy: {result['accuracy']:.2%} ({result['correct']}/{result['total']})")
    if "top1_agreement" in result:
        echo(
            f"top-1 agreement with eager: {result['top1_agreement']:.2%} ({result['disagreements']} disagreements)"
        )
    for precision, v in result.get("variants", {}).items():
        echo(
            f"{precision} variant: accuracy {v['accuracy']:.2%} ({v['correct']}/{v['total']}), "
            f"top-1 agreement with eager {v['top1_agreement']:.2%}"
        )
