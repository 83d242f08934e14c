"""The systemd STATUS= line says at once when the buffer cannot keep what it is given: on a
real AF_UNIX datagram socket, with the keep-alive schedule on a FakeClock."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.buffer.budget import OutageBudget
from agent.domain.clock import FakeClock
from agent.domain.health import Health
from agent.service.sdnotify import Notifier, keep_alive, status_line


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    with sock:
        yield sock, path


def received(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096, socket.MSG_DONTWAIT).decode())
        except BlockingIOError:
            return out


def budget(problem: str | None) -> OutageBudget:
    return OutageBudget(
        bytes_used=1_500_000, max_bytes=2_000_000_000, blocks_pending=12, samples_pending=900,
        oldest_unsent_age_s=60.0, bytes_per_hour=1e6, hours_left=0.0, evictions={},
        quarantined=0, dropped_samples={}, dropped_blocks={}, disk_full=problem is not None,
        disk_free_bytes=0, capacity_bytes=1_500_000, problem=problem,
    )  # fmt: skip


def test_the_status_line_puts_a_buffer_problem_first() -> None:
    assert status_line(1, 2, budget(None), []) == (
        "sources 1/2 connected, buffer 1.5 MB used, 12 blocks pending"
    )
    line = status_line(1, 2, budget("disk full: 0.0 MB free"), ["sync:upload"])
    assert line == (
        "BUFFER disk full: 0.0 MB free; sources 1/2 connected, buffer 1.5 MB used,"
        " 12 blocks pending, stalled: sync:upload"
    )


async def test_a_full_disk_is_sent_within_a_second_then_only_at_the_status_cadence(
    receiver: tuple[socket.socket, str],
) -> None:
    """The condition changing is news at once; its figures (free MB, a running dropped
    count: new on every tick of a full disk) wait for the regular status, and the 1 s tick
    that watches the buffer does not make the watchdog more frequent."""
    sock, path = receiver
    clock = FakeClock()
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"})  # every 5 s
    full = [False]

    def current() -> OutageBudget:  # the figures change every second, as on a full disk
        return budget(f"disk full: {clock.monotonic():.0f} samples dropped" if full[0] else None)

    def summary() -> str:
        return status_line(1, 1, current(), []).split(";")[0]

    task = asyncio.create_task(keep_alive(notifier, Health(), clock, summary, budget=current))
    try:
        await clock.advance(3)
        assert received(sock) == ["WATCHDOG=1"]  # at t=0; the regular status waits its 10 s
        full[0] = True
        await clock.advance(1)  # t=4
        assert received(sock) == ["STATUS=BUFFER disk full: 4 samples dropped"]
        await clock.advance(5)  # t=9: the figures changed 5 times, the condition did not
        assert received(sock) == ["WATCHDOG=1"]  # at t=5 only: not every second
        await clock.advance(5)  # t=14: the regular status, 10 s after the last, refreshes them
        assert received(sock) == ["WATCHDOG=1", "STATUS=BUFFER disk full: 14 samples dropped"]
        await clock.advance(1)  # t=15
        assert received(sock) == ["WATCHDOG=1"]
        full[0] = False
        await clock.advance(1)  # t=16: and the recovery at once too
        assert received(sock) == ["STATUS=sources 1/1 connected, buffer 1.5 MB used,"
                                  " 12 blocks pending"]  # fmt: skip
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        notifier.close()
