"""Plant-agnostic control loops: gates, guard, PLC handshake and heartbeat, actuation, the
model's fit to a loop, and the audit record.
"""
