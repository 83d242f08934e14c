"""A simulated mill and an in-process agent with control loops, for the control-loop tests.

`control_rig(tmp_path, ...)` starts a real SimulatedPlant (asyncua + pymodbus on 127.0.0.1)
time-compressed by `time_scale`, writes the demo configuration pointed at it with the loop
timings compressed to wall seconds (cadence, minimum interval, read-back timeout), and
runs the real App (drivers, buffer, audit, model manager, heartbeat, loops) on the test's
event loop. The simulated PLC's watchdog is 15 s of wall time at any time scale, because
the agent's heartbeat is wall-clock. Sync and the local API are off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config.loader import load_config
from agent.demo.runner import SimulatedPlant
from agent.demo.show import write_demo_config
from agent.service.app import App
from tests.support.config import ConfigDoc, single_product
from tests.support.wait import until

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"


@dataclass
class Rig:
    plant: SimulatedPlant
    app: App
    state_dir: Path
    config: Path
    task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start an agent (a new App, as a restarted process would) on the same state dir."""
        self.app = App(load_config(self.config), self.state_dir)
        self.task = asyncio.create_task(self.app.run(), name="agent")
        task = self.task
        await wait_for(lambda: self.app.control is not None or task.done(), 20, "the agent")
        if task.done():
            task.result()  # raise what stopped it

    async def stop(self) -> None:
        """The ordered shutdown of a SIGTERM: control first, then sources, then the buffer."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    def loop(self, name: str) -> Any:
        assert self.app.control is not None
        return next(lp for lp in self.app.control.loops if lp.loop.name == name)

    def records(self, kind: str | None = None, loop: str | None = None) -> list[dict[str, Any]]:
        """The audit records so far, oldest first (read from audit.db as a second reader)."""
        db = sqlite3.connect(f"file:{self.state_dir / 'audit.db'}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT seq, body FROM audit ORDER BY seq").fetchall()
        finally:
            db.close()
        out = [{"seq": seq, **json.loads(body)} for seq, body in rows]
        return [r for r in out if (kind is None or r["kind"] == kind)
                and (loop is None or r.get("loop") == loop)]  # fmt: skip


def loop_config(config: ConfigDoc, **values: object) -> None:
    """Set `key = value` in the [[loops]] entries that have the key (max_rate_per_h: the
    limestone loop only), or add it to every entry when none has it."""
    loops = config.get("loops")
    for key, value in values.items():
        having = [i for i, entry in enumerate(loops) if key in entry]
        for i in having or range(len(loops)):
            (config.set if having else config.add)(f"loops[{i}].{key}", value)


@contextlib.asynccontextmanager
async def control_rig(
    folder: Path,
    *,
    time_scale: float = 30.0,
    lab_time_scale: float = 1.0,
    seed: int = 3,
    noise: bool = True,
    lab_noise: bool | None = None,
    edit: Callable[[ConfigDoc], object] = lambda config: None,
    products: bool = False,
    **loop_values: object,
) -> AsyncIterator[Rig]:
    """The plant and the agent; `loop_values` override keys of both demo loops; `edit`
    changes the config (tests.support.config.ConfigDoc) before the agent reads it. Without
    `products` the demo config is a one-product mill (tests.support.config.single_product):
    the loops run their own model, vrm-quality."""
    async with SimulatedPlant(seed=seed, time_scale=time_scale, lab_time_scale=lab_time_scale,
                              opcua_port=0, modbus_port=0, noise=noise, lab_noise=lab_noise,
                              wd_timeout_s=15.0 * time_scale) as plant:  # fmt: skip
        path = write_demo_config(folder, plant.opcua_url, plant.modbus_port, "http://127.0.0.1:9")
        config = ConfigDoc.read(path)
        config.set("agent.models_dir", str(MODELS))
        config.set("agent.model_public_key_file", str(MODELS / "demo-signing-key.pub.pem"))
        config.set("sync.enabled", False)
        config.add("api.enabled", False)
        if not products:
            single_product(config)
        for lab in config.get("quality.tags"):  # a plant window in the agent's wall seconds
            key = f"quality.tags[test={lab['test']}].window_s"
            config.set(key, lab["window_s"] / time_scale)
        if config.has("product_selection.transition_s"):  # the mill's old material, in wall s
            config.set("product_selection.transition_s",
                       config.get("product_selection.transition_s") / time_scale)  # fmt: skip
        defaults: dict[str, object] = {"cadence_s": 1.0, "readback_timeout_s": 5.0}
        loop_config(config, **{**defaults, **loop_values})
        edit(config)
        config.write(path)
        state = folder / "state"
        state.mkdir(exist_ok=True)
        rig = Rig(plant, App(load_config(path), state), state, path)
        try:
            await rig.start()
            yield rig
        finally:
            await rig.stop()


BUSY = 4.0  # how much slower than idle a busy machine may be (see wait_for)


async def wait_for(
    check: Callable[[], object], timeout_s: float = 30.0, what: str = "condition"
) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after the timeout.

    `timeout_s` is what the condition may take on an idle machine; the limit is BUSY times
    that, since a busy 2-core machine (CI with a CPU burner) runs the plant and the agent
    slower: the wait still ends as soon as the condition holds.
    """
    return await until(check, what, timeout_s * BUSY, poll_s=0.1)
