"""VGG 11/13/16/19, with and without batch norm, from one config table.

The seed wrote VGG16 (config "D") as ``features`` + ``classifier`` with nothing between
them but a flatten; the other depths and the batch-norm variants come from the same
table. Module indices are torchvision's, so a torchvision VGG ``state_dict`` loads and,
at the 224x224 input (where torchvision's adaptive pool is the identity), gives identical
outputs wherever the classifier sizes match.
"""

from __future__ import annotations

from torch import Tensor, nn

from ._imagenet import IMAGENET_CATEGORIES, IMAGENET_MEAN, IMAGENET_STD
from ._registry import ModelSpec, TrainRecipe, register_model

__all__ = [
    "VGG",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
]

# fmt: off
cfgs: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}
# fmt: on


class VGG(nn.Module):
    """VGG as the seed wrote it: a conv feature stack from ``cfgs``, flatten, a 3-layer
    classifier. 224x224 inputs leave 512x7x7 features (the classifier's 25,088 inputs).
    """

    def __init__(self, features: nn.Sequential, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = features
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(4096, num_classes),
        )
        self._initialize_weights()

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))

    def _initialize_weights(self) -> None:
        # The seed called this method without defining it; this is torchvision's scheme.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)


def make_layers(cfg: list[int | str], batch_norm: bool = False) -> nn.Sequential:
    """The feature stack for one ``cfgs`` entry ("M" is a 2x2 max-pool)."""
    layers: list[nn.Module] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        assert isinstance(v, int)
        layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_channels = v
    return nn.Sequential(*layers)


def _vgg(cfg: str, *, batch_norm: bool, num_classes: int) -> VGG:
    return VGG(make_layers(cfgs[cfg], batch_norm=batch_norm), num_classes=num_classes)


def vgg11(*, num_classes: int = 1000) -> VGG:
    """VGG 11-layer (config "A")."""
    return _vgg("A", batch_norm=False, num_classes=num_classes)


def vgg11_bn(*, num_classes: int = 1000) -> VGG:
    """VGG 11-layer (config "A") with batch norm."""
    return _vgg("A", batch_norm=True, num_classes=num_classes)


def vgg13(*, num_classes: int = 1000) -> VGG:
    """VGG 13-layer (config "B")."""
    return _vgg("B", batch_norm=False, num_classes=num_classes)


def vgg13_bn(*, num_classes: int = 1000) -> VGG:
    """VGG 13-layer (config "B") with batch norm."""
    return _vgg("B", batch_norm=True, num_classes=num_classes)


def vgg16(*, num_classes: int = 1000) -> VGG:
    """VGG 16-layer (config "D"), the reference network."""
    return _vgg("D", batch_norm=False, num_classes=num_classes)


def vgg16_bn(*, num_classes: int = 1000) -> VGG:
    """VGG 16-layer (config "D") with batch norm."""
    return _vgg("D", batch_norm=True, num_classes=num_classes)


def vgg19(*, num_classes: int = 1000) -> VGG:
    """VGG 19-layer (config "E")."""
    return _vgg("E", batch_norm=False, num_classes=num_classes)


def vgg19_bn(*, num_classes: int = 1000) -> VGG:
    """VGG 19-layer (config "E") with batch norm."""
    return _vgg("E", batch_norm=True, num_classes=num_classes)


for _builder, _layers in [
    (vgg11, 11), (vgg11_bn, 11), (vgg13, 13), (vgg13_bn, 13),
    (vgg16, 16), (vgg16_bn, 16), (vgg19, 19), (vgg19_bn, 19),
]:  # fmt: skip
    register_model(
        ModelSpec(
            name=_builder.__name__,
            builder=_builder,
            input_shape=(3, 224, 224),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            num_classes=1000,
            class_names=IMAGENET_CATEGORIES,
            head="classifier.6",
            atol=1e-4,
            rtol=1e-3,
            recipe=TrainRecipe(dataset="imagefolder", epochs=30, batch_size=64, lr=0.01),
            description=f"VGG {_layers}-layer{' with batch norm' if 'bn' in _builder.__name__ else ''}"
            ", 3x224x224",
        )
    )
