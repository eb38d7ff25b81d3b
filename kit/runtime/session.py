"""``kit.runtime``: load an exported model and run it with onnxruntime, nothing else.

The facts export embedded in the ONNX metadata (input shape, mean/std, class names) are
all this needs; with a ``manifest.json`` beside the model every file's sha256 is checked
before anything runs.
"""

from __future__ import annotations

import logging
import math
import os
import sys
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
    ModelFacts,
    read_manifest,
    verify_files,
)
from ..errors import ArtifactError, InputError, ProviderError, UsageError
from .preprocess import prepare_images

__all__ = [
    "Model",
    "Prediction",
    "check_providers",
    "cuda_available",
    "cuda_providers",
    "default_providers",
    "load",
]

log = logging.getLogger(__name__)

#: inputs up to this many values are checked with a single-threaded BLAS dot product
_DOT_LIMIT = 8192
_FLOAT32 = np.dtype(np.float32)  # numpy's one float32 dtype object: `is` is the cheap test


@dataclass(frozen=True)
class Prediction:
    """One class of a classification: its label, index and probability."""

    label: str
    index: int
    probability: float


def _gpu_present() -> bool:
    if sys.platform.startswith("linux"):
        return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia")
    return True  # elsewhere let onnxruntime find out


def cuda_available() -> bool:
    """Whether this onnxruntime has CUDA and the machine has an NVIDIA GPU.

    onnxruntime-gpu lists CUDA as available even without a GPU, so the device nodes are
    checked too.
    """
    return "CUDAExecutionProvider" in ort.get_available_providers() and _gpu_present()


def cuda_providers(*, tf32: bool = True) -> list[Any]:
    """CUDA, then the CPU for what CUDA lacks; the one place kit sets CUDA's options.

    ``tf32=False`` keeps fp32 convolutions and matrix products in fp32 (parity measures
    fp32 against fp32).
    """
    try:
        ort.preload_dlls()  # CUDA/cuDNN from the nvidia-* wheels, without importing torch
    except Exception as exc:  # older onnxruntime, or libraries elsewhere on the path
        log.debug("onnxruntime.preload_dlls failed: %s", exc)
    options: dict[str, Any] = {"cudnn_conv_algo_search": "HEURISTIC"}
    if not tf32:
        options["use_tf32"] = 0
    return [("CUDAExecutionProvider", options), "CPUExecutionProvider"]


def default_providers() -> list[Any]:
    """CUDA (then CPU) when :func:`cuda_available`, else the CPU; :attr:`Model.provider`
    says what really runs."""
    return cuda_providers() if cuda_available() else ["CPUExecutionProvider"]


def _provider_name(entry: Any) -> str:
    return entry if isinstance(entry, str) else str(entry[0])


def check_providers(providers: Sequence[Any]) -> None:
    """Refuse, in one sentence, a GPU provider asked for by name that cannot run here.

    Raises:
        ProviderError: this onnxruntime lacks the provider, or (CUDA) there is no GPU.
    """
    first = _provider_name(providers[0]) if providers else "CPUExecutionProvider"
    if first == "CPUExecutionProvider":
        return
    if first not in ort.get_available_providers():
        raise ProviderError(
            f"{first} was asked for, but this onnxruntime ({ort.__version__}) does not have it; "
            "install onnxruntime-gpu, or use --provider cpu (or auto)."
        )
    if first == "CUDAExecutionProvider" and not _gpu_present():
        raise ProviderError(
            "CUDA was asked for, but this machine has no NVIDIA GPU (no /dev/nvidiactl); "
            "use --provider cpu (or auto)."
        )


def _create_session(path: Path, options: Any, providers: Sequence[Any] | None) -> Any:
    """An InferenceSession on ``providers``, strictly: a named GPU provider must start.

    With ``providers`` None (auto) CUDA is tried where a GPU is present and the CPU takes
    over if it cannot start, with one log line saying so.
    """
    chosen = list(providers) if providers else default_providers()
    if providers:
        check_providers(chosen)
    session = ort.InferenceSession(str(path), options, providers=chosen)
    asked, running = _provider_name(chosen[0]), session.get_providers()[0]
    if asked != running:
        if providers:
            raise ProviderError(
                f"onnxruntime could not start {asked} for {path.name} (its libraries, e.g. "
                "CUDA or cuDNN, are missing or do not match); run with -v for onnxruntime's "
                "log, or use --provider cpu (or auto)."
            )
        log.warning("%s is unavailable; %s runs on %s", asked, path.name, running)
    return session


def _precision_file(directory: Path, precision: str) -> str:
    """The file of ``directory`` holding ``precision``.

    Raises:
        UsageError: no such precision.
        ArtifactError: the directory has no variant of that precision.
    """
    if precision == "fp32":
        return MODEL_FILE
    if precision not in VARIANT_FILES:
        raise UsageError(
            f"Unknown precision {precision!r}; choose from fp32, {', '.join(VARIANT_FILES)}."
        )
    name = VARIANT_FILES[precision]
    if not (directory / name).is_file():
        raise ArtifactError(
            f"{directory} has no {precision} variant ({name}); run kit quantize {directory}."
        )
    return name


def _precision_of(path: Path) -> str:
    return next((p for p, name in VARIANT_FILES.items() if path.name == name), "fp32")


def _verify_manifest(directory: Path) -> None:
    problems = verify_files(directory, read_manifest(directory)["files"])
    if problems:
        raise ArtifactError(f"Refusing to load {directory}: {'; '.join(problems)}.")


class Model:
    """An ONNX classifier with its facts. Safe to call from many threads at once."""

    def __init__(
        self, session: ort.InferenceSession, path: Path, *, io_binding: bool | None = None
    ) -> None:
        self.session = session
        self.path = path
        meta = session.get_modelmeta().custom_metadata_map
        self.facts: ModelFacts | None = (
            ModelFacts.from_json(meta[FACTS_KEY]) if FACTS_KEY in meta else None
        )
        inp = session.get_inputs()[0]
        if len(session.get_inputs()) != 1:
            raise ArtifactError(
                f"{path} has {len(session.get_inputs())} inputs; kit models take one."
            )
        self.input_name: str = inp.name
        self.input_type: str = inp.type
        self.output_names: list[str] = [o.name for o in session.get_outputs()]
        sample = (
            self.facts.input_shape
            if self.facts
            else [d if isinstance(d, int) else None for d in inp.shape[1:]]
        )
        self.input_shape: tuple[int | None, ...] = tuple(sample)
        self.name: str = self.facts.name if self.facts else path.stem
        self.class_names: list[str] = list(self.facts.class_names) if self.facts else []
        self.provider: str = session.get_providers()[0]
        self.precision = "fp32"  # set by load() from the file it read
        self.io_binding = (
            self.provider != "CPUExecutionProvider" if io_binding is None else io_binding
        )
        self._rank = 1 + len(self.input_shape)
        self._fixed = all(isinstance(d, int) for d in self.input_shape)
        self._zeros = np.zeros(math.prod(self.input_shape) if self._fixed else 0, np.float32)  # type: ignore[arg-type]
        self._device = "cuda" if self.provider == "CUDAExecutionProvider" else "cpu"
        self._run = self._native_run(session)

    def _native_run(self, session: ort.InferenceSession) -> Any:
        """The run to call once :meth:`_check` has passed: the compiled one on the CPU
        provider (kit has validated what the public wrapper would re-check), the public
        one elsewhere, where its CPU fallback matters, or if onnxruntime stops exposing it.
        """
        native = compiled_run(session) if self.provider == "CPUExecutionProvider" else None
        return native or session.run

    def __repr__(self) -> str:
        return f"Model(name={self.name!r}, input={self.input_shape}, provider={self.provider!r})"

    # -- validation ---------------------------------------------------------------------
    def input_problems(self, x: Any) -> list[str]:
        """Every reason ``x`` cannot be fed to the model, one sentence each."""
        if not isinstance(x, np.ndarray):
            return [f"The input must be a numpy array, not {type(x).__name__}."]
        problems = []
        if x.dtype != np.float32:
            problems.append(f"The input has dtype {x.dtype}; the model takes float32.")
        expected = ("N", *self.input_shape)
        if x.ndim != self._rank:
            problems.append(
                f"The input has {x.ndim} dimensions {x.shape}; the model takes {self._rank} {expected}."
            )
        else:
            if x.shape[0] == 0:
                problems.append("The input batch is empty; send at least one sample.")
            for axis, (got, want) in enumerate(
                zip(x.shape[1:], self.input_shape, strict=True), start=1
            ):
                if want is not None and got != want:
                    problems.append(
                        f"Dimension {axis} of the input is {got}; the model takes {want} there {expected}."
                    )
        if x.dtype.kind == "f" and x.size and not np.isfinite(x).all():
            bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
            problems.append(f"The input holds {bad} NaN or infinite value(s).")
        return problems

    def _check(self, x: Any) -> None:
        # Fast path for a well-formed batch of a fixed-shape model: attribute reads and one
        # finiteness test. Small inputs (the latency-bound case) use a BLAS dot product with
        # zeros: 0 when every value is finite, NaN as soon as one is NaN or infinite (0 * inf
        # is NaN); it cannot overflow, and unlike a numpy reduction it does not slow the small
        # session.run that follows. Large inputs use np.isfinite: BLAS would start its own
        # threads there, and they spin on the cores onnxruntime is about to use.
        # (A shape with a None in it never equals x.shape[1:], so a model with free
        # dimensions always takes the full check.)
        if (
            type(x) is np.ndarray
            and x.dtype is _FLOAT32
            and x.shape[1:] == self.input_shape
            and x.shape[0]
        ):
            size = x.size
            if size > _DOT_LIMIT:
                if np.isfinite(x).all():
                    return
            elif size == self._zeros.size:  # batch 1; vdot, unlike dot, raises no FP warning
                if not np.vdot(x, self._zeros):
                    return
            else:
                with np.errstate(invalid="ignore"):  # a NaN here is an answer, not a warning
                    rows = np.dot(x.reshape(x.shape[0], -1), self._zeros)  # 0 or NaN per sample
                if not np.vdot(rows, rows):
                    return
        problems = self.input_problems(x)
        if problems:
            raise InputError(" ".join(problems))

    # -- inference ----------------------------------------------------------------------
    def predict(self, x: np.ndarray, *, validate: bool = True) -> dict[str, np.ndarray]:
        """Run a batch. Returns ``{output name: array}`` (``{"logits": (N, classes)}``).

        The whole input is validated first (rank, shape, dtype, finite values);
        every problem is reported at once. ``validate=False`` skips that, for input already
        checked as strictly: ``kit serve`` checks each request as it parses it, and a batch
        merged from checked requests needs no second pass.

        Raises:
            InputError: the input does not fit the model.
        """
        if validate:
            self._check(x)
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

    def preprocess(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """uint8 images (HxW, HxWxC; L/RGB/RGBA; any size) -> the model's normalised input."""
        if not self._fixed or self.facts is None:
            raise ArtifactError(
                f"{self.path} carries no kit facts (input shape, mean/std); export it with kit to classify images."
            )
        return prepare_images(images, self.input_shape, self.facts.mean, self.facts.std)  # type: ignore[arg-type]

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
            ArtifactError: the model is not a classifier (see :attr:`is_classifier`).
        """
        if not self.is_classifier:
            shapes = ", ".join(f"{o.name} {o.shape}" for o in self.session.get_outputs())
            raise ArtifactError(
                f"{self.name} is not a classifier (its outputs: {shapes}; a classifier has "
                "one output of shape [batch, classes]); use predict() for its raw outputs."
            )
        logits = self.predict(self.preprocess(images))[self.output_names[0]].astype(np.float64)
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

    def warmup(self, batch_sizes: Sequence[int] = (1,)) -> None:
        """Run zeros through the model once per batch size (allocations, cuDNN choices)."""
        if not self._fixed:
            return
        for b in batch_sizes:
            shape = (b, *(int(d) for d in self.input_shape if d is not None))
            self.predict(np.zeros(shape, dtype=np.float32))


def load(
    path: str | os.PathLike[str],
    *,
    providers: Sequence[Any] | None = None,
    threads: int | None = None,
    warmup: bool = True,
    io_binding: bool | None = None,
    precision: str = "fp32",
) -> Model:
    """Load an ``exported/NAME`` directory or a ``.onnx`` file.

    Args:
        path: Directory written by ``kit export`` or an ONNX file.
        precision: Which of a directory's files: ``fp32`` (``model.onnx``) or a variant
            ``kit quantize`` added (``int8``: ``model.int8.onnx``).
        providers: onnxruntime execution providers (default: :func:`default_providers`).
        threads: Intra-op threads (onnxruntime's default when None).
        warmup: Run the model once so the first real call is not slow.
        io_binding: Bind inputs and outputs explicitly (default: on for GPU providers).

    Raises:
        ArtifactError: missing file, sha256 mismatch against the manifest, or not ONNX.
        ProviderError: a provider named in ``providers`` cannot run here (only the
            default, ``providers=None``, falls back to the CPU).
    """
    p = Path(path)
    if p.is_dir():
        if (p / MANIFEST).is_file():
            _verify_manifest(p)
        p = p / _precision_file(p, precision)
    if not p.is_file():
        raise ArtifactError(f"{p} does not exist; pass an exported/NAME directory or a .onnx file.")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = _create_session(p, options, providers)
    except ProviderError:
        raise
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"onnxruntime cannot load {p}: {first}") from None
    model = Model(session, p, io_binding=io_binding)
    model.precision = _precision_of(p)
    if warmup:
        model.warmup()
    log.info("loaded %s on %s", model.name, model.provider)
    return model
