"""The durable buffer: blocks on their way to the cloud, in one SQLite file under state_dir.

Owns: the store's identity (agent_id, epoch), the asyncio API the block builder and the
uploader use, the one writer thread that runs every SQLite call (its queue keeps put order),
and reporting a corrupt file that was moved aside. Schema: agent.buffer.schema;
transactions, seqs and counters: agent.buffer.store (inserts: agent.buffer.insert); the
outage budget: agent.buffer.budget; block bytes: agent.buffer.blocks; eviction rules:
agent.buffer.retention.
Must not: touch SQLite from the event loop (the loop encodes blocks, then hands them to the
writer thread and awaits a future only when the caller needs a result), know HTTP or devices.
Invariants:
- Every SQLite call runs on one dedicated thread (a single-worker executor, FIFO), one commit
  per block, WAL with synchronous=FULL, so a crash or power cut loses at most the blocks not
  yet committed: the open block of the builder plus those queued (normally none).
- ``put_*`` returns once the block is queued, before the commit, with the seq it is expected
  to get; the store gives the real one at the commit (they differ only when a block queued
  before it was dropped, or an announcement of evictions went first). ``flush()`` waits for
  everything queued so far. A full disk is not an error: the store evicts, or drops and
  counts (``budget().dropped_samples``, ``problem``); nor is another failed commit (locked,
  I/O error): the store tries the block once more, then drops and counts it as
  ``store_error``. Only a corrupt file is raised by the next ``put_*`` or ``flush()``
  (StoreCorruptError: reopen). At most ``MAX_QUEUED`` puts wait in the queue; beyond that a
  put waits.
- seq grows by one per stored block and never repeats within the epoch (``meta.next_seq``,
  written with every insert, survives restarts, acks and a hand-emptied table); a block that
  is not stored takes none, so no seq is ever skipped.
- A catalog is stored (as a CATALOG block, in the transaction of the telemetry that needs
  it, before it) the first time the store sees it in this process.
- A block the uploader ``claim``ed is not evicted until it is acked or ``release``d.
- ``budget()`` does no I/O: it reads the counters the writer publishes after each commit.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from agent.buffer.blocks import (
    BlockKind,
    Catalog,
    encode_catalog,
    encode_events,
    encode_telemetry,
)
from agent.buffer.budget import OutageBudget, outage_budget
from agent.buffer.retention import RateMeter, footprint
from agent.buffer.schema import Opened, open_database
from agent.buffer.store import (
    Incoming,
    Store,
    StoreCorruptError,
    StoredBlock,
    StoreFullError,
    StoreUnavailableError,
    mapped_errors,
)
from agent.domain.clock import Clock
from agent.domain.logger import get_logger
from agent.domain.samples import Sample

__all__ = [
    "MAX_QUEUED",
    "MIN_MAX_BYTES",
    "Buffer",
    "OutageBudget",
    "StoreCorruptError",
    "StoreFullError",
    "StoreUnavailableError",
    "StoredBlock",
]

MAX_QUEUED = 64
MIN_MAX_BYTES = 512 * 1024
"""Below this the WAL's share and the reserve would leave no room for blocks."""
_log = get_logger(__name__)
T = TypeVar("T")


class Buffer:
    """The store and forward buffer. Create with ``await Buffer.open(...)``."""

    agent_id: str
    epoch: str
    recovered_from: Path | None

    def __init__(
        self,
        executor: concurrent.futures.ThreadPoolExecutor,
        store: Store,
        *,
        agent_id: str,
        epoch: str,
        next_seq: int,
        max_bytes: int,
        page_size: int,
        clock: Clock,
        recovered_from: Path | None,
    ) -> None:
        """Internal: use ``Buffer.open``."""
        self.agent_id, self.epoch, self.recovered_from = agent_id, epoch, recovered_from
        self._executor, self._store, self._clock = executor, store, clock
        self._next_seq = next_seq
        self._max_bytes, self._page = max_bytes, page_size
        self._catalog_id: str | None = None  # the catalog the last put expected to store
        self._catalog_block: tuple[str, Incoming] | None = None
        self._queued: collections.deque[concurrent.futures.Future[int | None]] = collections.deque()
        self._failed: collections.deque[BaseException] = collections.deque()  # thread-safe
        self._failures = 0
        self._meter = RateMeter()
        self._closed = False

    @classmethod
    async def open(cls, path: Path, *, agent_id: str, max_bytes: int, clock: Clock) -> Buffer:
        """Open or create the buffer file; a corrupt one is moved aside and reported.
        StoreUnavailableError when SQLite cannot open it (missing folder, permissions);
        ValueError for a cap below ``MIN_MAX_BYTES``."""
        if max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"max_bytes must be at least {MIN_MAX_BYTES}, got {max_bytes}")
        executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="buffer-writer")
        loop = asyncio.get_running_loop()
        now = clock.now()

        def opening() -> tuple[Store, Opened]:
            with mapped_errors():
                opened = open_database(path, agent_id=agent_id, max_bytes=max_bytes, now=now)
            try:
                return Store(opened, max_bytes=max_bytes, path=path), opened
            except BaseException:
                opened.conn.close()
                raise

        try:
            store, opened = await loop.run_in_executor(executor, opening)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        buffer = cls(
            executor, store, agent_id=agent_id, epoch=opened.epoch, next_seq=opened.next_seq,
            max_bytes=max_bytes, page_size=opened.page_size, clock=clock,
            recovered_from=opened.recovered_from,
        )  # fmt: skip
        if opened.recovered_from is not None:
            moved = {"path": str(path), "moved_to": str(opened.recovered_from)}
            _log.warning("buffer_corrupt_moved_aside", **moved, error=opened.problem,
                         epoch=opened.epoch)  # fmt: skip
            kind = "buffer_corrupt_moved_aside"
            await buffer.put_events([{"kind": kind, "time": now, **moved, "error": opened.problem}])
            await buffer.flush()
        _log.info(
            "buffer_opened",
            path=str(path),
            epoch=buffer.epoch,
            next_seq=buffer._next_seq,
            blocks_pending=store.counters.blocks_pending,
            bytes_used=store.counters.bytes_used,
        )
        return buffer

    # -- puts (return before the commit) -------------------------------------------------

    async def put_samples(self, samples: Sequence[Sample], catalog: Catalog) -> int:
        """Queue one TELEMETRY block (its catalog first when the store has not stored it in
        this process); the seq it is expected to get."""
        self._check_open()
        now = self._clock.now()
        seq = self._expected_seq()
        if catalog.id != self._catalog_id:
            seq += 1  # the catalog goes first
            self._catalog_id = catalog.id
        if self._catalog_block is None or self._catalog_block[0] != catalog.id:
            data = encode_catalog(epoch=self.epoch, seq=seq - 1, created=now, catalog=catalog)
            block = Incoming(BlockKind.CATALOG, data, now, len(catalog.entries))
            self._catalog_block = (catalog.id, block)
        data = encode_telemetry(
            epoch=self.epoch, seq=seq, created=now, samples=samples, catalog=catalog
        )
        self._put(seq, Incoming(BlockKind.TELEMETRY, data, now, len(samples)))
        await self._backpressure()
        return seq

    async def put_events(self, events: Sequence[Mapping[str, Any]]) -> int:
        """Queue one EVENTS block (strict JSON objects); its seq."""
        self._check_open()
        now = self._clock.now()
        seq = self._expected_seq()
        data = encode_events(epoch=self.epoch, seq=seq, created=now, events=events)
        self._put(seq, Incoming(BlockKind.EVENTS, data, now, len(events)))
        await self._backpressure()
        return seq

    async def flush(self) -> None:
        """Wait until every block put so far is committed; raise the first failed put since
        the last flush (StoreCorruptError; a block the store could not keep is counted)."""
        self._check_open()
        await self._call(lambda: None)
        self._raise_failure()

    # -- the uploader's side (await the writer) ------------------------------------------

    async def pending(
        self, *, limit: int, newest_first: bool, kinds: Collection[BlockKind] | None = None
    ) -> list[StoredBlock]:
        """Blocks neither acked nor quarantined: CATALOG blocks first (oldest first), then
        the others newest or oldest first; at most ``limit`` in all."""
        self._check_open()
        return await self._call(lambda: self._store.pending(limit, newest_first, kinds))

    async def claim(self, seq: int) -> StoredBlock | None:
        """Hold a pending block for an upload: it is not evicted (nor rewritten) until acked
        or released; the block as it is now, or None when it is no longer pending."""
        self._check_open()
        return await self._call(lambda: self._store.claim(seq))

    async def release(self, seqs: Collection[int]) -> None:
        """The upload of these blocks failed: they may be evicted again."""
        self._check_open()
        await self._call(lambda: self._store.release(list(seqs)))

    async def ack(self, seqs: Sequence[int]) -> None:
        """Delete blocks the receiver acknowledged (unknown seqs are ignored).
        StoreFullError when the disk is too full even for that (retry later)."""
        self._check_open()
        await self._call(lambda: self._store.ack(list(seqs)))

    async def quarantine(self, seq: int, reason: str) -> None:
        """Keep the block but never offer it again; counted in the budget."""
        self._check_open()
        now = self._clock.now()
        if not await self._call(lambda: self._store.quarantine(seq, reason, now)):
            _log.debug("buffer_quarantine_ignored", seq=seq, reason=reason)
            return
        _log.warning("buffer_block_quarantined", seq=seq, reason=reason)

    def budget(self) -> OutageBudget:
        """The outage budget now, from in-memory counters (no I/O)."""
        return outage_budget(
            self._store.counters, max_bytes=self._max_bytes, page_size=self._page,
            meter=self._meter, now=self._clock.now(), mono=self._clock.monotonic(),
        )  # fmt: skip

    async def close(self) -> None:
        """Commit everything queued, close the database and stop the writer thread (then
        raise a failure of the last puts, if any)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._call(self._store.close)
        finally:
            self._executor.shutdown(wait=False)
        self._raise_failure()

    # -- internals -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the buffer is closed")

    def _expected_seq(self) -> int:
        """The seq the next block should get: the store's next seq when nothing is queued,
        else one more than the last block queued."""
        self._raise_failure()  # an earlier put failed: say so instead of queuing more
        queued = self._queued
        while queued and queued[0].done():
            queued.popleft()
        if not queued:
            self._next_seq = self._store.counters.next_seq
        return self._next_seq

    def _put(self, seq: int, block: Incoming) -> None:
        self._next_seq = seq + 1
        self._meter.add(self._clock.monotonic(), footprint(len(block.data), self._page))
        catalog = self._catalog_block if block.kind == BlockKind.TELEMETRY else None
        future = self._executor.submit(self._store.insert, block, catalog)
        future.add_done_callback(self._put_done)
        self._queued.append(future)

    def _put_done(self, future: concurrent.futures.Future[int | None]) -> None:
        """On the writer thread: keep a failed put for the next put or flush, and log it."""
        exc = None if future.cancelled() else future.exception()
        if exc is None:
            if self._failures:
                _log.info("buffer_put_recovered", after_failures=self._failures)
                self._failures = 0
            return
        self._failed.append(exc)
        self._failures += 1
        emit = _log.warning if self._failures == 1 else _log.debug
        emit("buffer_put_failed", error=f"{type(exc).__name__}: {exc}", failures=self._failures)

    def _raise_failure(self) -> None:
        """Raise the first put failure not yet reported (the rest were logged)."""
        failed = []
        while self._failed:
            failed.append(self._failed.popleft())
        if failed:
            self._catalog_id = None  # the catalog may be what failed: store it again
            raise failed[0]

    async def _backpressure(self) -> None:
        queued = self._queued
        while queued and queued[0].done():
            queued.popleft()
        while len(queued) > MAX_QUEUED:
            oldest = asyncio.wrap_future(queued.popleft())
            await asyncio.wait([oldest])
            if not oldest.cancelled():
                oldest.exception()  # kept by _put_done for later; not this put's error

    async def _call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
