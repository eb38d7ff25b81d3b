"""Writing verified artifacts: TorchScript, torch.export and ONNX (plus the ORT format),
each checked against eager before the directory lands (:mod:`.job`)."""

from __future__ import annotations

from ..artifact import FORMATS
from ..errors import UsageError
from .extend import add_formats, add_variant_from_data
from .job import export_model, export_network, export_trained
from .manifest import Provenance
from .options import Calibration, ExportOptions, ExportResult, check_request

__all__ = [
    "Calibration",
    "ExportOptions",
    "ExportResult",
    "Provenance",
    "add_formats",
    "add_variant_from_data",
    "check_request",
    "export_model",
    "export_network",
    "export_trained",
    "parse_formats",
]


def parse_formats(text: str, *, have_onnx: bool = False) -> list[str]:
    """``"onnx,pt2"`` -> ``["onnx", "pt2"]`` (``have_onnx``: an existing export has one).

    Raises:
        UsageError: an unknown or empty format list, or a format made from an ONNX file
            that there is none of.
    """
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UsageError(
            f"Unknown format {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}."
        )
    for fmt in ("ort", "openvino"):
        if fmt in formats and "onnx" not in formats and not have_onnx:
            raise UsageError(f"{fmt} is converted from the ONNX file; add onnx to the formats.")
    return sorted(dict.fromkeys(formats), key=FORMATS.index)  # onnx before what is made from it
