"""Builds remote support (status reports, desired state, diagnostics) for a running agent.

Owns: the construction of `RemoteSupport` from the settings and the running agent's parts:
the status document (agent.api.status.build_status), the audit log, the models directory
and signing key, the diagnostics' sources (settings, config file, buffer budget, a ring of
recent log lines).
Must not: run anything; agent.service.app runs it under its pipeline supervisor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.api.status import StatusSource, build_status
from agent.control.setup import Control
from agent.remote.client import RemoteSupport
from agent.remote.diagnostics import Diagnostics, LogRing

__all__ = ["build_remote"]


def build_remote(app: StatusSource, control: Control) -> tuple[RemoteSupport, LogRing] | None:
    """Remote support when `[sync] enabled` and `remote_support` are true, else None."""
    s = app.loaded.settings
    if not (s.sync.enabled and s.sync.remote_support) or app.buffer is None:
        return None

    async def audit(kind: str, body: Mapping[str, Any]) -> None:
        await control.audit.record(kind, body)

    ring = LogRing.install()
    remote = RemoteSupport(
        s.sync,
        agent_id=s.agent.id,
        token=app.loaded.secrets.get("sync.token"),
        clock=app.clock,
        base_dir=app.loaded.path.parent,
        status_fn=lambda: build_status(app, quality=control.truth),
        audit=audit,
        models_dir=control.models.models_dir,
        public_key=control.public_key,
        diagnostics=Diagnostics(app.clock, settings=s, config_path=app.loaded.path,
                                budget=app.buffer.budget, log_ring=ring),
    )  # fmt: skip
    return remote, ring
