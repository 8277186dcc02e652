"""Fixtures shared by the test modules."""
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository: scripts run from here


@pytest.fixture(scope='session')
def cifar():
    """Real CIFAR-10 as uint8 tensors, fetched once and cached under data/ (REFERENCE section 4)."""
    from data_loader import load_cifar10
    return load_cifar10()
