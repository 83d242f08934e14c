"""Commissioning commands: browse, read and trust (they talk to the devices directly)."""
