"""AlexNet as the seed wrote it, for 3x224x224 images."""

from __future__ import annotations

from torch import Tensor, nn

from ._imagenet import IMAGENET_CATEGORIES, IMAGENET_MEAN, IMAGENET_STD
from ._registry import ModelSpec, TrainRecipe, register_model

__all__ = ["AlexNet", "alexnet"]


class AlexNet(nn.Module):
    """The seed's AlexNet.

    Unlike torchvision's, the first conv has no padding and there is no adaptive pool:
    224x224 inputs leave 256x5x5 features, so the classifier starts at 6400 inputs.
    ``features.N`` / ``classifier.N`` indices follow the seed (and torchvision).
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(),
            nn.Linear(256 * 5 * 5, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


def alexnet(*, num_classes: int = 1000) -> AlexNet:
    """The seed's AlexNet for 3x224x224 inputs."""
    return AlexNet(num_classes=num_classes)


register_model(
    ModelSpec(
        name="alexnet",
        builder=alexnet,
        input_shape=(3, 224, 224),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        num_classes=1000,
        class_names=IMAGENET_CATEGORIES,
        head="classifier.6",
        atol=1e-4,
        rtol=1e-3,
        recipe=TrainRecipe(dataset="imagefolder", epochs=30, batch_size=128, lr=0.01),
        description="seed AlexNet, 3x224x224, 256x5x5 features into Linear(6400, 4096)",
    )
)
