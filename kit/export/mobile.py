"""The ORT mobile format: ``model.ort`` and the operator config a reduced build needs.

onnxruntime's own converter (``onnxruntime.tools.convert_onnx_models_to_ort``) writes both,
with its fixed optimisation style and without the x86-only NCHWc layout, so the file runs
on ARM phones. The check against the mobile default set reads the config it wrote.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..artifact import MODEL_FILE, ORT_OPS_FILE
from ..errors import ArtifactError, first_line

__all__ = ["MOBILE_DEFAULT_OPS", "MobileFit", "export_ort", "parse_required_ops"]

#: Operators of ORT Mobile's pre-built reduced package, in the config format the converter
#: writes (onnxruntime's tools/ci_build/github/android/mobile_package.required_operators
#: .config, the set its packages shipped until 1.18; since 1.19 they carry every operator).
_MOBILE_DEFAULT_CONFIG = """
ai.onnx;13;Abs,Add,And,ArgMax,ArgMin,AveragePool,Cast,Ceil,Clip,Concat,ConstantOfShape,Conv
ai.onnx;13;ConvTranspose,Cos,CumSum,DepthToSpace,DequantizeLinear,Div,DynamicQuantizeLinear
ai.onnx;13;Elu,Equal,Exp,Expand,Flatten,Floor,Gather,GatherND,Gemm,Greater,GreaterOrEqual
ai.onnx;13;Identity,If,LRN,LeakyRelu,Less,LessOrEqual,Log,LogSoftmax,Loop,MatMul,Max,MaxPool
ai.onnx;13;Mean,Min,Mul,Neg,NonMaxSuppression,NonZero,Not,Or,PRelu,Pad,Pow,QuantizeLinear
ai.onnx;13;Range,Reciprocal,ReduceMax,ReduceMean,ReduceMin,ReduceProd,ReduceSum,Relu,Reshape
ai.onnx;13;Resize,ReverseSequence,Round,ScatterND,Shape,Sigmoid,Sin,Size,Slice,Softmax
ai.onnx;13;SpaceToDepth,Split,Sqrt,Squeeze,Sub,Sum,Tanh,ThresholdedRelu,Tile,TopK,Transpose
ai.onnx;13;Unique,Unsqueeze,Where,Erf,GlobalAveragePool,InstanceNormalization,MatMulInteger
ai.onnx;13;QLinearConv,QLinearMatMul,Scan,LayerNormalization
com.microsoft;1;BiasGelu,DynamicQuantizeMatMul,FusedConv,FusedGemm,FusedMatMul,Gelu
com.microsoft;1;MatMulIntegerToFloat,NhwcMaxPool,QLinearAdd,QLinearAveragePool,QLinearConv
com.microsoft;1;QLinearGlobalAveragePool,QLinearMul,QLinearSigmoid,SkipLayerNormalization
com.microsoft;1;QLinearLeakyRelu
"""


def parse_required_ops(text: str) -> tuple[str, ...]:
    """``domain:Op`` for every operator a required-operators config lists, sorted."""
    ops: set[str] = set()
    for line in text.splitlines():
        if line.strip() and not line.startswith(("#", "!")):
            domain, _opset, names = line.split(";", 2)
            ops.update(f"{domain}:{name}" for name in names.split(",") if name)
    return tuple(sorted(ops))


MOBILE_DEFAULT_OPS = frozenset(parse_required_ops(_MOBILE_DEFAULT_CONFIG))


@dataclass(frozen=True)
class MobileFit:
    """The operators ``model.ort`` needs (``domain:Op``) and those outside the default set."""

    ops: tuple[str, ...]
    outside_default: tuple[str, ...]

    def summary(self) -> str:
        if not self.outside_default:
            return (
                f"model.ort uses only operators of ORT Mobile's default set ({', '.join(self.ops)}"
                f"; by name); {ORT_OPS_FILE} builds a smaller runtime still"
            )
        return (
            f"model.ort uses operators outside ORT Mobile's default set: "
            f"{', '.join(self.outside_default)}; use the full onnxruntime-android/-objc "
            f"package, or a reduced build from {ORT_OPS_FILE}"
        )


def export_ort(onnx_path: Path, out: Path, ops_out: Path) -> MobileFit:
    """Convert ``onnx_path`` to the ORT format at ``out`` with its operator config.

    Raises:
        ArtifactError: the converter failed (its first line is in the message).
    """
    from onnxruntime.tools.convert_onnx_models_to_ort import (
        OptimizationStyle,
        convert_onnx_models_to_ort,
    )

    with tempfile.TemporaryDirectory(prefix="kit-ort-") as tmp:
        work = Path(tmp)
        source = work / MODEL_FILE
        shutil.copyfile(onnx_path, source)  # the converter converts every .onnx beside it
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                convert_onnx_models_to_ort(
                    source, output_dir=work / "out", optimization_styles=[OptimizationStyle.Fixed]
                )
        except Exception as exc:  # the converter raises whatever onnxruntime raised
            raise ArtifactError(
                f"onnxruntime could not convert the model to the ORT format: {first_line(exc)}; "
                "leave ort out of --formats."
            ) from exc
        shutil.move(work / "out" / "model.ort", out)
        config = (work / "out" / "model.required_operators.config").read_text()
        ops_out.write_text(config.replace(str(work / "out" / "model.ort"), "model.ort"))
    for path in (out, ops_out):
        path.chmod(0o644)
    ops = parse_required_ops(ops_out.read_text())
    return MobileFit(ops, tuple(op for op in ops if op not in MOBILE_DEFAULT_OPS))
