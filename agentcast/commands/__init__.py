"""Subcommands of the `agentcast` CLI, one module each (see agentcast/cli.py)."""
