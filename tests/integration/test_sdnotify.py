"""The sd_notify notifier against a real AF_UNIX datagram socket (path and abstract), and the
keep-alive schedule on a FakeClock: WATCHDOG=1 only while every watched loop makes progress."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.domain.clock import FakeClock
from agent.domain.health import Health
from agent.service.sdnotify import Notifier, keep_alive
from tests.support.logs import events


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket, as systemd's, and the NOTIFY_SOCKET value naming it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    with sock:
        yield sock, path


def received(sock: socket.socket) -> list[str]:
    """Every datagram queued on `sock` right now."""
    out = []
    while True:
        try:
            out.append(sock.recv(4096, socket.MSG_DONTWAIT).decode())
        except BlockingIOError:
            return out


def test_messages_reach_a_path_socket(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = Notifier({"NOTIFY_SOCKET": path})
    try:
        assert notifier.enabled
        assert notifier.ready("sources 0/1 connected")
        assert notifier.status("all good")
        assert notifier.watchdog()
        assert notifier.stopping("stopping: SIGTERM")
    finally:
        notifier.close()
    assert received(sock) == [
        "READY=1\nSTATUS=sources 0/1 connected",
        "STATUS=all good",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=stopping: SIGTERM",
    ]


def test_messages_reach_an_abstract_socket() -> None:
    name = f"edge-agent-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        try:
            assert notifier.ready("up")
        finally:
            notifier.close()
        assert received(sock) == ["READY=1\nSTATUS=up"]


def test_without_notify_socket_everything_is_a_no_op(receiver: tuple[socket.socket, str]) -> None:
    sock, _ = receiver
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready("up")
    assert not notifier.watchdog()
    assert notifier.watchdog_interval_s is None
    assert received(sock) == []


def test_a_vanished_socket_is_logged_once_and_never_raised(
    tmp_path: Path, logs: io.StringIO
) -> None:
    path = tmp_path / "notify"
    notifier = Notifier({"NOTIFY_SOCKET": str(path)})
    try:
        assert not notifier.watchdog()  # nobody listens: ENOENT
        assert not notifier.watchdog()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(path))
            assert notifier.watchdog()
            assert received(sock) == ["WATCHDOG=1"]
    finally:
        notifier.close()
    seen = [(e["event"], e["level"]) for e in events(logs) if e["event"].startswith("systemd")]
    assert seen == [
        ("systemd_notify_failed", "warning"),
        ("systemd_notify_failed", "debug"),
        ("systemd_notify_recovered", "info"),
    ]
    assert str(path) in events(logs)[0]["notify_socket"]


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process_only() -> None:
    pid = os.getpid()
    assert Notifier({"WATCHDOG_USEC": "20000000"}).watchdog_interval_s == 10.0
    assert (
        Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(pid)}).watchdog_interval_s == 1.5
    )
    assert (
        Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(pid + 1)}).watchdog_interval_s
        is None
    )
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval_s is None
    assert Notifier({"WATCHDOG_USEC": "soon"}).watchdog_interval_s is None


async def test_watchdog_only_while_every_watched_loop_makes_progress(
    receiver: tuple[socket.socket, str], logs: io.StringIO
) -> None:
    sock, path = receiver
    clock = FakeClock()
    health = Health()
    health.watch("buffer:blocks", now=clock.monotonic(), max_silence_s=30)
    health.watch("not-critical", now=clock.monotonic(), max_silence_s=1, critical=False)
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"})  # every 5 s
    summaries = iter(f"summary {n}" for n in range(100))
    task = asyncio.create_task(keep_alive(notifier, health, clock, lambda: next(summaries)))
    try:
        for _ in range(4):  # beating every 5 s: a watchdog every 5 s, a status every 10 s
            await clock.advance(5)
            health.beat("buffer:blocks", clock.monotonic())
        assert received(sock) == ["WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1", "STATUS=summary 0",
                                  "WATCHDOG=1", "WATCHDOG=1", "STATUS=summary 1"]  # fmt: skip
        await clock.advance(30)  # t=25..50, silent since 20 s: still within max_silence_s
        assert received(sock).count("WATCHDOG=1") == 6
        await clock.advance(30)  # t=55..80: stalled, the watchdog is withheld
        assert received(sock) == ["STATUS=summary 5", "STATUS=summary 6", "STATUS=summary 7"]
        health.beat("buffer:blocks", clock.monotonic())
        await clock.advance(5)
        assert received(sock) == ["WATCHDOG=1"]  # resumed at the next tick
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        notifier.close()
    seen = [(e["event"], e.get("stalled")) for e in events(logs) if "watchdog" in e["event"]]
    assert seen == [("systemd_watchdog_withheld", ["buffer:blocks"]),
                    ("systemd_watchdog_resumed", None)]  # fmt: skip
