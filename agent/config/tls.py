"""The TLS context the `[sync]` settings describe, or the key that makes it impossible.

Owns: `tls_context(sync, base_dir)`: httpx's default trust when neither a CA bundle nor a
client certificate is set, else an `ssl.SSLContext` with the CA bundle and the client
certificate loaded (relative paths from the configuration file's folder). The loader calls
it at `check` and start-up so a bad file is a configuration error (exit 78); the sync client
(agent.sync.http) builds its connection with the same context.
Must not: prompt for a key's password (an encrypted key is refused), log, or keep the
context anywhere.
Invariants: raises only `ConfigError`, naming the `[sync]` key at fault.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx

from agent.config.settings import SyncSection
from agent.domain.errors import ConfigError, ConfigProblem

__all__ = ["tls_context"]


def tls_context(sync: SyncSection, base_dir: Path) -> ssl.SSLContext | bool:
    """True (httpx's default trust) unless a CA bundle or a client certificate is set."""
    if sync.ca_file is None and sync.client_cert_file is None:
        if sync.client_key_file is not None:
            raise _problem("sync.client_cert_file", "set with sync.client_key_file", "none")
        return True
    ca = _resolve(sync.ca_file, base_dir)
    try:
        context = (
            ssl.create_default_context(cafile=str(ca))
            if ca is not None
            else httpx.create_ssl_context(trust_env=True)
        )
    except (OSError, ssl.SSLError) as exc:
        raise _problem("sync.ca_file", "a readable PEM CA bundle", f"{ca}: {exc}") from exc
    cert = _resolve(sync.client_cert_file, base_dir)
    key = _resolve(sync.client_key_file, base_dir)
    if cert is not None:
        try:
            context.load_cert_chain(cert, key, password=_no_password)
        except (OSError, ssl.SSLError) as exc:
            expected = "a PEM certificate and its unencrypted key (sync.client_key_file)"
            raise _problem("sync.client_cert_file", expected, f"{cert}: {exc}") from exc
    return context


def _resolve(path: Path | None, base_dir: Path) -> Path | None:
    return path if path is None or path.is_absolute() else base_dir / path


def _problem(key: str, expected: str, found: str) -> ConfigError:
    return ConfigError([ConfigProblem("sync", key, expected, found)])


def _no_password() -> bytes:
    """An encrypted key fails to load instead of prompting on a terminal."""
    return b""
