"""Where an ONNX file and eager PyTorch part ways: the first layer that diverges.

Every leaf module's output is made a graph output of a copy of the ONNX file (as
Polygraphy's ``--onnx-outputs mark all`` does), found through the module path the exporter
records in each node's ``pkg.torch.onnx.name_scopes`` metadata; the eager side is captured
with forward hooks on the same modules. Both run on one batch, and each layer is judged
by the report's own rule (:class:`kit.rule.Tolerance`: each sample against its own scale),
from input to output.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from .._table import format_table
from ..artifact import MODEL_FILE, Manifest
from ..rule import Comparison, Tolerance
from ..runners.onnxruntime import graph_runner

__all__ = ["LayerDiff", "Localisation", "explain_export", "localise"]

_SCOPES = "pkg.torch.onnx.name_scopes"


@dataclass
class LayerDiff:
    """One module's output in the ONNX file against eager."""

    module: str
    node: str
    shape: tuple[int, ...]
    max_abs: float
    scale: float
    over: bool = False

    @property
    def relative(self) -> float:
        return self.max_abs / self.scale if self.scale > 0 else math.inf * (self.max_abs > 0)


@dataclass
class Localisation:
    """Every layer from input to output; ``first_over`` is where tolerance is first exceeded,
    ``loses_most`` where the relative error grows the most (a variant's costliest layer)."""

    artifact: str
    layers: list[LayerDiff]
    rule: Tolerance
    #: a variant (int8, fp16) loses accuracy by design: say which layer loses the most
    variant: bool = False

    @property
    def first_over(self) -> LayerDiff | None:
        return next((layer for layer in self.layers if layer.over), None)

    @property
    def loses_most(self) -> LayerDiff | None:
        best, previous, most = None, 0.0, -math.inf
        for layer in self.layers:
            gain = layer.relative - previous
            if gain > most:
                best, most = layer, gain
            previous = max(previous, layer.relative)
        return best

    def to_dict(self) -> dict[str, object]:
        first, most = self.first_over, self.loses_most
        return {
            "artifact": self.artifact,
            "first_over": first.module if first else None,
            "loses_most": most.module if self.variant and most else None,
            "layers": [
                {
                    "module": x.module,
                    "node": x.node,
                    "shape": list(x.shape),
                    "max_abs": x.max_abs,
                    "scale": x.scale,
                    "over": x.over,
                }
                for x in self.layers
            ],
        }

    def format_table(self) -> str:
        first, most = self.first_over, self.loses_most
        rows = []
        for layer in self.layers:
            mark = "<- first over tolerance" if layer is first else ""
            if self.variant and layer is most:
                mark = (mark + ", " if mark else "<- ") + "largest growth of relative error"
            shape = "x".join(map(str, layer.shape))
            rows.append(
                (
                    layer.module,
                    layer.node,
                    shape,
                    f"{layer.max_abs:.2e}",
                    f"{layer.scale:.2e}",
                    mark,
                )
            )
        head = ("module", "ONNX node", "shape", "max|diff|", "max|eager|", "")
        verdict = (
            f"first divergence: {first.module} ({first.node})"
            if first
            else f"no layer exceeds {self.rule.describe()}"
        )
        if self.variant and most is not None:
            verdict += f"; the {self.artifact} loses the most at {most.module} ({most.node})"
        title = f"layer by layer, {self.artifact} against eager:"
        return "\n".join([title, format_table(head, rows), verdict])


def _module_outputs(proto: onnx.ModelProto, leaves: set[str]) -> dict[str, tuple[str, str, str]]:
    """``{module: (value name, node, label)}``: the last value each leaf module computes, in
    graph order. The label also names a module whose weights the node reads (a convolution
    the exporter folded a batch norm into reads the convolution's weights, in the norm's scope).
    """
    weights = {i.name.rsplit(".", 1)[0] for i in proto.graph.initializer} & leaves
    found: dict[str, tuple[str, str, str]] = {}
    for node in proto.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        if _SCOPES not in meta or not node.output:
            continue
        scopes = ast.literal_eval(meta[_SCOPES])
        module = next((s for s in reversed(scopes[:-1]) if s in leaves), None)
        if module is None:
            continue
        owners = [i.rsplit(".", 1)[0] for i in node.input if i.rsplit(".", 1)[0] in weights]
        label = " + ".join(dict.fromkeys([*owners, module]))
        found.pop(module, None)  # keep graph order: a module's last node decides its place
        found[module] = (node.output[0], f"{node.op_type} {node.name}", label)
    return found


def _onnx_values(proto: onnx.ModelProto, values: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """The named intermediate values of the graph for ``x`` (``proto`` gains them as outputs)."""
    proto = onnx.shape_inference.infer_shapes(proto)
    known = {v.name: v for v in proto.graph.value_info}
    outputs = {o.name for o in proto.graph.output}
    for name in values:
        if name not in outputs:
            proto.graph.output.append(
                known.get(name) or onnx.helper.make_empty_tensor_value_info(name)
            )
    got = graph_runner(proto.SerializeToString(), values)(x)
    return dict(zip(values, got, strict=True))


def _eager_values(model: nn.Module, modules: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    captured: dict[str, np.ndarray] = {}
    by_name = dict(model.named_modules())

    def hook(name: str):  # type: ignore[no-untyped-def]
        def keep(module: nn.Module, args: object, output: torch.Tensor) -> None:
            captured.setdefault(name, output.detach().numpy().copy())

        return keep

    handles = [by_name[m].register_forward_hook(hook(m)) for m in modules]
    try:
        with torch.no_grad():
            model.eval()(torch.from_numpy(x))
    finally:
        for h in handles:
            h.remove()
    return captured


def localise(
    path: Path,
    model: nn.Module,
    x: np.ndarray,
    *,
    rule: Tolerance,
    artifact: str = MODEL_FILE,
    variant: bool = False,
) -> Localisation:
    """Compare every leaf module's output in the ONNX file at ``path`` with eager ``model``
    on the batch ``x``, judged by ``rule`` (``variant``: also say which layer loses most)."""
    leaves = {name for name, m in model.named_modules() if name and not list(m.children())}
    proto = onnx.load(str(path))  # once: a VGG's graph holds half a gigabyte of weights
    outputs = _module_outputs(proto, leaves)
    onnx_side = _onnx_values(proto, [v for v, _, _ in outputs.values()], x)
    eager_side = _eager_values(model, list(outputs), x)
    layers = []
    for module, (value, node, label) in outputs.items():
        ours, theirs = onnx_side[value], eager_side.get(module)
        if theirs is None or ours.shape != theirs.shape:
            continue  # a module the graph reshaped or fused away: nothing to compare
        row = rule.judge(ours, theirs, Comparison(label, "onnxruntime", "layer", len(x)))
        over = not row.passed
        layers.append(LayerDiff(label, node, tuple(ours.shape), row.max_abs, row.scale, over))
    return Localisation(artifact, layers, rule, variant)


def explain_export(
    directory: Path,
    manifest: Manifest,
    model: nn.Module,
    x: np.ndarray,
    *,
    rule: Tolerance,
    variants: bool,
) -> list[Localisation]:
    """Layer by layer, ``model.onnx`` (and with ``variants``, each variant file) of an
    export against the eager ``model`` on ``x``."""

    found = [localise(directory / MODEL_FILE, model, x, rule=rule)]
    for precision, record in manifest.onnx_variants.items() if variants else ():
        artifact = f"{precision} variant ({record.file})"
        path = directory / record.file
        found.append(localise(path, model, x, rule=rule, artifact=artifact, variant=True))
    return found
