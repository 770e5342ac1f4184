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


@pytest.fixture
def tiny_folder(tmp_path):
    """Three 64 x 96 crops of scikit-image's astronaut photo, as PNG files in a folder."""
    from PIL import Image
    from skimage import data

    a = data.astronaut()
    d = tmp_path / "imgs"
    d.mkdir()
    for i, (y, x) in enumerate([(0, 0), (200, 180), (300, 300)]):
        Image.fromarray(a[y : y + 64, x : x + 96]).save(d / f"crop{i}.png")
    return d


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module whose timings or results depend on it (restored afterwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def load_script(relpath: str):
    """A script of the repository (e.g. ``benchmarks/gpu_check.py``) imported as a module, for its tests."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
