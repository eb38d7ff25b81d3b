"""A user's own network, for ``--model tests.user_nets:tiny``."""

from torch import nn


def tiny() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)
    )
