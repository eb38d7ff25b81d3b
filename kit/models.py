"""Resolve what a user names with ``--model`` and load weights into it.

A name is either a registered network (``vgg16``) or a user's ``package.module:factory``
with an ``--input-shape``; both come back as a :class:`ModelSpec`, so every later stage
reads the same facts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from architectures import ModelSpec, UnknownModelError, get_spec, load_factory

from ._files import sha256_file
from .errors import UsageError, WeightsError

__all__ = ["DEFAULT_SEED", "build_model", "load_weights", "parse_shape", "resolve_spec"]

DEFAULT_SEED = 0


def parse_shape(text: str) -> tuple[int, ...]:
    """``"3,32,32"`` -> ``(3, 32, 32)``.

    Raises:
        UsageError: not a comma-separated list of positive integers.
    """
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if not shape or any(v <= 0 for v in shape):
        raise UsageError(f"Input shape {text!r} must be positive integers like 3,32,32.")
    return shape


def resolve_spec(name: str, input_shape: tuple[int, ...] | None = None) -> ModelSpec:
    """The spec of a registered name, or one made for a user's ``module:factory``.

    Raises:
        UsageError: unknown name, or a factory without ``input_shape``.
    """
    if ":" not in name:
        try:
            spec = get_spec(name)
        except UnknownModelError as exc:
            raise UsageError(str(exc)) from None
        if input_shape is not None and tuple(input_shape) != spec.input_shape:
            spec = dataclasses.replace(spec, input_shape=tuple(input_shape))
        return spec
    try:
        factory = load_factory(name)
    except UnknownModelError as exc:
        raise UsageError(str(exc)) from None
    if input_shape is None:
        raise UsageError(f"--model {name} is not registered, so it needs --input-shape (3,32,32).")
    channels = input_shape[0]
    return ModelSpec(
        name=name.rpartition(":")[2],
        builder=factory,
        input_shape=tuple(input_shape),
        mean=(0.0,) * channels,
        std=(1.0,) * channels,
        num_classes=0,
        class_names=(),
        description=f"user network {name}",
    )


def build_model(
    spec: ModelSpec, *, num_classes: int | None = None, seed: int = DEFAULT_SEED
) -> nn.Module:
    """Build the network in eval mode with weights drawn from ``seed``."""
    torch.manual_seed(seed)
    if spec.num_classes == 0 and num_classes is None:  # a user's factory: call as it is
        model = spec.builder()
    else:
        model = spec.builder(num_classes=num_classes or spec.num_classes)
    return model.eval()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state_dict from ``.safetensors`` or ``.pt``/``.pth`` (``weights_only=True``).

    A ``.pt`` file holding ``{"state_dict": ...}`` or ``{"model": ...}`` is unwrapped.

    Raises:
        WeightsError: missing, unreadable, or not a state_dict.
    """
    if not path.is_file():
        raise WeightsError(f"Weights file {path} does not exist.")
    try:
        state: Any
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors and pickle raise many types for a bad file
        raise WeightsError(f"Cannot read weights from {path}: {exc}".rstrip(".") + ".") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state_dict (a mapping of names to tensors).")
    return state


def load_weights(model: nn.Module, path: Path) -> str:
    """Load a state_dict file into ``model`` strictly; return the file's sha256.

    Raises:
        WeightsError: the file cannot be read, or its keys or shapes do not fit; the
            message names the missing, unexpected and mis-shaped parameters.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mis_shaped = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problems = []
    for label, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", mis_shaped),
    ):
        if items:
            shown = ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise WeightsError(f"Weights in {path} do not fit the network ({'; '.join(problems)}).")
    model.load_state_dict(state)
    return sha256_file(path)
