"""Fixtures for the server tests (see server_procs.py)."""

from server_procs import client, nano_path, ossgate_home, tiny_checkpoint, tiny_server  # noqa: F401
