"""Fixtures shared by several test modules (builders that are not fixtures: builders.py)."""

from __future__ import annotations

import pytest
from builders import write_data_dir


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for the module: small ops stall when threads outnumber free cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def train_dev(tmp_path_factory):
    """(train, dev) feature dirs of synthetic speakers: 12 x 4 and 6 x 3 utterances."""
    root = tmp_path_factory.mktemp("train_dev")
    return (write_data_dir(root / "train", "tr", 12, 4, 0),
            write_data_dir(root / "dev", "dv", 6, 3, 1))
