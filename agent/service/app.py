"""The composition root: builds every component from the settings and runs them together.

Owns: the only place where objects are constructed from `Settings` and wired together, the
state directory and its lock, and the ordered shutdown (the signals: agent.service.shutdown).
Must not: contain domain decisions (they live in the capability packages: agent.control,
agent.buffer, agent.sync, ...) or import the simulator.
Invariants: all long-lived work runs under two supervisors (sources, then the pipeline), so
that shutdown is ordered: the first SIGTERM/SIGINT stops the sources, commits the open block
and closes the buffer, ending with exit code 0 within `agent.shutdown_timeout_s`; a second
signal exits at once with code 1; a stop during start-up lets the opening of the buffer and
audit log finish, then closes them (nothing is left half-open); two agents never share one
state directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

from agent.api.server import serve_api
from agent.api.status import config_digest
from agent.buffer.blocks import Catalog, CatalogEntry
from agent.buffer.buffer import Buffer, StoreCorruptError, StoreUnavailableError
from agent.buffer.builder import BlockBuilder
from agent.config.loader import LoadedConfig
from agent.config.settings import OpcUaSource
from agent.control.loop_stats import LoopStats
from agent.control.setup import Control, KeyFileError, open_control
from agent.domain.backoff import Backoff
from agent.domain.clock import Clock, SystemClock
from agent.domain.errors import ConfigProblem
from agent.domain.health import Health
from agent.domain.latest import LatestValues
from agent.domain.samples import Driver, DriverState, Sample
from agent.remote.diagnostics import LogRing
from agent.service import early_signals
from agent.service.logs import configure_logging, get_logger
from agent.service.memory import FREEZE_AFTER_S, freeze_startup, tune_allocator
from agent.service.remote_wiring import build_remote
from agent.service.sdnotify import Notifier, keep_alive, status_line
from agent.service.shutdown import serve
from agent.service.state_dir import StateDirError, state_dir_lock
from agent.service.supervisor import Supervisor
from agent.sync.lab_feed import LabFeed
from agent.sync.uploader import Uploader
from drivers.modbus import ModbusDriver
from drivers.opcua import OpcUaDriver

SOURCE_RETRY_MAX_S = 5.0
BUFFER_FILE = "buffer.db"

log = get_logger(__name__)


def build_drivers(loaded: LoadedConfig, state_dir: Path, clock: Clock) -> list[Driver]:
    """One driver per `[[sources]]` entry, with that source's tags."""
    s = loaded.settings
    drivers: list[Driver] = []
    for source in s.sources:
        tags = [tag for tag in s.tags if tag.source == source.name]
        if isinstance(source, OpcUaSource):
            password = loaded.secrets.get(f"sources.{source.name}.password")
            drivers.append(
                OpcUaDriver(
                    source,
                    tags,
                    state_dir=state_dir,
                    agent_id=s.agent.id,
                    password=password,
                    clock=clock,
                    config_file=loaded.path,
                )
            )
        else:
            drivers.append(ModbusDriver(source, tags, clock=clock))
    return drivers


class App:
    """The running agent: drivers -> latest values + block builder -> buffer -> uploader."""

    def __init__(self, loaded: LoadedConfig, state_dir: Path, clock: Clock | None = None) -> None:
        self.loaded = loaded
        self.state_dir = state_dir
        self.clock = clock if clock is not None else SystemClock()
        self.started = self.clock.now()
        self.config_sha256 = config_digest(loaded.path)  # the file this process runs
        settings = loaded.settings
        self.health = Health()
        self.notifier = Notifier()  # systemd's NOTIFY_SOCKET; a no-op without one
        self.loop_stats: list[LoopStats] = []  # one per [[loops]] entry, filled by the loops
        self.latest = LatestValues({tag.name: tag.source for tag in settings.tags})
        self.catalog = Catalog(
            tuple(
                CatalogEntry(tag.name, tag.unit, tag.source, tag.resolution)
                for tag in settings.tags
            )
        )
        self.drivers = build_drivers(loaded, state_dir, self.clock)
        # Two supervisors so that shutdown is ordered: sources first, then the pipeline.
        # A field device that comes back is reconnected within ~5 s: the PLC's watchdog on the
        # heartbeat (10-30 s) must not latch because our retry happened to wait a minute.
        self.sources = Supervisor(self.clock, backoff=Backoff(max_s=SOURCE_RETRY_MAX_S))
        self.pipeline = Supervisor(self.clock)
        for driver in self.drivers:
            self.sources.add(f"source:{driver.name}", functools.partial(driver.run, self.emit))
        self.buffer: Buffer | None = None
        self.builder: BlockBuilder | None = None
        self.uploader: Uploader | None = None
        # Control stops first at shutdown: no write and no heartbeat after the signal.
        self.controller = Supervisor(self.clock)
        self.control: Control | None = None
        self._log_ring: LogRing | None = None

    @property
    def active_models(self) -> dict[str, str | None]:
        return self.control.models.active if self.control is not None else {}

    def emit(self, batch: Sequence[Sample]) -> None:
        """Every driver's samples arrive here, on the event loop."""
        self.latest.update(batch)
        if self.control is not None:
            self.control.observe(batch)
        if self.builder is not None:
            self.builder.add(batch)

    async def _open_pipeline(self) -> None:
        s = self.loaded.settings
        path = self.state_dir / BUFFER_FILE
        try:
            self.buffer = await Buffer.open(
                path,
                agent_id=s.agent.id,
                max_bytes=s.sync.max_buffer_bytes,
                clock=self.clock,
            )
        except StoreUnavailableError as exc:
            raise StateDirError(
                ConfigProblem(str(self.loaded.path), "agent.state_dir",
                              "a buffer file the agent can open and write", f"{path}: {exc}")
            ) from None  # fmt: skip
        self.builder = BlockBuilder(
            self.buffer,
            self.catalog,
            flush_interval_s=s.sync.flush_interval_s,
            max_block_samples=s.sync.max_block_samples,
            clock=self.clock,
            on_progress=functools.partial(self._beat, "buffer:blocks"),
        )
        self.pipeline.add("buffer:blocks", self.builder.run)
        if s.sync.enabled:
            self.uploader = Uploader(
                self.buffer,
                s.sync,
                agent_id=s.agent.id,
                token=self.loaded.secrets.get("sync.token"),
                clock=self.clock,
                base_dir=self.loaded.path.parent,
                on_progress=functools.partial(self._beat, "sync:upload"),
            )
            self.pipeline.add("sync:upload", self.uploader.run)
        try:
            self.control = await open_control(
                self.loaded, self.state_dir, latest=self.latest, drivers=self.drivers,
                health=self.health, clock=self.clock, events=self.buffer.put_events,
            )  # fmt: skip
        except KeyFileError as exc:
            await self.buffer.close()
            raise StateDirError(exc.problem) from None
        self.loop_stats.extend(loop.stats for loop in self.control.loops)
        if s.api.enabled:  # after the control side: the API serves its truth loop and promotion
            serve = functools.partial(serve_api, self, s.api, quality=self.control.truth,
                                      promote=self.control.promote)  # fmt: skip
            self.pipeline.add("api:http", serve, critical=False)  # the agent runs on without it
        for name, task in self.control.tasks():
            self.controller.add(name, task)
        truth = self.control.truth
        if truth is not None and s.quality.cloud and s.sync.enabled:
            feed = LabFeed(
                s.sync, s.agent.id, token=self.loaded.secrets.get("sync.token"),
                base_dir=self.loaded.path.parent, store=truth.store, ingest=truth.ingest,
                clock=self.clock, poll_interval_s=s.quality.cloud_poll_interval_s,
                default_product=s.quality.default_product,
            )  # fmt: skip
            self.pipeline.add("sync:lab_feed", feed.run)
        remote = build_remote(self, self.control)
        if remote is not None:
            self.pipeline.add("sync:remote_support", remote[0].run)
            self._log_ring = remote[1]

    def _beat(self, name: str) -> None:
        self.health.beat(name, self.clock.monotonic())

    def _announce_ready(self) -> None:
        """Buffer open, sources configured: watch the critical loops, set ready, send READY=1.

        A loop must beat within max(30 s, 10 x its interval); while one does not, WATCHDOG=1
        is withheld and systemd (WatchdogSec=) restarts the agent.
        """
        now, s = self.clock.monotonic(), self.loaded.settings
        silence = max(30.0, 10 * s.sync.flush_interval_s)
        self.health.watch("buffer:blocks", now=now, max_silence_s=silence)
        if self.uploader is not None:
            silence = max(30.0, 10 * Uploader.MAX_PAUSE_S)
            self.health.watch("sync:upload", now=now, max_silence_s=silence)
        # /readyz says what readiness means; the figures change and live in /status.
        self.health.set_ready(True, "buffer open, sources configured")
        self.notifier.ready(self._status_line())
        if self.notifier.enabled:
            self.pipeline.add("systemd:notify", self._notify)

    async def _notify(self) -> None:
        budget = None if self.buffer is None else self.buffer.budget  # STATUS= on a full disk
        await keep_alive(self.notifier, self.health, self.clock, self._status_line, budget=budget)

    def _status_line(self) -> str:
        """One line for `systemctl status`: sources, buffer, backlog and any stalled loop."""
        assert self.buffer is not None
        up = sum(driver.state is DriverState.CONNECTED for driver in self.drivers)
        stalled = self.health.stalled(self.clock.monotonic())
        return status_line(up, len(self.drivers), self.buffer.budget(), stalled)

    async def run(self) -> None:
        """Run until cancelled; then stop the sources, flush the open block, close the buffer."""
        s = self.loaded.settings
        opening = asyncio.ensure_future(self._open_pipeline())
        stop: asyncio.CancelledError | None = None
        try:
            await asyncio.wait({opening})  # local files only, short: never cut in half
        except asyncio.CancelledError as exc:  # a stop during start-up: finish opening first
            stop = exc
            await asyncio.wait({opening})
        if (failure := opening.exception()) is not None:
            raise failure  # it says why the agent cannot start (exit 78 or 1), stop or not
        if stop is not None:
            await self._close_pipeline()
            raise stop
        assert self.buffer is not None
        self._announce_ready()
        freeze = asyncio.create_task(self._freeze_later(), name="memory:freeze")
        log.info("agent_started", agent_id=s.agent.id, version=version("edge-agent"),
                 config=str(self.loaded.path), state_dir=str(self.state_dir),
                 sources=len(s.sources), tags=len(s.tags), loops=len(s.loops),
                 epoch=self.buffer.epoch, sync=s.sync.url if s.sync.enabled else None,
                 api=f"http://{s.api.host}:{s.api.port}" if s.api.enabled else None,
                 pid=os.getpid())  # fmt: skip
        control = asyncio.create_task(self.controller.run(), name="control")
        sources = asyncio.create_task(self.sources.run(), name="sources")
        pipeline = asyncio.create_task(self.pipeline.run(), name="pipeline")
        try:
            await asyncio.wait({control, sources, pipeline})  # wait() does not cancel them
        finally:
            # In this order: no write after the signal, and no sample is lost on the way.
            for stage in (freeze, control, sources, pipeline):
                stage.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stage
            await self._close_pipeline()

    async def _freeze_later(self) -> None:
        """Freeze what start-up built, FREEZE_AFTER_S after it, on the injected clock."""
        await self.clock.sleep(FREEZE_AFTER_S)
        freeze_startup(self.clock)

    async def _close_pipeline(self) -> None:
        """Flush the open block, close the buffer and the audit log (what _open_pipeline opened)."""
        assert self.buffer is not None
        try:
            if self.builder is not None:
                await self.builder.flush()  # also when the builder was between restarts
            await self.buffer.close()
            if self.control is not None:
                self.control.audit.close()
                if self.control.truth is not None:
                    await self.control.truth.close()
            if self._log_ring is not None:
                self._log_ring.uninstall()
        except (StoreUnavailableError, StoreCorruptError) as exc:
            log.error("buffer_close_failed", error=str(exc))
        budget = self.buffer.budget()
        log.info(
            "buffer_closed",
            bytes_used=budget.bytes_used,
            blocks_pending=budget.blocks_pending,
            evictions=dict(budget.evictions),
        )


def run_agent(loaded: LoadedConfig) -> int:
    """Run the agent in this process until a signal; return the exit code.

    Raises StateDirError (before anything starts) when the state directory is unusable.
    """
    configure_logging(loaded.settings.agent.log_level)
    tune_allocator()  # before asyncio starts any thread
    with state_dir_lock(loaded) as state_dir:
        try:
            asyncio.run(serve(App(loaded, state_dir)))
        finally:  # the closed loop gave SIGTERM back to its default: keep it orderly to the end
            early_signals.install()
    log.info("agent_stopped", agent_id=loaded.settings.agent.id)
    return 0
