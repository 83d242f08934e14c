"""Opening and closing one OPC UA session: the library boundary of the OPC UA driver.

Owns: building the asyncua `Client` from a source's settings (application URI, security
policy and mode, certificates, user), checking the server's endpoints and certificate
before anything secret is sent, mapping every asyncua/OSError/TimeoutError into
`agent.domain.errors` (`library_errors`), and closing the session within a bounded time.
Also installs drivers.opcua_logs' filter on asyncua's loggers (the records of a session's
end that the driver reports itself are demoted to DEBUG).
Must not: retry (the supervisor does), keep state between sessions, or log the password
(it lives in a SecretStr until the moment asyncua needs it).
Invariants: a `Client` returned by `connect` is connected, with asyncua's own reconnect off
(`auto_reconnect=False`: one session per `run()`); the password is only given to asyncua
after the endpoint, its security and (when secure) the server's certificate have been
accepted; every failure leaves no socket open and raises a subclass of `EdgeAgentError`
whose message names the endpoint and says what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import security_policies as sp
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from pydantic import SecretStr

from agent.config.settings import OpcUaSource
from agent.domain.errors import ConnectionLostError, DeviceTimeoutError, EdgeAgentError
from drivers.opcua_logs import demote_expected_teardown
from drivers.opcua_security import (
    Pki,
    check_server_certificate,
    default_application_uri,
    ensure_own_certificate,
    load_trusted,
    untrusted_error,
)
from drivers.opcua_values import status_name

__all__ = ["POLICIES", "ConnectOptions", "close", "connect", "library_errors"]

POLICIES: dict[str, type[sp.SecurityPolicy]] = {
    "None": sp.SecurityPolicyNone,
    "Basic256Sha256": sp.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": sp.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": sp.SecurityPolicyAes256Sha256RsaPss,
}
_MODES = {
    "None": ua.MessageSecurityMode.None_,
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}
_LOGIN_REFUSED = {"BadUserAccessDenied", "BadIdentityTokenInvalid", "BadIdentityTokenRejected"}
_CERT_REFUSED = {
    "BadCertificateUntrusted",
    "BadSecurityChecksFailed",
    "BadCertificateInvalid",
    "BadCertificateUriInvalid",
    "BadCertificateUseNotAllowed",
    "BadCertificateTimeInvalid",
    "BadCertificateIssuerRevocationUnknown",
    "BadCertificateRevocationUnknown",
    "BadCertificateRevoked",
    "BadSecurityPolicyRejected",
}


demote_expected_teardown()


@dataclass(frozen=True)
class ConnectOptions:
    """Everything needed to open one session; built from an OpcUaSource."""

    endpoint: str
    policy: str
    mode: str
    username: str | None
    password: SecretStr | None
    application_uri: str
    timeout_s: float
    pki: Pki
    session_timeout_s: float = 120.0
    probe_interval_s: float = 5.0
    agent_id: str = "edge-agent"
    source: str | None = None  # the source's name, and the configuration file naming it:
    config_file: Path | None = None  # the trust hint is a command that works as printed

    @classmethod
    def of(
        cls,
        source: OpcUaSource,
        *,
        state_dir: Path,
        agent_id: str,
        password: SecretStr | None,
        session_timeout_s: float = 120.0,
        config_file: Path | None = None,
    ) -> ConnectOptions:
        hostname = socket.gethostname()
        return cls(
            endpoint=source.endpoint,
            policy=source.security_policy,
            mode=source.security_mode,
            username=source.username,
            password=password,
            application_uri=source.application_uri or default_application_uri(hostname, agent_id),
            timeout_s=source.timeout_s,
            pki=Pki.under(
                state_dir, trusted_dir=source.trusted_dir, rejected_dir=source.rejected_dir
            ),
            session_timeout_s=session_timeout_s,
            probe_interval_s=max(1.0, source.timeout_s),
            agent_id=agent_id,
            source=source.name if config_file is not None else None,
            config_file=config_file,
        )

    @property
    def secure(self) -> bool:
        return self.policy != "None"


def _status_error(code: int, what: str, options: ConnectOptions | None) -> EdgeAgentError:
    name = status_name(code)
    if name in _LOGIN_REFUSED and options is not None:
        who = f"user '{options.username}'" if options.username else "an anonymous login"
        return ConnectionLostError(
            f"{what}: the server refused {who} ({name}); check username and the password file"
        )
    if name in _CERT_REFUSED and options is not None and options.secure:
        return ConnectionLostError(
            f"{what}: the server refused the agent's certificate ({name}); trust "
            f"{options.pki.certificate} on the server (application URI "
            f"{options.application_uri})"
        )
    if name == "BadTooManySessions":
        return ConnectionLostError(f"{what}: the server has no free session ({name})")
    if name == "BadTimeout":
        return DeviceTimeoutError(f"{what}: the server answered {name}")
    return ConnectionLostError(f"{what}: {name}")


@contextlib.contextmanager
def library_errors(what: str, options: ConnectOptions | None = None) -> Iterator[None]:
    """Map asyncua, OSError and TimeoutError raised inside into agent.domain.errors, once."""
    try:
        yield
    except UaStatusCodeError as exc:
        raise _status_error(exc.code, what, options) from exc
    except UaError as exc:
        raise ConnectionLostError(f"{what}: {exc}") from exc
    except TimeoutError as exc:  # before OSError: TimeoutError is an OSError
        raise DeviceTimeoutError(f"{what}: no answer in time") from exc
    except ConnectionRefusedError as exc:
        raise ConnectionLostError(
            f"{what}: connection refused (is the server running, and the port right?)"
        ) from exc
    except OSError as exc:
        raise ConnectionLostError(f"{what}: {exc.strerror or exc}") from exc


def _first_certificate(der: bytes) -> bytes:
    """The leading certificate of a DER chain (outer SEQUENCE with a 2-byte length)."""
    if len(der) > 4 and der[0] == 0x30 and der[1] == 0x82:
        return der[: int.from_bytes(der[2:4], "big") + 4]
    return der


def _offered(endpoints: list[ua.EndpointDescription]) -> str:
    pairs = sorted(
        {
            f"{(e.SecurityPolicyUri or '').rpartition('#')[2]}/{e.SecurityMode.name.rstrip('_')}"
            for e in endpoints
        }
    )
    return ", ".join(pairs) or "nothing"


def _pick_endpoint(
    endpoints: list[ua.EndpointDescription], options: ConnectOptions
) -> ua.EndpointDescription:
    uri, mode = POLICIES[options.policy].URI, _MODES[options.mode]
    if options.username and not options.secure:
        raise ConnectionLostError(
            f"{options.endpoint}: a username needs a secure security_policy and "
            "security_mode; with 'None' the password would cross the network unprotected"
        )
    for endpoint in endpoints:
        if endpoint.SecurityPolicyUri == uri and endpoint.SecurityMode == mode:
            tokens = {t.TokenType for t in endpoint.UserIdentityTokens or []}
            wanted = ua.UserTokenType.UserName if options.username else ua.UserTokenType.Anonymous
            if wanted not in tokens:
                accepted = ", ".join(sorted(t.name for t in tokens)) or "none"
                raise ConnectionLostError(
                    f"{options.endpoint} does not accept "
                    f"{'user names' if options.username else 'anonymous logins'} on "
                    f"{options.policy}/{options.mode} (it accepts: {accepted}); "
                    f"{'remove username' if options.username else 'set username and password_file'}"
                    " in the source"
                )
            return endpoint
    raise ConnectionLostError(
        f"{options.endpoint} offers no endpoint with security_policy '{options.policy}' and "
        f"security_mode '{options.mode}' (it offers: {_offered(endpoints)}); change the source's "
        "security settings"
    )


async def connect(options: ConnectOptions) -> Client:
    """A connected client for one session (see the module invariants)."""
    # watchdog_intervall: period of asyncua's session health probe (a ServerState read)
    client = Client(
        options.endpoint, timeout=options.timeout_s, watchdog_intervall=options.probe_interval_s
    )
    client.application_uri = options.application_uri
    client.name = client.description = f"edge-agent {options.agent_id}"
    client.product_uri = "urn:edge-agent"
    client.session_timeout = int(options.session_timeout_s * 1000)
    where = f"opening {options.endpoint}"
    connected = False
    try:
        await _open(client, options, where)
        _honour_cancel()
        connected = True
    finally:
        if not connected:  # also on cancellation: asyncua only cleans up on Exception
            client.disconnect_socket()
    return client


def _honour_cancel() -> None:
    """Raise the cancellation asyncua may have swallowed while opening the socket.

    asyncua opens its TCP connection under the standard `asyncio.wait_for`, which before
    Python 3.12 returns the result instead of raising when the task is cancelled as the
    connection completes (CPython gh-86296): the cancellation is lost, the session opens and
    runs on, and a SIGTERM during start-up hung the shutdown until its limit. The task's
    `cancelling()` count still says it was asked to stop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _open(client: Client, options: ConnectOptions, where: str) -> None:
    with library_errors(where, options):
        endpoints = await client.connect_and_get_server_endpoints()
    endpoint = _pick_endpoint(endpoints, options)
    if options.secure:
        # Our own certificate first: plant IT can then trust both sides in one visit.
        cert, key = await asyncio.to_thread(
            ensure_own_certificate,
            options.pki,
            application_uri=options.application_uri,
            hostname=socket.gethostname(),
        )
        der = _first_certificate(bytes(endpoint.ServerCertificate or b""))
        trusted = await asyncio.to_thread(load_trusted, options.pki.trusted_dir)
        reasons = check_server_certificate(
            der,
            application_uri=str(endpoint.Server.ApplicationUri),
            trusted=trusted,
            # certificate validity is wall-clock time against a real peer: not the injected Clock
            now=dt.datetime.now(dt.UTC),  # noqa: TID251
        )
        if reasons:
            raise await asyncio.to_thread(
                untrusted_error, der, reasons, options.pki, options.endpoint,
                config_file=options.config_file, source=options.source,
            )  # fmt: skip
        with library_errors(where, options):
            await client.set_security(
                POLICIES[options.policy],
                str(cert),
                str(key),
                server_certificate=der,
                mode=_MODES[options.mode],
            )
    if options.username:
        client.set_user(options.username)
        if options.password is not None:
            client.set_password(options.password.get_secret_value())
    with library_errors(where, options):
        await client.connect(auto_reconnect=False)


async def close(client: Client, timeout_s: float) -> None:
    """Close the session (deleting its subscriptions) within `timeout_s`, else drop the socket.

    Never raises for a dead peer; cancellation propagates.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await client.disconnect()
    except TimeoutError:
        client.disconnect_socket()
