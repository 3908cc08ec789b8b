"""Shared fixtures: the devices every tricksref op is tested on."""

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
