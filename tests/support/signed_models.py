"""Signed versions of the demo model (models/vrm-quality) for tests that run the real agent.

Owns: `signed_version` (a copy of the demo package as another version, optionally with another
graph, signed with the test's own key and placed the way a delivery is: complete, then
renamed into `models_dir/vrm-quality/<version>`) and `offset_graph` (the demo graph with a
constant added to each output: a challenger whose predictions differ from the demo model's by
a known amount on the same features).
Must not: touch the repository's models folder (it copies from it), or sign with the demo
key (a test makes its own with agent.packages.keys.generate_keypair).
Invariants: the manifest's version and sha256 match the folder and the graph; the outputs keep
the demo manifest's names, order, dtype (float32) and shape.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from agent.packages.keys import sign_package

__all__ = ["DECLARED_RMSE", "DEMO", "MODEL", "OUTPUTS", "offset_graph", "signed_version"]

REPO = Path(__file__).resolve().parents[2]
MODEL = "vrm-quality"
DEMO = REPO / "models" / MODEL / "1.0.0"
_MANIFEST = json.loads((DEMO / "manifest.json").read_text())
OUTPUTS: tuple[str, ...] = tuple(o["name"] for o in _MANIFEST["outputs"])
"""The demo model's outputs, in the order of its output tensor's columns."""
DECLARED_RMSE: dict[str, float] = dict(_MANIFEST["validation"]["rmse"])
"""The validation RMSE per output the demo package declares (every version made here too)."""


def signed_version(root: Path, version: str, key: Path, model: bytes | None = None) -> Path:
    """`root/vrm-quality/<version>`: the demo package as `version` (graph `model`, or the
    demo's), signed with the private key in `key`."""
    folder = root / MODEL / version
    staging = root / f".staging-{version}"
    shutil.copytree(DEMO, staging)
    manifest = json.loads((staging / "manifest.json").read_text())
    manifest["version"] = version
    if model is not None:
        (staging / "model.onnx").write_bytes(model)
    data = (staging / "model.onnx").read_bytes()
    manifest["model"]["sha256"] = hashlib.sha256(data).hexdigest()
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    sign_package(staging, key)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(folder)  # appears complete, as a delivery does
    return folder


def offset_graph(offsets: Mapping[str, float]) -> bytes:
    """The demo graph with `offsets[output]` added to each named output (0 for the others)."""
    unknown = set(offsets) - set(OUTPUTS)
    if unknown:
        raise KeyError(f"not outputs of the demo model: {sorted(unknown)}; it has {OUTPUTS}")
    model = onnx.load(DEMO / "model.onnx")
    graph = model.graph
    out = graph.output[0].name
    for node in graph.node:
        node.output[:] = [f"{o}_before_offset" if o == out else o for o in node.output]
    vector = np.array([[offsets.get(name, 0.0) for name in OUTPUTS]], dtype=np.float32)
    graph.initializer.append(numpy_helper.from_array(vector, "output_offset"))
    graph.node.append(
        onnx.helper.make_node("Add", [f"{out}_before_offset", "output_offset"], [out])
    )
    onnx.checker.check_model(model)
    assert graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    return bytes(model.SerializeToString())
