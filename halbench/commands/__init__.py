"""Subcommands whose work is more than a call into one package (halbench/cli.py parses and
dispatches; `report` and `compare` live in halbench/report/commands.py)."""
