"""`kit list`, `kit export` and `kit parity`: the network registry and verified artifacts."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import msgspec

from ..artifact import DEFAULT_BATCH_SIZES, DEFAULT_CALIBRATION_SIZE, MANIFEST, Limits
from ..errors import ParityError, UsageError
from ._common import (
    DEFAULT_EXPORT_DIR,
    _echo_json,
    _int_list,
    _parity_options,
    _report_out,
    _save_result,
    _shape,
    _write_text,
    cli,
    data_options,
    echo,
    factory_option,
    facts_options,
    limit_options,
    provider_option,
)


def _calibration_options(f: Any) -> Any:
    """The options export and quantize share: how an int8 variant is calibrated."""
    f = click.option(
        "--random-calibration",
        is_flag=True,
        help="Calibrate int8 on random inputs when there is no real data; the manifest "
        "marks the variant's accuracy as unverified.",
    )(f)
    return click.option(
        "--calibration-size",
        type=click.IntRange(min=1),
        default=DEFAULT_CALIBRATION_SIZE,
        show_default=True,
        help="Training samples an int8 variant's activation ranges are calibrated on.",
    )(f)


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON.")
def list_cmd(as_json: bool) -> None:
    """List the registered networks and their facts.

    The facts (input shape, normalisation, classes, parity tolerances, training recipe)
    are what export embeds in the ONNX file and what the runtime reads back.
    """
    from architectures import get_spec, list_models

    specs = [get_spec(n) for n in list_models()]
    if as_json:
        _echo_json({s.name: s.facts() for s in specs})
        return
    rows = [("name", "input", "classes", "atol/rtol", "description")]
    rows += [
        (
            s.name,
            "x".join(map(str, s.input_shape)),
            str(s.num_classes),
            f"{s.atol:g}/{s.rtol:g}",
            s.description,
        )
        for s in specs
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) + "  " + r[4])


_EXPORT_EXAMPLES = """\b
Examples:
  kit export --model alexnet
  kit export --model alexnet --weights my_10_class.safetensors
  kit export --model mnist_cnn --weights runs/mnist_cnn/best.safetensors
  kit export --model mypkg.nets:tiny --input-shape 3,32,32 --formats onnx
  kit export --model mynets:tiny --input-shape 3,32,32 --weights runs/tiny/best.safetensors \\
      --dataset imagefolder --data-dir shapes/      # facts from the checkpoint
  kit export --model mynets:tiny --input-shape 3,32,32 --mean 0.5 --std 0.25 \\
      --class-names circle,square,triangle --weights my.safetensors
  kit export --model mnist_cnn --formats onnx,ort   # + model.ort for phones
  kit export --model mnist_cnn --formats onnx,pte,tflite,openvino
  kit export exported/mnist_cnn --formats pte --precision int8   # add to an export
  kit export --model mnist_cnn --target onnxruntime==1.16.3     # for an older runtime
  kit export --model mypkg.nets:segmenter --input-shape 3,224,224 --output-names mask
  kit export --model torchvision.models:resnet18 --input-shape 3,224,224 \\
      --dynamic height=64..512:32,width=64..512:32    # sizes that vary, proven on a grid
"""


@dataclass(frozen=True)
class _ExportArgs:
    """``kit export``'s options, as click parsed them."""

    existing: Path | None
    model_name: str | None
    weights: Path | None
    num_classes: int | None
    input_shape: tuple[int, ...] | None
    formats: str
    openvino_fp16: bool
    factory: str | None
    target: str | None
    opset: int | None
    out_dir: Path
    seed: int
    output_names: str | None
    keep_failed: bool
    precisions: str
    calibration_size: int
    random_calibration: bool
    max_accuracy_drop: float
    min_agreement: float
    atol: float | None
    rtol: float | None
    batch_sizes: tuple[int, ...]
    dataset: str | None
    data_dir: Path | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    class_names: tuple[str, ...] | None
    dynamic: tuple[str, ...]
    grid: tuple[str, ...]
    as_json: bool


@cli.command(epilog=_EXPORT_EXAMPLES)
@click.argument("existing", required=False, type=click.Path(path_type=Path))
@click.option(
    "--model",
    "-m",
    "model_name",
    help="Registered name (see `kit list`) or package.module:factory.",
)
@click.option(
    "--weights",
    type=click.Path(path_type=Path),
    help="state_dict as .safetensors or .pt (loaded with weights_only=True). Default: random weights from --seed.",
)
@click.option(
    "--num-classes",
    type=click.IntRange(min=1),
    help="Classes of the head (default: what --weights holds, else the network's).",
)
@click.option(
    "--input-shape", callback=_shape, help="One sample's shape, C,H,W (needed for a factory)."
)
@click.option(
    "--formats",
    default="onnx,torchscript,pt2",
    show_default=True,
    help="Comma-separated: onnx, torchscript, pt2; ort (ORT mobile's format, from the ONNX "
    "file, with the operator config a reduced build needs); pte (ExecuTorch, XNNPACK), "
    "tflite (LiteRT) and openvino (IR, from the ONNX file): these three need kit[edge].",
)
@click.option(
    "--openvino-fp16",
    is_flag=True,
    help="Store OpenVINO IR weights as fp16 (kept fp32 otherwise, so IR computes what ONNX does).",
)
@factory_option
@click.option("--opset", type=click.IntRange(min=7), help="ONNX opset (default: the exporter's).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_EXPORT_DIR,
    show_default=True,
    help="Artifacts go to OUT/NAME/.",
)
@click.option(
    "--seed", default=0, show_default=True, help="Seed of random weights and parity inputs."
)
@click.option(
    "--output-names",
    help="Comma-separated ONNX output names, one per tensor the network returns "
    "(default: logits for one tensor, a dict's keys, output_0,output_1,... for a tuple).",
)
@click.option(
    "--keep-failed",
    is_flag=True,
    help="When parity fails, keep the artifacts in OUT/NAME.parity-failed/ to inspect.",
)
@click.option(
    "--precision",
    "precisions",
    default="fp32",
    show_default=True,
    help="Comma-separated: fp32 (model.onnx, always written), int8, fp16: variants as "
    "kit quantize makes them, calibrated on --data-dir's (or the bundled) training data.",
)
@click.option(
    "--target",
    metavar="RUNTIME==VERSION",
    help="Write an ONNX file that loads in this runtime: onnxruntime==1.16.3, triton==24.01 "
    "(opset and IR version chosen for it, still checked against eager), or refuse saying why.",
)
@click.option(
    "--dynamic",
    multiple=True,
    metavar="AXIS=MIN..MAX[:MULTIPLE]",
    help="Sizes the input may take (repeatable or comma-separated; AXIS is batch, height or "
    "width), e.g. height=64..512:32,width=64..512:32. Every file is read back against them, "
    "proven on a grid of sizes in every runtime, and refuses sizes outside them.",
)
@click.option(
    "--grid",
    multiple=True,
    metavar="HxW",
    help="Sizes parity adds to --dynamic's grid (the ends, the example, interior and "
    "non-square sizes), e.g. 320x480.",
)
@facts_options
@data_options
@_calibration_options
@limit_options(
    "--precision int8/fp16: accuracy points a variant may lose on the test set.",
    "--precision int8/fp16: percent of test samples whose top-1 class must match fp32's.",
)
@_parity_options
# Long only by its parameter list (one per option) and its docstring (the --help text).
def export(**given: Any) -> None:
    """Export a network and prove each artifact matches eager PyTorch.

    Writes OUT/NAME/ with model.onnx (dynamo exporter, dynamic batch axis, facts in its
    metadata), model.ts (TorchScript), model.pt2 (torch.export) and manifest.json (sha256
    of every file, library versions, the parity report). Parity runs at batch sizes the
    export never saw; any mismatch prints the whole comparison table, says which flag
    would relax the check, fails the command and writes nothing (--keep-failed keeps the
    failed artifacts apart, in OUT/NAME.parity-failed/).

    Each sample of each output passes when max|artifact - eager| <= atol + rtol x
    max|eager| (its own scale). A network may return a tensor, a tuple/list of tensors or
    a dict of tensors: each becomes one named ONNX output with a dynamic batch axis.
    --weights alone tells a registered network's class count (its head's size).

    What the network's input and output mean travels inside the export (the ONNX facts,
    the manifest, Triton's labels): --mean, --std and --class-names, else what the
    checkpoint (kit train writes them), the network (a kit_facts dict attribute) or the
    registry says. With test data at hand (--dataset/--data-dir, the manifest's, or the
    bundled MNIST), the export also proves the whole pipeline: test images through kit's
    own preprocessing into model.onnx, against eager and the labels; trained weights that
    answer at chance level that way fail the export.
    """
    a = _ExportArgs(**given)
    from ..export import add_formats, check_request, export_network, parse_formats
    from ..models import GivenFacts

    if (a.existing is None) == (a.model_name is None):
        raise click.UsageError(
            "Give --model NAME to export a network, or an exported/NAME directory to add "
            "--formats (and --precision variants) to it."
        )
    try:
        fmt_list = parse_formats(a.formats, have_onnx=a.existing is not None)
    except UsageError as exc:
        raise click.BadParameter(str(exc), param_hint="--formats") from None
    if a.existing is not None and (a.dynamic or a.grid):
        raise click.UsageError(
            "--dynamic and --grid say how a new export is made; export again with --model "
            "(added formats take the export's own rules)."
        )
    variants = _variants(a.precisions)
    facts = GivenFacts(mean=a.mean, std=a.std, class_names=a.class_names)
    check_request(
        adding=a.existing is not None,
        formats=fmt_list,
        precisions=variants,
        target=a.target,
        new_facts=facts != GivenFacts(),
    )
    options = _export_options(a, fmt_list, variants)
    try:
        if a.existing is not None:
            result = add_formats(
                a.existing, options, factory=a.factory, dataset=a.dataset, data_dir=a.data_dir
            )
        else:
            assert a.model_name is not None
            result = export_network(
                a.model_name,
                a.out_dir,
                weights=a.weights,
                num_classes=a.num_classes,
                input_shape=a.input_shape,
                seed=a.seed,
                given=facts,
                dataset=a.dataset,
                data_dir=a.data_dir,
                options=options,
                dynamic=a.dynamic,
                grid=a.grid,
            )
    except ParityError as exc:
        _explain_parity_failure(exc)
        raise
    _print_export(result, a.as_json)


def _export_options(a: _ExportArgs, formats: list[str], variants: list[str]) -> Any:
    """The library's ExportOptions from the parsed flags."""
    from ..export import Calibration, ExportOptions

    limits = Limits(a.max_accuracy_drop / 100, a.min_agreement / 100)
    calibration = Calibration(a.calibration_size, a.random_calibration, limits=limits)
    names = [n.strip() for n in a.output_names.split(",")] if a.output_names else None
    return ExportOptions(
        formats, a.opset, a.atol, a.rtol, a.batch_sizes, names, a.keep_failed, True, variants,
        calibration, a.openvino_fp16, a.target,
    )  # fmt: skip


def _print_export(result: Any, as_json: bool) -> None:
    from ..parity import format_parity

    files = result.manifest.files
    if as_json:
        _echo_json(
            {
                "directory": str(result.directory),
                "files": {name: msgspec.to_builtins(f) for name, f in files.items()},
                "notes": result.notes,
                "parity": result.report.to_dict(),
            }
        )
        return
    echo(format_parity(result.report))
    for note in result.notes:
        echo(note)
    for precision, record in result.variants.items():
        echo(_variant_line(precision, record), err=True)
    echo(f"wrote {result.directory}/")
    reference = {n: f for n, f in files.items() if f.format == "reference"}
    for name, info in files.items():
        if name not in reference:
            echo(f"  {name:<32} {info.size / 1e6:9.1f} MB  sha256 {info.sha256[:16]}")
    if reference:
        sets = len({n.split("/")[0] for n in reference})
        size = sum(f.size for f in reference.values()) / 1e6
        label = f"test_data_set_0..{sets - 1}/"
        echo(f"  {label:<32} {size:9.1f} MB  reference data: {len(reference)} tensors")
    manifest_size = (result.directory / MANIFEST).stat().st_size
    echo(f"  {MANIFEST:<32} {manifest_size / 1e6:9.1f} MB")


def _variant_line(precision: str, record: Any) -> str:
    line = f"{precision} variant: top-1 agreement {record.agreement:.2%} on {record.held_out}"
    return line + (f", accuracy {record.accuracy:.2%}" if record.accuracy is not None else "")


def _variants(text: str) -> list[str]:
    """``"fp32,int8"`` -> ``["int8"]``: the variants to add beside model.onnx."""
    from ..artifact import VARIANT_FILES

    asked = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in asked if p != "fp32" and p not in VARIANT_FILES]
    if unknown or not asked:
        raise click.BadParameter(
            f"Unknown precision {', '.join(unknown) or '(none)'}; choose from fp32, "
            f"{', '.join(VARIANT_FILES)}.",
            param_hint="--precision",
        )
    return [p for p in dict.fromkeys(asked) if p != "fp32"]


def _explain_parity_failure(exc: ParityError) -> None:
    """The whole comparison table on stderr, and where --keep-failed left the files."""
    from ..parity import format_parity

    if exc.report is not None:
        echo(format_parity(exc.report), err=True)
    if exc.kept is not None:
        echo(f"kept the failed artifacts in {exc.kept}/ (parity.json has the report)", err=True)


@cli.command()
@click.argument("artifact_dir", type=click.Path(path_type=Path))
@_parity_options
@data_options
@provider_option
@click.option(
    "--runtime",
    "runtimes",
    multiple=True,
    default=["python"],
    show_default=True,
    help="Where to run the artifacts: python (ONNX, ORT, TorchScript and torch.export files), "
    "node (the ONNX and ORT files and variants in onnxruntime-node, installed into kit's "
    "cache on first use), browser (the same in onnxruntime-web's wasm, in a headless "
    "system Chromium), executorch (.pte), litert (.tflite) or openvino (IR, at f32 with a "
    "row for the CPU's default precision). Repeat it for several.",
)
@factory_option
@click.option(
    "--endpoint",
    metavar="URL",
    help="Check the model a live Open Inference Protocol server serves (kit serve, Triton, "
    "KServe, MLServer) instead of the local files: same inputs, same report.",
)
@click.option(
    "--model-name",
    help="The model's name on --endpoint [default: the manifest's; NAME_int8 checks a variant].",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=1,
    show_default=True,
    help="With --endpoint: send every sample as its own request, this many at once (so the "
    "server's batching mixes them), and compare each answer with eager and with the same "
    "request sent alone; the batch sizes the server ran are noted.",
)
@click.option(
    "--samples",
    default=256,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many real test samples to compare on (when there are real samples).",
)
@click.option(
    "--junit",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the report as JUnit XML (one test case per comparison) for CI.",
)
@click.option(
    "--reference",
    is_flag=True,
    help="Judge every file against the reference data the export keeps (its inputs and "
    "eager's outputs) instead of a rebuilt eager network: no PyTorch needed for ONNX files.",
)
@click.option(
    "--explain",
    is_flag=True,
    help="Compare model.onnx and every variant with eager layer by layer and name where "
    "they part (done for model.onnx by itself whenever an ONNX comparison fails).",
)
@click.option(
    "--grid",
    multiple=True,
    metavar="HxW",
    help="For an export whose size varies (kit export --dynamic): sizes to add to the grid "
    "of its rules, e.g. 320x480.",
)
def parity(
    artifact_dir: Path,
    provider: str,
    runtimes: tuple[str, ...],
    factory: str | None,
    endpoint: str | None,
    model_name: str | None,
    concurrency: int,
    samples: int,
    junit: Path | None,
    reference: bool,
    explain: bool,
    grid: tuple[str, ...],
    atol: float | None,
    rtol: float | None,
    batch_sizes: tuple[int, ...],
    dataset: str | None,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Re-verify saved artifacts against eager PyTorch; exit 1 on any mismatch.

    Checks every file's sha256 against manifest.json, rebuilds the eager network from the
    manifest (the weights file, or the seed it was drawn from), and compares TorchScript,
    torch.export and ONNX (onnxruntime CPU, and CUDA when a GPU is present) on seeded
    random batches and optional real samples; the report (not with --endpoint) is saved in
    DIR/results/ for kit report. Use it in CI:

    \b
      kit parity exported/alexnet --json > parity.json
      kit parity exported/alexnet --junit parity.xml         # for CI test reports
      kit parity exported/mnist_cnn --explain                # layer by layer, variants too
      kit parity exported/mnist_cnn --runtime node           # as a Node.js app runs it
      kit parity exported/mnist_cnn --runtime browser        # as a web page runs it
      kit parity exported/mnist_cnn --endpoint http://triton:8000   # a live server's model
      kit parity exported/mnist_cnn --endpoint http://localhost:8000 --concurrency 32
      kit parity exported/mnist_cnn --reference              # against its own reference data
      kit parity exported/mnist_cnn --runtime python --runtime node
      kit parity exported/mnist_cnn --runtime executorch --runtime litert --runtime openvino
    """
    from ..parity import to_junit
    from ..report import parity_kind
    from ..verify import EndpointCheck, explain_saved, verify_reference

    _endpoint_flags(endpoint, model_name, concurrency, reference)
    real = None
    if reference:
        report = verify_reference(artifact_dir, runtimes=runtimes, provider=provider)
    else:
        report, real = _verify_eager(
            artifact_dir, factory, (dataset, data_dir), samples, atol, rtol, batch_sizes,
            provider, runtimes,
            EndpointCheck(endpoint, model_name, concurrency) if endpoint else None, grid,
        )  # fmt: skip
    if junit is not None:
        _write_text(junit, to_junit(report))
    if not endpoint:
        kind = parity_kind(runtimes, provider, reference)
        given = _parity_args(artifact_dir, locals())  # the options as the user gave them
        _save_result(artifact_dir, kind, report.to_dict(), given)
    found = (
        []
        if endpoint
        else explain_saved(artifact_dir, report, real, asked=explain, factory=factory)
    )
    _report_out(report, as_json, {"explain": [f.to_dict() for f in found]} if found else None)
    for localisation in found if not as_json else []:
        echo("\n" + localisation.format_table())
    if not report.passed:
        if hint := report.relax_hint():
            echo(hint, err=True)
        sys.exit(1)


def _endpoint_flags(
    endpoint: str | None, model_name: str | None, concurrency: int, reference: bool
) -> None:
    """The flags that go with --endpoint, and the one that does not."""
    if model_name and not endpoint:
        raise click.BadParameter(
            "names a model on --endpoint; give --endpoint too.", param_hint="--model-name"
        )
    if concurrency > 1 and not endpoint:
        raise click.BadParameter(
            "sends requests to --endpoint; give --endpoint too.", param_hint="--concurrency"
        )
    if reference and endpoint:
        raise click.BadParameter(
            "checks local files; leave out --endpoint.", param_hint="--reference"
        )


def _parity_args(artifact_dir: Path, given: dict[str, Any]) -> list[str]:
    """The ``kit parity`` arguments that reproduce a run (what its saved result says)."""
    args = ["parity", str(artifact_dir)]
    if tuple(given["runtimes"]) != ("python",):
        args += [a for runtime in dict.fromkeys(given["runtimes"]) for a in ("--runtime", runtime)]
    if given["provider"] != "auto":
        args += ["--provider", given["provider"]]
    for flag in ("atol", "rtol", "dataset", "data_dir", "factory"):
        if given[flag] is not None:
            args += [f"--{flag.replace('_', '-')}", str(given[flag])]
    if given["samples"] != 256:
        args += ["--samples", str(given["samples"])]
    if tuple(given["batch_sizes"]) != DEFAULT_BATCH_SIZES:
        args += ["--batch-sizes", ",".join(map(str, given["batch_sizes"]))]
    args += [a for size in given["grid"] for a in ("--grid", size)]
    return args + (["--reference"] if given["reference"] else [])


def _verify_eager(
    artifact_dir: Path,
    factory: str | None,
    data: tuple[str | None, Path | None],
    samples: int,
    atol: float | None,
    rtol: float | None,
    batch_sizes: tuple[int, ...],
    provider: str,
    runtimes: tuple[str, ...],
    endpoint: Any,
    grid: tuple[str, ...] = (),
) -> tuple[Any, Any]:
    """``kit parity`` against a rebuilt eager network: the report and the real samples."""
    from ..artifact import read_manifest
    from ..data import choose_data, parity_samples
    from ..verify import saved_spec, verify_saved

    manifest = read_manifest(artifact_dir)
    spec = saved_spec(manifest, factory)
    choice = choose_data(spec, dataset=data[0], data_dir=data[1], recorded=manifest.model.data)
    real = parity_samples(spec, choice, samples)
    report = verify_saved(
        artifact_dir,
        atol=atol,
        rtol=rtol,
        batch_sizes=batch_sizes,
        real=real,
        provider=provider,
        runtimes=runtimes,
        endpoint=endpoint,
        factory=factory,
        data=choice,
        grid=grid,
    )
    return report, real


@cli.command()
@click.argument("artifact_dir", type=click.Path(path_type=Path))
@click.option(
    "--precision",
    type=click.Choice(["int8", "fp16"]),
    default="int8",
    show_default=True,
    help="The variant to add beside model.onnx (fp16 is meant for CUDA).",
)
@data_options
@_calibration_options
@limit_options(
    "Accuracy points the variant may lose on the test set.",
    "Percent of test samples whose top-1 class must match model.onnx's.",
)
@click.option(
    "--max-fp32-layers",
    type=click.IntRange(min=0),
    help="When int8 misses the limits, the most layers kept in fp32, most sensitive first "
    "(default: half of them; 0: no search).",
)
@factory_option
@click.option("--json", "as_json", is_flag=True, help="Print the variant's record as JSON.")
def quantize(
    artifact_dir: Path,
    precision: str,
    calibration_size: int,
    dataset: str | None,
    data_dir: Path | None,
    random_calibration: bool,
    max_accuracy_drop: float,
    min_agreement: float,
    max_fp32_layers: int | None,
    factory: str | None,
    as_json: bool,
) -> None:
    """Add an int8 or fp16 variant beside an export's model.onnx, its accuracy cost proven.

    int8: onnxruntime's static quantization (QDQ, per-channel int8 weights, uint8
    activations) calibrated on real training samples. fp16: fp16 weights and arithmetic
    with fp32 inputs and outputs, for the CUDA provider. Either is then checked against
    model.onnx on the whole test set and lands (as model.int8.onnx or model.fp16.onnx,
    listed in manifest.json with its sha256, how it was made and what it measured) only
    within the limits. When int8 misses them, the layers whose quantization costs most
    (each scored on the same test data) are kept in fp32, one per try, and the manifest
    records which; if that does not help, exit 1 with what was tried, nothing written.
    What it measured is also saved in DIR/results/ for kit report.

    \b
      kit quantize exported/mnist_cnn
      kit quantize exported/mnist_cnn --precision fp16
      kit quantize exported/vgg16 --dataset imagefolder --data-dir /data/imagenet
      kit quantize exported/mynet --random-calibration       # no data: accuracy unverified
    """
    from ..artifact import read_manifest
    from ..data import choose_data
    from ..export import Calibration, add_variant_from_data
    from ..verify import saved_spec

    manifest = read_manifest(artifact_dir)
    spec = saved_spec(manifest, factory)
    limits = Limits(max_accuracy_drop / 100, min_agreement / 100)
    data = choose_data(spec, dataset=dataset, data_dir=data_dir, recorded=manifest.model.data)
    calibration = Calibration(calibration_size, random_calibration, data, limits)
    record = add_variant_from_data(artifact_dir, spec, precision, calibration, max_fp32_layers)
    if as_json:
        _echo_json(msgspec.to_builtins(record))
        return
    made = f"calibrated on {record.calibration}" if record.calibration else record.method
    echo(f"wrote {artifact_dir / record.file} ({precision}), {made}")
    if precision == "fp16":
        echo("fp16 is meant for the CUDA provider: its speed needs a GPU (scripts/gpu_check.sh)")
    if record.nodes_kept_fp32:
        echo(f"kept in fp32 to meet the limits: {', '.join(record.nodes_kept_fp32)}")
    line = f"on {record.held_out}: top-1 agreement with model.onnx {record.agreement:.2%}"
    if record.accuracy is not None and record.accuracy_fp32 is not None:
        line += f", accuracy {record.accuracy_fp32:.2%} -> {record.accuracy:.2%}"
    echo(line)


@cli.command()
@click.argument("artifact_dir", type=click.Path(path_type=Path))
@click.option(
    "--batch-sizes",
    default="1,8,32",
    callback=_int_list,
    show_default=True,
    help="Batch sizes to time.",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Timing per artifact and batch size.",
)
@click.option("--plot", type=click.Path(path_type=Path), help="Write a PNG chart here.")
@click.option(
    "--cold-runs",
    default=3,
    show_default=True,
    type=click.IntRange(min=0),
    help="Fresh processes timed per artifact for its cold start (import, load, first "
    "inference); 0 leaves cold start out.",
)
@click.option(
    "--grid",
    is_flag=True,
    help="For an export whose size varies (kit export --dynamic): also time every artifact "
    "at batch 1 at each size of its rules' grid.",
)
@factory_option
@data_options
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def bench(
    artifact_dir: Path,
    batch_sizes: tuple[int, ...],
    seconds: float,
    plot: Path | None,
    cold_runs: int,
    grid: bool,
    factory: str | None,
    dataset: str | None,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Latency (p50, p90, p99) and throughput of every artifact, against the hardware's peak.

    Times eager PyTorch, TorchScript, torch.export, ONNX on onnxruntime's CPU provider and
    every variant (and CUDA, with and without IOBinding, when a GPU is present) on the same
    random batch at each batch size. The last rows are the physical limit: the network's
    multiply-adds (counted from the ONNX graph) divided by the fp32 and int8 matrix-product
    peak onnxruntime reaches on this machine, measured in the same run. The rows are saved
    in DIR/results/ for kit report.

    \b
      kit bench exported/mnist_cnn
      kit bench exported/vgg16 --batch-sizes 1,8 --plot vgg16.png
      kit bench exported/resnet18 --grid        # each size of its --dynamic rules
    """
    from ..bench import bench as run_bench
    from ..bench import format_rows, plot_rows, rows_as_dicts

    data = _data_for(artifact_dir, factory, dataset, data_dir) if dataset or data_dir else None
    rows, hardware = run_bench(
        artifact_dir,
        batch_sizes=batch_sizes,
        seconds=seconds,
        factory=factory,
        cold_runs=cold_runs,
        data=data,
        grid=grid,
    )
    if plot is not None:
        plot_rows(rows, plot, title=f"{artifact_dir.name}: images per second")
    args = ["bench", str(artifact_dir), "--batch-sizes", ",".join(map(str, batch_sizes))]
    args += ["--seconds", f"{seconds:g}", "--cold-runs", str(cold_runs)] + ["--grid"] * grid
    args += (["--factory", factory] if factory else []) + (data.args() if data else [])
    _save_result(artifact_dir, "bench", {"rows": rows_as_dicts(rows), **hardware}, args)
    if as_json:
        _echo_json({"rows": rows_as_dicts(rows), **hardware})
        return
    echo(format_rows(rows, hardware))
    if plot is not None:
        echo(f"wrote {plot}")


def _data_for(
    artifact_dir: Path, factory: str | None, dataset: str | None, data_dir: Path | None
) -> Any:
    """The data the user named for an export (``--dataset``, ``--data-dir``), else the
    data its manifest records."""
    from ..artifact import read_manifest
    from ..data import choose_data
    from ..verify import saved_spec

    manifest = read_manifest(artifact_dir)
    spec = saved_spec(manifest, factory)
    return choose_data(spec, dataset=dataset, data_dir=data_dir, recorded=manifest.model.data)
