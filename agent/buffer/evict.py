"""Evicting blocks at the buffer's cap, inside the transaction of the insert that needs room.

Owns: the SQL listing eviction candidates in ``EVICTION_ORDER`` (agent.buffer.retention), oldest
first, leaving out the blocks the uploader holds (in flight, or acknowledged with the delete
not yet committed) and the newest catalog; deleting the victims; the persistent counters
(table ``evictions``: blocks, samples and bytes by reason since the store was created); the
in-memory totals and the ``buffer_evicted`` log line (WARNING the first time per reason,
then DEBUG); reading the announcements (agent.buffer.losses) out of EVENTS blocks it evicts, so
that what they said is carried into the next announcement instead of being lost with them.
Must not: begin or commit a transaction (the insert's transaction covers its evictions, their
announcement and the block), decide the order, or be used from another thread than the
writer's.
Invariants: a held seq is never a victim, so a block that may reach the receiver is never
counted as evicted; the totals change only in ``counted``, after the commit; an evicted
EVENTS block that does not decode carries nothing (it cannot be an announcement of ours).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Set
from typing import Any

from agent.buffer.blocks import BlockFormatError, decode_events
from agent.buffer.losses import ANNOUNCEMENTS, Victim
from agent.buffer.retention import EVICTION_ORDER, Candidate, footprint, plan_eviction
from agent.domain.logger import get_logger

__all__ = ["Evicted", "Evictor"]

_log = get_logger("agent.buffer.buffer")
_BATCH = 64
_COLUMNS = "SELECT seq, kind, count, size, quarantine_reason IS NOT NULL, created FROM blocks"
_WHERE = {
    "quarantined": "quarantine_reason IS NOT NULL",
    "telemetry": "kind = 1 AND quarantine_reason IS NULL",
    "catalog": "kind = 3 AND quarantine_reason IS NULL AND seq < :newest",
    "events": "kind = 2 AND quarantine_reason IS NULL",
}
_SQL = {
    reason: f"{_COLUMNS} WHERE {where} AND seq > :after ORDER BY seq LIMIT :batch"
    for reason, where in _WHERE.items()
}

Evicted = dict[str, list[Victim]]
"""Victims by reason (a key of ``EVICTION_ORDER``)."""


def _victim(row: tuple[Any, ...]) -> Victim:
    seq, kind, count, size, quarantined, created = row
    return Victim(int(seq), int(kind), int(count), int(size), bool(quarantined), float(created))


class Evictor:
    """Eviction on one connection; ``totals``: blocks evicted by reason since creation."""

    def __init__(self, conn: sqlite3.Connection, page_size: int) -> None:
        self._conn, self._page = conn, page_size
        rows = conn.execute("SELECT reason, blocks FROM evictions").fetchall()
        self.totals: dict[str, int] = {str(reason): int(blocks) for reason, blocks in rows}
        self._warned: set[str] = set()

    def evict(
        self,
        *,
        used: int,
        need: int,
        cap: int,
        held: Set[int],
        newest_catalog: int | None,
        measure: Callable[[], int],
    ) -> tuple[Evicted, int, list[dict[str, Any]]]:
        """Delete blocks until ``used + need <= cap`` or nothing more may go: the victims,
        the bytes used afterwards (``measure``d after each batch) and the announcement
        events the evicted EVENTS blocks held."""
        evicted: Evicted = {}
        carried: list[dict[str, Any]] = []
        for reason in EVICTION_ORDER:
            after = 0
            while used + need > cap:
                params = {"after": after, "batch": _BATCH, "newest": newest_catalog or 0}
                rows = self._conn.execute(_SQL[reason], params).fetchall()
                if not rows:
                    break
                free = {row[0]: row for row in rows if row[0] not in held}
                candidates = [
                    Candidate(seq, footprint(r[3], self._page)) for seq, r in free.items()
                ]
                chosen = plan_eviction(used, need, cap, candidates)
                # the next batch starts after what was looked at, not after what was left
                after = rows[-1][0] if len(chosen) == len(free) else chosen[-1].seq
                if not chosen:
                    continue
                victims = [_victim(free[c.seq]) for c in chosen]
                carried += self._announcements([v.seq for v in victims if v.kind == 2])
                marks = ",".join("?" * len(victims))
                sql = f"DELETE FROM blocks WHERE seq IN ({marks})"  # noqa: S608 (placeholders)
                self._conn.execute(sql, [v.seq for v in victims])
                evicted.setdefault(reason, []).extend(victims)
                used = measure()
        return evicted, used, carried

    def _announcements(self, seqs: list[int]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for start in range(0, len(seqs), _BATCH):
            chunk = seqs[start : start + _BATCH]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT data FROM blocks WHERE seq IN ({marks})"  # noqa: S608 (placeholders)
            for (data,) in self._conn.execute(sql, chunk):
                try:
                    events = decode_events(bytes(data))
                except BlockFormatError:
                    continue
                out += [e for e in events if e.get("kind") in ANNOUNCEMENTS]
        return out

    def record(self, evicted: Mapping[str, list[Victim]], now: float) -> None:
        """Add the victims to the persistent counters (inside the caller's transaction)."""
        for reason, victims in evicted.items():
            samples = sum(v.count for v in victims if v.kind == 1)
            self._conn.execute(
                "INSERT INTO evictions(reason, blocks, samples, bytes, last_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(reason) DO UPDATE SET"
                " blocks = blocks + excluded.blocks, samples = samples + excluded.samples,"
                " bytes = bytes + excluded.bytes, last_at = excluded.last_at",
                (reason, len(victims), samples, sum(v.size for v in victims), now),
            )

    def counted(self, evicted: Mapping[str, list[Victim]], for_seq: int) -> None:
        """After the commit: the in-memory totals and the log line."""
        for reason, victims in evicted.items():
            self.totals[reason] = self.totals.get(reason, 0) + len(victims)
            emit = _log.debug if reason in self._warned else _log.warning
            self._warned.add(reason)
            emit(
                "buffer_evicted",
                reason=reason,
                blocks=len(victims),
                bytes=sum(v.size for v in victims),
                total=self.totals[reason],
                for_seq=for_seq,
            )
