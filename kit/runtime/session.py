"""``kit.runtime``: load an exported model and run it with onnxruntime, nothing else.

The facts export embedded in the ONNX metadata (input shape, mean/std, class names) are
all this needs; in an export directory, every file's sha256 is checked against
``manifest.json`` before anything runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .._native import compiled_run
from ..artifact import (
    FACTS_KEY,
    MANIFEST,
    MODEL_FILE,
    VARIANT_FILES,
    Manifest,
    ModelFacts,
)
from ..artifact import (
    open_export as verified_export,
)
from ..errors import ArtifactError, InputError, ProviderError, UsageError, first_line
from .preprocess import prepare_images
from .providers import create_session
from .reference import SelfCheck
from .validate import InputCheck

__all__ = ["Model", "Prediction", "load", "open_export", "precision_file"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One class of a classification: its label, index and probability."""

    label: str
    index: int
    probability: float


def _facts(session: ort.InferenceSession, path: Path) -> ModelFacts | None:
    """The facts in the file's metadata, checked against the graph they describe.

    Raises:
        ArtifactError: the graph has not one input, or the facts contradict it.
    """
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ArtifactError(f"{path} has {len(inputs)} inputs; kit models take one.")
    meta = session.get_modelmeta().custom_metadata_map
    if FACTS_KEY not in meta:
        return None
    facts = ModelFacts.from_json(meta[FACTS_KEY])
    graph = inputs[0].shape[1:]
    sample = facts.sample_shape()
    if len(graph) != len(sample) or any(
        isinstance(g, int) and g != f for g, f in zip(graph, sample, strict=False)
    ):
        said = [d if d is not None else "?" for d in sample]
        raise ArtifactError(
            f"{path}'s facts say input shape {said} but its graph takes "
            f"{['N', *graph]}; the file was edited after export, re-export it."
        )
    return facts


class Model:
    """An ONNX model with its facts. Safe to call from many threads at once."""

    def __init__(
        self, session: ort.InferenceSession, path: Path, *, io_binding: bool | None = None
    ) -> None:
        self.session = session
        self.path = path
        self.facts = _facts(session, path)
        inp = session.get_inputs()[0]
        self.input_name: str = inp.name
        self.output_names: list[str] = [o.name for o in session.get_outputs()]
        sample = self.facts.sample_shape() if self.facts else inp.shape[1:]
        self.input_shape: tuple[int | None, ...] = tuple(
            d if isinstance(d, int) else None for d in sample
        )
        self.name: str = self.facts.name if self.facts else path.stem
        self.class_names: list[str] = list(self.facts.class_names) if self.facts else []
        self.provider: str = session.get_providers()[0]
        self.precision = "fp32"  # set by load() from the manifest
        #: the export directory and its manifest, when loaded from one (for self_check)
        self.export: tuple[Path, Manifest] | None = None
        self.io_binding = (
            self.provider != "CPUExecutionProvider" if io_binding is None else io_binding
        )
        self.rules = self.facts.dynamic if self.facts else None
        self.check = InputCheck(self.input_shape, self.rules)
        self._device = "cuda" if self.provider == "CUDAExecutionProvider" else "cpu"
        # The compiled run on the CPU provider (kit has validated what the public wrapper
        # would re-check); the public one elsewhere, where its CPU fallback matters.
        native = compiled_run(session) if self.provider == "CPUExecutionProvider" else None
        self._run = native or session.run

    def __repr__(self) -> str:
        return f"Model(name={self.name!r}, input={self.input_shape}, provider={self.provider!r})"

    def input_problems(self, x: Any) -> list[str]:
        """Every reason ``x`` cannot be fed to the model, one sentence each."""
        return self.check.problems(x)

    def predict(self, x: np.ndarray, *, validate: bool = True) -> dict[str, np.ndarray]:
        """Run a batch. Returns ``{output name: array}`` (``{"logits": (N, classes)}``).

        The whole input is validated first (rank, shape, dtype, finite values); every
        problem is reported at once. ``validate=False`` skips that, for input already
        checked as strictly (``kit serve`` checks each request as it parses it).

        Raises:
            InputError: the input does not fit the model.
        """
        if validate:
            self.check(x)
        if self.io_binding:
            binding = self.session.io_binding()
            binding.bind_cpu_input(self.input_name, np.ascontiguousarray(x))
            for name in self.output_names:
                binding.bind_output(name, self._device)
            self.session.run_with_iobinding(binding)
            outputs = binding.copy_outputs_to_cpu()
        else:
            outputs = self._run(self.output_names, {self.input_name: x}, None)
        if len(outputs) == 1:  # the usual case; cheaper than zip on this path
            return {self.output_names[0]: outputs[0]}
        return dict(zip(self.output_names, outputs, strict=True))

    def fitted_shape(self, height: int, width: int) -> tuple[int, ...]:
        """The (C, H, W) an image of ``height`` x ``width`` is fed at (:func:`_fitted`)."""
        return _fitted(self, height, width)

    @property
    def example_shape(self) -> tuple[int | None, ...]:
        """One sample at the size the model was exported at (its facts' example; the
        graph's own shape, None where free, for a file without facts)."""
        return self.facts.input_shape if self.facts is not None else self.input_shape

    def preprocess(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """uint8 images (HxW, HxWxC; L/RGB/RGBA; any size) -> the model's normalised input,
        at :meth:`fitted_shape`'s size (one size per call).

        Raises:
            ArtifactError: the file carries no kit facts.
            InputError: an image is not one, or the images need different sizes.
        """
        shape = _one_size(self, images)  # refuses a file without facts
        assert self.facts is not None
        return prepare_images(images, shape, self.facts.mean, self.facts.std)

    @property
    def is_classifier(self) -> bool:
        """Whether the model has one output of shape (batch, classes)."""
        outputs = self.session.get_outputs()
        return len(outputs) == 1 and len(outputs[0].shape) == 2

    def classify(
        self, images: np.ndarray | Sequence[np.ndarray], top_k: int = 5
    ) -> list[list[Prediction]]:
        """The ``top_k`` most probable classes of each image, most probable first.

        Raises:
            ArtifactError: the model is not a classifier, or its output is not finite.
        """
        if not self.is_classifier:
            shapes = ", ".join(f"{o.name} {o.shape}" for o in self.session.get_outputs())
            raise ArtifactError(
                f"{self.name} is not a classifier (its outputs: {shapes}; a classifier has "
                "one output of shape [batch, classes]); use predict() for its raw outputs."
            )
        logits = self.predict(self.preprocess(images))[self.output_names[0]].astype(np.float64)
        if not np.isfinite(logits).all():
            raise ArtifactError(f"{self.name} answered with NaN or infinite logits.")
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        k = max(1, min(top_k, probs.shape[1]))
        results = []
        for row in probs:
            best = np.argsort(-row, kind="stable")[:k]
            results.append([Prediction(self.label(int(i)), int(i), float(row[i])) for i in best])
        return results

    def label(self, index: int) -> str:
        """Class name of ``index`` (the index itself when the model has no names)."""
        return self.class_names[index] if index < len(self.class_names) else str(index)

    def self_check(self) -> SelfCheck:
        """Run the export's reference inputs through this model and compare them with the
        eager outputs shipped beside it, by the rule its manifest records (a variant by
        top-1 agreement at its limit, on the real samples). Needs neither torch nor kit's
        exporter: what a deployment host can run before it serves.

        Returns:
            The check, every row of it passed.

        Raises:
            ArtifactError: a sample disagrees (the message names the sample set, the
                output and the difference), or there is no reference data to check with.
        """
        from .reference import check_model

        return check_model(self)

    def warmup(self, batch_sizes: Sequence[int] = (1,)) -> None:
        """Run zeros through the model once per batch size (allocations, cuDNN choices), at
        the example's size when the size varies."""
        shape = self.example_shape
        if not all(isinstance(d, int) for d in shape):
            return
        for b in batch_sizes:
            self.predict(np.zeros((b, *shape), dtype=np.float32))  # type: ignore[arg-type]


def _fitted(model: Model, height: int, width: int) -> tuple[int, ...]:
    """The (C, H, W) an image of ``height`` x ``width`` is fed to ``model`` at: its size,
    or for a model whose size varies, the image's own where the rules allow it, else the
    nearest they allow.

    Raises:
        ArtifactError: the file carries no kit facts (no input shape, no mean/std).
    """
    if model.facts is None or (model.rules is None and not model.check.fixed):
        raise ArtifactError(
            f"{model.path} carries no kit facts (input shape, mean/std); export it with kit "
            "to classify images."
        )
    if model.rules is None or not model.rules.spatial:
        return model.facts.input_shape
    return model.rules.fit(model.facts.input_shape, height, width)


def _one_size(model: Model, images: np.ndarray | Sequence[np.ndarray]) -> tuple[int, ...]:
    """The one size ``images`` are fed at.

    Raises:
        InputError: they need different sizes.
    """
    one = isinstance(images, np.ndarray) and images.ndim in (2, 3)
    listed = [images] if one else list(images)
    shapes = {model.fitted_shape(*np.shape(i)[:2]) for i in listed} or {model.fitted_shape(1, 1)}
    if len(shapes) > 1:
        sizes = ", ".join(sorted(str(s[1:]) for s in shapes))
        raise InputError(
            f"These images are fed at different sizes ({sizes}); preprocess them one call "
            "at a time."
        )
    return shapes.pop()


def open_export(directory: Path) -> Manifest:
    """An export directory's manifest, once every file it lists matches its sha256.

    Raises:
        ArtifactError: no manifest, an invalid one, or a missing or tampered file.
    """
    if not (directory / MANIFEST).is_file():
        raise ArtifactError(
            f"{directory} has no {MANIFEST}, so nothing in it can be verified; pass the .onnx "
            "file itself to load it unverified."
        )
    return verified_export(directory, "load")


def precision_file(directory: Path, manifest: Manifest, precision: str) -> Path:
    """The file of a verified export holding ``precision`` (``fp32``: ``model.onnx``).

    Raises:
        ArtifactError: no such file or variant.
        UsageError: an unknown precision.
    """
    if precision == "fp32":
        if MODEL_FILE not in manifest.files:
            raise ArtifactError(f"{directory} has no {MODEL_FILE}; export with onnx in --formats.")
        return directory / MODEL_FILE
    if precision not in manifest.onnx_variants:
        known = ", ".join(["fp32", *manifest.onnx_variants])
        if precision not in VARIANT_FILES:
            raise UsageError(f"Unknown precision {precision!r}; {directory} has {known}.")
        raise ArtifactError(
            f"{directory} has no {precision} variant (it has {known}); run kit quantize "
            f"{directory} --precision {precision}."
        )
    return directory / manifest.onnx_variants[precision].file


def load(
    path: str | os.PathLike[str],
    *,
    providers: Sequence[Any] | None = None,
    threads: int | None = None,
    warmup: bool = True,
    io_binding: bool | None = None,
    precision: str = "fp32",
) -> Model:
    """Load an ``exported/NAME`` directory (every sha256 verified) or a ``.onnx`` file.

    Args:
        path: Directory written by ``kit export`` or an ONNX file.
        precision: Which of a directory's files: ``fp32`` (``model.onnx``) or a variant
            ``kit quantize`` added (``int8``: ``model.int8.onnx``).
        providers: onnxruntime execution providers (default: CUDA when present, else CPU).
        threads: Intra-op threads (onnxruntime's default when None).
        warmup: Run the model once so the first real call is not slow.
        io_binding: Bind inputs and outputs explicitly (default: on for GPU providers).

    Raises:
        ArtifactError: missing file, sha256 mismatch against the manifest, or not ONNX.
        ProviderError: a provider named in ``providers`` cannot run here (only the
            default, ``providers=None``, falls back to the CPU).
    """
    p = Path(path)
    export = None
    if p.is_dir():
        export = (p, open_export(p))
        p = precision_file(p, export[1], precision)
    elif precision != "fp32":
        raise UsageError("precision picks a file of an export directory; pass the directory.")
    if not p.is_file():
        raise ArtifactError(f"{p} does not exist; pass an exported/NAME directory or a .onnx file.")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = create_session(p, providers, options)
    except ProviderError:
        raise
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise ArtifactError(f"onnxruntime cannot load {p}: {first_line(exc)}.") from None
    model = Model(session, p, io_binding=io_binding)
    model.precision, model.export = precision, export
    if warmup:
        model.warmup()
    log.info("loaded %s on %s", model.name, model.provider)
    return model
