"""Shared test configuration.

Hypothesis profiles:

* ``ci`` (default): derandomized and bounded, so CI never fails by chance and the
  whole suite fits the time budget;
* ``explore``: many more random examples; run by hand with ``make explore``.
  Every failing example it finds is added to the test as an ``@example(...)``.
"""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=30,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "explore",
    max_examples=1000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _validation_and_threads():
    """Validate distribution arguments in every test and keep one thread per xdist worker."""
    import pyro

    torch.set_num_threads(1)
    pyro.enable_validation(True)
    yield
