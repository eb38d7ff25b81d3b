"""``kit triton``: exports into a Triton model repository (and a KServe manifest)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..server.config import ServerConfig
from ._common import _int_list, _int_list_from, cli, echo

#: kit serve's defaults: the same batching on one machine and on a fleet
_SERVING = ServerConfig()


#: GPU indices count from 0
_gpu_list = _int_list_from(0, "0,1")


@dataclass(frozen=True)
class _TritonArgs:
    """``kit triton``'s options, as click parsed them."""

    exports: tuple[Path, ...]
    repo: Path
    max_batch_size: int
    max_queue_delay_us: int
    preferred_batch_sizes: tuple[int, ...] | None
    device: str
    gpus: tuple[int, ...] | None
    instances: int
    max_opset: int
    kserve: Path | None
    storage_uri: str | None
    kserve_name: str | None
    cpu_request: str
    memory: str
    gpu_count: int


@cli.command()
@click.argument("exports", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--repo",
    type=click.Path(path_type=Path),
    required=True,
    help="The model repository to write into (created if missing).",
)
@click.option(
    "--max-batch-size",
    default=_SERVING.max_batch_size,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rows Triton's dynamic batcher merges into one run.",
)
@click.option(
    "--max-queue-delay-us",
    default=_SERVING.max_queue_delay_us,
    show_default=True,
    type=click.IntRange(min=0),
    help="The longest the oldest request waits for company (as in kit serve).",
)
@click.option(
    "--preferred-batch-sizes",
    callback=_int_list,
    help="Batch sizes the batcher tries to form [default: --max-batch-size].",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "gpu", "cpu"]),
    default="auto",
    show_default=True,
    help="Where Triton places instances: auto is a GPU when it has one.",
)
@click.option(
    "--gpus",
    callback=_gpu_list,
    help="GPU indices to place instances on (implies --device gpu) [default: all].",
)
@click.option(
    "--instances",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Model instances per device.",
)
@click.option(
    "--max-opset",
    default=21,
    show_default=True,
    type=click.IntRange(min=7),
    help="The newest ai.onnx opset the target Triton's onnxruntime backend loads (21: Triton 24.06+).",
)
@click.option(
    "--kserve",
    type=click.Path(path_type=Path),
    help="Also write a KServe InferenceService for the repository to this YAML file.",
)
@click.option(
    "--storage-uri",
    help="Where the repository will be uploaded (gs://, s3://, pvc://); needed with --kserve.",
)
@click.option(
    "--kserve-name", help="The InferenceService's name [default: the repository directory's name]."
)
@click.option(
    "--cpu",
    "cpu_request",
    default="1",
    show_default=True,
    help="CPU per predictor pod (with --kserve).",
)
@click.option(
    "--memory", default="2Gi", show_default=True, help="Memory per predictor pod (with --kserve)."
)
@click.option(
    "--gpu-count",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="GPUs per predictor pod (with --kserve).",
)
# Long only by its parameter list (one per option) and its docstring (the --help text).
def triton(**given: Any) -> None:
    """Write exports into a Triton model repository: REPO/NAME/config.pbtxt + 1/model.onnx.

    Each variant (kit quantize) becomes its own model, NAME_int8. The config says
    platform onnxruntime_onnx, every input and output with its data type and dims,
    max_batch_size, dynamic_batching, instance_group, and the model's facts (mean, std,
    class names) as parameters. Each config is parsed back with Triton's own ModelConfig
    protobuf and compared with its ONNX file before it lands; a model already in the
    repository is replaced whole, the others are left alone. Beside each model goes
    perf_analyzer's input data from the export's reference data (inputs, and eager's outputs
    as validation_data): perf_analyzer -m NAME --input-data REPO/NAME/perf_analyzer_data.json.

    \b
      kit triton exported/mnist_cnn exported/lenet --repo models/
      tritonserver --model-repository=$PWD/models
      kit triton exported/alexnet --repo models/ --gpus 0,1 --instances 2 \\
          --kserve alexnet.yaml --storage-uri gs://my-bucket/models
    """
    a = _TritonArgs(**given)
    from ..deploy.kserve import KServeOptions, write_inference_service
    from ..deploy.triton import TritonOptions, write_repository
    from ..errors import UsageError

    if a.kserve is not None and not a.storage_uri:
        raise UsageError("--kserve needs --storage-uri: where the repository will be uploaded.")
    options = TritonOptions(
        max_batch_size=a.max_batch_size,
        max_queue_delay_us=a.max_queue_delay_us,
        preferred_batch_sizes=a.preferred_batch_sizes or (),
        device="gpu" if a.gpus else a.device,
        gpus=a.gpus or (),
        instances=a.instances,
        max_opset=a.max_opset,
    )
    for written, onnx_path, perf in write_repository(a.repo, a.exports, options):
        also = ", perf_analyzer_data.json from its reference data" if perf else ""
        echo(f"wrote {written}/  (config.pbtxt checked against {onnx_path.name}{also})")
    if a.kserve is not None:
        assert a.storage_uri is not None
        service = KServeOptions(a.storage_uri, cpu=a.cpu_request, memory=a.memory, gpus=a.gpu_count)
        path = write_inference_service(a.kserve, a.kserve_name or a.repo.resolve().name, service)
        echo(f"wrote {path}  (upload {a.repo}/ to {a.storage_uri}, then kubectl apply -f {path})")
