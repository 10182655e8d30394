"""A private data dir for the nano tests; the shipped model is materialised into it once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the CI machine is small and shared; threads only contend
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def nano_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("ossgate_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OSSGATE_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def nano_checkpoint(nano_home):
    from ossgate.nano import model_path

    return model_path()


@pytest.fixture(scope="session")
def nano_model(nano_checkpoint):
    import torch

    from ossgate.model.checkpoint import load_model

    return load_model(nano_checkpoint, dtype=torch.float32, show_progress=False)
