"""The onnxruntime session of a verified model package: create, check, warm up, predict.

Owns: the onnxruntime session (CPU only, one intra-op and one inter-op thread, spinning
off), the check of the graph against the manifest, the warm-up and ``ModelSession.predict``;
onnxruntime errors are mapped here, once, into ``ModelRejectedError``. Imported only when a
model is loaded (agent.packages.package.load_package), so an agent without control
loops never loads onnxruntime (~20 MiB).
Must not: read files other than through the verified bytes it is given.
Invariants: ``predict`` takes float32 ``[N, n_inputs]`` (N >= 1) with finite values and
returns float32 ``[N, n_outputs]`` with finite values, or raises ``ModelRejectedError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from onnxruntime.capi.onnxruntime_pybind11_state import (
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    RuntimeException,
)
from onnxruntime.capi.onnxruntime_pybind11_state import (
    NotImplemented as OrtNotImplemented,
)

from agent.packages.manifest import (
    GraphSignature,
    ModelManifest,
    ModelRejectedError,
    TensorSpec,
    check_graph,
    training_midpoints,
)

__all__ = ["ModelSession", "open_session"]

_ORT_ERRORS = (
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    OrtNotImplemented,
    RuntimeException,
)
_DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64"}


def open_session(directory: Path, manifest: ModelManifest, data: bytes) -> ModelSession:
    """Create the session from verified model bytes, check its graph, warm it up."""
    session = ModelSession(directory, manifest, _create_session(directory, data))
    session.predict(np.asarray([training_midpoints(manifest)], dtype=np.float32))
    return session


def _create_session(directory: Path, data: bytes) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    path = str(directory / "model.onnx")
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except _ORT_ERRORS as exc:
        raise ModelRejectedError(path, f"onnxruntime refused the graph: {exc}") from exc
    return session


def _signature(session: Any) -> GraphSignature:
    def spec(arg: Any) -> TensorSpec:
        return TensorSpec(arg.name, _DTYPES.get(arg.type, arg.type), tuple(arg.shape))

    inputs = tuple(spec(arg) for arg in session.get_inputs())
    return GraphSignature(inputs, tuple(spec(arg) for arg in session.get_outputs()))


@dataclass(frozen=True, eq=False)
class ModelSession:
    """A verified, warmed-up model: ``manifest`` says what it is, ``predict`` runs batches."""

    directory: Path
    manifest: ModelManifest
    _session: Any

    def __post_init__(self) -> None:
        problems = check_graph(self.manifest, _signature(self._session))
        if problems:
            file = str(self.directory / self.manifest.model.file)
            raise ModelRejectedError(file, "graph does not match manifest: " + "; ".join(problems))

    def predict(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """Run one batch: float32 ``[N, n_inputs]`` in, float32 ``[N, n_outputs]`` out."""
        file = str(self.directory / self.manifest.model.file)
        n_in, n_out = len(self.manifest.inputs), len(self.manifest.outputs)
        if not isinstance(x, np.ndarray) or x.dtype != np.float32:
            found = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
            raise ModelRejectedError(file, f"input: expected float32 array, found {found}")
        if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] != n_in:
            raise ModelRejectedError(
                file, f"input shape: expected [N >= 1, {n_in}], found {list(x.shape)}"
            )
        if not np.isfinite(x).all():
            raise ModelRejectedError(file, "input: NaN or Inf values")
        feeds = {self.manifest.model.input_name: np.ascontiguousarray(x)}
        try:
            (y,) = self._session.run([self.manifest.model.output_name], feeds)
        except _ORT_ERRORS as exc:
            raise ModelRejectedError(file, f"inference failed: {exc}") from exc
        if not isinstance(y, np.ndarray) or y.dtype != np.float32:
            raise ModelRejectedError(file, "output: expected a float32 array")
        if y.shape != (x.shape[0], n_out):
            raise ModelRejectedError(
                file, f"output shape: expected [{x.shape[0]}, {n_out}], found {list(y.shape)}"
            )
        bad = ~np.isfinite(y)
        if bad.any():
            rows = sorted({int(r) for r in np.nonzero(bad)[0][:5]})
            raise ModelRejectedError(
                file, f"output: {int(bad.sum())} NaN or Inf values (first rows {rows})"
            )
        return y
