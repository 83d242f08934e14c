"""The model package's manifest: its fields, its canonical bytes, its checks against a graph.

Owns: the manifest dataclasses (format_version 1), ``canonical_json`` (the exact bytes the
Ed25519 signature covers), ``parse_manifest``/``manifest_problems`` (every problem at once,
each naming the field), ``check_graph`` (a graph's inputs/outputs against the manifest),
``training_midpoints`` (the warm-up row) and ``ModelRejectedError``.
Must not: read files, hash, verify signatures or import onnx/onnxruntime;
``agent.packages.package`` does the I/O and hands values here.
Invariants:
- ``canonical_json(x)`` is ``json.dumps(x, sort_keys=True, separators=(",", ":"),
  ensure_ascii=False, allow_nan=False)`` encoded as UTF-8, so the same object always gives
  the same bytes; the signature is computed over the canonical bytes of the JSON object as
  read from ``manifest.json`` (unknown keys are refused, so nothing unsigned can hide).
- A ``ModelManifest`` exists only if every check passed: format_version 1, a version
  (agent.packages.versions: a semver packaging.version orders),
  non-empty unique input and output names, finite ``min <= mean <= max`` and ``std > 0`` per
  input, rmse keys naming outputs, a 64-hex sha256, ``model.file == "model.onnx"``.
- ``check_graph`` accepts exactly one float32 input ``[batch, n_inputs]`` and one float32
  output ``[batch, n_outputs]``, with the names the manifest gives and a dynamic batch axis.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from agent.domain.errors import RejectedError
from agent.packages.versions import problem as version_problem

__all__ = [
    "FORMAT_VERSION",
    "MODEL_FILE",
    "GraphSignature",
    "InputFeature",
    "ModelFile",
    "ModelManifest",
    "ModelRejectedError",
    "OutputFeature",
    "TensorSpec",
    "TrainingPeriod",
    "Validation",
    "canonical_json",
    "check_graph",
    "manifest_problems",
    "parse_manifest",
    "training_midpoints",
]

FORMAT_VERSION = 1
MODEL_FILE = "model.onnx"
MIN_OPSET = 17
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TOP_KEYS = frozenset(
    {"format_version", "name", "version", "created", "training_period"}
    | {"inputs", "outputs", "validation", "model"}
)


class ModelRejectedError(RejectedError):
    """A model package (or one inference on it) is refused; the message names file and reason."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


@dataclass(frozen=True)
class InputFeature:
    """One input column, in order: ``min``/``max``/``mean``/``std`` over the training data."""

    name: str
    tag: str | None
    unit: str
    min: float
    max: float
    mean: float
    std: float


@dataclass(frozen=True)
class OutputFeature:
    """One output column, in order."""

    name: str
    unit: str


@dataclass(frozen=True)
class TrainingPeriod:
    """The dates of the first and last training sample (inclusive)."""

    start: date
    end: date


@dataclass(frozen=True)
class Validation:
    """Validation error per output, on a time-ordered split, in the output's unit."""

    split: str
    rmse: Mapping[str, float]


@dataclass(frozen=True)
class ModelFile:
    """The graph file, its sha256 (lowercase hex), opset and the I/O tensor names."""

    file: str
    sha256: str
    opset: int
    input_name: str
    output_name: str


@dataclass(frozen=True)
class ModelManifest:
    """A validated manifest.json."""

    format_version: int
    name: str
    version: str
    created: datetime
    training_period: TrainingPeriod
    inputs: tuple[InputFeature, ...]
    outputs: tuple[OutputFeature, ...]
    validation: Validation
    model: ModelFile


@dataclass(frozen=True)
class TensorSpec:
    """A graph tensor: name, numpy dtype name, shape (int, or str/None for a dynamic axis)."""

    name: str
    dtype: str
    shape: tuple[int | str | None, ...]


@dataclass(frozen=True)
class GraphSignature:
    """What a loaded graph declares as inputs and outputs."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def canonical_json(value: object) -> bytes:
    """Return the canonical UTF-8 JSON bytes of ``value`` (sorted keys, no whitespace)."""
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def training_midpoints(manifest: ModelManifest) -> tuple[float, ...]:
    """Return ``(min + max) / 2`` per input, in input order (the warm-up row)."""
    return tuple((feature.min + feature.max) / 2 for feature in manifest.inputs)


def parse_manifest(raw: object, file: str = "manifest.json") -> ModelManifest:
    """Validate a decoded manifest object; raise ``ModelRejectedError`` listing every problem."""
    manifest, problems = _parse(raw)
    if manifest is None or problems:
        raise ModelRejectedError(file, "invalid manifest: " + "; ".join(problems))
    return manifest


def manifest_problems(raw: object) -> list[str]:
    """Return every problem of a decoded manifest object (empty when it is valid)."""
    return _parse(raw)[1]


def check_graph(manifest: ModelManifest, graph: GraphSignature) -> list[str]:
    """Return every mismatch between the graph's signature and the manifest (empty if none)."""
    problems: list[str] = []
    for kind, specs, name, width in (
        ("input", graph.inputs, manifest.model.input_name, len(manifest.inputs)),
        ("output", graph.outputs, manifest.model.output_name, len(manifest.outputs)),
    ):
        names = [spec.name for spec in specs]
        if names != [name]:
            problems.append(f"graph {kind}s {names}: expected exactly [{name!r}]")
            continue
        spec = specs[0]
        if spec.dtype != "float32":
            problems.append(f"graph {kind} {name!r} dtype: expected float32, found {spec.dtype}")
        if len(spec.shape) != 2:
            problems.append(
                f"graph {kind} {name!r} shape: expected [batch, {width}], found {list(spec.shape)}"
            )
            continue
        batch, columns = spec.shape
        if isinstance(batch, int):
            problems.append(
                f"graph {kind} {name!r} shape: expected a dynamic batch axis, found {batch}"
            )
        if columns != width:
            problems.append(
                f"graph {kind} {name!r} shape mismatch: expected [batch, {width}] "
                f"(the manifest lists {width} {kind}s), found {list(spec.shape)}"
            )
    return problems


# -- parsing ------------------------------------------------------------------------------


class _Fields:
    """Collects problems while reading typed fields out of JSON objects."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def obj(self, raw: object, path: str, keys: frozenset[str]) -> Mapping[str, Any] | None:
        if not isinstance(raw, Mapping):
            self.problems.append(f"{path}: expected an object, found {type(raw).__name__}")
            return None
        for key in sorted(set(raw) - keys):
            self.problems.append(f"{path}.{key}: unknown key")
        for key in sorted(keys - set(raw)):
            self.problems.append(f"{path}.{key}: missing")
        return raw

    def text(self, raw: Mapping[str, Any], key: str, path: str, *, null: bool = False) -> str:
        value = raw.get(key)
        if value is None and null and key in raw:
            return ""
        if key in raw and (not isinstance(value, str) or not value.strip()):
            expected = "a non-empty string or null" if null else "a non-empty string"
            self.problems.append(f"{path}.{key}: expected {expected}, found {value!r}")
        return value if isinstance(value, str) else ""

    def number(self, raw: Mapping[str, Any], key: str, path: str) -> float:
        value = raw.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        if key in raw:
            self.problems.append(f"{path}.{key}: expected a finite number, found {value!r}")
        return math.nan

    def moment(self, raw: Mapping[str, Any], key: str, path: str) -> object:
        value = raw.get(key)
        parse = datetime.fromisoformat if key == "created" else date.fromisoformat
        try:
            return parse(value) if isinstance(value, str) else None
        except ValueError:
            pass
        if key in raw:
            kind = "an ISO 8601 date-time" if key == "created" else "an ISO 8601 date"
            self.problems.append(f"{path}.{key}: expected {kind}, found {value!r}")
        return None


def _parse(raw: object) -> tuple[ModelManifest | None, list[str]]:
    f = _Fields()
    top = f.obj(raw, "manifest", _TOP_KEYS)
    if top is None:
        return None, f.problems
    if "format_version" in top and top["format_version"] != FORMAT_VERSION:
        f.problems.append(
            f"manifest.format_version: expected {FORMAT_VERSION}, found {top['format_version']!r}"
        )
    name = f.text(top, "name", "manifest")
    if name and not _NAME.match(name):
        f.problems.append(f"manifest.name: expected letters, digits, '.', '_', '-', found {name!r}")
    version = f.text(top, "version", "manifest")
    if version and (problem := version_problem(version)) is not None:
        f.problems.append(f"manifest.version: {problem}")
    created = f.moment(top, "created", "manifest")
    period = _period(f, top.get("training_period"))
    inputs = _inputs(f, top.get("inputs", []))
    outputs = _outputs(f, top.get("outputs", []))
    validation = _validation(f, top.get("validation"), {o.name for o in outputs})
    model = _model(f, top.get("model"))
    if f.problems or not isinstance(created, datetime):
        return None, f.problems
    assert period is not None and validation is not None and model is not None
    manifest = ModelManifest(
        FORMAT_VERSION, name, version, created, period, inputs, outputs, validation, model
    )
    return manifest, f.problems


def _period(f: _Fields, raw: object) -> TrainingPeriod | None:
    path = "manifest.training_period"
    period = f.obj(raw, path, frozenset({"start", "end"}))
    if period is None:
        return None
    start, end = f.moment(period, "start", path), f.moment(period, "end", path)
    if not (isinstance(start, date) and isinstance(end, date)):
        return None
    if start > end:
        f.problems.append(f"{path}: expected start <= end, found {start} > {end}")
    return TrainingPeriod(start, end)


def _list(f: _Fields, raw: object, path: str) -> Sequence[object]:
    if not isinstance(raw, list) or not raw:
        f.problems.append(f"{path}: expected a non-empty list, found {raw!r}")
        return []
    return raw


def _unique(f: _Fields, names: Sequence[str], path: str) -> None:
    for name in sorted({n for n in names if names.count(n) > 1}):
        f.problems.append(f"{path}: duplicate name {name!r}")


def _inputs(f: _Fields, raw: object) -> tuple[InputFeature, ...]:
    keys = frozenset({"name", "tag", "unit", "min", "max", "mean", "std"})
    features: list[InputFeature] = []
    for index, item in enumerate(_list(f, raw, "manifest.inputs")):
        path = f"manifest.inputs[{index}]"
        entry = f.obj(item, path, keys)
        if entry is None:
            continue
        name, tag = f.text(entry, "name", path), f.text(entry, "tag", path, null=True)
        unit = f.text(entry, "unit", path)
        low, high = f.number(entry, "min", path), f.number(entry, "max", path)
        mean, std = f.number(entry, "mean", path), f.number(entry, "std", path)
        if not low <= mean <= high and not math.isnan(low + high + mean):
            f.problems.append(f"{path}: expected min <= mean <= max, found {low}, {mean}, {high}")
        if std <= 0:
            f.problems.append(f"{path}.std: expected > 0, found {std}")
        features.append(InputFeature(name, tag or None, unit, low, high, mean, std))
    _unique(f, [feature.name for feature in features], "manifest.inputs")
    return tuple(features)


def _outputs(f: _Fields, raw: object) -> tuple[OutputFeature, ...]:
    features: list[OutputFeature] = []
    for index, item in enumerate(_list(f, raw, "manifest.outputs")):
        path = f"manifest.outputs[{index}]"
        entry = f.obj(item, path, frozenset({"name", "unit"}))
        if entry is not None:
            features.append(OutputFeature(f.text(entry, "name", path), f.text(entry, "unit", path)))
    _unique(f, [feature.name for feature in features], "manifest.outputs")
    return tuple(features)


def _validation(f: _Fields, raw: object, outputs: set[str]) -> Validation | None:
    path = "manifest.validation"
    entry = f.obj(raw, path, frozenset({"split", "rmse"}))
    if entry is None:
        return None
    split = entry.get("split")
    if "split" in entry and split != "time-ordered":
        f.problems.append(f"{path}.split: expected 'time-ordered', found {split!r}")
    rmse = entry.get("rmse")
    if not isinstance(rmse, Mapping) or not rmse:
        f.problems.append(f"{path}.rmse: expected a non-empty object, found {rmse!r}")
        return None
    values: dict[str, float] = {}
    for key in sorted(rmse):
        value = f.number(rmse, key, f"{path}.rmse")
        if key not in outputs:
            f.problems.append(f"{path}.rmse.{key}: expected the name of an output")
        elif value < 0:
            f.problems.append(f"{path}.rmse.{key}: expected >= 0, found {value}")
        values[key] = value
    return Validation("time-ordered", values)


def _model(f: _Fields, raw: object) -> ModelFile | None:
    path = "manifest.model"
    keys = frozenset({"file", "sha256", "opset", "input_name", "output_name"})
    entry = f.obj(raw, path, keys)
    if entry is None:
        return None
    file, sha256 = f.text(entry, "file", path), f.text(entry, "sha256", path)
    if file and file != MODEL_FILE:
        f.problems.append(f"{path}.file: expected {MODEL_FILE!r}, found {file!r}")
    if sha256 and not _SHA256.match(sha256):
        f.problems.append(f"{path}.sha256: expected 64 lowercase hex digits, found {sha256!r}")
    opset = entry.get("opset")
    if "opset" in entry and (
        not isinstance(opset, int) or isinstance(opset, bool) or opset < MIN_OPSET
    ):
        f.problems.append(f"{path}.opset: expected an integer >= {MIN_OPSET}, found {opset!r}")
    inputs, outputs = f.text(entry, "input_name", path), f.text(entry, "output_name", path)
    return ModelFile(file, sha256, opset if isinstance(opset, int) else 0, inputs, outputs)
