"""The agent's domain types: samples and quality, status codes, tag health, the driver protocol,
the latest values, health, the clock, the backoff policy and the error hierarchy.

Every other package may import this one; it imports no other package of the agent.
"""
