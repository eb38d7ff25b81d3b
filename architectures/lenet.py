"""LeNet as the seed wrote it: two conv/pool stages and three Linear layers."""

from __future__ import annotations

from torch import Tensor, nn

from ._registry import ModelSpec, TrainRecipe, register_model

__all__ = ["LeNet", "lenet"]


class LeNet(nn.Module):
    """The seed's LeNet for 1x28x28 digits.

    Conv2d(1, 6, 3, padding=1) -> MaxPool2d(2) -> Conv2d(6, 16, 5) -> MaxPool2d(2) ->
    flatten -> Linear(400, 120) -> Linear(120, 84) -> Linear(84, num_classes).

    There is no activation function anywhere: that is the seed's network, kept exactly
    (the max-pools are its only non-linearity). Parameter names (``layer1.conv1``,
    ``layer2.conv2``, ``layer3.fc1..fc3``) match the seed so its checkpoints load.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.layer1 = nn.Sequential()
        self.layer1.add_module("conv1", nn.Conv2d(1, 6, 3, padding=1))
        self.layer1.add_module("pool1", nn.MaxPool2d(2, 2))
        self.layer2 = nn.Sequential()
        self.layer2.add_module("conv2", nn.Conv2d(6, 16, 5))
        self.layer2.add_module("pool2", nn.MaxPool2d(2, 2))
        self.layer3 = nn.Sequential()
        self.layer3.add_module("fc1", nn.Linear(400, 120))
        self.layer3.add_module("fc2", nn.Linear(120, 84))
        self.layer3.add_module("fc3", nn.Linear(84, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer2(self.layer1(x))
        return self.layer3(x.flatten(1))


MNIST_CLASSES = tuple(str(i) for i in range(10))
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)


def lenet(*, num_classes: int = 10) -> LeNet:
    """The seed's LeNet (no activations)."""
    return LeNet(num_classes=num_classes)


register_model(
    ModelSpec(
        name="lenet",
        builder=lenet,
        input_shape=(1, 28, 28),
        mean=MNIST_MEAN,
        std=MNIST_STD,
        num_classes=10,
        class_names=MNIST_CLASSES,
        head="layer3.fc3",
        recipe=TrainRecipe(
            dataset="mnist",
            epochs=12,
            batch_size=128,
            optimizer="adamw",
            lr=0.004,
            weight_decay=0.01,
            schedule="onecycle",
            label_smoothing=0.0,
            augment="affine",
            augment_strength=0.5,
        ),
        description="seed LeNet, 1x28x28 digits, no activations",
    )
)
