"""Users' own networks, for ``--model tests.user_nets:NAME``."""

import torch
from torch import nn


def tiny() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)
    )


def loud(num_classes: int = 10) -> nn.Module:
    """A classifier whose outputs are in the hundreds (as some trained networks' are)."""
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 8 * 8, num_classes),
    )
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(12.0)
    return model


class _Diverging(nn.Module):
    """Computes something else when exported or traced: a real divergence for parity."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x.flatten(1))
        if torch.compiler.is_exporting() or torch.jit.is_tracing():
            y = y + 0.01
        return y


def diverging() -> nn.Module:
    return _Diverging()


class _Interrupting(_Diverging):
    """Ctrl-C arrives while parity runs its batch of 3 (never while exporting)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        exporting = torch.compiler.is_exporting() or torch.jit.is_tracing()
        if not exporting and x.shape[0] == 3:
            raise KeyboardInterrupt
        return self.fc(x.flatten(1))


def interrupting() -> nn.Module:
    return _Interrupting()


class _Segmenter(nn.Module):
    """Returns ``{"out": mask logits, "aux": a second head}`` like torchvision's segmenters."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 8, 3, padding=1)
        self.out = nn.Conv2d(8, 4, 1)
        self.aux = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = torch.relu(self.body(x))
        return {"out": self.out(h), "aux": self.aux(h)}


def segmenter() -> nn.Module:
    return _Segmenter()


class _TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 16)
        self.cls = nn.Linear(16, 3)
        self.box = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.fc(x.flatten(1)))
        return self.cls(h), self.box(h)


def two_heads() -> nn.Module:
    return _TwoHeads()


class _Nested(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        return {"parts": [x.mean((1, 2, 3)), x.amax((1, 2, 3))]}


def nested() -> nn.Module:
    return _Nested()


def broken() -> nn.Module:
    raise RuntimeError("weights server unreachable")


class _Detector(nn.Module):
    """Scores and integer labels, as detection heads return them."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 6)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = self.fc(x.flatten(1)).softmax(1)
        return {"scores": scores, "labels": scores.argmax(1)}


def detector() -> nn.Module:
    return _Detector()


class _Outlier(nn.Module):
    """One channel of its features is 10,000x the others: per-tensor int8 activations then
    round the other channels away, and naive quantization loses the prediction."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 10)
        scale = torch.ones(1, 8, 1, 1)
        scale[0, 0] = 1e4
        self.register_buffer("scale", scale)
        with torch.no_grad():  # the outlier channel barely reaches the logits
            self.fc.weight.view(10, 8, 64)[:, 0] *= 1e-5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)) * self.scale
        return self.fc(h.flatten(1))


def outlier() -> nn.Module:
    return _Outlier()


def hardswish() -> nn.Module:
    """Conv, HardSwish, Linear: ORT runs HardSwish as HardSigmoid x input, and HardSigmoid
    is outside ORT Mobile's default operator set."""
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Hardswish(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))


def shapes(num_classes: int = 3) -> nn.Module:
    """A user's small CNN for 3x32x32 pictures (the shapes of tests/shapes.py)."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, num_classes),
    )


class _UNet(nn.Module):
    """Two downsamplings, two upsamplings, skip concatenations: sizes must be multiples of 4
    (at an odd size the concatenated maps differ by a pixel)."""

    def __init__(self) -> None:
        super().__init__()
        self.d1 = nn.Conv2d(3, 4, 3, padding=1)
        self.d2 = nn.Conv2d(4, 8, 3, padding=1)
        self.d3 = nn.Conv2d(8, 8, 3, padding=1)
        self.up2 = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.u2 = nn.Conv2d(16, 4, 3, padding=1)
        self.up1 = nn.ConvTranspose2d(4, 4, 2, stride=2)
        self.u1 = nn.Conv2d(8, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.d1(x))
        b = torch.relu(self.d2(nn.functional.max_pool2d(a, 2)))
        c = torch.relu(self.d3(nn.functional.max_pool2d(b, 2)))
        u = torch.relu(self.u2(torch.cat([self.up2(c), b], 1)))
        return self.u1(torch.cat([self.up1(u), a], 1))


def unet() -> nn.Module:
    torch.manual_seed(0)
    return _UNet()


def lraspp(num_classes: int = 3) -> nn.Module:
    """torchvision's LR-ASPP segmenter (MobileNetV3 backbone), random weights, no download:
    its mask follows the input's height and width."""
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    torch.manual_seed(0)
    return lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)
