"""Test-only plugin modules, loaded through $HALBENCH_PLUGINS or passed as trial functions."""
