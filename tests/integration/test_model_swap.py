"""Model versions change under a running control loop: a new version is activated without a
restart, a tampered one is refused and a version whose outputs turn NaN is rolled back,
while the loops keep running on the previous version and never write from a bad cycle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from agent.control.audit import verify_file
from agent.packages.keys import generate_keypair
from tests.integration.control_rig import MODELS, control_rig, wait_for
from tests.support.config import ConfigDoc
from tests.support.signed_models import signed_version

pytestmark = pytest.mark.timeout(480)  # a hang guard: the waits (control_rig.BUSY) fail first
DEMO = MODELS / "vrm-quality" / "1.0.0"


def _nan_when_c3s_low(threshold: float) -> bytes:
    """The demo graph plus 0 * log(c3s - threshold): NaN outputs once C3S < threshold."""
    model = onnx.load(DEMO / "model.onnx")
    graph = model.graph
    out = graph.output[0].name
    for node in graph.node:
        node.output[:] = [f"{o}_raw" if o == out else o for o in node.output]
    graph.initializer.extend([
        numpy_helper.from_array(np.array([7], dtype=np.int64), "c3s_at"),
        numpy_helper.from_array(np.array([8], dtype=np.int64), "c3s_end"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "c3s_axis"),
        numpy_helper.from_array(np.array([threshold], dtype=np.float32), "c3s_low"),
        numpy_helper.from_array(np.array([0.0], dtype=np.float32), "zero"),
    ])  # fmt: skip
    x = graph.input[0].name
    graph.node.extend([
        helper.make_node("Slice", [x, "c3s_at", "c3s_end", "c3s_axis"], ["c3s"]),
        helper.make_node("Sub", ["c3s", "c3s_low"], ["c3s_d"]),
        helper.make_node("Log", ["c3s_d"], ["c3s_log"]),
        helper.make_node("Mul", ["c3s_log", "zero"], ["c3s_0"]),
        helper.make_node("Add", [f"{out}_raw", "c3s_0"], [out]),
    ])  # fmt: skip
    onnx.checker.check_model(model)
    assert graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    return bytes(model.SerializeToString())


async def test_versions_swap_without_restart_and_bad_ones_never_drive_a_write(
    tmp_path: Path,
) -> None:
    models = tmp_path / "models"
    (models / "vrm-quality").mkdir(parents=True)
    key, pub = tmp_path / "signing.pem", tmp_path / "signing.pub.pem"
    generate_keypair(key, pub)
    signed_version(models, "1.0.0", key)

    def own_models(config: ConfigDoc) -> None:
        config.set("agent.models_dir", str(models))
        config.set("agent.model_public_key_file", str(pub))

    async with control_rig(tmp_path, edit=own_models, min_interval_s=3.0) as rig:
        control = rig.app.control
        assert control is not None and control.models.active == {"vrm-quality": "1.0.0"}
        await wait_for(lambda: rig.loop("limestone").stats.writes["ok"] >= 1, 40, "a write")

        # 1. Tampered: the model bytes no longer match the signed manifest's sha256.
        tampered = signed_version(models, "1.1.0", key)
        with (tampered / "model.onnx").open("ab") as f:
            f.write(b"\0")
        await control.models.scan()
        assert control.models.active == {"vrm-quality": "1.0.0"}
        refused = rig.records("model_refused")
        assert refused and refused[-1]["version"] == "1.1.0"
        assert "sha256 mismatch" in refused[-1]["reason"]

        # 2. Loads fine (finite at its warm-up point), then outputs NaN on live inputs.
        signed_version(models, "1.2.0", key, _nan_when_c3s_low(60.2))
        seen = len(rig.records("cycle"))
        await control.models.scan()
        assert control.models.active == {"vrm-quality": "1.2.0"}
        await wait_for(lambda: control.models.active == {"vrm-quality": "1.0.0"}, 20,
                       "the rollback to 1.0.0")  # fmt: skip
        # The rollback happens inside the failing cycle, before that cycle's record is written.
        await wait_for(lambda: [r for r in rig.records("cycle")[seen:]
                                if r.get("model", {}).get("version") == "1.2.0"], 10,
                       "the failing cycle's record")  # fmt: skip
        back = rig.records("model_rolled_back")[-1]
        assert (back["version"], back["to"]) == ("1.2.0", "1.0.0")
        assert "NaN" in back["reason"]
        bad = [
            r for r in rig.records("cycle")[seen:] if r.get("model", {}).get("version") == "1.2.0"
        ]
        assert bad and all(r["outcome"] == "blocked" and "write" not in r for r in bad)
        assert all(r["verdicts"][-1]["gate"] == "inference" for r in bad)
        # The failed version is not tried again while its files stay the same.
        await control.models.scan()
        assert control.models.active == {"vrm-quality": "1.0.0"}

        # 3. A good new version is activated without a restart and used by the next cycles.
        signed_version(models, "1.3.0", key)
        await control.models.scan()
        assert control.models.active == {"vrm-quality": "1.3.0"}
        await wait_for(lambda: any(r.get("model", {}).get("version") == "1.3.0"
                                   and r["outcome"] != "blocked"
                                   for r in rig.records("cycle")), 20, "a cycle on 1.3.0")  # fmt: skip
    assert verify_file(rig.state_dir / "audit.db").ok
