"""The configuration: the TOML schema, the loader with its readable messages, tag addresses,
and the cross-checks between sources, tags, loops and the sync settings.

Imports only agent.domain.
"""
