"""Which onnxruntime execution provider runs, decided in one place.

A provider asked for by name runs or stops with one sentence (:class:`ProviderError`);
only the default (``providers=None``) falls back to the CPU, with one log line saying so.
onnxruntime-gpu lists CUDA as available on any machine, so the NVIDIA device nodes are
checked too, and after a session starts, what really runs is read back from it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort

from ..errors import ProviderError

__all__ = [
    "check_providers",
    "create_session",
    "cuda_available",
    "cuda_providers",
    "default_providers",
    "provider_name",
]

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def _gpu_present() -> bool:
    if sys.platform.startswith("linux"):
        return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia")
    return True  # elsewhere let onnxruntime find out


def cuda_available() -> bool:
    """Whether this onnxruntime has CUDA and the machine has an NVIDIA GPU."""
    return CUDA in ort.get_available_providers() and _gpu_present()


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
    return [(CUDA, options), CPU]


def default_providers() -> list[Any]:
    """CUDA (then CPU) when :func:`cuda_available`, else the CPU."""
    return cuda_providers() if cuda_available() else [CPU]


def provider_name(entry: Any) -> str:
    """``"CUDAExecutionProvider"`` for a name or a ``(name, options)`` pair."""
    return entry if isinstance(entry, str) else str(entry[0])


def check_providers(providers: Sequence[Any]) -> None:
    """Refuse, in one sentence, a GPU provider asked for by name that cannot run here.

    Raises:
        ProviderError: this onnxruntime lacks the provider, or (CUDA) there is no GPU.
    """
    first = provider_name(providers[0]) if providers else CPU
    if first == CPU:
        return
    if first not in ort.get_available_providers():
        raise ProviderError(
            f"{first} was asked for, but this onnxruntime ({ort.__version__}) does not have it; "
            "install onnxruntime-gpu, or use --provider cpu (or auto)."
        )
    if first == CUDA and not _gpu_present():
        raise ProviderError(
            "CUDA was asked for, but this machine has no NVIDIA GPU (no /dev/nvidiactl); "
            "use --provider cpu (or auto)."
        )


def create_session(
    model: Path | bytes,
    providers: Sequence[Any] | None,
    options: Any = None,
    *,
    strict: bool | None = None,
) -> ort.InferenceSession:
    """An InferenceSession on ``providers``, strictly: a provider named must start.

    With ``providers`` None (auto) CUDA is tried where a GPU is present and the CPU takes
    over if it cannot start, with one log line saying so; ``strict=False`` allows that
    fallback for providers named too (``session.get_providers()`` says what runs).

    Raises:
        ProviderError: a provider asked for by name cannot run here.
    """
    chosen = list(providers) if providers else default_providers()
    strict = bool(providers) if strict is None else strict
    if strict:
        check_providers(chosen)
    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, options, providers=chosen)
    asked, running = provider_name(chosen[0]), session.get_providers()[0]
    what = "the model" if isinstance(model, bytes) else model.name
    if asked != running:
        if strict:
            raise ProviderError(
                f"onnxruntime could not start {asked} for {what} (its libraries, e.g. CUDA or "
                "cuDNN, are missing or do not match); run with -v for onnxruntime's log, or "
                "use --provider cpu (or auto)."
            )
        log.warning("%s is unavailable; %s runs on %s", asked, what, running)
    return session
