"""The running service: the composition root (app), the supervisor, logging, systemd notify,
signals and shutdown, memory, the state directory lock.

Its composition root (app) is the only module of the agent, with agent.commission, that
imports drivers: every other module reads a source through agent.domain.samples.Driver.
"""
