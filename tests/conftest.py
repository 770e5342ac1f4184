"""Shared test set-up: one torch thread (2-core CI), paths to the shared data."""

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
# source encodings stay off the user's cache folder (tests/test_digital_encode_cache.py turns the cache on in a
# temporary one)
os.environ.setdefault("LRISC_SIM_ENCODE_CACHE", "0")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_dir(name: str) -> Path:
    """A folder of ../shared/data, or skip the test with a visible reason."""
    d = SHARED / name
    if not d.is_dir():
        pytest.skip(f"shared data folder {d} is absent")
    return d
