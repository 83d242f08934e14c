"""Plant-agnostic control loops: gates, guard, PLC handshake and heartbeat, actuation, the
model's fit to a loop, the typed decision record and the hash-chained audit. What a loop
optimises is its objective (agent.objectives); docs/control.md explains both.
"""
