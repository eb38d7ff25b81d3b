"""Input sizes that vary (kit export --dynamic): the rules, their forms in each file, the
read-back, the grid, and every path that must refuse a size outside them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import kit.runtime as kr
from kit.artifact import ModelFacts, parse_dynamic, parse_grid, read_manifest
from kit.cli import cli
from kit.errors import ArtifactError, InputError, UsageError
from kit.export import ExportOptions, export_network
from kit.runtime.reference import reference_sets
from tests.server_utils import json_body, request, running_server

RULE = "height=16..64:8,width=16..64:8"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="kit")
    return result.exit_code, result.output


def _export(out: Path, model: str = "tests.user_nets:tiny", **kw: Any) -> Any:
    options = ExportOptions(formats=("onnx", "torchscript", "pt2"), progress=False)
    return export_network(
        model, out, input_shape=(3, 32, 32), options=options, dynamic=(RULE,), **kw
    )


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _export(tmp_path_factory.mktemp("dyn"))


# -- the rules ----------------------------------------------------------------------------


def test_a_rule_parses_and_describes_itself() -> None:
    rules = parse_dynamic(["height=64..512:32", "width=64..512:32"], (3, 224, 224))
    assert rules is not None and rules.flags() == "height=64..512:32,width=64..512:32"
    assert rules.describe() == "height 64..512 in steps of 32, width 64..512 in steps of 32"
    assert rules.sample_shape((3, 224, 224)) == (3, None, None)
    assert parse_dynamic([], (3, 8, 8)) is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("height=64-512", "is not AXIS=MIN..MAX"),
        ("depth=1..4", "the axes are batch, height, width"),
        ("height=64..512,height=64..128", "names height twice"),
        ("height=64..64", "hold more than one size"),
        ("height=60..512:32", "multiples of 32"),
        ("height=256..512", "outside --dynamic height=256..512"),
        ("height=64..512:7", "multiples of 7"),
        ("height=1..4096,width=1..4096", "keep the largest sample at most"),
        ("height=1.." + "9" * 5000, "is not AXIS=MIN..MAX"),  # no int() of 5,000 digits
    ],
)
def test_a_wrong_rule_is_one_sentence(text: str, says: str) -> None:
    with pytest.raises(UsageError, match=says.replace(".", r"\.")):
        parse_dynamic([text], (3, 224, 224))


def test_the_grid_holds_the_ends_the_example_and_non_square_sizes() -> None:
    rules = parse_dynamic(["height=64..512:32,width=64..512:32"], (3, 224, 224))
    assert rules is not None
    grid = rules.grid((3, 224, 224))
    assert len(grid) >= 12 and grid[0] == (224, 224)
    assert {(64, 512), (512, 64), (64, 64), (512, 512)} <= set(grid)
    assert any(h != w and 64 < h < 512 and 64 < w < 512 for h, w in grid)  # interior, not square
    assert all(not rules.problems((1, 3, h, w)) for h, w in grid)
    off = rules.off_grid((3, 224, 224))
    assert {(32, 224), (544, 224), (80, 224), (224, 32)} <= set(off)
    assert all(rules.problems((1, 3, h, w)) for h, w in off)


def test_an_image_is_fed_at_its_own_size_or_the_nearest_allowed() -> None:
    rules = parse_dynamic([RULE], (3, 32, 32))
    assert rules is not None
    assert rules.fit((3, 32, 32), 40, 24) == (3, 40, 24)
    assert rules.fit((3, 32, 32), 43, 1000) == (3, 40, 64)
    assert rules.fit((3, 32, 32), 45, 2) == (3, 48, 16)


def test_grid_sizes_must_be_allowed() -> None:
    rules = parse_dynamic([RULE], (3, 32, 32))
    assert parse_grid(["24x56", "40x40"], rules) == ((24, 56), (40, 40))
    with pytest.raises(UsageError, match="outside the rules"):
        parse_grid(["20x24"], rules)
    with pytest.raises(UsageError, match="not HEIGHTxWIDTH"):
        parse_grid(["big"], rules)
    with pytest.raises(UsageError, match="give --dynamic too"):
        parse_grid(["24x24"], None)


def _facts(dynamic: Any) -> dict[str, Any]:
    return {
        "name": "n",
        "input_shape": [3, 32, 32],
        "mean": [0, 0, 0],
        "std": [1, 1, 1],
        "dynamic": dynamic,
    }


def test_facts_carry_the_rules_and_refuse_rules_they_break() -> None:
    rules = parse_dynamic([RULE], (3, 32, 32))
    facts = ModelFacts.from_dict(_facts(msgspec.to_builtins(rules)))
    assert ModelFacts.from_json(facts.to_json()).dynamic == rules
    assert "dynamic" not in ModelFacts.from_dict(_facts(None)).to_json()
    outside = {"height": {"min": 40, "max": 64, "multiple": 8}}
    with pytest.raises(ArtifactError, match="outside its own rules"):
        ModelFacts.from_dict(_facts(outside))
    huge = {"height": {"min": 16, "max": 16384}, "width": {"min": 16, "max": 16384}}
    with pytest.raises(ArtifactError, match="more than"):
        ModelFacts.from_dict(_facts(huge))


_RULE_DICT = st.fixed_dictionaries(
    {},
    optional={
        axis: st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=3),
            st.fixed_dictionaries(
                {"min": st.integers(-5, 70000), "max": st.integers(-5, 70000)},
                optional={"multiple": st.integers(-2, 100), "extra": st.integers()},
            ),
        )
        for axis in ("batch", "height", "width", "depth")
    },
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_RULE_DICT, st.integers(), st.lists(st.integers(), max_size=3)))
def test_hostile_rules_in_a_file_are_refused_in_a_sentence(dynamic: Any) -> None:
    try:
        facts = ModelFacts.from_dict(_facts(dynamic))
    except ArtifactError as exc:
        assert str(exc).endswith(".")
        return
    rules = facts.dynamic
    if rules is not None:  # what was accepted is consistent
        assert not rules.problems((rules.batch_range()[0], 3, 32, 32))
        assert all(r.min < r.max and r.min % r.multiple == 0 for _, r in rules.named())


# -- export --------------------------------------------------------------------------------


def test_an_export_declares_reads_back_and_proves_the_grid(tiny_export: Any) -> None:
    manifest = read_manifest(tiny_export.directory)
    assert manifest.facts.dynamic == parse_dynamic([RULE], (3, 32, 32))
    assert manifest.inputs[0].shape == ("batch", 3, "height", "width")
    sizes = {c.inputs.rsplit(" ", 1)[-1] for c in tiny_export.report.comparisons}
    assert {"16x64", "64x16", "16x16", "64x64"} <= sizes and len(sizes) >= 10
    for fmt in ("onnx", "torchscript", "pt2"):
        rows = [c for c in tiny_export.report.comparisons if c.artifact == fmt]
        assert len({c.inputs for c in rows}) >= 20 and all(c.passed for c in rows)
    import onnx

    dims = onnx.load(str(tiny_export.directory / "model.onnx")).graph.input[0].type.tensor_type
    assert [d.dim_param or d.dim_value for d in dims.shape.dim] == ["batch", 3, "height", "width"]


def test_an_axis_fixed_against_the_declaration_fails_the_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx_ir as ir

    from kit.export import onnx as onnx_writer

    named = onnx_writer._name_axes

    def fixed_height(program: Any) -> None:
        named(program)
        value = program.model.graph.inputs[0]
        value.shape = ir.Shape([value.shape[0], 3, 32, value.shape[3]])

    monkeypatch.setattr(onnx_writer, "_name_axes", fixed_height)
    with pytest.raises(
        ArtifactError, match=r"model\.onnx fixes height at 32, against --dynamic height=16\.\.64:8"
    ):
        _export(tmp_path)
    assert not (tmp_path / "tiny").exists()
    assert not list(tmp_path.iterdir())  # nothing half-written beside it either


def test_a_unet_needs_a_multiple_and_kit_says_which(tmp_path: Path) -> None:
    options = ExportOptions(formats=("onnx",), progress=False)
    with pytest.raises(ArtifactError) as caught:
        export_network(
            "tests.user_nets:unet", tmp_path, input_shape=(3, 32, 32), options=options,
            dynamic=("height=16..64,width=16..64",),
        )  # fmt: skip
    said = str(caught.value)
    assert "--dynamic height=16..64:4,width=16..64:4" in said and "the guard" in said
    assert "\n" not in said
    result = export_network(
        "tests.user_nets:unet", tmp_path, input_shape=(3, 32, 32), options=options,
        dynamic=("height=16..64:4,width=16..64:4",),
    )  # fmt: skip
    assert result.report.passed
    mask = {tuple(c.inputs.rsplit(" ", 1)[-1].split("x")) for c in result.report.comparisons}
    assert ("16", "64") in mask
    model = kr.load(result.directory)
    assert model.predict(np.zeros((1, 3, 20, 64), np.float32))["logits"].shape == (1, 2, 20, 64)
    with pytest.raises(
        InputError, match="height is 18; this model takes height 16..64 in steps of 4"
    ):
        model.predict(np.zeros((1, 3, 18, 64), np.float32))


def test_a_seed_network_refuses_a_varying_size_naming_its_first_linear(tmp_path: Path) -> None:
    code, out = run(
        "export", "--model", "mnist_cnn", "--dynamic", "height=16..64", "--formats", "onnx",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 1
    assert "first Linear layer" in out and "exactly 28" in out and "Traceback" not in out
    assert not list(tmp_path.iterdir())


def test_export_flags_are_checked_before_anything_runs(tmp_path: Path) -> None:
    code, out = run("export", "--model", "tests.user_nets:tiny", "--input-shape", "3,32,32",
                    "--dynamic", "height=40..64", "--out", str(tmp_path))  # fmt: skip
    assert code == 2 and "outside --dynamic height=40..64" in out
    code, out = run("export", "--model", "tests.user_nets:tiny", "--input-shape", "3,32,32",
                    "--grid", "32x32", "--out", str(tmp_path))  # fmt: skip
    assert code == 2 and "give --dynamic too" in out
    assert not list(tmp_path.iterdir())


# -- every path refuses what the rules refuse -----------------------------------------------


def test_the_runtime_and_its_self_check_prove_several_sizes(tiny_export: Any) -> None:
    model = kr.load(tiny_export.directory)
    assert model.input_shape == (3, None, None)
    checked = model.self_check()
    assert {r.inputs.rsplit(" ", 1)[-1] for r in checked.rows} >= {"16x16", "16x64", "64x16"}
    sets = list(reference_sets(tiny_export.directory, read_manifest(tiny_export.directory)))
    assert len({x.shape[2:] for _, _, x, _ in sets}) >= 3
    rules = model.rules
    assert rules is not None
    for h, w in rules.off_grid((3, 32, 32)):
        with pytest.raises(InputError, match="this model takes"):
            model.predict(np.zeros((1, 3, h, w), np.float32))
    assert model.predict(np.zeros((2, 3, 24, 56), np.float32))["logits"].shape == (2, 4)


def test_predict_feeds_an_image_at_an_allowed_size_and_says_so(
    tiny_export: Any, tmp_path: Path
) -> None:
    from PIL import Image

    Image.new("RGB", (100, 30), (200, 10, 10)).save(tmp_path / "wide.png")
    Image.new("RGB", (40, 24), (10, 200, 10)).save(tmp_path / "fits.png")
    code, out = run("predict", str(tiny_export.directory), str(tmp_path / "wide.png"),
                    str(tmp_path / "fits.png"))  # fmt: skip
    assert code == 0, out
    wide = next(line for line in out.splitlines() if "wide.png" in line)
    fits = next(line for line in out.splitlines() if "fits.png" in line)
    assert "resized 100x30 -> 64x32" in wide
    assert "resized" not in fits


def test_a_file_whose_graph_fixes_a_size_its_rules_let_vary_is_refused(
    tiny_export: Any, tmp_path: Path
) -> None:
    import onnx

    model = onnx.load(str(tiny_export.directory / "model.onnx"))
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 32  # the facts still say 16..64
    onnx.save(model, str(tmp_path / "edited.onnx"))
    with pytest.raises(ArtifactError, match=r"facts say input shape \[3, '\?', '\?'\].*edited"):
        kr.load(tmp_path / "edited.onnx")


def test_serve_reports_the_rules_and_refuses_other_sizes(tiny_export: Any) -> None:
    model = kr.load(tiny_export.directory)
    with running_server({"tiny": model}) as (url, _):
        status, _, body = request(url, "GET", "/v2/models/tiny")
        meta = json.loads(body)
        assert meta["inputs"][0]["shape"] == [-1, 3, -1, -1]
        assert meta["parameters"]["dynamic"] == RULE
        for h, w in ((16, 64), (32, 32)):
            x = np.random.default_rng(0).standard_normal((1, 3, h, w), dtype=np.float32)
            status, _, body = request(url, "POST", "/v2/models/tiny/infer", json_body(x))
            assert status == 200
            got = np.asarray(json.loads(body)["outputs"][0]["data"], np.float32)
            assert np.allclose(got, model.predict(x)["logits"].ravel(), atol=1e-5)
        x = np.zeros((1, 3, 20, 32), np.float32)
        status, _, body = request(url, "POST", "/v2/models/tiny/infer", json_body(x))
        assert status == 400 and b"height is 20; this model takes height 16..64" in body


def test_the_batcher_never_merges_two_sizes() -> None:
    import asyncio

    from kit.server.batching import Batch, Batcher

    shapes: list[tuple[int, ...]] = []

    async def record(batch: Batch) -> dict[str, np.ndarray]:
        x = batch.array()
        shapes.append(x.shape)
        return {"y": x.reshape(len(x), -1).sum(axis=1)}

    async def main() -> list[Any]:
        batcher = Batcher(record, max_batch=16, max_delay=0.02)
        batcher.start()
        xs = [np.full((1, 1, h, h), i, np.float32) for i, h in enumerate([2, 3, 2, 3, 2])]
        answers = await asyncio.gather(*(batcher.submit(x) for x in xs))
        await batcher.stop()
        return [(x, a[0]["y"]) for x, a in zip(xs, answers, strict=True)]

    # merging two sizes would fail the concatenation and every caller with it
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as own:  # a loop of its own (a browser test may hold one here)
        answers = own.submit(asyncio.run, main()).result()
    for x, y in answers:
        assert y[0] == x.sum()  # each caller got its own row back
    assert sum(s[0] for s in shapes) == 5 and {s[2] for s in shapes} == {2, 3}
    assert max(s[0] for s in shapes if s[2] == 2) >= 2  # same-size requests still merge


def test_triton_config_has_free_dims_and_the_rules(tiny_export: Any, tmp_path: Path) -> None:
    code, out = run("triton", str(tiny_export.directory), "--repo", str(tmp_path / "repo"))
    assert code == 0, out
    config = next((tmp_path / "repo").rglob("config.pbtxt")).read_text()
    assert "dims: 3\n  dims: -1\n  dims: -1\n" in config
    assert RULE in config


def test_kit_parity_adds_grid_sizes_and_refuses_outside_ones(tiny_export: Any) -> None:
    where = str(tiny_export.directory)
    code, out = run("parity", where, "--factory", "tests.user_nets:tiny", "--grid", "24x40")
    assert code == 0, out
    assert "random b=1 24x40" in out and "random b=2 16x64" in out
    code, out = run("parity", where, "--factory", "tests.user_nets:tiny", "--grid", "20x40")
    assert code == 2 and "outside the rules" in out


def test_variants_keep_the_rules_and_are_judged_at_every_grid_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kit.variants import quantize

    result = _export(tmp_path)
    factory = ("--factory", "tests.user_nets:tiny")
    code, out = run("quantize", str(result.directory), "--random-calibration", *factory)
    assert code == 0, out
    manifest = read_manifest(result.directory)
    grid = manifest.variants["int8"].grid
    assert len(grid) >= 10 and "16x64" in grid and all(0 <= a <= 1 for a in grid.values())
    int8 = kr.load(result.directory, precision="int8")
    assert int8.rules == manifest.facts.dynamic
    with pytest.raises(InputError, match="takes height 16..64"):
        int8.predict(np.zeros((1, 3, 20, 32), np.float32))

    # a variant that answers otherwise at one size, and only there, is refused
    real = quantize.predictions_each

    def wrong_at_16x64(path: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
        found = real(path, inputs)
        wrong = "fp16" in path.name
        return [
            f + 1 if wrong and x.shape[2:] == (16, 64) else f
            for f, x in zip(found, inputs, strict=True)
        ]

    monkeypatch.setattr(quantize, "predictions_each", wrong_at_16x64)
    code, out = run(
        "quantize", str(result.directory), "--precision", "fp16", "--random-calibration", *factory
    )
    assert code == 1 and "at 16x64 is under" in out
    assert "fp16" not in read_manifest(result.directory).variants


def test_bench_times_the_grid_and_report_shows_the_sizes(tiny_export: Any) -> None:
    where = str(tiny_export.directory)
    args = ("--batch-sizes", "1", "--seconds", "0.05", "--cold-runs", "0", "--json")
    code, out = run("bench", where, "--grid", *args, "--factory", "tests.user_nets:tiny")
    assert code == 0, out
    rows = json.loads(out[out.index("{") :])["rows"]
    sized = {r["size"] for r in rows if r["size"]}
    assert {"16x64", "64x16", "64x64"} <= sized and len(sized) >= 10
    assert all(r["batch"] == 1 and r["peak_share"] is None for r in rows if r["size"])
    code, out = run("report", where)
    assert code == 0, out
    rules = parse_dynamic([RULE], (3, 32, 32))
    assert rules is not None
    # every grid size (an earlier kit parity --grid in this module may have added one)
    counts = [int(n) for n in re.findall(r"pass \((\d+) sizes\)", out)]
    assert counts and min(counts) >= len(rules.grid((3, 32, 32))), out
    assert f"sizes that vary: {rules.describe()}" in out


def test_bench_grid_of_a_fixed_size_export_is_one_sentence(lenet_export: Path) -> None:
    code, out = run("bench", str(lenet_export), "--grid", "--cold-runs", "0")
    assert code == 2 and "this export takes one size" in out and "Traceback" not in out


@pytest.mark.slow
def test_a_converter_that_cannot_vary_the_size_writes_a_static_file_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kit.export import edge

    convert = edge.export_tflite

    def no_varying_sizes(*args: Any, rules: Any = None, **kw: Any) -> Any:
        if rules is not None:
            raise ArtifactError("litert-torch could not convert tiny: dynamic shapes refused")
        return convert(*args, rules=None, **kw)

    monkeypatch.setattr(edge, "export_tflite", no_varying_sizes)
    options = ExportOptions(formats=("onnx", "tflite"), progress=False)
    result = export_network(
        "tests.user_nets:tiny", tmp_path, input_shape=(3, 32, 32), options=options,
        dynamic=(RULE,),
    )  # fmt: skip
    manifest = read_manifest(result.directory)
    assert "static at 3x32x32" in manifest.static["model.tflite"]
    assert any("model.tflite is static at 3x32x32" in n for n in result.report.notes)
    tflite = {c.inputs for c in result.report.comparisons if c.artifact == "tflite"}
    onnx = {c.inputs for c in result.report.comparisons if c.artifact == "onnx"}
    assert tflite and all("x" not in i.rsplit(" ", 1)[-1] for i in tflite)  # the example only
    assert len(onnx) > len(tflite) + 10
    code, out = run("report", str(result.directory))
    assert code == 0 and "model.tflite is static at 3x32x32" in out


def test_one_varying_axis_gets_every_interior_size() -> None:
    rules = parse_dynamic(["width=16..128:16"], (3, 32, 64))
    assert rules is not None
    grid = rules.grid((3, 32, 64))
    assert all(h == 32 for h, _ in grid)
    assert {w for _, w in grid} == {16, 48, 64, 80, 128}


def test_a_batch_rule_caps_the_server_and_triton(tmp_path: Path) -> None:
    options = ExportOptions(formats=("onnx",), progress=False)
    result = export_network(
        "tests.user_nets:tiny", tmp_path, input_shape=(3, 32, 32), options=options,
        dynamic=("batch=1..4",),
    )  # fmt: skip
    assert {c.batch for c in result.report.comparisons} == {1, 3, 4}  # 8 is outside; 4 added
    model = kr.load(result.directory)
    assert model.self_check().rows
    with pytest.raises(InputError, match="batch is 5; this model takes batch 1..4"):
        model.predict(np.zeros((5, 3, 32, 32), np.float32))
    with running_server({"tiny": model}) as (url, _):
        x = np.zeros((5, 3, 32, 32), np.float32)
        status, _, body = request(url, "POST", "/v2/models/tiny/infer", json_body(x))
        assert status == 400 and b"batch is 5; this model takes batch 1..4" in body
        ok = np.zeros((4, 3, 32, 32), np.float32)
        status, _, body = request(url, "POST", "/v2/models/tiny/infer", json_body(ok))
        assert status == 200
    code, out = run("triton", str(result.directory), "--repo", str(tmp_path / "repo"))
    assert code == 0, out
    assert "max_batch_size: 4\n" in (tmp_path / "repo" / "tiny" / "config.pbtxt").read_text()


def test_the_self_check_refuses_reference_data_outside_the_rules(tmp_path: Path) -> None:
    from onnx import numpy_helper

    from kit.artifact import describe_files, write_manifest

    result = _export(tmp_path)
    folder = result.directory
    manifest = read_manifest(folder)
    first = manifest.reference.sets[0].directory  # type: ignore[union-attr]
    x = np.zeros((1, 3, 20, 32), np.float32)  # 20 is off the multiple of 8
    tensor = numpy_helper.from_array(x, "input")
    (folder / first / "input_0.pb").write_bytes(tensor.SerializeToString())
    write_manifest(
        folder, manifest.with_files(describe_files(folder, {f"{first}/input_0.pb": "reference"}))
    )
    with pytest.raises(ArtifactError, match="height is 20; this model takes height 16..64"):
        kr.load(folder).self_check()
