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

Products (plant-model 4.1, agent.demo.products): `--product ID` trains on a backfill of that
product (the mill grinds it from its recipe on; by default the excitation plan steps the
separator +-50 rpm in recipe +-100 rpm and the limestone +-1 %-point a day in nominal +-2 %).
`--limestone-band LOW HIGH` and `--separator-band LOW HIGH` replace those bands, and
`--limestone-moves draw` draws a fresh limestone level in the band once a day instead of the
+-1 walk (a walk takes months to cross a wide band, and the time-ordered split would then
validate on levels never trained on). `--name` names the package (default: PACKAGES[ID]).
The manifest's name is the package name; the model's training range of limestone_share (its
inputs' min/max) is what the agent's out-of-distribution check holds it to, so a product's
package covers where the plant's operators grind it (the operator baseline's recipe point and
its corrections, agent.demo.evaluate.operator, inside the product's window):
    vrm-quality        product 2, limestone 10-14 %, separator 850-1050 rpm (the default
                       invocation: the model from before products)
    vrm-quality-cem1   product 1 (CEM I 42.5 R), limestone 0-5 %, separator 880-1080 rpm
    vrm-quality-cem2a  product 2 (CEM II/A-LL 42.5 R), limestone 8-20 %, separator 850-1100 rpm
                       (the operators' recipe for the 48 MPa mean is ~16.9 %)
    vrm-quality-cem2b  product 3 (CEM II/B-LL 32.5 R), limestone 21-35 %, separator
                       820-1070 rpm

Retraining is one command per package (training dependencies: a private environment, e.g.
`UV_PROJECT_ENVIRONMENT=$(mktemp -d)/venv .tools/bin/uv sync --locked --extra demo --group
train`, and its python instead of .venv's):
    python models/train_demo.py models/vrm-quality/1.0.0 [--days 90] [--seed 0]
    python models/train_demo.py models/vrm-quality-cem1/1.0.0 --product 1 \
        --limestone-band 0 5 --limestone-moves draw
    python models/train_demo.py models/vrm-quality-cem2a/1.0.0 --product 2 \
        --name vrm-quality-cem2a --limestone-band 8 20 --separator-band 850 1100 \
        --limestone-moves draw
    python models/train_demo.py models/vrm-quality-cem2b/1.0.0 --product 3 \
        --limestone-band 21 35 --separator-band 820 1070 --limestone-moves draw
It writes model.onnx, manifest.json (docs/model-package.md) and training.json (with the
excitation's bands); then `edge-agent model sign models/<name>/1.0.0 --key KEY` signs it.
Re-signing: the private half of models/demo-signing-key.pub.pem is not kept anywhere. After
retraining, make a new demo key pair in a private `mktemp -d` folder (`edge-agent keygen
--private-key DIR/demo.pem --public-key DIR/demo.pub.pem`), sign every package under models/
with it (a signature covers manifest.json only, so signing changes manifest.sig alone),
replace models/demo-signing-key.pub.pem with the new public key, delete the private key and
check each package with `edge-agent model verify --public-key
models/demo-signing-key.pub.pem models/<name>/1.0.0`.
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

from agent.demo.backfill import LIMESTONE_MOVES, Band, backfill, plan_bands

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


PACKAGES = {1: "vrm-quality-cem1", 2: "vrm-quality", 3: "vrm-quality-cem2b"}
"""The model package of each product (agent.demo.products ids)."""


def build_dataset(
    days: float, seed: int, product: int = 2, bands: tuple[Band, Band] | None = None,
    limestone_moves: str = "walk",
) -> tuple[Array, Array, Array, Array]:  # fmt: skip
    """Hourly (features, noisy labels, noise-free truth, day index) of running hours.
    bands: the excitation's (separator rpm, limestone %) bands; None: the backfill's own."""
    separator_band, limestone_band = bands or (None, None)
    data = backfill(days, seed=seed, product_id=product, separator_band=separator_band,
                    limestone_band=limestone_band, limestone_moves=limestone_moves)  # fmt: skip
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


def train(
    out_dir: Path, days: float, seed: int, product: int = 2, *, name: str | None = None,
    separator_band: Band | None = None, limestone_band: Band | None = None,
    limestone_moves: str = "walk",
) -> dict[str, object]:  # fmt: skip
    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    bands = plan_bands(product, separator_band, limestone_band)
    x, labels, truth, day = build_dataset(days, seed, product, bands, limestone_moves)
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
        "days": days, "seed": seed, "product": product,
        "excitation": {"separator_rpm": list(bands[0]), "limestone_pct": list(bands[1]),
                       "limestone_moves": limestone_moves},
        "hours_train": int(train_rows.sum()),
        "hours_validation": int(test_rows.sum()), "split": "time-ordered (last 20 % of days)",
        "inputs": [{"name": n, "tag": t, "unit": u, "min": float(x[:, i].min()),
                    "max": float(x[:, i].max()), "mean": float(x[:, i].mean()),
                    "std": float(x[:, i].std())} for i, (n, t, u) in enumerate(FEATURES)],
        "outputs": [{"name": n, "unit": u} for n, u in OUTPUTS],
        "rmse_vs_lab_labels": {n: float(v) for (n, _), v in zip(OUTPUTS, rmse_labels, strict=True)},
        "rmse_vs_truth": {n: float(v) for (n, _), v in zip(OUTPUTS, rmse_truth, strict=True)},
    }  # fmt: skip
    (out_dir / "training.json").write_text(json.dumps(report, indent=2))
    _write_manifest(out_dir, report, days, onx, name or PACKAGES[product])
    return report


def _write_manifest(out_dir: Path, report: dict[str, object], days: float,
                    onx: onnx.ModelProto, name: str) -> None:  # fmt: skip
    """manifest.json of the model package format (docs/model-package.md); sign it next."""
    start = dt.date(2026, 1, 1)  # the backfill's simulated start (agent.demo.mill)
    rmse = report["rmse_vs_lab_labels"]
    assert isinstance(rmse, dict)
    manifest = {
        "format_version": 1,
        "name": name,
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
    parser.add_argument(
        "--product",
        type=int,
        default=2,
        choices=sorted(PACKAGES),
        help="the product (agent.demo.products id) whose backfill trains it",
    )
    parser.add_argument("--name", help="the package (manifest) name; default: the product's "
                        "package (PACKAGES)")  # fmt: skip
    for flag, unit, default in (("--limestone-band", "%%", "nominal +-2"),
                                ("--separator-band", "rpm", "recipe +-100")):  # fmt: skip
        parser.add_argument(flag, nargs=2, type=float, metavar=("LOW", "HIGH"),
                            help=f"the excitation's band ({unit}; default: the product's "
                            f"{default})")  # fmt: skip
    parser.add_argument(
        "--limestone-moves",
        choices=LIMESTONE_MOVES,
        default="walk",
        help="walk: +-1 %%-point a day; draw: a fresh level in the band each day "
        "(a wide band covered in the training and the held-out days alike)",
    )
    args = parser.parse_args()
    try:
        bands = plan_bands(args.product, args.separator_band, args.limestone_band)
    except ValueError as error:
        parser.error(str(error))
    report = train(args.out_dir, args.days, args.seed, args.product, name=args.name,
                   separator_band=bands[0], limestone_band=bands[1],
                   limestone_moves=args.limestone_moves)  # fmt: skip
    shown = ("excitation", "hours_train", "hours_validation", "rmse_vs_lab_labels",
             "rmse_vs_truth")  # fmt: skip
    print(json.dumps({k: report[k] for k in shown}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
