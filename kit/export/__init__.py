"""Writing verified artifacts: TorchScript, torch.export and ONNX (plus the ORT format),
each checked against eager before the directory lands (:mod:`.job`)."""

from __future__ import annotations

from ..artifact import FORMATS
from ..errors import UsageError
from .job import (
    Calibration,
    ExportOptions,
    ExportResult,
    add_variant_from_data,
    export_model,
    export_network,
    export_trained,
)
from .manifest import Provenance

__all__ = [
    "Calibration",
    "ExportOptions",
    "ExportResult",
    "Provenance",
    "add_variant_from_data",
    "export_model",
    "export_network",
    "export_trained",
    "parse_formats",
]


def parse_formats(text: str) -> list[str]:
    """``"onnx,pt2"`` -> ``["onnx", "pt2"]``.

    Raises:
        UsageError: an unknown or empty format list.
    """
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UsageError(
            f"Unknown format {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}."
        )
    if "ort" in formats and "onnx" not in formats:
        raise UsageError("ort is converted from the ONNX file; add onnx to the formats.")
    return sorted(dict.fromkeys(formats), key=FORMATS.index)  # onnx before the ort made from it
