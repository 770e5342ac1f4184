"""Source encodings of the slow coders on disk across runs, and in parallel over the images."""

from __future__ import annotations

import os

import numpy as np
import pytest

from baselines.digital import encode_cache
from baselines.digital.source import ENCODE_CACHE, HEVCCoder, JPEG2000Coder, image_digest, rate_match


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """An empty cache folder and empty in-memory encode cache."""
    monkeypatch.setenv("LRISC_SIM_CACHE", str(tmp_path))
    monkeypatch.delenv(encode_cache.ENV_CACHE, raising=False)
    ENCODE_CACHE.clear()
    yield tmp_path
    ENCODE_CACHE.clear()


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    from skimage.data import astronaut, chelsea

    return [np.ascontiguousarray(astronaut()[40:136, 150:278]), np.ascontiguousarray(chelsea()[100:196, 100:228])]


def test_second_run_reads_the_disk_cache_and_gives_identical_bytes(cache, photos, monkeypatch):
    coder = HEVCCoder()
    first = rate_match(coder, photos[0], 2500)
    assert first is not None and first.encodes > 0
    folder = encode_cache.coder_dir(coder)
    assert folder.parent == cache / "encodings" and folder.name.startswith("hevc-")
    assert (folder / "key.txt").read_text().strip() == coder.key
    files = sorted((folder / image_digest(photos[0])).glob("q*.bin"))
    assert len(files) == first.encodes
    umask = os.umask(0)
    os.umask(umask)
    for f in files:  # plain bytes: the encoding itself, a file like any other (umask permissions)
        assert f.read_bytes() == coder.encode_at(photos[0], int(f.stem[1:]))
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask
    assert not list(folder.rglob(".tmp-*"))
    # a new run: empty memory, the encoder must not be called
    ENCODE_CACHE.clear()
    monkeypatch.setattr(HEVCCoder, "encode_at", lambda self, image, q: pytest.fail("encoded again"))
    again = rate_match(HEVCCoder(), photos[0], 2500)
    assert again.encodes == 0 and again.data == first.data and again.quality == first.quality


def test_disk_cache_can_be_turned_off_and_skips_fast_coders(cache, photos, monkeypatch):
    rate_match(JPEG2000Coder(), photos[0], 700)
    assert not (cache / "encodings").exists()  # JPEG2000 is fast: memory only
    monkeypatch.setenv(encode_cache.ENV_CACHE, "0")
    rate_match(HEVCCoder(), photos[0], 700)
    assert not (cache / "encodings").exists()


def test_workers_default_to_the_available_cores(monkeypatch):
    monkeypatch.delenv(encode_cache.ENV_WORKERS, raising=False)
    assert encode_cache.encode_workers() == len(os.sched_getaffinity(0))
    monkeypatch.setenv(encode_cache.ENV_WORKERS, "3")
    assert encode_cache.encode_workers() == 3
    monkeypatch.setenv(encode_cache.ENV_WORKERS, "many")
    with pytest.raises(ValueError, match="LRISC_SIM_ENCODE_WORKERS"):
        encode_cache.encode_workers()


def test_parallel_prefetch_gives_the_inline_encodings(cache, photos, monkeypatch):
    coder = HEVCCoder()
    budgets = [700, 1500, 2500]
    monkeypatch.setenv(encode_cache.ENV_CACHE, "0")
    ref = [[rate_match(coder, img, b) for b in budgets] for img in photos]  # inline, no disk
    ENCODE_CACHE.clear()
    monkeypatch.delenv(encode_cache.ENV_CACHE)
    try:
        assert encode_cache.prefetch(coder, photos, [budgets] * 2, workers=2, min_pixels=0) == 2
        for img, fits in zip(photos, ref):
            for b, fit in zip(budgets, fits):
                got = rate_match(coder, img, b)
                assert got.encodes == 0 and got.data == fit.data and got.quality == fit.quality
        # the workers stored their encodings on disk; all cached now: nothing for the pool
        assert len(list(encode_cache.coder_dir(coder).glob("*/q*.bin"))) > 0
        assert encode_cache.prefetch(coder, photos, [budgets] * 2, workers=2, min_pixels=0) == 0
    finally:
        encode_cache.shutdown()
    # small images, one worker, fast coders: encoded by the caller
    assert encode_cache.prefetch(coder, photos, [[3000]] * 2, workers=2) == 0
    assert encode_cache.prefetch(coder, photos, [[3000]] * 2, workers=1, min_pixels=0) == 0
    assert encode_cache.prefetch(JPEG2000Coder(), photos, [[3000]] * 2, workers=2, min_pixels=0) == 0
