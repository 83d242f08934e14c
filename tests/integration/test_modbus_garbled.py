"""The Modbus driver against a hostile server: garbled answers are counted Bad, never a 0.

The peer is `tests.support.hostile_modbus` (plain asyncio, not pymodbus) on 127.0.0.1. An answer
with a function code pymodbus cannot decode used to raise inside pymodbus' data_received:
asyncio logged "Fatal error: protocol.data_received() call failed" with a traceback and
dropped the connection, once per reply. An answer with another known function code counted
as a timeout. Now both are garbled answers: the tags of that request Bad_CommunicationError,
counted apart, one WARNING per request (repeats DEBUG, recovery INFO), the connection kept.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.config.settings import ModbusSource, Tag
from agent.domain.backoff import Backoff
from agent.domain.clock import SystemClock
from agent.domain.errors import DeviceTimeoutError
from agent.domain.samples import BAD_COMMUNICATION_ERROR, GOOD, Sample
from drivers.modbus import ModbusDriver
from tests.support.hostile_modbus import HostileModbusServer, Rule, Values, WrongFunction
from tests.support.tasks import running
from tests.support.wait import until

UNDECODABLE = 0x41  # no such function code: pymodbus cannot decode the frame
OTHER_FUNCTION = 0x04  # a read-input answer to a read-holding request


def tag(name: str, address: str, **extra: Any) -> Tag:
    return Tag.model_validate(
        {"name": name, "source": "plc", "address": address, "type": "uint16"} | extra
    )


TAGS = [
    tag("Fine", "holding:0"),
    tag("Undecodable", "holding:100"),
    tag("OtherFunction", "holding:200"),
    tag("Setpoint", "holding:300", writable=True, write_min=0, write_max=1000),
]


def driver(port: int) -> ModbusDriver:
    source = ModbusSource.model_validate(
        {"kind": "modbus", "name": "plc", "host": "127.0.0.1", "port": port,
         "poll_interval_s": 0.05, "timeout_s": 1.0, "retries": 0}
    )  # fmt: skip
    return ModbusDriver(source, TAGS, clock=SystemClock(), backoff=Backoff(initial_s=0.3))


def of(samples: Sequence[Sample], name: str) -> list[Sample]:
    return [s for s in samples if s.tag == name]


async def test_garbled_answers_are_bad_samples_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    rules: dict[tuple[int, int | None], Rule] = {
        (1, 100): WrongFunction(UNDECODABLE),
        (1, 200): WrongFunction(OTHER_FUNCTION),
    }
    samples: list[Sample] = []
    async with HostileModbusServer(rules) as server:
        drv = driver(server.port)
        with capture_logs() as events:
            async with running(functools.partial(drv.run, samples.extend)) as task:
                await until(lambda: drv.counters().unit(1).garbled >= 20 or task.done(),
                            "ten scans of garbled answers")  # fmt: skip
                assert not task.done(), task.exception()  # the connection was kept
                health = drv.tag_health()
                server.rules[(1, 100)] = Values()  # the device recovers
                await until(lambda: [s.value for s in of(samples, "Undecodable")][-1:] == [101],
                            "a good value after the recovery")  # fmt: skip
    counters = drv.counters()
    assert counters.sessions == 1
    assert counters.units[1].timeouts == counters.units[1].exceptions == 0
    assert server.answered["WrongFunction"] >= 20
    for name in ("Undecodable", "OtherFunction"):
        bad = [s for s in of(samples, name) if s.status != GOOD]
        assert bad[0].status == BAD_COMMUNICATION_ERROR and bad[0].value is None
        assert all(s.value is None for s in bad)  # never a 0
    assert [s.value for s in of(samples, "Fine") if s.status == GOOD][:3] == [1, 1, 1]
    assert (health.good, health.bad, [t for t, _ in health.not_good]) == (
        2, 2, ["Undecodable", "OtherFunction"])  # fmt: skip
    garbled = [e for e in events if e["event"] == "modbus_answer_garbled"]
    warned = [e for e in garbled if e["log_level"] == "warning"]
    assert sorted(e["address"] for e in warned) == ["holding:100", "holding:200"]
    assert len(garbled) > len(warned) and {e["log_level"] for e in garbled} == {"warning", "debug"}
    assert "cannot be decoded" in next(e for e in warned if e["address"] == "holding:100")["detail"]
    recovered = [e for e in events if e["event"] == "modbus_read_recovered"]
    assert [(e["address"], e["log_level"]) for e in recovered] == [("holding:100", "info")]
    # pymodbus' own lines ("Unable to decode frame") are held at CRITICAL by agent.service.logs
    ours = [r for r in caplog.records if not r.name.startswith("pymodbus")]
    assert [r.getMessage() for r in ours if r.levelno >= logging.WARNING] == []
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


async def test_a_garbled_answer_to_a_write_says_it_may_have_been_applied() -> None:
    async with HostileModbusServer({(1, 300): WrongFunction(UNDECODABLE)}) as server:
        drv = driver(server.port)
        samples: list[Sample] = []
        async with running(functools.partial(drv.run, samples.extend)) as task:
            await until(lambda: of(samples, "Fine") != [], "the first scan")
            with pytest.raises(DeviceTimeoutError, match=r"garbled answer.*may or may not"):
                await drv.write("Setpoint", 42)
            server.rules[(1, 300)] = Values()
            await drv.write("Setpoint", 42)
            assert not task.done()
    assert drv.counters().units[1].garbled >= 1
