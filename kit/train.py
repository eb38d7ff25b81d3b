"""The training loop behind ``kit train``: one process, or many under ``torchrun``.

Each epoch's shuffling and augmentation draw from generators seeded by (seed, epoch), so
a run is reproducible on the CPU and ``--resume`` after an interruption ends with the
same weights as an uninterrupted run. Checkpoints are safetensors, written atomically
after every epoch; the best one (by test accuracy) is kept.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from architectures import ModelSpec, TrainRecipe

from ._native import keep_freed_memory
from .artifact import BEST_CHECKPOINT, LAST_CHECKPOINT, RESUME_STATE
from .augment import random_affine
from .data import DataBundle, DataChoice, channel_stats, choose_data, data_channels, load_dataset
from .errors import TrainingError, UsageError
from .models import GivenFacts, build_model, resolve_spec, run_example, with_facts

__all__ = [
    "RunWriter",
    "TrainConfig",
    "TrainResult",
    "TrainingPlan",
    "checkpoint_metadata",
    "evaluate",
    "pick_device",
    "prepare_training",
    "train",
    "training_record",
]

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """What to train and how (defaults come from the network's recipe)."""

    model: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    optimizer: str
    schedule: str
    label_smoothing: float
    augment: str
    augment_strength: float
    ema: float
    out: Path
    device: str = "auto"
    seed: int = 0
    num_classes: int | None = None

    @classmethod
    def from_recipe(
        cls, model: str, recipe: TrainRecipe, *, out: Path, **overrides: Any
    ) -> TrainConfig:
        """The recipe's hyper-parameters, with every override that is not None on top.

        Raises:
            UsageError: an override that is not a training option.
        """
        own = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - own)
        if unknown:
            raise UsageError(f"Unknown training option(s): {', '.join(unknown)}.")
        values = {
            f.name: getattr(recipe, f.name) for f in dataclasses.fields(recipe) if f.name in own
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(model=model, out=out, **values)


@dataclass
class TrainResult:
    """Where the run's files are and what it measured."""

    out: Path
    metrics: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_test_acc: float = 0.0


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU.

    Raises:
        UsageError: ``cuda`` asked for on a machine without one, or an unknown name.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was given but torch sees no CUDA device; use --device cpu.")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UsageError(f"Unknown device {name!r}; use auto, cpu or cuda.") from None


def _dist() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment."""
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def _batches(
    data: Dataset, sampler: DistributedSampler, batch_size: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(data, TensorDataset):  # in-memory: index the tensors, no collation
        images, labels = data.tensors
        order = torch.tensor(list(sampler))
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size].to(images.device)
            yield images[idx], labels[idx]
        return
    loader = DataLoader(
        data,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=2 if device.type == "cuda" else 0,
        pin_memory=device.type == "cuda",
    )
    for x, y in loader:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _inference_copy(model: nn.Module) -> nn.Module:
    """``model`` with batch norm folded into the convolutions (faster on a CPU)."""
    from torch.fx.experimental.optimization import fuse

    if not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        return model
    try:
        return fuse(model.eval(), inplace=False)
    except Exception:  # a network torch.fx cannot trace is evaluated as it is
        return model


def _onednn_copy(net: nn.Module, original: nn.Module, sample: torch.Tensor) -> nn.Module | None:
    """``net`` in oneDNN's blocked layout if it computes what ``net`` does on ``sample``.

    On a CPU, eager max-pooling also computes indices nobody needs in evaluation; in the
    blocked layout a test pass is faster (docs/BENCHMARKS.md). A network with a
    layer that cannot take blocked tensors, or that answers differently, is evaluated as
    it is.
    """
    import copy
    import warnings

    if sample.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return None
    try:
        with warnings.catch_warnings():  # its layers are TorchScript modules, which warn
            warnings.simplefilter("ignore", FutureWarning)
            from torch.utils.mkldnn import to_mkldnn
        want = net(sample)
        blocked = to_mkldnn(copy.deepcopy(net) if net is original else net)  # converts in place
        if torch.allclose(blocked(sample.to_mkldnn()).to_dense(), want, rtol=1e-4, atol=1e-5):
            return blocked
    except Exception:  # an op without oneDNN support, or a torch without the module
        pass
    return None


@torch.inference_mode()
def evaluate(
    model: nn.Module, data: Dataset, device: torch.device, *, batch_size: int = 200
) -> tuple[float, float, torch.Tensor]:
    """Mean cross-entropy, accuracy and predicted classes of ``model`` on ``data``."""
    model.eval()
    net = _inference_copy(model)
    blocked: nn.Module | None = None
    total_loss, correct, preds = 0.0, 0, []
    sampler: DistributedSampler[Any] = DistributedSampler(
        data, num_replicas=1, rank=0, shuffle=False
    )
    n = 0
    for i, (x, y) in enumerate(_batches(data, sampler, batch_size, device)):
        x, y = x.to(device), y.to(device)
        if i == 0:  # a few rows tell as much as the batch (rows are independent in eval)
            blocked = _onednn_copy(net, model, x[:16].contiguous())
        if blocked is not None:
            logits = blocked(x.contiguous().to_mkldnn()).to_dense()
        else:
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                logits = net(x.contiguous(memory_format=torch.channels_last)).float()
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        p = logits.argmax(1)
        correct += int((p == y).sum())
        preds.append(p.cpu())
        n += len(y)
    return (
        total_loss / max(n, 1),
        correct / max(n, 1),
        torch.cat(preds) if preds else torch.empty(0),
    )


def _state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _make_optimizer(cfg: TrainConfig, model: nn.Module, steps: int) -> tuple[Any, Any]:
    if cfg.optimizer == "adamw":
        # foreach: the same arithmetic (bit-identical weights) in one kernel per operation
        # over all parameters; torch only picks it by default for CUDA tensors, and it is
        # faster on a CPU too. (fused=True is faster still, but rounds differently, and the
        # recipes were tuned without it.)
        opt: torch.optim.Optimizer = torch.optim.AdamW(
            model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True
        )
    elif cfg.optimizer == "adam":  # the seed's: Adam, no weight decay by default
        opt = torch.optim.Adam(
            model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True
        )
    elif cfg.optimizer == "sgd":
        opt = torch.optim.SGD(
            model.parameters(),
            lr=cfg.lr,
            momentum=0.9,
            nesterov=True,
            weight_decay=cfg.weight_decay,
        )
    else:
        raise UsageError(f"Unknown optimizer {cfg.optimizer!r}; use adam, adamw or sgd.")
    if cfg.schedule == "onecycle" and steps >= 8:  # one-cycle needs a few steps to warm up
        sched: Any = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=max(steps, 1), pct_start=0.25
        )
    elif cfg.schedule in ("constant", "onecycle"):
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    else:
        raise UsageError(f"Unknown schedule {cfg.schedule!r}; use onecycle or constant.")
    return opt, sched


class RunWriter(Protocol):
    """What a run leaves for people, written through the caller (``kit.runfiles.RunFiles``)."""

    def epoch_done(self, result: TrainResult) -> None:
        """After each epoch's checkpoint (main process only)."""

    def run_done(self, result: TrainResult) -> None:
        """Once, after the last epoch (main process only)."""


@dataclass
class _Run:
    """What one training run holds from epoch to epoch."""

    device: torch.device
    rank: int
    world: int
    model: nn.Module
    classes: int
    net: nn.Module  # the model, or its DistributedDataParallel wrapper
    train_set: Dataset
    sampler: DistributedSampler  # type: ignore[type-arg]
    per_rank: int
    steps: int
    opt: Any
    sched: Any
    scaler: Any
    ema: Any
    #: what every checkpoint's safetensors metadata says (its classes' names among it)
    checkpoint_meta: dict[str, str]

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model


def _init_device(cfg: TrainConfig) -> tuple[torch.device, int, int, int]:
    """The device and (rank, world, local rank); joins the process group under torchrun."""
    rank, world, local_rank = _dist()
    device = pick_device(cfg.device)
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        else:
            torch.set_num_threads(
                max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world)))
            )
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    else:
        keep_freed_memory()
    return device, rank, world, local_rank


def _prepare(cfg: TrainConfig, spec: ModelSpec, data: DataBundle) -> _Run:
    """Network, data on the device, optimizer, schedule, AMP scaler and EMA for ``cfg``."""
    device, rank, world, _ = _init_device(cfg)
    classes = cfg.num_classes or data.num_classes
    model = build_model(spec, num_classes=classes, seed=cfg.seed, fit=True)
    _check_width(model, spec, classes, data.description)
    model = model.to(device).to(memory_format=torch.channels_last)
    train_set = data.train
    if isinstance(train_set, TensorDataset):
        train_set = TensorDataset(*(t.to(device) for t in train_set.tensors))
    per_rank = max(1, cfg.batch_size // world)
    steps = math.ceil(math.ceil(len(train_set) / world) / per_rank)  # type: ignore[arg-type]
    opt, sched = _make_optimizer(cfg, model, cfg.epochs * steps)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    ema = None
    if cfg.ema:
        ema = torch.optim.swa_utils.AveragedModel(
            model,
            multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema),
            use_buffers=True,
        )
    sampler: DistributedSampler[Any] = DistributedSampler(
        train_set, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed
    )
    return _Run(
        device, rank, world, model, classes, model, train_set, sampler, per_rank, steps, opt,
        sched, scaler, ema, checkpoint_metadata(spec, data, classes),
    )  # fmt: skip


def _check_width(model: nn.Module, spec: ModelSpec, classes: int, data: str) -> None:
    """The network answers one score per class of the data.

    Raises:
        UsageError: it fails on the input shape, or answers another number of scores (or
            not one [batch, classes] tensor).
    """
    out = run_example(spec, model.eval(), torch.zeros(2, *spec.input_shape))
    width = int(out.shape[1]) if isinstance(out, torch.Tensor) and out.ndim == 2 else None
    if width != classes:
        said = f"{width} class scores" if width else "no [batch, classes] tensor"
        raise UsageError(
            f"{spec.name} answers {said}, and {data} has {classes} classes; make the network "
            f"answer {classes} (a factory that takes num_classes gets it), or train it on its "
            "own data."
        )


def checkpoint_metadata(spec: ModelSpec, data: DataBundle, classes: int) -> dict[str, str]:
    """A checkpoint's safetensors metadata: the network, its class count, the input shape,
    mean and std it was trained with and its classes' names (``spec``'s when they fit, else
    the data's: an ImageFolder's folders), which travel into the export as torchvision's
    ``Weights.meta`` travels with its weights."""
    meta = {"model": spec.name, "num_classes": str(classes), "dataset": data.name}
    names = spec.class_names if len(spec.class_names) == classes else data.class_names
    facts = GivenFacts(
        mean=tuple(spec.mean),
        std=tuple(spec.std),
        class_names=tuple(names) if len(names) == classes else None,
        input_shape=tuple(spec.input_shape),
    )
    return meta | facts.to_metadata()


def training_record(cfg: TrainConfig, data: DataBundle, result: TrainResult) -> dict[str, Any]:
    """What an export of this run's best checkpoint records of its training."""
    return {
        "data": data.description,
        "best_epoch": result.best_epoch,
        "test_accuracy": result.best_test_acc,
        "final_test_accuracy": result.metrics[-1]["test_acc"] if result.metrics else None,
        "config": {
            k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(cfg).items()
        },
    }


@dataclass
class TrainingPlan:
    """What ``kit train`` trains: the network's facts as the data and the user give them,
    the data, where it came from, and what the user should be told."""

    spec: ModelSpec
    data: DataBundle
    choice: DataChoice
    notes: list[str]


def prepare_training(
    model_name: str,
    given: GivenFacts,
    *,
    dataset: str | None = None,
    data_dir: Path | None = None,
    download: bool = False,
    num_classes: int | None = None,
    fake_size: int = 256,
) -> TrainingPlan:
    """Resolve the network and its data for a training run.

    A user's network (``module:factory``) is normalised with the data's own per-channel
    mean and std unless ``given`` says otherwise; the classes' names are the data's (an
    ImageFolder's folders) unless ``given`` names them.

    Raises:
        UsageError: the data's images do not have the channels the network takes, class
            names that do not fit the classes, or fake data for a network of no known
            class count.
        DataError: the data is missing or unreadable.
    """
    spec = resolve_spec(model_name, given.input_shape)
    user = ":" in model_name
    choice = choose_data(spec, dataset=dataset, data_dir=data_dir)
    channels = data_channels(choice.dataset, choice.data_dir)
    if channels is not None and channels != spec.input_shape[0]:
        kind = {1: "grey (1 channel)", 3: "colour (3 channels)"}
        raise UsageError(
            f"{spec.name} takes {spec.input_shape[0]}-channel images, and the {choice.dataset} "
            f"data's are {kind[channels]}; train a network that takes {channels} channels "
            f"(your own with --input-shape {channels},H,W), or convert the images first."
        )
    if user and choice.dataset == "fake" and num_classes is None:
        raise UsageError("--dataset fake with your own network needs --num-classes.")
    notes = []
    facts = dataclasses.replace(given, class_names=None)
    if user and not given.normalisation and choice.has_files:
        mean, std = channel_stats(choice.dataset, spec, choice.data_dir)
        facts = dataclasses.replace(facts, mean=mean, std=std)
        notes.append(
            f"normalising with the data's own per-channel mean {list(mean)} and std "
            f"{list(std)} (pass --mean/--std to choose); the checkpoints record them"
        )
    spec = with_facts(spec, facts)
    data = load_dataset(
        choice.dataset,
        spec,
        data_dir=choice.data_dir,
        download=download,
        num_classes=num_classes,
        fake_size=fake_size,
    )
    classes = num_classes or data.num_classes
    if data.name != "fake" and classes != data.num_classes:
        raise UsageError(
            f"--num-classes {classes} disagrees with {data.description}, which has "
            f"{data.num_classes} classes; leave --num-classes out to take the data's."
        )
    names = given.class_names or data.class_names
    if given.class_names is not None and len(given.class_names) != classes:
        raise UsageError(
            f"--class-names gives {len(given.class_names)} names for {classes} classes; give "
            "one per class, in the order of the data's class folders."
        )
    if len(names) == classes:
        spec = with_facts(spec, GivenFacts(class_names=tuple(names)))
    return TrainingPlan(spec, data, choice, notes)


def _resume(run: _Run, cfg: TrainConfig, spec: ModelSpec, result: TrainResult) -> int:
    """Load ``resume.pt`` into ``run`` and ``result``; returns the epoch to start from."""
    state_path = cfg.out / RESUME_STATE
    if not state_path.is_file():
        return 0
    state = torch.load(state_path, map_location=run.device, weights_only=True)
    if state["model"] != spec.name:
        raise UsageError(
            f"{cfg.out} holds a run of {state['model']}, not {spec.name}; pick another --out."
        )
    run.model.load_state_dict(state["weights"])
    run.opt.load_state_dict(state["optimizer"])
    run.sched.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    if run.ema is not None and state.get("ema") is not None:
        run.ema.load_state_dict(state["ema"])
    result.metrics = json.loads(state["metrics"])
    result.best_epoch, result.best_test_acc = (
        int(state["best_epoch"]),
        float(state["best_test_acc"]),
    )
    log.info("resuming %s at epoch %d", spec.name, int(state["epoch"]) + 2)
    return int(state["epoch"]) + 1


def _train_epoch(
    run: _Run, cfg: TrainConfig, spec: ModelSpec, epoch: int, progress: bool
) -> tuple[int, int, float]:
    """One pass over the training data: (samples seen, correct, summed loss), all ranks."""
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout and friends
    aug_gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch * 7919 + run.rank)
    run.sampler.set_epoch(epoch)
    run.net.train()
    fill = -spec.mean[0] / spec.std[0]
    amp = run.device.type == "cuda"
    seen = correct = 0
    loss_sum = 0.0
    bar = tqdm(
        total=run.steps,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        disable=not (progress and run.main) or None,
        leave=False,
        dynamic_ncols=True,
    )
    for step, (x, y) in enumerate(_batches(run.train_set, run.sampler, run.per_rank, run.device)):
        if cfg.augment == "affine":
            x = random_affine(x, aug_gen, strength=cfg.augment_strength, fill=fill)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(run.device.type, enabled=amp):
            logits = run.net(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"The loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; "
                "lower --lr or check the data."
            )
        _step(run, loss)
        seen += len(y)
        correct += int((logits.argmax(1) == y).sum())
        loss_sum += loss.item() * len(y)
        bar.update()
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.2%}")
    bar.close()
    return _all_ranks(run, seen, correct, loss_sum)


def _step(run: _Run, loss: torch.Tensor) -> None:
    run.opt.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.opt)
    run.scaler.update()
    run.sched.step()
    if run.ema is not None:
        run.ema.update_parameters(run.model)


def _all_ranks(run: _Run, seen: int, correct: int, loss_sum: float) -> tuple[int, int, float]:
    if run.world == 1:
        return seen, correct, loss_sum
    import torch.distributed as dist

    totals = torch.tensor([seen, correct, loss_sum], dtype=torch.float64, device=run.device)
    dist.all_reduce(totals)
    return int(totals[0]), int(totals[1]), float(totals[2])


def _checkpoint(
    run: _Run, cfg: TrainConfig, spec: ModelSpec, epoch: int, result: TrainResult
) -> None:
    """``last`` (and ``best`` when test accuracy improved) weights, then ``resume.pt``."""
    weights = _state_dict(run.eval_model)
    meta = run.checkpoint_meta
    _save_tensors(weights, cfg.out / LAST_CHECKPOINT, meta)
    if result.metrics[-1]["test_acc"] > result.best_test_acc or epoch == 0:
        result.best_epoch, result.best_test_acc = epoch + 1, result.metrics[-1]["test_acc"]
        _save_tensors(weights, cfg.out / BEST_CHECKPOINT, meta)
    state = {
        "model": spec.name,
        "epoch": epoch,
        "weights": _state_dict(run.model),
        "optimizer": run.opt.state_dict(),
        "scheduler": run.sched.state_dict(),
        "scaler": run.scaler.state_dict(),
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "metrics": json.dumps(result.metrics),
        "best_epoch": result.best_epoch,
        "best_test_acc": result.best_test_acc,
    }
    tmp = cfg.out / f".{RESUME_STATE}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, cfg.out / RESUME_STATE)


def train(
    cfg: TrainConfig,
    spec: ModelSpec,
    data: DataBundle,
    *,
    resume: bool = False,
    progress: bool = True,
    run_files: RunWriter | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``spec``'s network on ``data`` and checkpoint into ``cfg.out``.

    On a CPU this also tells glibc's allocator to keep freed memory for the rest of the
    process (see :func:`kit._native.keep_freed_memory`).

    Args:
        cfg: Hyper-parameters and paths.
        spec: The network's facts.
        data: Train and test splits, already preprocessed for the network.
        resume: Continue from ``cfg.out/resume.pt`` if it exists.
        progress: Show a progress bar per epoch (rank 0 only).
        run_files: Writes what people read (metrics files, curves) after each epoch and at
            the end; ``kit train`` passes :class:`kit.runfiles.RunFiles`.
        on_epoch_end: Called with (epoch, metrics) after each epoch's checkpoint.

    Returns:
        Per-epoch metrics and the best epoch.

    Raises:
        TrainingError: the loss became NaN or Inf.
        UsageError: a bad option, or ``resume`` with a different network.
    """
    run = _prepare(cfg, spec, data)  # refuses a network that does not fit before any file
    cfg.out.mkdir(parents=True, exist_ok=True)
    result = TrainResult(out=cfg.out)
    start = _resume(run, cfg, spec, result) if resume else 0
    if run.world > 1:
        local = [run.device.index] if run.device.type == "cuda" else None
        run.net = nn.parallel.DistributedDataParallel(run.model, device_ids=local)
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        seen, correct, loss_sum = _train_epoch(run, cfg, spec, epoch, progress)
        row: dict[str, float] = {}
        if run.main:
            test_loss, test_acc, _ = evaluate(run.eval_model, data.test, run.device)
            row = {
                "epoch": epoch + 1,
                "train_loss": loss_sum / max(seen, 1),
                "train_acc": correct / max(seen, 1),
                "test_loss": test_loss,
                "test_acc": test_acc,
                "lr": float(run.sched.get_last_lr()[0]),
                "seconds": time.perf_counter() - t0,
            }
            result.metrics.append(row)
            _checkpoint(run, cfg, spec, epoch, result)
            if run_files is not None:
                run_files.epoch_done(result)
            log.info("epoch %d: %s", epoch + 1, row)
        if run.world > 1:
            import torch.distributed as dist

            dist.barrier()
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, row)
    if run.main and result.metrics and run_files is not None:
        run_files.run_done(result)
    return result
