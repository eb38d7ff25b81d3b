"""Export of every registered network, verified by parity; failure paths leave nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from architectures import list_models
from kit.artifact import FACTS_KEY, FILE_NAMES, MANIFEST, MODEL_FILE, WEIGHTS_FILE, ModelFacts
from kit.deploy.triton import CONFIG_FILE, TritonOptions, check_config, write_model
from kit.errors import ArtifactError, ParityError, UsageError
from kit.export import ExportOptions, Provenance, export_model, parse_formats
from kit.models import build_model, resolve_spec
from kit.runners.torch import load_torchscript

# Every registered network and how its export is tested. Big networks skip the pt2 file
# (torch.export already ran to make the ONNX) to keep CI within its budget.
EXPORT_CASES: dict[str, dict[str, object]] = {
    "lenet": {"formats": ["onnx", "torchscript", "pt2"]},
    "mnist_cnn": {"formats": ["onnx", "torchscript", "pt2"]},
    "alexnet": {"formats": ["onnx", "torchscript", "pt2"], "num_classes": 10},
    **{
        f"vgg{d}{bn}": {"formats": ["onnx", "torchscript"], "num_classes": 10}
        for d in (11, 13, 16, 19)
        for bn in ("", "_bn")
    },
}


QUIET = ExportOptions(progress=False)
ONNX_ONLY = ExportOptions(formats=["onnx"], progress=False)


def test_every_registered_network_has_export_coverage() -> None:
    assert sorted(EXPORT_CASES) == list_models(), "add the new network to EXPORT_CASES"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n.startswith("vgg") else n
        for n in sorted(EXPORT_CASES)
    ],
)
def test_export_round_trip_and_parity(name: str, tmp_path: Path) -> None:
    case = EXPORT_CASES[name]
    spec = resolve_spec(name)
    num_classes = int(case.get("num_classes", spec.num_classes))  # type: ignore[call-overload]
    model = build_model(spec, num_classes=num_classes, seed=0)
    formats = case["formats"]
    # batch 1 and 3, both unseen by the export (it traces 2); the ImageNet-sized networks
    # check batch 1 alone, to keep the suite's time (the small ones cover larger batches)
    sizes = (1,) if spec.input_shape[-1] > 100 else (1, 3)
    options = ExportOptions(formats=formats, batch_sizes=sizes, progress=False)  # type: ignore[arg-type]
    result = export_model(spec, model, tmp_path, Provenance(num_classes=num_classes), options)
    report = result.report
    assert report.passed
    seen = {(c.artifact, c.batch) for c in report.comparisons}
    assert seen == {(f, b) for f in formats for b in sizes}
    onnx_rows = [c for c in report.comparisons if c.artifact == "onnx"]
    assert all(c.max_abs < 1e-3 and c.top1_agreement == 1.0 for c in onnx_rows)

    # TorchScript round trip: what was saved loads and computes the eager output.
    x = torch.randn(2, *spec.input_shape)
    with torch.no_grad():
        expected = model(x)
        got = load_torchscript(result.directory / FILE_NAMES["torchscript"])(x)
    torch.testing.assert_close(got, expected)

    # The ONNX file is valid, has a dynamic batch axis and carries the facts.
    proto = onnx.load(str(result.directory / MODEL_FILE), load_external_data=False)
    assert proto.graph.input[0].name == "input" and proto.graph.output[0].name == "logits"
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    facts = ModelFacts.from_json({p.key: p.value for p in proto.metadata_props}[FACTS_KEY])
    assert facts.input_shape == spec.input_shape and facts.num_classes == num_classes

    manifest = json.loads((result.directory / MANIFEST).read_text())
    files = {n for n, f in manifest["files"].items() if f["format"] != "reference"}
    assert files == {FILE_NAMES[f] for f in formats}  # type: ignore[union-attr]
    # the samples parity used, kept small: under 2 MB, or a few samples of a large input
    reference = manifest["reference"]
    samples = sum(s["batch"] for s in reference["sets"])
    assert reference["size"] <= 2 << 20 or samples <= 4, reference
    assert len(manifest["files"]) - len(files) == 2 * len(reference["sets"])
    assert manifest["parity"]["passed"] is True
    assert manifest["versions"]["torch"] == torch.__version__
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], (
        "staging directory left behind"
    )

    # Into a Triton repository: Triton's own ModelConfig schema parses the config, and
    # every field agrees with the ONNX file.
    repo = tmp_path / "triton"
    model_dir = write_model(repo, spec.name, result.directory / MODEL_FILE, facts, TritonOptions())
    config = (model_dir / CONFIG_FILE).read_text()
    assert check_config(config, model_dir / "1" / MODEL_FILE, spec.name) == []
    assert f"dims: {num_classes}\n" in config


def test_manifest_records_weights_and_copies_them(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    spec = resolve_spec("lenet")
    trained = build_model(spec, seed=5)
    weights = tmp_path / "w.safetensors"
    save_file(trained.state_dict(), str(weights))
    from kit.models import load_weights

    model = build_model(spec, seed=0)
    sha = load_weights(model, weights)
    source = Provenance(num_classes=10, weights=weights, weights_sha256=sha)
    result = export_model(spec, model, tmp_path / "out", source, ONNX_ONLY)
    info = result.manifest.model.weights
    assert info is not None and info.source_sha256 == sha and info.file == WEIGHTS_FILE
    assert (result.directory / WEIGHTS_FILE).is_file()


def test_parity_failure_writes_nothing(tmp_path: Path) -> None:
    """An artifact that disagrees with eager fails the export and leaves no directory."""
    spec = resolve_spec("tests.user_nets:diverging", (3, 8, 8))
    with pytest.raises(ParityError, match=r"torchscript on torch.jit \(cpu\), random b=1"):
        export_model(spec, build_model(spec), tmp_path, options=QUIET)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_export_keeps_the_previous_artifact(tmp_path: Path) -> None:
    spec = resolve_spec("tests.user_nets:interrupting", (3, 8, 8))
    calm = ExportOptions(formats=["onnx"], batch_sizes=(1, 8), progress=False)
    first = export_model(spec, build_model(spec), tmp_path, options=calm)
    before = (first.directory / MANIFEST).read_text()
    options = ExportOptions(formats=["onnx"], batch_sizes=(1, 3), progress=False)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C during parity's batch of 3
        export_model(spec, build_model(spec), tmp_path, options=options)
    assert (first.directory / MANIFEST).read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["interrupting"]


def test_unwritable_output_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    spec = resolve_spec("lenet")
    with pytest.raises(ArtifactError, match="Cannot write to output directory"):
        export_model(spec, build_model(spec), blocker / "out", options=QUIET)


def test_a_disk_too_small_is_refused_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lenet's weights are 246 KiB; three formats need three copies, and 500 KiB is short."""
    import shutil

    real_usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real_usage(p)._replace(free=500 << 10))
    spec = resolve_spec("lenet")
    with pytest.raises(ArtifactError, match=r"has 0 MiB free, and this export writes about 1 MiB"):
        export_model(spec, build_model(spec), tmp_path, options=QUIET)
    assert list(tmp_path.iterdir()) == []
    fits = ExportOptions(formats=["onnx"], progress=False)
    assert export_model(spec, build_model(spec), tmp_path, options=fits).report.passed


def test_parse_formats() -> None:
    # in the order they are written: the ORT file is converted from the ONNX one
    assert parse_formats("ort,pt2, onnx,onnx") == ["onnx", "pt2", "ort"]
    with pytest.raises(
        UsageError,
        match="Unknown format coreml; choose from onnx, torchscript, pt2, ort, pte, tflite, openvino",
    ):
        parse_formats("onnx,coreml")
    for made_from_onnx in ("ort", "openvino"):
        with pytest.raises(UsageError, match=f"{made_from_onnx} is converted from the ONNX file"):
            parse_formats(f"{made_from_onnx},pt2")
        assert parse_formats(f"{made_from_onnx},pt2", have_onnx=True)  # an export that has one


def test_user_factory_with_input_shape(tmp_path: Path) -> None:
    spec = resolve_spec("tests.user_nets:tiny", (3, 16, 16))
    model = build_model(spec)
    source = Provenance(factory="tests.user_nets:tiny")
    result = export_model(spec, model, tmp_path, source, ONNX_ONLY)
    assert result.report.passed
    assert result.manifest.model.factory == "tests.user_nets:tiny"
    import onnxruntime as ort

    sess = ort.InferenceSession(
        str(result.directory / MODEL_FILE), providers=["CPUExecutionProvider"]
    )
    assert sess.run(None, {"input": np.zeros((5, 3, 16, 16), np.float32)})[0].shape == (5, 4)
