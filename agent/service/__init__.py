"""The running service: the composition root (app), the supervisor, logging, systemd notify,
signals and shutdown, memory, the state directory lock.

The only package (with agent.commission) that imports drivers.
"""
