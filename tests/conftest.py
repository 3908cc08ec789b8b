"""Shared fixtures: the devices every tricksref op is tested on, and one torch thread for small models."""

from __future__ import annotations

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()

#: parametrize over these to test an op on every device; CUDA is skipped cleanly where there is none
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.cuda,
                                           pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")]),
]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture
def one_thread():
    """Small models on a shared 2-core machine run fastest on one thread; restored after the test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
