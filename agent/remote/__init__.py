"""Remote support over the sync: the allowlist policy (pure), diagnostics and model delivery."""
