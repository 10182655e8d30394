"""Shared fixtures: small checkpoints written by our own writer in the exact official layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ossgate.model.checkpoint import load_model
from ossgate.model.config import shape_config
from ossgate.model.writer import new_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    new_checkpoint(shape_config("tiny"), out, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    return load_model(tiny_checkpoint, dtype=torch.float32, show_progress=False)
