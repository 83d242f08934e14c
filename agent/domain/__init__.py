"""The agent's domain types: samples and quality, status codes and their names, tag health, the
driver protocol and the figures a driver reports, the latest values, health, the clock, the
backoff policy, the error hierarchy, the logger and the redaction of secrets.

Every other package may import this one; it imports no other package of the agent.
"""
