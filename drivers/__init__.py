"""Field-bus drivers."""
