"""kit's networks are the seed's, layer for layer.

Each class below is the seed document's code written out again from its text, with its
own module names, and nothing imported from kit: a state_dict drawn from it must load
into kit's network with ``strict=True`` and both must compute the same outputs. Where
the seed's code cannot run as written, the comment says what was left out.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from architectures import get_model


class SeedLeNet(nn.Module):
    def __init__(self):
        super().__init__()
        layer1 = nn.Sequential()
        layer1.add_module("conv1", nn.Conv2d(1, 6, kernel_size=(3, 3), padding=1))
        layer1.add_module("pool1", nn.MaxPool2d(kernel_size=2))
        self.layer1 = layer1
        layer2 = nn.Sequential()
        layer2.add_module("conv2", nn.Conv2d(6, 16, kernel_size=(5, 5)))
        layer2.add_module("pool2", nn.MaxPool2d(kernel_size=2))
        self.layer2 = layer2
        layer3 = nn.Sequential()
        layer3.add_module("fc1", nn.Linear(16 * 5 * 5, 120))
        layer3.add_module("fc2", nn.Linear(120, 84))
        layer3.add_module("fc3", nn.Linear(84, 10))
        self.layer3 = layer3

    def forward(self, x):
        x = self.layer1(x)
        x = self.layer2(x)
        x = torch.flatten(x, 1)
        x = self.layer3(x)
        return x


class SeedAlexNet(nn.Module):
    def __init__(self, num_class):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=(11, 11), stride=(4, 4)),
            nn.ReLU(True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=(5, 5), padding=2),
            nn.ReLU(True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=(3, 3), padding=1),
            nn.ReLU(True),
            nn.Conv2d(384, 256, kernel_size=(3, 3), padding=1),
            nn.ReLU(True),
            nn.Conv2d(256, 256, kernel_size=(3, 3), padding=1),
            nn.ReLU(True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(),
            nn.Linear(256 * 5 * 5, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Linear(4096, num_class),
        )

    def forward(self, x):
        x = self.features(x)
        # (the seed prints x.size() here)
        x = x.view(x.size(0), 256 * 5 * 5)
        x = self.classifier(x)
        return x


class SeedVGG(nn.Module):
    def __init__(self, num_class):
        super().__init__()
        # fmt: off
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=(3, 3), padding=1), nn.ReLU(True),
            nn.Conv2d(64, 64, kernel_size=(3, 3), padding=1), nn.ReLU(True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(64, 128, kernel_size=(3, 3), padding=1), nn.ReLU(True),
            nn.Conv2d(128, 128, kernel_size=(3, 3), padding=1), nn.ReLU(True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(128, 256, kernel_size=(3, 3), padding=1), nn.ReLU(True),
            nn.Conv2d(256, 256, kernel_size=(3, 3), padding=1), nn.ReLU(True),
            nn.Conv2d(256, 256, kernel_size=(3, 3), padding=1), nn.ReLU(True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(256, 512, kernel_size=(3, 3), padding=1), nn.ReLU(True),
            nn.Conv2d(512, 512, kernel_size=(3, 3), padding=1), nn.ReLU(True),
            nn.Conv2d(512, 512, kernel_size=(3, 3), padding=1), nn.ReLU(True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(512, 512, kernel_size=(3, 3), padding=1), nn.ReLU(True),
            nn.Conv2d(512, 512, kernel_size=(3, 3), padding=1), nn.ReLU(True),
            nn.Conv2d(512, 512, kernel_size=(3, 3), padding=1), nn.ReLU(True),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        # fmt: on
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, num_class),
        )
        # (the seed calls self._initialize_weights() here without defining it)

    def forward(self, x):
        x = self.features(x)
        x = x.view(x.size(0), -1)
        x = self.classifier(x)
        return x


class SeedCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer1 = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=(3, 3)),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
        )
        self.layer2 = nn.Sequential(
            nn.Conv2d(16, 32, kernel_size=(3, 3)),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.layer3 = nn.Sequential(
            nn.Conv2d(32, 64, kernel_size=(3, 3)),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        self.layer4 = nn.Sequential(
            nn.Conv2d(64, 128, kernel_size=(3, 3)),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.fc = nn.Sequential(
            nn.Linear(128 * 4 * 4, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, 128),
            nn.Linear(128, 10),
        )

    def forward(self, x):
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = x.view(x.size(0), -1)
        x = self.fc(x)
        return x


# kit name, the seed's class, its constructor arguments, one sample's shape
CASES = [
    ("lenet", SeedLeNet, {}, (1, 28, 28)),
    ("mnist_cnn", SeedCNN, {}, (1, 28, 28)),
    ("alexnet", SeedAlexNet, {"num_class": 10}, (3, 224, 224)),
    ("vgg16", SeedVGG, {"num_class": 10}, (3, 224, 224)),
]


def _trained_looking(model: nn.Module, seed: int) -> nn.Module:
    """Random weights, and batch-norm statistics far from their 0/1 defaults."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 3 + 0.2)
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))
    return model.eval()


@pytest.mark.parametrize(
    ("name", "seed_class", "kwargs", "shape"), CASES, ids=[c[0] for c in CASES]
)
def test_seed_checkpoint_loads_strictly_and_computes_the_same(
    name: str, seed_class: type[nn.Module], kwargs: dict[str, int], shape: tuple[int, ...]
) -> None:
    torch.manual_seed(0)
    theirs = _trained_looking(seed_class(**kwargs), seed=1)
    ours = get_model(name, num_classes=10).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert [type(m) for m in ours.modules()][1:] == [type(m) for m in theirs.modules()][1:]
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, actual = theirs(x), ours(x)
    assert expected.abs().max() > 0
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_mnist_cnn_has_no_relu_between_its_last_two_linears() -> None:
    fc = get_model("mnist_cnn").fc
    assert [type(m) for m in fc] == [nn.Linear, nn.ReLU, nn.Linear, nn.Linear]
