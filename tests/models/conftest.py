"""Model tests run torch on one thread: small tensors gain nothing from more, and a busy machine makes
multi-threaded spin-waits very slow."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
