"""The seed's MNIST CNN: four conv+BN+ReLU blocks and a 2048-1024-128-10 classifier."""

from __future__ import annotations

from torch import Tensor, nn

from ._registry import ModelSpec, TrainRecipe, register_model
from .lenet import MNIST_CLASSES, MNIST_MEAN, MNIST_STD

__all__ = ["MnistCNN", "mnist_cnn"]


def _block(cin: int, cout: int, *, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel_size=3),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class MnistCNN(nn.Module):
    """The seed's CNN for 1x28x28 digits.

    ``layer1``..``layer4`` are Conv2d(3x3, no padding) + BatchNorm + ReLU with 16, 32, 64
    and 128 channels; ``layer2`` and ``layer4`` end with a 2x2 max-pool, leaving 128x4x4.
    ``fc`` is Linear(2048, 1024) ReLU Linear(1024, 128) Linear(128, num_classes): as in the
    seed, nothing sits between the last two Linear layers. Names and indices match the
    seed so its checkpoints load unchanged.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.layer1 = _block(1, 16, pool=False)
        self.layer2 = _block(16, 32, pool=True)
        self.layer3 = _block(32, 64, pool=False)
        self.layer4 = _block(64, 128, pool=True)
        self.fc = nn.Sequential(
            nn.Linear(128 * 4 * 4, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, 128),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.flatten(1))


def mnist_cnn(*, num_classes: int = 10) -> MnistCNN:
    """The seed's MNIST CNN."""
    return MnistCNN(num_classes=num_classes)


register_model(
    ModelSpec(
        name="mnist_cnn",
        builder=mnist_cnn,
        input_shape=(1, 28, 28),
        mean=MNIST_MEAN,
        std=MNIST_STD,
        num_classes=10,
        class_names=MNIST_CLASSES,
        head="fc.3",
        recipe=TrainRecipe(
            dataset="mnist",
            epochs=10,
            batch_size=64,
            optimizer="adamw",
            lr=0.003,
            weight_decay=0.05,
            schedule="onecycle",
            label_smoothing=0.1,
            augment="affine",
        ),
        description="seed MNIST CNN, 4 conv+BN+ReLU blocks, FC 2048-1024(ReLU)-128-10",
    )
)
