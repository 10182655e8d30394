"""The backend tests reuse the server tests' process fixtures (an upstream is a real ossgate server)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from server_procs import nano_path, ossgate_home, tiny_checkpoint  # noqa: E402, F401
