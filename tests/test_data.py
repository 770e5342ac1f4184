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


def _tiny_folder(root, n: int = 300):
    """``n`` tiny PNGs in three sizes, interleaved, some in a sub-folder."""
    rng = np.random.default_rng(0)
    sizes = [(8, 12), (12, 8), (16, 16)]
    (root / "sub").mkdir(parents=True)
    for i in range(n):
        h, w = sizes[int(rng.integers(3))]
        name = f"sub/s{i:03d}.png" if i % 7 == 0 else f"im{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / name)
    return root


def test_folder_datasets_are_listed_without_decoding_pixels(tmp_path, monkeypatch):
    import time

    from lrisc_sim import data

    folder = _tiny_folder(tmp_path / "d")
    real_load, real_size = data.load_image, data.image_size
    decoded, headers = [], []
    monkeypatch.setattr(data, "load_image", lambda p: decoded.append(p) or real_load(p))
    monkeypatch.setattr(data, "image_size", lambda p: headers.append(p) or real_size(p))
    t0 = time.perf_counter()
    items = load_dataset(str(folder))
    assert time.perf_counter() - t0 < 10  # 300 headers; a 10 000-image folder takes seconds
    assert len(items) == 300 and decoded == [] and len(headers) == 300
    eager = [data.Item(it.id, real_load(it.path)) for it in items]
    assert [it.hw for it in items] == [tuple(e.image.shape[-2:]) for e in eager]
    # the same batches in the same order as with the pixels in memory, still without decoding
    lazy_batches = [[it.id for it in b] for b in group_by_size(items, 4)]
    assert lazy_batches == [[it.id for it in b] for b in group_by_size(eager, 4)] and decoded == []
    first = next(group_by_size(items, 4))
    x = torch.stack([it.image for it in first])  # what the engine does with a batch
    assert x.shape == (len(first), 3, *first[0].hw) and len(decoded) == len(first)
    assert torch.equal(first[0].image, eager[[e.id for e in eager].index(first[0].id)].image)
    assert len(decoded) == len(first) + 1  # read again: decoded again, the item keeps no pixels
    # --limit applies before any header is read
    headers.clear()
    few = load_dataset(str(folder), limit=5)
    assert [it.id for it in few] == [it.id for it in items[:5]] and len(headers) == 5


def test_lazy_items_pickle_with_their_pixels_and_check_their_size(tmp_path):
    import pickle

    from lrisc_sim.data import Item, folder_images

    folder = _tiny_folder(tmp_path / "d", n=3)
    it = folder_images(folder)[0]
    back = pickle.loads(pickle.dumps(it))  # a Ray task carries the pixels, not the path
    assert back.path is None and back.hw == it.hw and torch.equal(back.image, it.image)
    mem = Item("a", torch.zeros(3, 5, 7))
    assert mem.hw == (5, 7) and mem.path is None and "in memory" in repr(mem)
    with pytest.raises(ValueError, match="not both or neither"):
        Item("a")
    with pytest.raises(ValueError, match="hw="):
        Item("a", path=it.path)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(it.path)  # the file changed after the listing
    with pytest.raises(DataError, match="do not change the images during a run"):
        it.image


def test_bad_files_in_a_folder_give_the_same_one_line_errors(tmp_path):
    import struct
    import zlib

    from lrisc_sim.data import folder_images

    good = _tiny_folder(tmp_path / "d", n=2)
    (good / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError) as e:
        load_dataset(str(good))
    with pytest.raises(DataError) as direct:
        load_image(good / "broken.png")
    assert str(e.value) == str(direct.value) and "broken.png" in str(e.value) and "\n" not in str(e.value)
    (good / "broken.png").unlink()

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    (good / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2,
                                                                                       0, 0, 0)) + chunk(b"IEND", b""))
    with pytest.raises(DataError, match="decompression bomb.*400000000 pixels.*downscale"):
        folder_images(good)
    (good / "bomb.png").unlink()
    png = (good / "im001.png").read_bytes()
    (good / "im001.png").write_bytes(png[: len(png) // 2])  # the header is fine, the pixel data cut short
    items = folder_images(good)
    bad = next(it for it in items if it.id == "im001")
    with pytest.raises(DataError) as late:
        bad.image
    with pytest.raises(DataError) as direct:
        load_image(bad.path)
    assert str(late.value) == str(direct.value) and "im001.png" in str(late.value)
