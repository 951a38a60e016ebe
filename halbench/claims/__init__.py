"""Machine-readable claims of the papers halbench checks (YAML files in this package)."""
