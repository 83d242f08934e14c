"""The OPC UA driver against the simulated PLC's secure endpoint (SignAndEncrypt + password).

conftest's `secure_plant` serves SignAndEncrypt endpoints only (Basic256Sha256,
Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss) and user `operator` / `s3cret`. The agent's
state_dir is shared by the module, so the trust decision of the first test is what the
later ones rely on, as on a real plant.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from pydantic import SecretStr
from structlog.testing import capture_logs

from agent.config.settings import OpcUaSource, Tag
from agent.demo.runner import SimulatedPlant
from agent.demo.tags import NAMESPACE_URI
from agent.domain.clock import SystemClock
from agent.domain.errors import ConnectionLostError
from agent.domain.samples import DriverState, Quality, Sample
from drivers.opcua import OpcUaDriver, read_once
from drivers.opcua_browse import browse
from drivers.opcua_security import UntrustedServerError, trust_certificate

pytestmark = pytest.mark.asyncio(loop_scope="module")

PASSWORD = SecretStr("s3cret")
TAGS = [Tag(name=n, source="mill", address=f"nsu={NAMESPACE_URI};s=Plant/Mill1/{n}",
            writable=n == "Heartbeat") for n in ("FeedRate", "Heartbeat")]  # fmt: skip


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("agent-state")


def secure(url: str, policy: str = "Basic256Sha256", **fields: Any) -> OpcUaSource:
    values: dict[str, Any] = {"kind": "opcua", "name": "mill", "endpoint": url,
                              "security_policy": policy, "username": "operator",
                              "password_credential": "opcua", "publishing_interval_s": 0.1,
                              "timeout_s": 2.0, **fields}  # fmt: skip
    return OpcUaSource(**values)


async def test_an_unknown_server_certificate_is_refused_until_trusted(
    secure_plant: SimulatedPlant, state_dir: Path
) -> None:
    src = secure(secure_plant.opcua_url)
    with pytest.raises(UntrustedServerError) as refused:
        await read_once(src, TAGS, state_dir=state_dir, agent_id="mill-1", password=PASSWORD)
    rejected = refused.value.rejected_file
    assert rejected.parent == state_dir / "pki" / "rejected" and rejected.is_file()
    message = str(refused.value)
    assert "unknown" in message and str(rejected) in message and "opcua trust" in message
    assert not (state_dir / "pki" / "trusted").exists() or not any(
        (state_dir / "pki" / "trusted").iterdir()
    )
    # our own certificate exists already, so plant IT can trust both sides in one visit
    own = x509.load_der_x509_certificate((state_dir / "pki" / "own" / "cert.der").read_bytes())
    sans = own.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uri = f"urn:{socket.gethostname()}:edge-agent:mill-1"
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [uri]
    assert sans.get_values_for_type(x509.DNSName) == [socket.gethostname()]
    key_mode = (state_dir / "pki" / "own" / "key.pem").stat().st_mode & 0o777
    assert key_mode == 0o600

    trusted = trust_certificate(rejected, state_dir)
    assert trusted == state_dir / "pki" / "trusted" / rejected.name and not rejected.exists()
    samples = await read_once(src, TAGS, state_dir=state_dir, agent_id="mill-1",
                              password=PASSWORD)  # fmt: skip
    assert [s.quality for s in samples] == [Quality.GOOD, Quality.GOOD]


@pytest.mark.parametrize("policy", ["Basic256Sha256", "Aes128_Sha256_RsaOaep",
                                    "Aes256_Sha256_RsaPss"])  # fmt: skip
async def test_every_secure_policy_reads(
    secure_plant: SimulatedPlant, state_dir: Path, policy: str
) -> None:
    own_before = (state_dir / "pki" / "own" / "cert.der").read_bytes()
    samples = await read_once(secure(secure_plant.opcua_url, policy), TAGS[:1],
                              state_dir=state_dir, agent_id="mill-1", password=PASSWORD)  # fmt: skip
    assert samples[0].quality is Quality.GOOD
    assert (state_dir / "pki" / "own" / "cert.der").read_bytes() == own_before  # reused


async def test_browse_over_a_secure_channel_keeps_the_agent_certificate(
    secure_plant: SimulatedPlant, state_dir: Path
) -> None:
    own = state_dir / "pki" / "own" / "cert.der"
    before = own.read_bytes()
    rows = await browse(secure_plant.opcua_url, depth=3, security="Aes128_Sha256_RsaOaep",
                        state_dir=state_dir, username="operator", password=PASSWORD)  # fmt: skip
    assert any(row.browse_name == "FeedRate" for row in rows)
    assert own.read_bytes() == before  # no agent_id given: the existing identity is reused


async def test_sign_and_encrypt_session_subscribes_and_writes(
    secure_plant: SimulatedPlant, state_dir: Path
) -> None:
    driver = OpcUaDriver(secure(secure_plant.opcua_url, "Aes256_Sha256_RsaPss"), TAGS,
                         state_dir=state_dir, agent_id="mill-1", password=PASSWORD,
                         clock=SystemClock())  # fmt: skip
    samples: list[Sample] = []
    with capture_logs() as logs:
        task = asyncio.create_task(driver.run(samples.extend))
        deadline = time.monotonic() + 60  # generous: RSA handshakes on a busy machine
        while sum(s.tag == "FeedRate" for s in samples) < 3:
            assert time.monotonic() < deadline, "no data over the secure session"
            await asyncio.sleep(0.02)
        assert driver.state is DriverState.CONNECTED
        result = await driver.write("Heartbeat", 7)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert result.raw == 7 and secure_plant.mill.read("Heartbeat").value == 7
    assert "s3cret" not in repr(logs)


async def test_wrong_password_and_wrong_security_say_what_to_fix(
    secure_plant: SimulatedPlant, state_dir: Path
) -> None:
    url = secure_plant.opcua_url
    with (
        capture_logs() as logs,
        pytest.raises(ConnectionLostError, match="refused user 'operator'"),
    ):
        await read_once(secure(url), TAGS, state_dir=state_dir, agent_id="mill-1",
                        password=SecretStr("guess-again"))  # fmt: skip
    assert "guess-again" not in repr(logs)
    with pytest.raises(ConnectionLostError, match=r"offers no endpoint.*Sign'.*it offers: "):
        await read_once(secure(url, security_mode="Sign"), TAGS, state_dir=state_dir,
                        agent_id="mill-1", password=PASSWORD)  # fmt: skip
    plain = secure(url, security_policy="None", security_mode="None", username=None,
                   password_credential=None)  # fmt: skip
    with pytest.raises(ConnectionLostError, match=r"'None'.*Basic256Sha256/SignAndEncrypt"):
        await read_once(plain, TAGS, state_dir=state_dir, agent_id="mill-1", password=None)
