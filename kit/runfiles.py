"""What a training run leaves for people: metrics files, the per-epoch table, curves.png."""

from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path

from architectures import ModelSpec

from ._files import write_json_atomic
from .data import DataBundle
from .train import TrainConfig, TrainResult

__all__ = ["RunFiles", "format_metrics", "plot_curves", "write_reports"]


class RunFiles:
    """The files a run leaves for people, as ``train(run_files=...)`` asks for them:
    metrics.json, metrics.csv and run.json after every epoch, curves.png at the end."""

    def __init__(self, cfg: TrainConfig, spec: ModelSpec, data: DataBundle) -> None:
        self.cfg, self.spec, self.data = cfg, spec, data

    def epoch_done(self, result: TrainResult) -> None:
        write_reports(self.cfg, self.spec, self.data, result)

    def run_done(self, result: TrainResult) -> None:
        # once, at the end: matplotlib costs more than a small network's epoch
        cfg = self.cfg
        details = [
            s
            for s, on in (
                ("augmented", cfg.augment != "none"),
                (f"label smoothing {cfg.label_smoothing:g}", cfg.label_smoothing > 0),
            )
            if on
        ]
        plot_curves(
            result.metrics,
            cfg.out / "curves.png",
            title=f"{self.spec.name} on {self.data.name}",
            train_label=f"train ({', '.join(details)})" if details else "train",
        )


def write_reports(cfg: TrainConfig, spec: ModelSpec, data: DataBundle, result: TrainResult) -> None:
    metrics = result.metrics
    write_json_atomic(cfg.out / "metrics.json", metrics)
    with open(cfg.out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(metrics[0]))
        writer.writeheader()
        writer.writerows(metrics)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(cfg).items()}
    write_json_atomic(
        cfg.out / "run.json",
        {
            "model": spec.name,
            "config": config,
            "data": {
                "name": data.name,
                "description": data.description,
                "num_classes": data.num_classes,
            },
            "facts": spec.facts() | {"recipe": None},
            "best_epoch": result.best_epoch,
            "best_test_acc": result.best_test_acc,
        },
    )


def plot_curves(
    metrics: list[dict[str, float]], path: Path, *, title: str, train_label: str = "train"
) -> None:
    """Loss and accuracy per epoch, train and test, as a PNG."""
    # The object API needs no pyplot (no GUI backend lookup at start-up).
    from matplotlib.figure import Figure

    epochs = [m["epoch"] for m in metrics]
    fig = Figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [m["train_loss"] for m in metrics], "o-", label=train_label)
    ax_loss.plot(epochs, [m["test_loss"] for m in metrics], "s-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.plot(epochs, [100 * m["train_acc"] for m in metrics], "o-", label=train_label)
    ax_acc.plot(epochs, [100 * m["test_acc"] for m in metrics], "s-", label="test")
    best = max(metrics, key=lambda m: m["test_acc"])
    ax_acc.annotate(
        f"{100 * best['test_acc']:.2f}%",
        (best["epoch"], 100 * best["test_acc"]),
        textcoords="offset points",
        xytext=(0, -14),
        ha="center",
    )
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)


def format_metrics(metrics: list[dict[str, float]]) -> str:
    """The per-epoch table the seed printed, one row per epoch."""
    lines = [
        f"{'epoch':>5}  {'train loss':>10}  {'train acc':>9}  {'test loss':>9}  {'test acc':>8}  {'time':>6}"
    ]
    for m in metrics:
        lines.append(
            f"{int(m['epoch']):>5}  {m['train_loss']:>10.4f}  {m['train_acc']:>9.2%}  "
            f"{m['test_loss']:>9.4f}  {m['test_acc']:>8.2%}  {m['seconds']:>5.1f}s"
        )
    return "\n".join(lines)
