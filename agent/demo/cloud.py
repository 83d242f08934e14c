"""The reference cloud receiver, running: for tests, benchmarks, the demo and the CLI.

Owns: running the receiver app (``agent.demo.cloud_app``) under uvicorn, in-process
(``CloudReceiver``: tests and demo, with ``.url``, ``.store`` for assertions and ``.faults``
to script the next block requests) or blocking (``serve_cloud``: ``edge-agent cloud``), its
SQLite file under the data directory, and ``python -m agent.demo.cloud`` for benchmarks.

Must not: be imported by the daemon (import-linter); configure logging when hosted (uvicorn
runs with ``log_config=None``, so the host's JSON logging applies); take over the host's
signals when running in-process.

Invariants: ``CloudReceiver`` listens before ``__aenter__`` returns (port 0 picks a free port,
``.url`` names it) and has stopped serving and closed its store when ``__aexit__`` returns; a
new receiver on the same data directory (and port) sees everything the previous one stored.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Generator
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from agent.demo.cloud_app import create_app
from agent.demo.cloud_faults import Fault, FaultScript, ScriptedDropFilter
from agent.demo.cloud_store import CloudStore
from agent.service.logs import configure_logging, get_logger

__all__ = ["DB_NAME", "CloudReceiver", "Fault", "FaultScript", "create_app", "serve_cloud"]

DB_NAME = "cloud.db"
_log = get_logger(__name__)


def _config(app: FastAPI, **tls: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
        **{k: v for k, v in tls.items() if v is not None},
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


class _HostedServer(uvicorn.Server):
    """uvicorn inside someone else's event loop: the host process owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class CloudReceiver:
    """The receiver in this event loop: ``async with CloudReceiver(dir) as cloud: cloud.url``.

    ``faults`` scripts the next block requests; ``store`` is there for assertions. TLS when
    ``ssl_certfile``/``ssl_keyfile`` are given; a client certificate is required when
    ``ssl_ca_certs`` is given too (mTLS).
    """

    def __init__(
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: SecretStr | None = None,
        ssl_certfile: Path | None = None,
        ssl_keyfile: Path | None = None,
        ssl_ca_certs: Path | None = None,
        models_dir: Path | None = None,
    ) -> None:
        self.data_dir, self.host, self.port, self.token = data_dir, host, port, token
        self.models_dir = models_dir  # model packages offered to agents (remote support)
        self._tls: dict[str, Any] = {"ssl_certfile": ssl_certfile, "ssl_keyfile": ssl_keyfile}
        if ssl_ca_certs is not None:
            self._tls |= {"ssl_ca_certs": str(ssl_ca_certs), "ssl_cert_reqs": ssl.CERT_REQUIRED}
        self.faults = FaultScript()
        self._store: CloudStore | None = None
        self._server: _HostedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._drops = ScriptedDropFilter()

    @property
    def url(self) -> str:
        scheme = "https" if self._tls["ssl_certfile"] is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def store(self) -> CloudStore:
        if self._store is None:
            raise RuntimeError("the receiver is not running")
        return self._store

    async def __aenter__(self) -> CloudReceiver:
        self._store = await asyncio.to_thread(CloudStore, self.data_dir / DB_NAME)
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        app = create_app(
            self._store, token=self.token, faults=self.faults, models_dir=self.models_dir
        )
        self._server = _HostedServer(_config(app, **self._tls))
        logging.getLogger("uvicorn.error").addFilter(self._drops)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="cloud")
        try:
            while not self._server.started:
                if self._task.done():
                    await self._task  # raises what stopped it
                    raise RuntimeError("the cloud receiver stopped while starting")
                await asyncio.sleep(0.01)
        except BaseException:
            sock.close()
            self._task.cancel()
            logging.getLogger("uvicorn.error").removeFilter(self._drops)
            self._store.close()
            self._server = self._task = self._store = None
            raise
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        logging.getLogger("uvicorn.error").removeFilter(self._drops)
        if self._store is not None:
            self._store.close()
        self._server = self._task = self._store = None


def serve_cloud(
    *,
    host: str,
    port: int,
    data_dir: Path,
    token: SecretStr | None = None,
    models_dir: Path | None = None,
) -> None:
    """Run the receiver until SIGINT/SIGTERM (blocking; ``edge-agent cloud``)."""
    store = CloudStore(data_dir / DB_NAME)
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    app = create_app(store, token=token, faults=FaultScript(), models_dir=models_dir)
    _log.info("cloud_receiver_started", host=host, port=bound, data_dir=str(data_dir))
    try:
        uvicorn.Server(_config(app)).run(sockets=[sock])
    finally:
        store.close()
        _log.info("cloud_receiver_stopped", port=bound)


def main(argv: list[str] | None = None) -> None:
    """``python -m agent.demo.cloud --port N --data DIR [--token-file F]`` (benchmarks)."""
    parser = argparse.ArgumentParser(prog="python -m agent.demo.cloud")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8800)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--token-file", type=Path)
    parser.add_argument("--models", type=Path)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    token = None
    if args.token_file is not None:
        token = SecretStr(args.token_file.read_text(encoding="utf-8").strip())
    serve_cloud(
        host=args.host, port=args.port, data_dir=args.data, token=token, models_dir=args.models
    )


if __name__ == "__main__":
    main()
