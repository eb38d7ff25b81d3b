"""Resolve what a user names with ``--model`` and load weights into it.

A name is either a registered network (``vgg16``) or a user's ``package.module:factory``
with an ``--input-shape``; both come back as a :class:`ModelSpec`, so every later stage
reads the same facts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from architectures import ModelSpec, UnknownModelError, get_spec, load_factory

from ._files import sha256_file
from .artifact import CLASS_NAMES_KEY
from .errors import KitError, UsageError, WeightsError, first_line

__all__ = [
    "DEFAULT_SEED",
    "Network",
    "build_model",
    "load_network",
    "load_weights",
    "parse_shape",
    "registered_spec",
    "resolve_spec",
]

log = logging.getLogger(__name__)

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


def registered_spec(name: str, input_shape: tuple[int, ...] | None = None) -> ModelSpec:
    """The spec of a network kit registers (never an import: what a file names comes here).

    Raises:
        UnknownModelError: ``name`` is not registered.
    """
    spec = get_spec(name)
    if input_shape is not None and tuple(input_shape) != spec.input_shape:
        spec = dataclasses.replace(spec, input_shape=tuple(input_shape))
    return spec


def resolve_spec(name: str, input_shape: tuple[int, ...] | None = None) -> ModelSpec:
    """The spec of a registered name, or one made for a user's ``module:factory``: a name
    the user gave (``--model``, ``--factory``), never one a file holds.

    Raises:
        UsageError: unknown name, or a factory without ``input_shape``.
    """
    if ":" not in name:
        try:
            return registered_spec(name, input_shape)
        except UnknownModelError as exc:
            raise UsageError(str(exc)) from None
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
    """Build the network in eval mode with weights drawn from ``seed``.

    Raises:
        UsageError: a user's factory that does not take ``num_classes`` was given one.
        KitError: the factory failed; the message names it and its error.
    """
    torch.manual_seed(seed)
    user = spec.num_classes == 0
    try:
        if user and num_classes is None:  # a user's factory: call as it is
            model = spec.builder()
        else:
            model = spec.builder(num_classes=num_classes or spec.num_classes)
    except TypeError as exc:
        if user and "num_classes" in str(exc):
            raise UsageError(
                f"The factory for {spec.name} does not take num_classes; leave out --num-classes."
            ) from None
        raise KitError(f"Building {spec.name} failed: {first_line(exc)}.") from exc
    except Exception as exc:  # a user's factory can fail in any way
        raise KitError(f"Building {spec.name} failed: {first_line(exc)}.") from exc
    if not isinstance(model, nn.Module):
        raise KitError(
            f"The factory for {spec.name} returned {type(model).__name__}, not a torch nn.Module."
        )
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


def _fit_problems(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> list[str]:
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
    return problems


def load_weights(model: nn.Module, path: Path, state: dict[str, torch.Tensor] | None = None) -> str:
    """Load a state_dict file into ``model`` strictly; return the file's sha256.

    ``state`` is the file's content when the caller has read it already.

    Raises:
        WeightsError: the file cannot be read, or its keys or shapes do not fit; the
            message names the missing, unexpected and mis-shaped parameters.
    """
    state = read_state_dict(path) if state is None else state
    problems = _fit_problems(model.state_dict(), state)
    if problems:
        raise WeightsError(f"Weights in {path} do not fit the network ({'; '.join(problems)}).")
    model.load_state_dict(state)
    return sha256_file(path)


class Network(NamedTuple):
    """An eager network ready to export or evaluate, and what it was built from (with the
    class names its checkpoint carries from the data it was trained on, if any)."""

    model: nn.Module
    num_classes: int | None
    weights_sha256: str | None
    class_names: tuple[str, ...] = ()


def checkpoint_class_names(path: Path, classes: int | None) -> tuple[str, ...]:
    """The class names in a ``.safetensors`` checkpoint's metadata (``kit train`` writes them
    from the data), when they are ``classes`` strings; otherwise none."""
    if path.suffix != ".safetensors" or not classes:
        return ()
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            text = (f.metadata() or {}).get(CLASS_NAMES_KEY)
        names = json.loads(text) if text else None
    except Exception:  # unreadable metadata is no metadata: the weights were read already
        return ()
    if not isinstance(names, list) or len(names) != classes:
        return ()
    if not all(isinstance(n, str) and 0 < len(n) <= 200 for n in names):
        return ()
    return tuple(names)


def _classes_for(
    spec: ModelSpec, state: dict[str, torch.Tensor], asked: int | None, path: Path
) -> int | None:
    """The class count to build ``spec`` with for the weights ``state`` read from ``path``.

    A registered network's head tells how many classes a weights file holds; without
    ``asked`` that count is taken (and logged), with it the two must agree.

    Raises:
        UsageError: ``asked`` disagrees with the file.
    """
    found = spec.classes_in(state)
    if found is None:
        return asked
    if asked is not None and asked != found:
        raise UsageError(
            f"--num-classes {asked} disagrees with {path}: its head {spec.head} has {found} "
            f"classes; pass --num-classes {found} or leave the option out."
        )
    if asked is None and found != spec.num_classes:
        log.warning(
            "%s holds %d classes (%s); building %s with --num-classes %d",
            path,
            found,
            spec.head,
            spec.name,
            found,
        )
    return found


def load_network(
    spec: ModelSpec,
    *,
    weights: Path | None = None,
    num_classes: int | None = None,
    seed: int = DEFAULT_SEED,
) -> Network:
    """Build ``spec``'s network and load ``weights`` into it, if given.

    Without ``num_classes`` a registered network takes its class count from the weights
    file; a user's ``module:factory`` cannot be read that way, so a misfit there says to
    pass ``--num-classes``.

    Raises:
        UsageError: ``num_classes`` disagrees with the weights file.
        WeightsError: the file is unreadable or does not fit the network.
    """
    if weights is None:
        model = build_model(spec, num_classes=num_classes, seed=seed)
        return Network(model, num_classes or spec.num_classes or None, None)
    state = read_state_dict(weights)
    num_classes = _classes_for(spec, state, num_classes, weights)
    model = build_model(spec, num_classes=num_classes, seed=seed)
    try:
        sha = load_weights(model, weights, state)
    except WeightsError as exc:
        if spec.head is None and num_classes is None:
            raise WeightsError(
                f"{exc} kit cannot read a user network's class count from its weights: "
                "pass --num-classes N if the head's size is what differs."
            ) from None
        raise
    classes = num_classes or spec.num_classes or None
    return Network(model, classes, sha, checkpoint_class_names(weights, classes))
