"""Resolve what a user names with ``--model`` and load weights into it.

A name is either a registered network (``vgg16``) or a user's ``package.module:factory``
with an ``--input-shape``; both come back as a :class:`ModelSpec`, so every later stage
reads the same facts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from architectures import ModelSpec, TrainRecipe, UnknownModelError, get_spec, load_factory

from ._files import sha256_file
from .artifact import CLASS_NAMES_KEY, INPUT_SHAPE_KEY, MEAN_KEY, STD_KEY
from .errors import KitError, UsageError, WeightsError, first_line

__all__ = [
    "DEFAULT_SEED",
    "USER_RECIPE",
    "GivenFacts",
    "Network",
    "build_model",
    "checkpoint_facts",
    "factory_facts",
    "load_network",
    "load_weights",
    "parse_shape",
    "registered_spec",
    "resolve_spec",
    "with_facts",
]

log = logging.getLogger(__name__)

DEFAULT_SEED = 0
#: How ``kit train`` trains a user's network: the seed's recipe (Adam at 1e-3, batch 100,
#: 3 epochs, no schedule), on an ImageFolder (``--data-dir``).
USER_RECIPE = TrainRecipe(
    dataset="imagefolder",
    epochs=3,
    batch_size=100,
    optimizer="adam",
    lr=1e-3,
    weight_decay=0.0,
    schedule="constant",
)


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
        factory = _user_factory(name)
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
        recipe=USER_RECIPE,
        description=f"user network {name}",
    )


def _user_factory(name: str) -> Any:
    """The factory a user named on the command line, imported as ``python -m`` would: the
    current folder first on the module path (never for a name a file holds)."""
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        return load_factory(name)
    except UnknownModelError as exc:
        if "No module named" in str(exc):
            raise UnknownModelError(
                f"{exc} kit imports a network's module from the current folder ({here}) "
                "and the installed packages; run kit where the module is, or install it."
            ) from None
        raise


@dataclass(frozen=True)
class GivenFacts:
    """What the user, a checkpoint or a factory says about a network's input and output
    (None where nothing was said): the facts that make an artifact answer as trained."""

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    class_names: tuple[str, ...] | None = None
    input_shape: tuple[int, ...] | None = None

    def over(self, other: GivenFacts) -> GivenFacts:
        """These facts, with ``other``'s where these say nothing."""
        return GivenFacts(
            *(
                mine if mine is not None else theirs
                for mine, theirs in zip(
                    dataclasses.astuple(self), dataclasses.astuple(other), strict=True
                )
            )
        )

    @property
    def normalisation(self) -> bool:
        return self.mean is not None or self.std is not None

    def to_metadata(self) -> dict[str, str]:
        """The facts as a checkpoint's safetensors metadata (JSON strings)."""
        keys = {
            MEAN_KEY: self.mean,
            STD_KEY: self.std,
            CLASS_NAMES_KEY: self.class_names,
            INPUT_SHAPE_KEY: self.input_shape,
        }
        return {k: json.dumps(list(v)) for k, v in keys.items() if v is not None}


def _per_channel(values: tuple[float, ...], channels: int, flag: str) -> tuple[float, ...]:
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise UsageError(
            f"{flag} has {len(values)} values for {channels} input channels; give one per "
            "channel, or one for all."
        )
    return values


def with_facts(spec: ModelSpec, given: GivenFacts) -> ModelSpec:
    """``spec`` with the facts ``given`` (one mean or std value stands for every channel).

    Raises:
        UsageError: a mean or std that does not fit the channels, or a std that is not
            positive.
    """
    shape = tuple(given.input_shape or spec.input_shape)
    channels = shape[0]
    mean = _per_channel(given.mean, channels, "--mean") if given.mean else spec.mean
    std = _per_channel(given.std, channels, "--std") if given.std else spec.std
    if len(mean) != channels or len(std) != channels:
        raise UsageError(
            f"{spec.name} takes {channels}-channel input but its normalisation has "
            f"{len(mean)} values; pass --mean and --std for {channels} channels."
        )
    if not all(math.isfinite(m) for m in mean) or not all(v > 0 and math.isfinite(v) for v in std):
        raise UsageError("--mean must be finite numbers and --std positive ones.")
    names = tuple(given.class_names) if given.class_names is not None else spec.class_names
    return dataclasses.replace(spec, input_shape=shape, mean=mean, std=std, class_names=names)


def checkpoint_facts(path: Path) -> GivenFacts:
    """The facts a ``.safetensors`` checkpoint's metadata carries (``kit train`` writes its
    data's class names, mean and std and the input shape); a value that is not what kit
    writes is left out."""
    if path.suffix != ".safetensors":
        return GivenFacts()
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:  # unreadable metadata is no metadata: the weights were read already
        return GivenFacts()
    return GivenFacts(
        mean=_numbers(meta.get(MEAN_KEY), float),
        std=_numbers(meta.get(STD_KEY), float),
        class_names=_names(meta.get(CLASS_NAMES_KEY)),
        input_shape=_numbers(meta.get(INPUT_SHAPE_KEY), int),
    )


def _numbers(text: str | None, kind: type) -> Any:
    try:
        values = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(values, list) or not 0 < len(values) <= 4:
        return None
    ok = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if not ok or (kind is int and not all(isinstance(v, int) and v > 0 for v in values)):
        return None
    return tuple(kind(v) for v in values)


def _names(text: str | None) -> tuple[str, ...] | None:
    try:
        names = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(names, list) or not names:
        return None
    if not all(isinstance(n, str) and 0 < len(n) <= 200 for n in names):
        return None
    return tuple(names)


def factory_facts(model: nn.Module) -> GivenFacts:
    """What a user's network says of itself in a ``kit_facts`` dict attribute (``mean``,
    ``std``, ``class_names``, ``input_shape``), as timm's ``pretrained_cfg`` does."""
    said = getattr(model, "kit_facts", None)
    if not isinstance(said, dict):
        return GivenFacts()
    return GivenFacts(
        mean=_numbers(json.dumps(said.get("mean")), float) if said.get("mean") else None,
        std=_numbers(json.dumps(said.get("std")), float) if said.get("std") else None,
        class_names=_names(json.dumps(said.get("class_names")))
        if said.get("class_names")
        else None,
        input_shape=_numbers(json.dumps(said.get("input_shape")), int)
        if said.get("input_shape")
        else None,
    )


def build_model(
    spec: ModelSpec,
    *,
    num_classes: int | None = None,
    seed: int = DEFAULT_SEED,
    fit: bool = False,
) -> nn.Module:
    """Build the network in eval mode with weights drawn from ``seed``.

    ``fit``: a user's factory that takes no ``num_classes`` is called without it (the
    caller checks the width it answers: training on data with its own classes).

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
        if user and fit and "num_classes" in str(exc):
            return build_model(spec, seed=seed)
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


def run_example(
    spec: ModelSpec, model: nn.Module, example: torch.Tensor, error: type[KitError] = UsageError
) -> Any:
    """``model``'s output for ``example``, without gradients.

    Raises:
        KitError: ``error``, in one sentence, when the network fails on it (layers that do
            not fit the input shape; a user's network can fail in any way).
    """
    try:
        with torch.no_grad():
            return model(example)
    except Exception as exc:
        raise error(
            f"{spec.name} fails on an input of shape {tuple(example.shape)}: "
            f"{first_line(exc)}; check --input-shape."
        ) from exc


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
    """An eager network ready to export or evaluate, what it was built from, and what its
    checkpoint and the network itself say of its input and classes."""

    model: nn.Module
    num_classes: int | None
    weights_sha256: str | None
    facts: GivenFacts = GivenFacts()

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.facts.class_names or ()


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
        return Network(model, num_classes or spec.num_classes or None, None, factory_facts(model))
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
    return Network(model, classes, sha, checkpoint_facts(weights).over(factory_facts(model)))
