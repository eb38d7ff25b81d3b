"""Training on real MNIST: accuracy, checkpoints, resume, NaN, DDP, eval, --export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from torch.utils.data import TensorDataset

from architectures import get_spec
from kit.artifact import BEST_CHECKPOINT, LAST_CHECKPOINT, MANIFEST, RESUME_STATE, WEIGHTS_FILE
from kit.cli import cli
from kit.data import DataBundle, load_dataset
from kit.errors import TrainingError, UsageError
from kit.runfiles import RunFiles
from kit.train import TrainConfig, train


def config(out: Path, **changes: object) -> TrainConfig:
    recipe = get_spec("lenet").recipe
    return TrainConfig.from_recipe(
        "lenet", recipe, out=out, **{"epochs": 3, "device": "cpu", **changes}
    )


SHORT_RUN_LR = 0.008  # a 3-epoch one-cycle run wants a higher peak than lenet's 12-epoch recipe


@pytest.fixture(scope="module")
def mnist(mnist_dir: Path) -> DataBundle:
    return load_dataset("mnist", get_spec("lenet"), data_dir=mnist_dir)


def test_short_real_run_clears_95_percent(mnist: DataBundle, tmp_path: Path) -> None:
    # 3 epochs at batch 128 and a stated lr instead of the recipe's 12 epochs: a short run
    # that must still learn
    cfg = config(tmp_path, batch_size=128, lr=SHORT_RUN_LR)
    reports = RunFiles(cfg, get_spec("lenet"), mnist)
    result = train(cfg, get_spec("lenet"), mnist, progress=False, run_files=reports)
    assert [m["epoch"] for m in result.metrics] == [1, 2, 3]
    assert result.best_test_acc >= 0.95, result.metrics
    train_loss = [m["train_loss"] for m in result.metrics]
    assert train_loss[0] > train_loss[1] > train_loss[2], train_loss  # it learns every epoch
    assert result.metrics[-1]["test_loss"] < result.metrics[0]["test_loss"]
    for name in (
        "last.safetensors",
        "best.safetensors",
        "metrics.json",
        "metrics.csv",
        "curves.png",
        "run.json",
    ):
        assert (tmp_path / name).is_file(), name
    assert json.loads((tmp_path / "metrics.json").read_text()) == result.metrics
    assert (
        (tmp_path / "metrics.csv")
        .read_text()
        .splitlines()[0]
        .startswith("epoch,train_loss,train_acc,test_loss,test_acc")
    )
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        load_file(str(tmp_path / BEST_CHECKPOINT)).keys()
        == get_spec("lenet").builder().state_dict().keys()
    )


def test_resume_after_interruption_gives_identical_weights(
    mnist: DataBundle, tmp_path: Path
) -> None:
    spec = get_spec("lenet")
    small = DataBundle(
        TensorDataset(*(t[:1500] for t in mnist.train.tensors)),  # type: ignore[attr-defined]
        TensorDataset(*(t[:500] for t in mnist.test.tensors)),  # type: ignore[attr-defined]
        "mnist", 10, "subset",
    )  # fmt: skip
    straight = train(config(tmp_path / "a"), spec, small, progress=False)

    def interrupt(epoch: int, _: dict[str, float]) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config(tmp_path / "b"), spec, small, progress=False, on_epoch_end=interrupt)
    assert {p.name for p in (tmp_path / "b").iterdir()} == {
        BEST_CHECKPOINT,
        LAST_CHECKPOINT,
        RESUME_STATE,
    }
    resumed = train(config(tmp_path / "b"), spec, small, resume=True, progress=False)
    assert [m["epoch"] for m in resumed.metrics] == [1, 2, 3]
    a = load_file(str(tmp_path / "a" / LAST_CHECKPOINT))
    b = load_file(str(tmp_path / "b" / LAST_CHECKPOINT))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [m["test_acc"] for m in straight.metrics] == [m["test_acc"] for m in resumed.metrics]


def test_nan_loss_stops_with_epoch_and_step(mnist: DataBundle, tmp_path: Path) -> None:
    x, y = (t[:256] for t in mnist.train.tensors)  # type: ignore[attr-defined]
    x = x.clone()
    x[130] = float("nan")
    bad = DataBundle(TensorDataset(x, y), mnist.test, "mnist", 10, "poisoned")
    cfg = config(tmp_path, epochs=1, batch_size=64, augment="none")
    with pytest.raises(TrainingError, match=r"The loss became nan at epoch 1, step \d"):
        train(cfg, get_spec("lenet"), bad, progress=False)


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_single_process(mnist_dir: Path, tmp_path: Path) -> None:
    args = [
        "train",
        "--model",
        "lenet",
        "--data-dir",
        str(mnist_dir),
        "--epochs",
        "3",
        "--batch-size",
        "128",
        "--lr",
        str(SHORT_RUN_LR),
        "--device",
        "cpu",
        "--json",
    ]
    single = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "one")], prog_name="kit")
    assert single.exit_code == 0, single.output
    one = json.loads(single.output)["best_test_acc"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "kit", *args, "--out", str(tmp_path / "two")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "run.json").read_text())["best_test_acc"]
    assert two >= 0.95 and abs(two - one) < 0.015, (one, two)


def test_cli_train_with_export(mnist_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["train", "--model", "lenet", "--data-dir", str(mnist_dir), "--epochs", "3", "--batch-size", "128", "--device", "cpu",
         "--out", str(tmp_path / "run"), "--export", "--export-dir", str(tmp_path / "exp")],
        prog_name="kit",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "epoch  train loss  train acc" in result.output and "mnist test b=256" in result.output
    manifest = json.loads((tmp_path / "exp" / "lenet" / MANIFEST).read_text())
    assert manifest["training"]["test_accuracy"] > 0.9
    assert manifest["model"]["weights"]["source"].endswith("best.safetensors")
    code = CliRunner().invoke(
        cli, ["eval", str(tmp_path / "exp" / "lenet"), "--data-dir", str(mnist_dir), "--json"]
    )
    data = json.loads(code.output)
    assert data["top1_agreement"] == 1.0 and data["accuracy"] == pytest.approx(
        manifest["training"]["test_accuracy"], abs=1e-4
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alexnet", "vgg11"])
def test_rgb_networks_train_on_fake_data(name: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["train", "--model", name, "--dataset", "fake", "--fake-size", "8", "--num-classes", "3",
         "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--out", str(tmp_path), "--json"],
        prog_name="kit",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)["metrics"]
    assert len(metrics) == 1 and 0.5 < metrics[0]["train_loss"] < 5  # about ln 3 at the start
    trained = load_file(str(tmp_path / BEST_CHECKPOINT))["classifier.6.weight"]
    from kit.models import build_model, resolve_spec

    initial = build_model(resolve_spec(name), num_classes=3, seed=0).classifier[6].weight
    assert trained.shape[0] == 3 and not torch.equal(trained, initial.detach())  # it stepped


def test_cuda_request_without_gpu_is_a_clear_error(mnist_dir: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; scripts/gpu_check.sh covers the CUDA path")
    result = CliRunner().invoke(
        cli,
        ["train", "--model", "lenet", "--data-dir", str(mnist_dir), "--device", "cuda"],
        prog_name="kit",
    )
    assert result.exit_code == 2 and "torch sees no CUDA device" in result.output


def test_eval_shipped_models(shipped_mnist_cnn: Path, mnist_dir: Path) -> None:
    exported = CliRunner().invoke(
        cli, ["eval", str(shipped_mnist_cnn), "--data-dir", str(mnist_dir), "--json"]
    )
    assert exported.exit_code == 0, exported.output
    data = json.loads(exported.output)
    manifest = json.loads((shipped_mnist_cnn / MANIFEST).read_text())
    assert data["total"] == 10_000 and data["top1_agreement"] == 1.0
    assert data["accuracy"] == pytest.approx(manifest["training"]["test_accuracy"], abs=1e-4)
    eager = CliRunner().invoke(
        cli, ["eval", "--model", "mnist_cnn", "--weights", str(shipped_mnist_cnn / WEIGHTS_FILE),
              "--data-dir", str(mnist_dir), "--device", "cpu", "--json"],
    )  # fmt: skip
    assert json.loads(eager.output)["accuracy"] == pytest.approx(data["accuracy"], abs=1e-4)
    lenet = CliRunner().invoke(
        cli,
        ["eval", str(shipped_mnist_cnn.parent / "lenet"), "--data-dir", str(mnist_dir), "--json"],
    )
    assert json.loads(lenet.output)["accuracy"] >= 0.97


class _Unblockable(torch.nn.Module):
    """A layer oneDNN's blocked tensors cannot take (subtraction)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - 1


@pytest.mark.parametrize("name", ["lenet", "mnist_cnn", "unblockable"])
def test_evaluation_computes_what_the_network_computes(name: str, mnist: DataBundle) -> None:
    """Whatever layout evaluation runs in (oneDNN's blocked one, or dense when a layer
    cannot take it), its loss, accuracy and predictions are the network's own."""
    from architectures import get_model
    from kit.train import evaluate

    torch.manual_seed(0)
    if name == "unblockable":
        model = torch.nn.Sequential(_Unblockable(), get_model("lenet")).eval()
    else:
        model = get_model(name).eval()
    images, labels = mnist.test.tensors  # type: ignore[attr-defined]
    x, y = images[:600], labels[:600]
    loss, acc, preds = evaluate(model, TensorDataset(x, y), torch.device("cpu"))
    with torch.no_grad():
        logits = model(x)
    assert torch.equal(preds, logits.argmax(1))
    assert acc == pytest.approx(float((preds == y).float().mean()))
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)), rel=1e-5)
    # the model itself is untouched: still dense, still trainable
    assert all(p.layout == torch.strided and p.requires_grad for p in model.parameters())


def test_config_is_the_recipe_plus_overrides(tmp_path: Path) -> None:
    recipe = get_spec("mnist_cnn").recipe
    cfg = TrainConfig.from_recipe("mnist_cnn", recipe, out=tmp_path, lr=None, epochs=2)
    assert cfg.lr == recipe.lr and cfg.epochs == 2 and cfg.ema == recipe.ema
    with pytest.raises(UsageError, match="Unknown training option"):
        TrainConfig.from_recipe("mnist_cnn", recipe, out=tmp_path, dataset="mnist")


def test_the_datas_class_names_travel_into_the_export(tmp_path: Path) -> None:
    """lenet trained on an ImageFolder of cat, dog, eel calls an eel an eel, not "2"."""
    import numpy as np
    from PIL import Image

    from kit.artifact import CLASS_NAMES_KEY, MODEL_FILE

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i, cls in enumerate(("cat", "dog", "eel")):
            folder = tmp_path / "data" / split / cls
            folder.mkdir(parents=True)
            for j in range(4):  # each class its own brightness, so one epoch tells them apart
                pixels = np.clip(rng.normal(40 + 80 * i, 5, (28, 28)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{j}.png")
    args = [
        "train",
        "--model",
        "lenet",
        "--dataset",
        "imagefolder",
        "--data-dir",
        str(tmp_path / "data"),
    ]
    args += ["--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(cli, [*args, "--export", "--export-dir", str(tmp_path / "exp")])
    assert result.exit_code == 0, result.output
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / BEST_CHECKPOINT), framework="pt") as f:
        assert json.loads(f.metadata()[CLASS_NAMES_KEY]) == ["cat", "dog", "eel"]
    export = tmp_path / "exp" / "lenet"
    manifest = json.loads((export / MANIFEST).read_text())
    assert manifest["facts"]["class_names"] == ["cat", "dog", "eel"]
    import kit.runtime

    assert kit.runtime.load(export / MODEL_FILE, warmup=False).class_names == ["cat", "dog", "eel"]
    predicted = CliRunner().invoke(
        cli, ["predict", str(export), str(tmp_path / "data" / "val" / "eel" / "0.png"), "--json"]
    )
    label = json.loads(predicted.output)["predictions"][0]["top"][0]["label"]
    assert label in {"cat", "dog", "eel"}
