"""Fixtures shared by the test files."""

import pytest


@pytest.fixture
def one_thread():
    """One torch thread for a test (restored after): tiny tensors run fastest on one thread, and on a
    loaded 2-core machine (pytest -n 2) more threads only oversubscribe the cores."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
