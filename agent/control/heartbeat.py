"""The agent's heartbeat to the PLC: a counter written every second while the agent is healthy.

Owns: one writer per heartbeat tag (loops that share a tag share its writer), the counter
(starting at a random point of the tag's counter range, so an echo of a previous run's
counter cannot pass for ours, and wrapping inside that range: agent.config.heartbeat_counter
fits it to the tag's type and write limits and to what its echo tags read back), the last
counter the PLC accepted (`sent`, what gate 1 compares the echo with, modulo
`counter.size`), and `stop(reason)`: after a safety event the heartbeat stops for good, so
the PLC's watchdog drops the plant to local control and alarms; only a restart of the
agent (a person's decision) starts it again.
Must not: retry a refused write within a beat, or write anything but the counter.
"""

from __future__ import annotations

import secrets

from agent.config.heartbeat_counter import CounterRange
from agent.domain.clock import Clock
from agent.domain.errors import RetryableError, WriteRejectedError
from agent.domain.health import Health
from agent.domain.logger import get_logger
from agent.domain.samples import Driver

__all__ = ["INTERVAL_S", "Heartbeat"]

INTERVAL_S = 1.0
log = get_logger(__name__)


class Heartbeat:
    """Writes `tag` through `driver` every second until stopped, counting in `counter`."""

    def __init__(
        self, tag: str, driver: Driver, counter: CounterRange, *, clock: Clock, health: Health
    ) -> None:
        self.tag, self._driver, self._clock, self._health = tag, driver, clock, health
        self.counter = counter
        self.sent: int | None = None
        self.stopped: str | None = None
        self.failures = 0
        # A random start: the echo of a previous process's counter must not pass for ours.
        self._counter = counter.at(secrets.randbelow(counter.size))

    @property
    def name(self) -> str:
        return f"heartbeat:{self.tag}"

    def stop(self, reason: str) -> None:
        if self.stopped is None:
            self.stopped = reason
            self.sent = None
            log.error("heartbeat_stopped", tag=self.tag, reason=reason)

    async def beat(self) -> bool:
        """Write the next counter once; True when the PLC accepted it."""
        if self.stopped is not None:
            return False
        value = self.counter.after(self._counter)
        try:
            await self._driver.write(self.tag, value)
        except (WriteRejectedError, RetryableError) as exc:  # incl. a lost link, a timeout
            self.failures += 1
            self.sent = None
            (log.warning if self.failures == 1 else log.debug)(
                "heartbeat_write_failed", tag=self.tag, error=str(exc), failures=self.failures
            )
            return False
        if self.failures:
            log.info("heartbeat_write_recovered", tag=self.tag, after=self.failures)
        self.failures = 0
        self._counter = value
        if self.stopped is None:  # stop() may have run while the write was in flight
            self.sent = value
        return True

    async def run(self) -> None:
        """Beat every INTERVAL_S on the clock (drift-free) until stopped; then idle."""
        mono = self._clock.monotonic  # a wall-clock step must not pause the heartbeat
        self._health.watch(self.name, now=mono(), max_silence_s=30 * INTERVAL_S)
        due = mono()
        while True:
            await self.beat()
            self._health.beat(self.name, mono())
            due += INTERVAL_S
            now = mono()
            if due < now - INTERVAL_S:  # fell behind (a stalled write): start afresh
                due = now
            await self._clock.sleep(max(0.0, due - now))
