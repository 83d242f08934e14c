"""A challenger model version is loaded beside the active one and never activated by a scan;
the operator's promotion makes it active (audited, on probation, rolled back when it fails),
survives a restart through the promotion file, and is dropped when plant IT changed the
configuration after it; a malformed promotion file is ignored with a warning.

Peers: real signed packages of a real ONNX model (tests/support/model_packages.py) loaded by
onnxruntime the way the agent loads them, a real promotion file in tmp_path; the audit is an
in-test collector, the clock a FakeClock (no scan waits on it: the tests call `scan()`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from agent.domain.clock import FakeClock
from agent.packages.keys import generate_keypair, sign_package
from agent.packages.manager import PROBATION_CYCLES, ModelManager, PromotionRefusedError
from agent.packages.manifest import ModelRejectedError
from agent.packages.package import load_public_key
from tests.support.model_packages import N_IN, linear_model, write_package

pytestmark = pytest.mark.timeout(180)  # a hang guard: nothing here waits on time
NAME = "vrm"


class Rig:
    """A models folder, a signing key, the audit records and the promotion file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.models = root / "models"
        (self.models / NAME).mkdir(parents=True)
        self.key = root / "signing.pem"
        generate_keypair(self.key, root / "signing.pub.pem")
        self.public_key = load_public_key(root / "signing.pub.pem")
        self.promoted = root / "state" / "promoted.json"
        self.audit: list[tuple[str, dict[str, Any]]] = []

    def put(self, version: str, *, log: bool = False, key: Path | None = None,
            reorder: bool = False) -> Path:  # fmt: skip
        """A package of the linear model (or its log: NaN for negative inputs) as `version`,
        signed with `key` (default: the rig's), appearing complete in one rename; `reorder`:
        its first two inputs swapped (a package of other features in the same count)."""
        staging = write_package(self.root / f"staging-{version}", linear_model(log=log))
        manifest = json.loads((staging / "manifest.json").read_text())
        manifest["version"] = version
        if reorder:
            inputs = manifest["inputs"]
            inputs[0], inputs[1] = inputs[1], inputs[0]
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
        sign_package(staging, key or self.key)
        return staging.rename(self.models / NAME / version)

    async def record(self, kind: str, body: dict[str, Any]) -> None:
        self.audit.append((kind, body))

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [body for k, body in self.audit if k == kind]

    def manager(self, pin: str | None = None, challenger: str | None = None) -> ModelManager:
        return ModelManager(self.models, self.public_key, {NAME: pin}, audit=self.record,
                            clock=FakeClock(), challengers={NAME: challenger} if challenger else {},
                            promoted_file=self.promoted)  # fmt: skip


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def version_of(manager: ModelManager) -> tuple[str | None, str | None]:
    """(active, challenger) of the model."""
    challenger = manager.challenger(NAME)
    return manager.active[NAME], challenger.manifest.version if challenger else None


async def cycle(manager: ModelManager, value: float) -> None:
    """One cycle's inference on the active version, reported as a control loop does."""
    session = manager.session(NAME)
    assert session is not None
    x = np.full((1, N_IN), value, dtype=np.float32)
    try:
        session.predict(x)
    except ModelRejectedError as exc:  # the loop reports its text
        await manager.report(NAME, session.manifest.version, False, str(exc))
    else:
        await manager.report(NAME, session.manifest.version, True, "ok")


async def test_a_challenger_is_loaded_beside_the_active_one_and_never_activated_even_newer(
    rig: Rig,
) -> None:
    rig.put("1.0.0")
    challenger_dir = rig.put("1.1.0")  # the newest: unpinned, it would be activated
    manager = rig.manager(challenger="1.1.0")
    await manager.scan()
    assert version_of(manager) == ("1.0.0", "1.1.0")
    assert manager.challengers == {NAME: "1.1.0"}
    sha = json.loads((challenger_dir / "manifest.json").read_text())["model"]["sha256"]
    assert rig.kinds("challenger_loaded") == [
        {"model": NAME, "version": "1.1.0", "sha256": sha, "active": "1.0.0"}
    ]
    rig.put("1.2.0")  # newer than both: the newest-version rule still runs for the active
    await manager.scan()
    assert version_of(manager) == ("1.2.0", "1.1.0")
    assert [k for k, _ in rig.audit] == ["model_activated", "challenger_loaded", "model_activated"]


async def test_a_challenger_equal_to_the_active_version_or_badly_signed_is_refused(
    rig: Rig,
) -> None:
    rig.put("1.0.0")
    manager = rig.manager(pin="1.0.0", challenger="1.0.0")
    await manager.scan()
    await manager.scan()  # refused once, not at every scan
    assert version_of(manager) == ("1.0.0", None)
    (same,) = rig.kinds("model_refused")
    assert (same["role"], same["version"], same["active"]) == ("challenger", "1.0.0", "1.0.0")
    assert "is the active (pinned) version: nothing to compare it with" in same["reason"]

    generate_keypair(rig.root / "other.pem", rig.root / "other.pub.pem")
    rig.put("1.1.0", key=rig.root / "other.pem")
    manager = rig.manager(challenger="1.1.0")
    await manager.scan()
    await manager.scan()
    assert version_of(manager) == ("1.0.0", None)
    bad = rig.kinds("model_refused")[1:]
    assert len(bad) == 1 and bad[0]["role"] == "challenger" and bad[0]["version"] == "1.1.0"
    assert "bad signature" in bad[0]["reason"]
    with pytest.raises(PromotionRefusedError, match=r"challenger vrm 1\.1\.0 is not loaded"):
        await manager.promote(NAME, "1.1.0", operator="op", reason="r")
    # Delivered again, properly signed (a new manifest): loaded at the next scan.
    shutil.rmtree(rig.models / NAME / "1.1.0")
    rig.put("1.1.0")
    await manager.scan()
    assert version_of(manager) == ("1.0.0", "1.1.0")


async def test_the_promoted_challenger_runs_on_probation_and_rolls_back_when_it_fails(
    rig: Rig,
) -> None:
    rig.put("1.0.0")
    rig.put("1.1.0", log=True)  # finite at its warm-up point, NaN on negative inputs
    manager = rig.manager(challenger="1.1.0")
    await manager.scan()
    with capture_logs() as logs:
        previous = await manager.promote(NAME, "1.1.0", operator="anna", reason="better s28")
    assert previous == "1.0.0"
    assert version_of(manager) == ("1.1.0", None)
    body = {"model": NAME, "version": "1.1.0", "previous": "1.0.0", "operator": "anna",
            "reason": "better s28"}  # fmt: skip
    assert rig.kinds("model_promoted") == [body]
    assert {**body, "event": "model_promoted", "log_level": "info"} in logs
    assert json.loads(rig.promoted.read_text()) == {
        NAME: {"version": "1.1.0", "config_pin": None, "config_challenger": "1.1.0"}
    }
    with pytest.raises(PromotionRefusedError, match="it was promoted: it is the active version"):
        await manager.promote(NAME, "1.1.0", operator="anna", reason="again")
    await manager.scan()  # a promoted version is the pin: the scan keeps it
    assert version_of(manager) == ("1.1.0", None)

    await cycle(manager, 5.0)  # a good cycle, then NaN outputs while still on probation
    await cycle(manager, -50.0)
    assert version_of(manager)[0] == "1.0.0"
    (back,) = rig.kinds("model_rolled_back")
    assert (back["version"], back["to"]) == ("1.1.0", "1.0.0") and "NaN" in back["reason"]
    assert json.loads(rig.promoted.read_text()) == {}  # a restart keeps 1.0.0 too
    # The configuration still names 1.1.0 the challenger: it is one again, never activated.
    await manager.scan()
    assert version_of(manager) == ("1.0.0", "1.1.0")

    # Promoted again, it passes its probation: then a bad cycle no longer rolls back.
    await manager.promote(NAME, "1.1.0", operator="anna", reason="second try")
    for _ in range(PROBATION_CYCLES):
        await cycle(manager, 5.0)
    await cycle(manager, -50.0)
    assert version_of(manager) == ("1.1.0", None)
    assert len(rig.kinds("model_rolled_back")) == 1


async def test_only_the_loaded_challenger_is_promoted_and_only_when_recorded(
    rig: Rig,
) -> None:
    rig.put("1.0.0")
    rig.put("1.1.0")
    manager = rig.manager(challenger="1.1.0")
    await manager.scan()
    refusals = [
        ("mill", "1.1.0", "unknown model 'mill': the loops run vrm"),
        (NAME, "1.0.0", r"vrm 1\.0\.0 is not the challenger \(the challenger is 1\.1\.0\)"),
        (NAME, "1.2.0", r"vrm 1\.2\.0 is not the challenger"),
    ]
    for name, version, message in refusals:
        with pytest.raises(PromotionRefusedError, match=message):
            await manager.promote(name, version, operator="op", reason="r")
    unnamed = ModelManager(rig.models, rig.public_key, {NAME: None}, audit=rig.record,
                           clock=FakeClock())  # fmt: skip
    await unnamed.scan()
    with pytest.raises(PromotionRefusedError, match="challenger is none: set"):
        await unnamed.promote(NAME, "1.1.0", operator="op", reason="r")
    # A promotion that cannot be recorded is refused: it would not survive a restart.
    (rig.root / "blocked").write_text("a file where the state folder should be")
    blocked = ModelManager(rig.models, rig.public_key, {NAME: None}, audit=rig.record,
                           clock=FakeClock(), challengers={NAME: "1.1.0"},
                           promoted_file=rig.root / "blocked" / "promoted.json")  # fmt: skip
    await blocked.scan()
    with pytest.raises(PromotionRefusedError, match=r"the promotion cannot be recorded: .*blocked"):
        await blocked.promote(NAME, "1.1.0", operator="op", reason="r")
    assert version_of(blocked) == ("1.0.0", "1.1.0")
    assert version_of(manager) == ("1.0.0", "1.1.0")
    assert rig.kinds("model_promoted") == [] and not rig.promoted.exists()


async def test_a_promotion_survives_a_restart_until_the_configuration_changes(
    rig: Rig,
) -> None:
    rig.put("1.0.0")
    rig.put("1.1.0")
    first = rig.manager(challenger="1.1.0")
    await first.scan()
    await first.promote(NAME, "1.1.0", operator="anna", reason="better s28")
    rig.put("1.2.0")  # newer: without the promotion it would be activated after a restart

    restarted = rig.manager(challenger="1.1.0")
    await restarted.scan()
    assert version_of(restarted) == ("1.1.0", None)
    assert rig.kinds("model_refused") == []

    # Plant IT pins 1.0.0 in the configuration after the promotion: the promotion is stale.
    with capture_logs() as logs:
        changed = rig.manager(pin="1.0.0", challenger="1.1.0")
    dropped = [e for e in logs if e["event"] == "model_promotion_dropped"]
    assert len(dropped) == 1 and dropped[0]["log_level"] == "info", logs
    assert dropped[0]["version"] == "1.1.0"
    assert dropped[0]["now"] == {"model_version": "1.0.0", "challenger_version": "1.1.0"}
    await changed.scan()
    assert version_of(changed) == ("1.0.0", "1.1.0")
    assert json.loads(rig.promoted.read_text()) == {}  # gone: putting the pin back keeps 1.2.0
    again = rig.manager(challenger="1.1.0")
    await again.scan()
    assert version_of(again) == ("1.2.0", "1.1.0")


async def test_a_promotion_is_dropped_when_the_configured_challenger_changed(
    rig: Rig,
) -> None:
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        rig.put(version)
    first = rig.manager(pin="1.0.0", challenger="1.1.0")
    await first.scan()
    await first.promote(NAME, "1.1.0", operator="anna", reason="better s28")
    with capture_logs() as logs:
        changed = rig.manager(pin="1.0.0", challenger="1.2.0")
    assert [e["log_level"] for e in logs if e["event"] == "model_promotion_dropped"] == ["info"]
    await changed.scan()
    assert version_of(changed) == ("1.0.0", "1.2.0")


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"vrm": {"version": "latest", "config_pin": null, "config_challenger": "1.1.0"}}',
        '{"vrm": {"version": "1.1.0"}}',
    ],
)
async def test_a_malformed_promotion_file_is_ignored_with_a_warning(rig: Rig, content: str) -> None:
    rig.put("1.0.0")
    rig.put("1.1.0")
    rig.promoted.parent.mkdir()
    rig.promoted.write_text(content)
    with capture_logs() as logs:
        manager = rig.manager(challenger="1.1.0")
    (warning,) = [e for e in logs if e["event"] == "model_promotions_ignored"]
    assert warning["log_level"] == "warning" and warning["file"] == str(rig.promoted)
    await manager.scan()
    assert version_of(manager) == ("1.0.0", "1.1.0")
    await manager.promote(NAME, "1.1.0", operator="anna", reason="better s28")
    assert json.loads(rig.promoted.read_text())[NAME]["version"] == "1.1.0"


async def test_a_challenger_of_other_inputs_is_refused(rig: Rig) -> None:
    """It would run on the active version's feature vector: other inputs (here the same count
    in another order) would be scored on nonsense without any error."""
    rig.put("1.0.0")
    rig.put("1.1.0", reorder=True)
    manager = rig.manager(pin="1.0.0", challenger="1.1.0")
    await manager.scan()
    assert version_of(manager) == ("1.0.0", None)
    (refused,) = rig.kinds("model_refused")
    assert (refused["role"], refused["version"]) == ("challenger", "1.1.0")
    assert "runs on the active version's features: inputs ['f0', 'f1'" in refused["reason"]
