"""The `vidserve` commands beyond `run`: each module one command (deploy/cli.py wires them)."""
