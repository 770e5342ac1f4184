"""Data loading: conversions of odd files, clear errors, padding, Kodak checksums, builtin photos."""

import numpy as np
import pytest
import torch
from PIL import Image

from lrisc_sim.data import (DataError, RandomCrops, _sha_ok, builtin_images, group_by_size, load_dataset,
                            load_image, pad_to_multiple)
from tests.conftest import shared_dir


def test_conversions(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "gray.png")
    rgba = np.concatenate([rgb, np.full((20, 30, 1), 255, np.uint8)], axis=2)
    rgba[0, 0, 3] = 0  # a transparent pixel composites on white
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    Image.fromarray((rgb[:, :, 0].astype(np.uint16) * 257)).save(tmp_path / "g16.png")
    x = load_image(tmp_path / "rgb.png")
    assert x.shape == (3, 20, 30) and x.dtype == torch.float32
    assert torch.allclose(x * 255, torch.from_numpy(rgb).permute(2, 0, 1).float(), atol=1e-3)
    g = load_image(tmp_path / "gray.png")
    assert g.shape == (3, 20, 30) and torch.equal(g[0], g[1])
    a = load_image(tmp_path / "rgba.png")
    assert torch.allclose(a[:, 0, 0], torch.ones(3)) and torch.allclose(a[:, 1:], x[:, 1:])
    assert load_image(tmp_path / "pal.png").shape == (3, 20, 30)
    g16 = load_image(tmp_path / "g16.png")
    assert torch.allclose(g16[0], g[0], atol=1e-4)


def test_unreadable_and_missing(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="broken.png"):
        load_image(bad)
    with pytest.raises(DataError, match="no such image"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(DataError, match="not found"):
        load_dataset(str(tmp_path / "missing_folder"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_dataset(str(tmp_path / "empty"))


def test_pad_and_group():
    x = torch.rand(2, 3, 17, 30)
    y = pad_to_multiple(x, 16)
    assert y.shape == (2, 3, 32, 32) and torch.equal(y[..., :17, :30], x)
    assert pad_to_multiple(x, 1) is x
    tiny = pad_to_multiple(torch.rand(1, 3, 5, 5), 16)  # padding larger than the image
    assert tiny.shape == (1, 3, 16, 16)
    from lrisc_sim.data import Item

    items = [Item(str(i), torch.rand(3, 8 if i % 2 else 4, 8)) for i in range(5)]
    batches = list(group_by_size(items, 2))
    assert all(len({tuple(it.image.shape) for it in b}) == 1 for b in batches)
    assert sorted(it.id for b in batches for it in b) == [str(i) for i in range(5)]


def test_builtin_photos():
    items = builtin_images()
    assert len(items) >= 4
    for it in items:
        assert it.image.shape[0] == 3 and 0 <= float(it.image.min()) and float(it.image.max()) <= 1


def test_kodak_pixel_checksums():
    d = shared_dir("kodak")
    assert all(_sha_ok(f) for f in sorted(d.glob("*.png")))
    assert len(list(d.glob("*.png"))) == 24


def test_kodak_checksum_rejects_other_image(tmp_path):
    f = tmp_path / "kodim01.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(f)
    assert not _sha_ok(f)


def test_random_crops(tmp_path):
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png")
    ds = RandomCrops(tmp_path, 32, seed=3)
    b1 = ds.batch(4)
    b2 = RandomCrops(tmp_path, 32, seed=3).batch(4)
    assert b1.shape == (4, 3, 32, 32) and torch.equal(b1, b2)
    big = RandomCrops(tmp_path, 64).batch(1)  # smaller images are upscaled to fit
    assert big.shape == (1, 3, 64, 64)


def test_one_cache_dir_expands_home(monkeypatch, tmp_path):
    from pathlib import Path

    from lrisc_sim import data, weights

    assert weights.cache_dir is data.cache_dir
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LRISC_SIM_CACHE", "~/c")
    assert data.cache_dir() == tmp_path / "c"
    for unset in ("", None):
        if unset is None:
            monkeypatch.delenv("LRISC_SIM_CACHE")
        else:
            monkeypatch.setenv("LRISC_SIM_CACHE", unset)
        assert data.cache_dir() == Path.home() / ".cache" / "lrisc-sim"
