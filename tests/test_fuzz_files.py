"""Property-based fuzzing of what people download: manifests, ONNX metadata and image files.

No input yields anything but a kit error (one sentence) or a valid value: no other exception,
no hang, no unbounded memory.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kit.runtime as kr
from kit.artifact import FACTS_KEY, MANIFEST, ModelFacts, read_manifest
from kit.errors import KitError
from kit.runtime.images import read_image

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


def _paths(data: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) of a JSON value, to replace one part of it."""
    found: list[tuple[Any, Any]] = []
    if isinstance(data, dict):
        for k, v in data.items():
            found.append((data, k))
            found += _paths(v)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found.append((data, i))
            found += _paths(v)
    return found


@pytest.fixture(scope="module")
def manifest_text(lenet_export: Path) -> str:
    return (lenet_export / MANIFEST).read_text()


@FUZZ
@given(choice=st.integers(min_value=0), value=json_values, delete=st.booleans())
def test_a_mutated_manifest_is_read_or_refused_in_one_sentence(
    manifest_text: str,
    tmp_path_factory: pytest.TempPathFactory,
    choice: int,
    value: Any,
    delete: bool,
) -> None:
    data = json.loads(manifest_text)
    container, key = _paths(data)[choice % len(_paths(data))]
    if delete and isinstance(container, dict):
        del container[key]
    else:
        container[key] = value
    folder = tmp_path_factory.mktemp("m")
    (folder / MANIFEST).write_text(json.dumps(data))
    try:
        read_manifest(folder)
    except KitError as exc:
        assert "\n" not in str(exc) and str(exc).endswith(".")


@FUZZ
@given(value=json_values)
def test_any_json_as_a_manifest_is_read_or_refused(
    tmp_path_factory: pytest.TempPathFactory, value: Any
) -> None:
    folder = tmp_path_factory.mktemp("m")
    (folder / MANIFEST).write_text(json.dumps(value))
    try:
        read_manifest(folder)
    except KitError as exc:
        assert "\n" not in str(exc)


@pytest.fixture(scope="module")
def onnx_proto(lenet_export: Path) -> Any:
    import onnx

    return onnx.load(str(lenet_export / "model.onnx"))


def _facts_mutation() -> Any:
    good = {"name": "lenet", "input_shape": [1, 28, 28], "mean": [0.13], "std": [0.31]}
    return st.builds(
        lambda key, value, raw: raw if raw is not None else json.dumps({**good, key: value}),
        st.sampled_from([*good, "outputs", "num_classes", "class_names", "atol", "rtol"]),
        json_values,
        st.one_of(st.none(), st.text(max_size=40)),
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(facts=_facts_mutation())
def test_any_facts_in_onnx_metadata_load_or_are_refused(
    onnx_proto: Any, tmp_path_factory: pytest.TempPathFactory, facts: str
) -> None:
    import onnx

    proto = onnx.ModelProto()
    proto.CopyFrom(onnx_proto)
    next(p for p in proto.metadata_props if p.key == FACTS_KEY).value = facts
    path = tmp_path_factory.mktemp("o") / "model.onnx"
    onnx.save(proto, str(path))
    try:
        model = kr.load(path, warmup=False)
    except KitError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(model.facts, ModelFacts)
    model.predict(np.zeros((1, 1, 28, 28), np.float32))


@pytest.fixture(scope="module")
def image_files() -> list[bytes]:
    from PIL import Image

    found = []
    for mode, fmt in (
        ("L", "PNG"),
        ("RGB", "JPEG"),
        ("RGBA", "PNG"),
        ("I;16", "PNG"),
        ("P", "GIF"),
        ("L", "BMP"),
    ):
        out = io.BytesIO()
        Image.new(mode, (17, 9)).save(out, fmt)
        found.append(out.getvalue())
    return found


@FUZZ
@given(
    which=st.integers(0, 5),
    at=st.integers(min_value=0),
    chunk=st.binary(min_size=1, max_size=16),
    cut=st.booleans(),
)
def test_a_corrupted_image_is_read_or_refused(
    image_files: list[bytes],
    tmp_path_factory: pytest.TempPathFactory,
    which: int,
    at: int,
    chunk: bytes,
    cut: bool,
) -> None:
    raw = image_files[which]
    at %= len(raw)
    data = raw[:at] if cut else raw[:at] + chunk + raw[at + len(chunk) :]
    path = tmp_path_factory.mktemp("i") / "image"
    path.write_bytes(data)
    _read_or_refused(path)


def _read_or_refused(path: Path) -> None:
    """``path`` reads as a bounded 8-bit picture, or is refused in one sentence."""
    try:
        pixels = read_image(path, max_pixels=1_000_000)
    except KitError as exc:
        assert "\n" not in str(exc)
        return
    assert pixels.dtype == np.uint8 and pixels.ndim in (2, 3) and pixels.size <= 4_000_000


def test_the_fuzzers_start_from_files_kit_reads(lenet_export: Path, tmp_path: Path) -> None:
    """The seeds are valid: mutations, not the seeds, make the refusals."""
    shutil.copytree(lenet_export, tmp_path / "lenet")
    assert read_manifest(tmp_path / "lenet").name == "lenet"
    assert kr.load(tmp_path / "lenet").facts is not None


# -- kit infer's fast PNG path (libspng) reads what Pillow reads, and nothing more ---------


@pytest.mark.parametrize(
    ("mode", "shape"), [("L", (9, 17)), ("RGB", (9, 17, 3)), ("RGBA", (9, 17, 4))]
)
def test_the_fast_png_path_reads_what_pillow_reads(
    tmp_path: Path, mode: str, shape: tuple[int, ...]
) -> None:
    from PIL import Image

    from kit.runtime.images import _fast_png

    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(pixels, mode).save(path)
    fast = _fast_png(path, 1_000_000)
    assert fast is not None, "an 8-bit PNG takes the fast path"
    assert np.array_equal(fast, pixels) and np.array_equal(read_image(path), pixels)


def test_a_png_bomb_and_a_16_bit_png_are_left_to_pillow(tmp_path: Path) -> None:
    import struct
    import zlib

    from PIL import Image

    from kit.runtime.images import _fast_png

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    (tmp_path / "bomb.png").write_bytes(bomb + chunk(b"IEND", b""))
    assert _fast_png(tmp_path / "bomb.png", 1_000_000) is None
    with pytest.raises(KitError, match="claims 100000x100000 pixels"):
        read_image(tmp_path / "bomb.png", max_pixels=1_000_000)
    Image.fromarray(np.full((5, 5), 40000, np.uint16)).save(tmp_path / "deep.png")
    assert _fast_png(tmp_path / "deep.png", 1_000_000) is None
    assert read_image(tmp_path / "deep.png").dtype == np.uint8  # Pillow's 8-bit reading


@FUZZ
@given(at=st.integers(min_value=0), chunk=st.binary(min_size=1, max_size=16), cut=st.booleans())
def test_a_corrupted_png_on_the_fast_path_is_read_or_refused(
    tmp_path_factory: pytest.TempPathFactory,
    at: int,
    chunk: bytes,
    cut: bool,
) -> None:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.arange(17 * 9 * 3, dtype=np.uint8).reshape(9, 17, 3)).save(out, "PNG")
    raw = out.getvalue()
    at %= len(raw)
    data = raw[:at] if cut else raw[:at] + chunk + raw[at + len(chunk) :]
    path = tmp_path_factory.mktemp("p") / "image.png"
    path.write_bytes(data)
    _read_or_refused(path)
