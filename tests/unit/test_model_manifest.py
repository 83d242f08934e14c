"""The manifest's rules, canonical bytes and graph checks (pure, no files, no onnxruntime)."""

from __future__ import annotations

import copy
import json
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.domain.errors import RejectedError
from agent.packages.manifest import (
    GraphSignature,
    ModelRejectedError,
    TensorSpec,
    canonical_json,
    check_graph,
    manifest_problems,
    parse_manifest,
    training_midpoints,
)

SHA = "ab" * 32


def manifest(n_in: int = 3, n_out: int = 2) -> dict[str, Any]:
    return {
        "format_version": 1,
        "name": "vrm-quality",
        "version": "1.2.0",
        "created": "2026-11-01T12:00:00Z",
        "training_period": {"start": "2026-08-01", "end": "2026-10-30"},
        "inputs": [
            {
                "name": f"f{i}",
                "tag": None if i == n_in - 1 else f"Mill.Tag{i}",
                "unit": "rpm",
                "min": float(i),
                "max": float(i) + 10,
                "mean": float(i) + 4,
                "std": 2.5,
            }
            for i in range(n_in)
        ],
        "outputs": [{"name": f"y{j}", "unit": "MPa"} for j in range(n_out)],
        "validation": {"split": "time-ordered", "rmse": {f"y{j}": 1.5 for j in range(n_out)}},
        "model": {
            "file": "model.onnx",
            "sha256": SHA,
            "opset": 17,
            "input_name": "x",
            "output_name": "y",
        },
    }


def graph(n_in: int = 3, n_out: int = 2, batch: int | str | None = "N") -> GraphSignature:
    return GraphSignature(
        (TensorSpec("x", "float32", (batch, n_in)),), (TensorSpec("y", "float32", (batch, n_out)),)
    )


def test_a_valid_manifest_parses_into_typed_fields() -> None:
    parsed = parse_manifest(manifest())
    assert parsed.version == "1.2.0"
    assert parsed.training_period.start == date(2026, 8, 1)
    assert [f.name for f in parsed.inputs] == ["f0", "f1", "f2"]
    assert parsed.inputs[2].tag is None
    assert parsed.inputs[0].tag == "Mill.Tag0"
    assert parsed.validation.rmse == {"y0": 1.5, "y1": 1.5}
    assert parsed.model.sha256 == SHA
    assert training_midpoints(parsed) == (5.0, 6.0, 7.0)
    assert manifest_problems(manifest()) == []


def edit(path: str, value: object) -> dict[str, Any]:
    raw = manifest()
    *parents, last = path.split(".")
    node: Any = raw
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return raw


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("format_version", 2, "manifest.format_version: expected 1, found 2"),
        ("version", "1.2", "manifest.version: expected a semver like 1.2.0, found '1.2'"),
        # semver, but packaging.version cannot order it (1.2.0-1 would be a post-release)
        (
            "version",
            "1.2.0-foo",
            "manifest.version: expected a semver like 1.2.0 whose "
            "pre-release packaging.version orders as one (-a.1, -b.2, -rc.1, -dev.3), found "
            "'1.2.0-foo'",
        ),
        (
            "version",
            "1.2.0-1",
            "manifest.version: expected a semver like 1.2.0 whose "
            "pre-release packaging.version orders as one",
        ),
        ("name", "../etc", "manifest.name: expected letters"),
        ("name", KeyError, "manifest.name: missing"),
        ("colour", "red", "manifest.colour: unknown key"),
        ("created", "yesterday", "manifest.created: expected an ISO 8601 date-time"),
        ("training_period.end", "2026-07-01", "expected start <= end"),
        ("inputs", [], "manifest.inputs: expected a non-empty list"),
        ("inputs.0.min", 100.0, "manifest.inputs[0]: expected min <= mean <= max"),
        ("inputs.0.std", 0, "manifest.inputs[0].std: expected > 0, found 0.0"),
        ("inputs.0.max", True, "manifest.inputs[0].max: expected a finite number, found True"),
        ("inputs.0.unit", "", "manifest.inputs[0].unit: expected a non-empty string"),
        ("inputs.1.name", "f0", "manifest.inputs: duplicate name 'f0'"),
        ("outputs.1.name", "y0", "manifest.outputs: duplicate name 'y0'"),
        ("validation.split", "random", "manifest.validation.split: expected 'time-ordered'"),
        ("validation.rmse.s28", 1.0, "manifest.validation.rmse.s28: expected the name of an"),
        ("validation.rmse.y0", -1.0, "manifest.validation.rmse.y0: expected >= 0"),
        ("model.file", "other.onnx", "manifest.model.file: expected 'model.onnx'"),
        ("model.sha256", "AB" * 32, "manifest.model.sha256: expected 64 lowercase hex"),
        ("model.opset", 13, "manifest.model.opset: expected an integer >= 17, found 13"),
        ("model.input_name", None, "manifest.model.input_name: expected a non-empty string"),
    ],
)
def test_each_problem_is_named_by_its_field(path: str, value: object, expected: str) -> None:
    raw = edit(path, value)
    assert any(expected in problem for problem in manifest_problems(raw)), manifest_problems(raw)
    with pytest.raises(ModelRejectedError, match=r"^models/m/1\.2\.0/manifest\.json: invalid"):
        parse_manifest(raw, "models/m/1.2.0/manifest.json")


def test_all_problems_are_reported_at_once() -> None:
    raw = edit("version", "x")
    raw["model"]["opset"] = 1
    raw["inputs"][1]["std"] = -1
    assert len(manifest_problems(raw)) == 3


def test_a_non_object_manifest_is_refused() -> None:
    assert manifest_problems([1, 2]) == ["manifest: expected an object, found list"]
    with pytest.raises(RejectedError):
        parse_manifest("text")


def test_the_rejection_is_a_rejected_error_naming_file_and_reason() -> None:
    error = ModelRejectedError("m/model.onnx", "sha256 mismatch")
    assert isinstance(error, RejectedError)
    assert str(error) == "m/model.onnx: sha256 mismatch"
    assert (error.file, error.reason) == ("m/model.onnx", "sha256 mismatch")


def test_canonical_json_sorts_keys_without_whitespace() -> None:
    assert canonical_json({"b": [1, 2.5], "a": "é"}) == '{"a":"é","b":[1,2.5]}'.encode()
    with pytest.raises(ValueError, match="JSON compliant"):
        canonical_json({"a": float("nan")})


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values))
def test_canonical_json_is_the_same_whatever_the_key_order_or_layout(value: dict[str, Any]) -> None:
    reordered = dict(reversed(list(value.items())))
    pretty = json.loads(json.dumps(reordered, indent=2))
    assert canonical_json(pretty) == canonical_json(value)
    assert json.loads(canonical_json(value)) == value


def test_a_matching_graph_has_no_problems() -> None:
    parsed = parse_manifest(manifest())
    assert check_graph(parsed, graph()) == []
    assert check_graph(parsed, graph(batch=None)) == []


@pytest.mark.parametrize(
    ("signature", "expected"),
    [
        (graph(n_in=4), "graph input 'x' shape mismatch: expected [batch, 3]"),
        (graph(n_out=3), "graph output 'y' shape mismatch: expected [batch, 2]"),
        (graph(batch=1), "graph input 'x' shape: expected a dynamic batch axis, found 1"),
        (
            GraphSignature((TensorSpec("x", "float64", ("N", 3)),), graph().outputs),
            "graph input 'x' dtype: expected float32, found float64",
        ),
        (
            GraphSignature((TensorSpec("input", "float32", ("N", 3)),), graph().outputs),
            "graph inputs ['input']: expected exactly ['x']",
        ),
        (
            GraphSignature(graph().inputs * 2, graph().outputs),
            "graph inputs ['x', 'x']: expected exactly ['x']",
        ),
        (
            GraphSignature((TensorSpec("x", "float32", ("N",)),), graph().outputs),
            "graph input 'x' shape: expected [batch, 3], found ['N']",
        ),
    ],
)
def test_graph_mismatches_are_named(signature: GraphSignature, expected: str) -> None:
    problems = check_graph(parse_manifest(manifest()), signature)
    assert any(expected in problem for problem in problems), problems


def test_parsing_does_not_modify_its_input() -> None:
    raw = manifest()
    before = copy.deepcopy(raw)
    parse_manifest(raw)
    assert raw == before
