"""Process objectives, one module each, chosen per loop by configuration."""
