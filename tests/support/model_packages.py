"""Model packages for tests: a linear ONNX model and its unsigned package, built in a folder.

Owns: `linear_model` (y = x @ W + b, or its log, float32, opset 17) and `write_package`
(models/vrm/1.0.0 with that model and a manifest of `n_in` inputs f0.. and N_OUT outputs
y0..), the weights W, B and the generator RNG they were drawn from (seed 7).

Must not: sign a package (the tests sign with keys they make) or mock onnxruntime: the
package is loaded the way the agent loads one.

Invariants: the same W and B for every test of a run (drawn once, at import).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

N_IN, N_OUT = 4, 3
RNG = np.random.default_rng(7)
W = RNG.uniform(0.1, 1.0, (N_IN, N_OUT)).astype(np.float32)
B = RNG.uniform(-1.0, 1.0, N_OUT).astype(np.float32)


def linear_model(
    n_in: int = N_IN, *, batch: int | str = "N", log: bool = False, out_name: str = "y"
) -> bytes:
    """y = x @ W + b (or log of it), float32, with a dynamic batch axis named ``batch``."""
    weight, bias = np.resize(W, (n_in, N_OUT)), B
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["lin" if log else out_name]),
    ]
    if log:
        nodes.append(helper.make_node("Log", ["lin"], [out_name]))
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, n_in])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [batch, N_OUT])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def write_package(root: Path, model: bytes, *, n_in: int = N_IN, low: float = 1.0) -> Path:
    directory = root / "models" / "vrm" / "1.0.0"
    directory.mkdir(parents=True)
    (directory / "model.onnx").write_bytes(model)
    manifest: dict[str, Any] = {
        "format_version": 1,
        "name": "vrm",
        "version": "1.0.0",
        "created": "2026-11-01T12:00:00+00:00",
        "training_period": {"start": "2026-08-01", "end": "2026-10-30"},
        "inputs": [
            {
                "name": f"f{i}",
                "tag": f"Mill.T{i}",
                "unit": "%",
                "min": low,
                "max": low + 9,
                "mean": low + 4,
                "std": 2.0,
            }
            for i in range(n_in)
        ],
        "outputs": [{"name": f"y{j}", "unit": "MPa"} for j in range(N_OUT)],
        "validation": {"split": "time-ordered", "rmse": {"y0": 1.4}},
        "model": {
            "file": "model.onnx",
            "sha256": hashlib.sha256(model).hexdigest(),
            "opset": 17,
            "input_name": "x",
            "output_name": "y",
        },
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return directory
