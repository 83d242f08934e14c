"""A headless agent on the simulated mill in sim time: the agent's real control side (loops,
models, truth loop, audit, heartbeat) against `Mill`, with no network and no real waits.

Modules: clock (TaskClock, quiet), plant (MillDriver, SimPlant), config (rig_config, dumps),
rig (headless_rig, HeadlessRig). Used by `edge-agent evaluate` and the month-long tests; the
daemon never imports it (agent.demo).
"""
