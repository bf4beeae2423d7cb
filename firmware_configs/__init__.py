"""Device models shipped with hallhub: one YAML file per model (data, not code)."""
