"""edge-agent daemon."""
