"""Train the demo quality model from the simulator's backfill and export it to ONNX.

Owns: the recipe of plant-model.md section 2.2: 10 inputs (MVs and disturbance estimates,
never CVs the candidates would change), 5 outputs (Blaine, residue 45 um, 28-day and 2-day
strength, specific energy), hourly windows of a 90-day backfill with the excitation plan,
28-day strength labels from the simulator's hidden truth plus lab noise (sigma 1.2 MPa),
a time-ordered validation split (last 20 % of days), an MLP 10-64-64-5 with the input and
output scaling baked into the graph (dynamic batch axis, opset 17).
Must not: run at agent run time (training dependencies are the `train` dependency group).
Invariants: deterministic for a seed; the validation errors it prints are measured on the
held-out period only.

Retraining is one command (after `.tools/bin/uv sync --extra demo --group train`):
    .venv/bin/python models/train_demo.py models/vrm-quality/1.0.0 [--days 90] [--seed 0]
It writes model.onnx, manifest.json (docs/model-package.md) and training.json; then
`edge-agent model sign models/vrm-quality/1.0.0 --key KEY` signs it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import helper, numpy_helper

from agent.demo.mill import backfill

FEATURES = (
    ("separator_speed", "SeparatorSpeed", "rpm"),
    ("feed_rate", "FeedRate", "t/h"),
    ("limestone_share", "LimestoneShare", "%"),
    ("gypsum_share", "GypsumShare", "%"),
    ("grinding_aid", "GrindingAidSetpoint", "g/t"),
    ("fan_speed", "FanSpeed", "%"),
    ("water_injection", "WaterInjection", "m3/h"),
    ("clinker_c3s", "LabClinkerC3S", "%"),
    ("grindability", None, "1"),
    ("blaine_bias", None, "cm2/g"),
)
OUTPUTS = (
    ("blaine", "cm2/g"),
    ("residue45", "%"),
    ("s28", "MPa"),
    ("s2", "MPa"),
    ("spec_energy", "kWh/t"),
)
HOUR_STEPS = 360  # 10 s steps
VERSION = "1.0.0"
Array = NDArray[np.float64]


def _hourly(series: Array) -> Array:
    usable = len(series) // HOUR_STEPS * HOUR_STEPS
    return np.asarray(series[:usable].reshape(-1, HOUR_STEPS).mean(axis=1), dtype=np.float64)


def _ewma(values: Array, alpha: float) -> Array:
    out = np.empty_like(values)
    level = values[0]
    for i, value in enumerate(values):
        level = alpha * value + (1 - alpha) * level
        out[i] = level
    return out


def build_dataset(days: float, seed: int) -> tuple[Array, Array, Array, Array]:
    """Hourly (features, noisy labels, noise-free truth, day index) of running hours."""
    data = backfill(days, seed=seed)
    rng = np.random.default_rng(seed + 1)
    hourly = {key: _hourly(np.nan_to_num(data[key], nan=np.nan)) for key in (
        "SeparatorSpeed", "FeedRate", "LimestoneShare", "GypsumShare", "GrindingAidSetpoint",
        "FanSpeed", "WaterInjection", "MillPower", "ProductFineness", "Running",
        "B", "R45", "S28", "S2", "e_ss",
    )}  # fmt: skip
    c3s = _hourly(np.nan_to_num(data["LabClinkerC3S"], nan=60.0))
    lab_blaine = _hourly(np.nan_to_num(data["LabBlaine"], nan=3800.0))
    c3s_smoothed = _ewma(c3s, 0.3)  # several 2-hourly lab results: less noise, same drift
    grindability = (hourly["MillPower"] / np.maximum(hourly["FeedRate"], 1.0)) / (
        18.0 * (np.maximum(hourly["ProductFineness"], 1000.0) / 3800.0) ** 1.4
    )
    blaine_bias = _ewma(lab_blaine - hourly["ProductFineness"], 0.2)
    x = np.column_stack([
        hourly["SeparatorSpeed"], hourly["FeedRate"], hourly["LimestoneShare"],
        hourly["GypsumShare"], hourly["GrindingAidSetpoint"], hourly["FanSpeed"],
        hourly["WaterInjection"], c3s_smoothed, grindability, blaine_bias,
    ])  # fmt: skip
    truth = np.column_stack([hourly["B"], hourly["R45"], hourly["S28"], hourly["S2"],
                             hourly["e_ss"]])  # fmt: skip
    noise = np.column_stack([rng.normal(0, 40, len(x)), rng.normal(0, 0.3, len(x)),
                             rng.normal(0, 1.2, len(x)), rng.normal(0, 0.8, len(x)),
                             np.zeros(len(x))])  # fmt: skip
    labels = truth + noise
    running = (hourly["Running"] > 0.999) & np.isfinite(x).all(axis=1)
    day = (np.arange(len(x)) // 24).astype(np.float64)
    return x[running], labels[running], truth[running], day[running]


def _append_output_scaling(model: onnx.ModelProto, mean: Array, scale: Array) -> None:
    """y = y_scaled * scale + mean, as two nodes after the regressor's output."""
    graph = model.graph
    old = graph.output[0].name
    graph.initializer.extend([
        numpy_helper.from_array(scale.astype(np.float32).reshape(1, -1), "y_scale"),
        numpy_helper.from_array(mean.astype(np.float32).reshape(1, -1), "y_mean"),
    ])  # fmt: skip
    # skl2onnx ends an MLPRegressor with Reshape(-1, 1), which flattens several outputs into
    # one column: restore [N, outputs] before scaling back.
    graph.initializer.append(
        numpy_helper.from_array(np.array([-1, len(OUTPUTS)], dtype=np.int64), "y_shape")
    )
    graph.node.extend([
        helper.make_node("Reshape", [old, "y_shape"], ["y_2d"]),
        helper.make_node("Mul", ["y_2d", "y_scale"], ["y_scaled_back"]),
        helper.make_node("Add", ["y_scaled_back", "y_mean"], ["y"]),
    ])  # fmt: skip
    graph.output.pop()
    graph.output.append(helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT,
                                                      ["N", len(OUTPUTS)]))  # fmt: skip


def _run_onnx(path: Path, x: Array) -> Array:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    result = session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]
    return np.asarray(result, dtype=np.float64)


def train(out_dir: Path, days: float, seed: int) -> dict[str, object]:
    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, labels, truth, day = build_dataset(days, seed)
    split_day = int(day.max() * 0.8)
    train_rows, test_rows = day < split_day, day >= split_day
    y_mean, y_scale = labels[train_rows].mean(axis=0), labels[train_rows].std(axis=0)
    y_scale[y_scale == 0] = 1.0
    model = make_pipeline(StandardScaler(), MLPRegressor(
        hidden_layer_sizes=(64, 64), alpha=1e-3, max_iter=3000, early_stopping=True,
        random_state=seed))  # fmt: skip
    model.fit(x[train_rows], (labels[train_rows] - y_mean) / y_scale)
    onx = to_onnx(model, x[:1].astype(np.float32), target_opset=17)
    assert isinstance(onx, onnx.ModelProto)
    _append_output_scaling(onx, y_mean, y_scale)
    onnx.checker.check_model(onx)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.onnx").write_bytes(onx.SerializeToString())
    predicted = model.predict(x[test_rows]) * y_scale + y_mean
    exported = _run_onnx(out_dir / "model.onnx", x[test_rows])
    worst = float(np.abs(exported - predicted).max())
    if worst > 1e-2 * float(np.abs(predicted).max()):
        raise SystemExit(f"the exported graph disagrees with scikit-learn by {worst:g}")
    rmse_labels = np.sqrt(((predicted - labels[test_rows]) ** 2).mean(axis=0))
    rmse_truth = np.sqrt(((predicted - truth[test_rows]) ** 2).mean(axis=0))
    report: dict[str, object] = {
        "days": days, "seed": seed, "hours_train": int(train_rows.sum()),
        "hours_validation": int(test_rows.sum()), "split": "time-ordered (last 20 % of days)",
        "inputs": [{"name": n, "tag": t, "unit": u, "min": float(x[:, i].min()),
                    "max": float(x[:, i].max()), "mean": float(x[:, i].mean()),
                    "std": float(x[:, i].std())} for i, (n, t, u) in enumerate(FEATURES)],
        "outputs": [{"name": n, "unit": u} for n, u in OUTPUTS],
        "rmse_vs_lab_labels": {n: float(v) for (n, _), v in zip(OUTPUTS, rmse_labels, strict=True)},
        "rmse_vs_truth": {n: float(v) for (n, _), v in zip(OUTPUTS, rmse_truth, strict=True)},
    }  # fmt: skip
    (out_dir / "training.json").write_text(json.dumps(report, indent=2))
    _write_manifest(out_dir, report, days, onx)
    return report


def _write_manifest(out_dir: Path, report: dict[str, object], days: float,
                    onx: onnx.ModelProto) -> None:  # fmt: skip
    """manifest.json of the model package format (docs/model-package.md); sign it next."""
    start = dt.date(2026, 1, 1)  # the backfill's simulated start (agent.demo.mill)
    rmse = report["rmse_vs_lab_labels"]
    assert isinstance(rmse, dict)
    manifest = {
        "format_version": 1,
        "name": "vrm-quality",
        "version": VERSION,
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "training_period": {"start": start.isoformat(),
                            "end": (start + dt.timedelta(days=days)).isoformat()},
        "inputs": report["inputs"],
        "outputs": report["outputs"],
        "validation": {"split": "time-ordered", "rmse": rmse},
        "model": {"file": "model.onnx",
                  "sha256": hashlib.sha256((out_dir / "model.onnx").read_bytes()).hexdigest(),
                  "opset": 17, "input_name": onx.graph.input[0].name,
                  "output_name": onx.graph.output[0].name},
    }  # fmt: skip
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--days", type=float, default=90.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    report = train(args.out_dir, args.days, args.seed)
    print(
        json.dumps(
            {
                k: report[k]
                for k in ("hours_train", "hours_validation", "rmse_vs_lab_labels", "rmse_vs_truth")
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
