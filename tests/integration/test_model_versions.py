"""Which model version runs is decided by version (packaging.version), never by text, and a
package folder whose name is no version is refused with a clear reason, never a crash.

Peers: real signed model packages on disk (copies of models/vrm-quality/1.0.0 under other
versions, signed with a fresh key), loaded by the model manager the way the agent loads
them (signature, manifest, sha256, an onnxruntime session), and `edge-agent check` on
config/demo.toml pointed at them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from agent.cli.main import main
from agent.domain.clock import FakeClock
from agent.packages.keys import generate_keypair, sign_package
from agent.packages.manager import ModelManager
from agent.packages.package import load_public_key
from tests.support.config import ConfigDoc, single_product

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "models" / "vrm-quality" / "1.0.0"
LATEST = "folder name: expected a semver like 1.2.0, found 'latest'"


@pytest.fixture
def models(tmp_path: Path) -> tuple[Path, Path]:
    """(models dir, public key): an empty models/vrm-quality/ and a fresh signing key."""
    (tmp_path / "models" / "vrm-quality").mkdir(parents=True)
    generate_keypair(tmp_path / "signing.pem", tmp_path / "signing.pub.pem")
    return tmp_path / "models", tmp_path / "signing.pub.pem"


def package(models: Path, folder: str, version: str | None = None) -> Path:
    """The demo package as `version` (default: the folder's name) in vrm-quality/`folder`."""
    staging = models / f".staging-{folder}"
    shutil.copytree(DEMO, staging)
    manifest = json.loads((staging / "manifest.json").read_text())
    manifest["version"] = version or folder
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    sign_package(staging, models.parent / "signing.pem")
    return staging.rename(models / "vrm-quality" / folder)  # appears complete


async def test_the_newest_version_runs_and_a_folder_named_no_version_is_refused(
    models: tuple[Path, Path],
) -> None:
    root, public_key = models
    # By text "1.9.0" is the newest and "rc.9" above "rc.10": by version, rc.10 is.
    for version in ("1.9.0", "1.10.0-rc.9", "1.10.0-rc.10"):
        package(root, version)
    package(root, "latest", "1.11.0")  # a plant IT copy: a manifest, but no version folder
    audit: list[tuple[str, dict[str, Any]]] = []

    async def record(kind: str, body: dict[str, Any]) -> None:
        audit.append((kind, body))

    manager = ModelManager(root, load_public_key(public_key), {"vrm-quality": None}, audit=record,
                           clock=FakeClock())  # fmt: skip
    await manager.scan()
    assert manager.active == {"vrm-quality": "1.10.0-rc.10"}
    refused = [body for kind, body in audit if kind == "model_refused"]
    assert refused == [{"model": "vrm-quality", "version": "latest", "active": None,
                        "reason": f"{root / 'vrm-quality' / 'latest'}: {LATEST}"}]  # fmt: skip

    package(root, "1.10.0")  # the release after its candidates: activated without a restart
    await manager.scan()
    assert manager.active == {"vrm-quality": "1.10.0"}
    assert [kind for kind, _ in audit] == ["model_refused", "model_activated", "model_activated"]
    assert audit[-1][1]["previous"] == "1.10.0-rc.10"  # refused once, not at every scan


def test_check_runs_the_newest_by_version_and_warns_of_a_folder_named_no_version(
    models: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, public_key = models
    for version in ("1.9.0", "1.10.0"):
        package(root, version)
    config = single_product(ConfigDoc.read(REPO / "config" / "demo.toml"))
    config.set("agent.models_dir", str(root))
    config.set("agent.model_public_key_file", str(public_key))
    config.set("agent.state_dir", str(tmp_path / "state"))
    path = tmp_path / "agent.toml"
    config.write(path)
    package(root, "latest", "1.11.0")
    # 1.9.0 does not load: tried first (by text), it would be a warning of its own
    (root / "vrm-quality" / "1.9.0" / "manifest.sig").unlink()
    code = main(["check", "--config", str(path)])
    err = capsys.readouterr().err.splitlines()
    assert code == 0, err  # 1.10.0 runs: 1.9.0 (older) is never tried, `latest` is refused
    assert len(err) == 2, err  # one warning per loop that runs the model
    for line in err:
        assert line.startswith("warning: ") and line.endswith(
            f"expected only packages that load (the agent runs 'vrm-quality' 1.10.0), "
            f"found {root / 'vrm-quality' / 'latest'}: {LATEST}"
        ), line
