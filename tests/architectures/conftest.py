"""Every architecture test starts from the same torch seed (models built from configs draw their weights)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    torch.manual_seed(0)
