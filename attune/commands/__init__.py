"""Subcommands of run_agent.py, one module per group; each exposes ``add_commands(subparsers)``."""
