"""Shared test set-up: one torch thread (2-core CI), paths to the shared data."""

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_dir(name: str) -> Path:
    """A folder of ../shared/data, or skip the test with a visible reason."""
    d = SHARED / name
    if not d.is_dir():
        pytest.skip(f"shared data folder {d} is absent")
    return d
