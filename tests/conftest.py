"""Shared fixtures: one local Ray for the whole session, started only if a test needs it, and
one torch thread for tests of many small convolutions."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def ray_session():
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a stray cluster
    yield ray
    ray.shutdown()


@pytest.fixture
def one_torch_thread():
    """Small convolutions on the shared 2-core box are far faster on one thread than on two
    that wait on each other; the session's setting returns afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
