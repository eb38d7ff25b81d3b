"""The artifact contract: typed facts that validate, and the one manifest reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kit.artifact import MANIFEST, SINGLE_OUTPUT, ModelFacts, read_manifest
from kit.errors import ArtifactError

GOOD = {"name": "m", "input_shape": [1, 28, 28], "mean": [0.1], "std": [0.3]}


def test_facts_round_trip_and_fill_defaults() -> None:
    facts = ModelFacts.from_dict({**GOOD, "num_classes": 2, "class_names": ["a", "b"]})
    assert facts.outputs == (SINGLE_OUTPUT,) and facts.is_classifier
    assert ModelFacts.from_json(facts.to_json()) == facts
    assert json.loads(facts.to_json())["input_shape"] == [1, 28, 28]
    # a newer kit may add facts: they are ignored, not an error
    assert ModelFacts.from_dict({**GOOD, "future": 1}).name == "m"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input_shape": [0, 28, 28]}, "input_shape \\[0, 28, 28\\] must be positive integers"),
        ({"mean": [0.1, 0.2]}, "one value per channel"),
        ({"std": [0.0]}, "std values must be positive"),
        ({"outputs": ["a", "a"]}, "outputs must be distinct"),
        ({"num_classes": 3, "class_names": ["a"]}, "1 class names for 3 classes"),
        ({"name": ""}, "name must be a non-empty string"),
        ({"input_shape": None}, "field input_shape is missing"),
        ({"rtol": -1}, "tolerances must be non-negative"),
    ],
)
def test_bad_facts_are_one_sentence(change: dict[str, object], message: str) -> None:
    data = {**GOOD, **change}
    if change.get("input_shape", 1) is None:
        del data["input_shape"]
    with pytest.raises(ArtifactError, match=message):
        ModelFacts.from_dict(data)


def test_manifest_reader_says_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="is not a directory"):
        read_manifest(tmp_path / "nope")
    with pytest.raises(ArtifactError, match=f"{MANIFEST} is missing; was .* written by kit"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text("[1, 2]")
    with pytest.raises(ArtifactError, match="not a kit manifest"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text("{nope")
    with pytest.raises(ArtifactError, match="Cannot read"):
        read_manifest(tmp_path)
