"""Hostile datasets and encode-cache entries (issue 29 item 3 and the dataset cases of the hostile-input sweep):
ds_kodak_env_empty, ds_bigzeros, ds_float_neg, ds_badbytes, rb_encode_cache_garbage, rb_encode_cache_swapped."""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lrisc_sim import data as D
from lrisc_sim.data import DataError, load_dataset, load_image

from .conftest import shared_dir


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    from lrisc_sim.cli import main

    rc = main(argv)
    return rc, capsys.readouterr().err


def _sweep_args(dataset: str, out: Path) -> list[str]:
    return ["sweep", "--no-progress", "--metrics", "psnr", "--dataset", dataset, "--codec", "uncoded", "--snr", "10",
            "--cbr", "1/16", "--out", str(out), "--threads", "1"]


def _one_line_error(err: str, *parts: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if "error" in ln or "Traceback" in ln]
    assert len(lines) == 1 and lines[0].startswith("lrisc-sim: error: "), err
    assert err.strip().splitlines()[-1] == lines[0]  # the last word, after at most the run's banner
    for p in parts:
        assert p in lines[0], (p, lines[0])


# ---------------------------------------------------------------------------------------------------- Kodak
def _rand_png(path: Path, seed: int, hw=(64, 64)) -> None:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)).save(path)


def test_kodak_env_pointing_at_other_images_is_refused(tmp_path, monkeypatch, capsys):
    d = tmp_path / "notkodak"
    d.mkdir()
    _rand_png(d / "a.png", 0)
    _rand_png(d / "b.png", 1)
    monkeypatch.setenv("LRISC_SIM_KODAK", str(d))
    with pytest.raises(DataError, match=r"LRISC_SIM_KODAK=.*notkodak is not the Kodak set: 24 of the 24 files "
                                        r"missing \(kodim01.png, kodim02.png, kodim03.png, \.\.\.\); 2 other image"):
        load_dataset("kodak")
    rc, err = _cli(_sweep_args("kodak", tmp_path / "out"), capsys)
    assert rc == 2
    _one_line_error(err, "not the Kodak set", str(d), "--dataset " + str(d))
    assert not (tmp_path / "out" / "results.csv").exists()
    # the same folder given as itself is an ordinary dataset
    assert [it.id for it in load_dataset(str(d))] == ["a", "b"]


def test_kodak_env_with_the_right_names_but_other_pixels_is_refused(tmp_path, monkeypatch):
    src = shared_dir("kodak")
    d = tmp_path / "k"
    d.mkdir()
    for f in sorted(src.glob("kodim*.png")):
        (d / f.name).symlink_to(f)
    monkeypatch.setenv("LRISC_SIM_KODAK", str(d))
    items = load_dataset("kodak", limit=2)  # the genuine set passes
    assert [it.id for it in items] == ["kodim01", "kodim02"]
    # one image changed by one pixel level: refused, the file named
    a = np.asarray(Image.open(src / "kodim05.png").convert("RGB")).copy()
    a[0, 0, 0] ^= 1
    (d / "kodim05.png").unlink()
    Image.fromarray(a).save(d / "kodim05.png")
    with pytest.raises(DataError, match=r"is not the Kodak set: kodim05.png has other pixels than Kodak's"):
        load_dataset("kodak")
    # one missing, one extra
    (d / "kodim05.png").unlink()
    _rand_png(d / "extra.png", 3)
    with pytest.raises(DataError, match=r"1 of the 24 files missing \(kodim05.png\); 1 other image\(s\) "
                                        r"\(extra.png\)"):
        load_dataset("kodak")


def test_kodak_env_that_is_no_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LRISC_SIM_KODAK", str(tmp_path / "nope"))
    with pytest.raises(DataError, match=r"LRISC_SIM_KODAK=.*nope: no such folder; point LRISC_SIM_KODAK at the 24"):
        load_dataset("kodak")


# ---------------------------------------------------------------------------------------------------- big images
def _zeros_png(path: Path, w: int, h: int) -> None:
    """A valid RGB PNG of zeros, written without holding its pixels (each row: filter byte 0 + 3 w zeros)."""
    def chunk(t: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + t + body + struct.pack(">I", zlib.crc32(t + body) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = bytes(1 + 3 * w)
    idat = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_big_image_is_refused_from_its_header_with_the_limit(tmp_path, monkeypatch, capsys):
    d = tmp_path / "big"
    d.mkdir()
    f = d / "zeros.png"
    _zeros_png(f, 9000, 9000)  # 81 Mpx, under Pillow's bomb limit of 2 x 89 Mpx
    assert f.stat().st_size < 400_000
    with Image.open(f) as im:
        assert im.size == (9000, 9000)
    monkeypatch.delenv(D.MAX_PIXELS_ENV, raising=False)
    msg = f"{f}: 9000x9000 = 81.0 Mpx, over the limit of 40 Mpx per image"
    for call in (lambda: load_image(f), lambda: D.image_size(f), lambda: load_dataset(str(d))):
        with pytest.raises(DataError, match="LRISC_SIM_MAX_PIXELS") as e:
            call()
        assert str(e.value).startswith(msg) and "\n" not in str(e.value)
    rc, err = _cli(_sweep_args(str(d), tmp_path / "out"), capsys)
    assert rc == 2
    _one_line_error(err, str(f), "40 Mpx", "LRISC_SIM_MAX_PIXELS")
    # the limit is a setting: 64 x 64 = 4096 px refused under 4000, accepted at 4096
    small = tmp_path / "s.png"
    _rand_png(small, 0)
    monkeypatch.setenv(D.MAX_PIXELS_ENV, "4000")
    with pytest.raises(DataError, match=r"64x64 = 0.0 Mpx, over the limit of 0.004 Mpx"):
        load_image(small)
    monkeypatch.setenv(D.MAX_PIXELS_ENV, "4096")
    assert load_image(small).shape == (3, 64, 64)
    monkeypatch.setenv(D.MAX_PIXELS_ENV, "lots")
    with pytest.raises(DataError, match="LRISC_SIM_MAX_PIXELS='lots': give the largest image size"):
        load_image(small)


# ---------------------------------------------------------------------------------------------------- float images
def _float_tiff(path: Path, a: np.ndarray) -> None:
    Image.fromarray(a.astype(np.float32), mode="F").save(path)


def test_float_images_follow_one_stated_rule(tmp_path, capsys):
    g = np.random.default_rng(0)
    base = g.random((32, 48)).astype(np.float32)
    base[0, :2] = 0.0, 1.0  # exactly [0, 1]
    cases = {"unit": base, "eight_bit": base * 255, "neg": base * 10 - 5, "over": base * 300, "ambiguous": base * 1.5}
    for name, a in cases.items():
        _float_tiff(tmp_path / f"{name}.tif", a)
    # [0, 1] as it is; 0..255 divided by 255 (to float32 rounding)
    assert np.allclose(load_image(tmp_path / "unit.tif")[0].numpy(), base, atol=1e-7)
    assert np.allclose(load_image(tmp_path / "eight_bit.tif")[0].numpy(), base, atol=1e-6)
    # [-5, 5] is refused, not clipped to a nearly black image
    for name, lo_hi in (("neg", r"\[-5, 5\]"), ("over", r"\[0, 300\]"), ("ambiguous", r"\[0, 1.5\]")):
        with pytest.raises(DataError, match=rf"{name}.tif: float pixels in {lo_hi}, neither in \[0, 1\] nor an "
                                            r"8-bit scale .*rescale the image to \[0, 1\]"):
            load_image(tmp_path / f"{name}.tif")
    d = tmp_path / "negdir"
    d.mkdir()
    shutil.copy(tmp_path / "neg.tif", d / "neg.tif")
    rc, err = _cli(_sweep_args(str(d), tmp_path / "out"), capsys)
    assert rc == 2
    _one_line_error(err, "neg.tif", "float pixels in [-5, 5]")
    # within half an 8-bit level of [0, 1]: accepted and clipped
    _float_tiff(tmp_path / "tol.tif", np.clip(base, 0, 1) * (1 + 1 / 1024) - 1 / 1024)
    assert float(load_image(tmp_path / "tol.tif").min()) >= 0.0


def test_negative_integer_pixels_are_refused():
    with pytest.raises(DataError, match=r"img: integer pixels in \[-3, 7\], outside 0..65535"):
        D.to_float_rgb(np.array([[-3, 7]], dtype=np.int32), "I", "img")


# ---------------------------------------------------------------------------------------------------- file names
def test_file_name_that_is_not_utf8_is_named(tmp_path, capsys):
    d = tmp_path / "bad"
    d.mkdir()
    _rand_png(d / "good.png", 0)
    bad = Path(os.fsdecode(os.fsencode(str(d)) + b"/a\xffb.png"))
    _rand_png(bad, 1)
    with pytest.raises(DataError, match=r"a\\xffb.png: file name is not valid UTF-8; rename it"):
        load_dataset(str(d))
    with pytest.raises(DataError, match=r"a\\xffb.png: file name is not valid UTF-8"):
        load_dataset(str(bad))
    rc, err = _cli(_sweep_args(str(d), tmp_path / "out"), capsys)
    assert rc == 2
    _one_line_error(err, "a\\xffb.png", "not valid UTF-8", "rename it")


# ---------------------------------------------------------------------------------------------------- encode cache
@pytest.fixture()
def disk_cache(tmp_path, monkeypatch):
    from baselines.digital import encode_cache
    from baselines.digital.source import ENCODE_CACHE

    monkeypatch.setenv("LRISC_SIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(encode_cache.ENV_CACHE, "1")
    monkeypatch.setattr(encode_cache, "_BAD_NOTED", [])
    ENCODE_CACHE.clear()
    yield tmp_path / "cache"
    ENCODE_CACHE.clear()


def _entries(coder, img) -> list[Path]:
    from baselines.digital import encode_cache
    from baselines.digital.source import image_digest

    return sorted((encode_cache.coder_dir(coder) / image_digest(img)).glob("q*.bin"), key=lambda p: int(p.stem[1:]))


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    from skimage.data import astronaut

    return np.ascontiguousarray(astronaut()[100:164, 200:264])


def _spoil_and_rerun(coder, img, budget, spoil, capsys) -> tuple:
    from baselines.digital.source import ENCODE_CACHE, rate_match

    first = rate_match(coder, img, budget)
    files = _entries(coder, img)
    assert first is not None and len(files) == first.encodes >= 2
    assert all(f.with_suffix(".sum").is_file() for f in files)
    spoil(files)
    ENCODE_CACHE.clear()  # a new run: only the disk cache
    capsys.readouterr()
    again = rate_match(coder, img, budget)
    return first, again, files, capsys.readouterr().err


def test_garbage_in_the_encode_cache_is_recomputed_with_a_note(disk_cache, crop, capsys):
    from baselines.digital.codecs import make_bpg_ldpc
    from baselines.digital.source import HEVCCoder

    coder = HEVCCoder()

    def garbage(files):
        for f in files:
            f.write_bytes(b"\x00garbage" * 20)

    first, again, files, err = _spoil_and_rerun(coder, crop, 1500, garbage, capsys)
    assert again.data == first.data and again.quality == first.quality and again.encodes == first.encodes
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "does not match its checksum" in lines[0] and str(disk_cache / "encodings") in lines[0]
    assert all(f.read_bytes() == coder.encode_at(crop, int(f.stem[1:])) for f in files)  # rewritten
    # the codec on top of it decodes its own output (it said "cannot decode its own output" before)
    import torch

    from baselines.digital.source import ENCODE_CACHE

    garbage(files)
    ENCODE_CACHE.clear()
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
    enc = make_bpg_ldpc("qpsk-1/2", source="hevc").encode(x, 1 / 4)
    assert enc.info["source_bytes"][0] > 0


def test_entries_swapped_between_qualities_are_not_trusted(disk_cache, crop, capsys):
    from baselines.digital.source import HEVCCoder

    coder = HEVCCoder()

    def swap(files):  # every quality replaced by the lowest one's entry, checksum file included
        low = max(files, key=lambda p: int(p.stem[1:]))
        for f in files:
            if f != low:
                shutil.copy(low, f)
                shutil.copy(low.with_suffix(".sum"), f.with_suffix(".sum"))

    first, again, files, err = _spoil_and_rerun(coder, crop, 1500, swap, capsys)
    assert again.data == first.data and again.quality == first.quality
    assert again.encodes == first.encodes - 1  # all but the untouched lowest quality encoded again
    assert "does not match its checksum" in err and len(err.strip().splitlines()) == 1


def test_entries_without_checksum_are_recomputed_silently(disk_cache, crop, capsys):
    from baselines.digital.source import HEVCCoder

    coder = HEVCCoder()

    def drop_sums(files):  # as written by the previous version: bytes only
        for f in files:
            f.with_suffix(".sum").unlink()

    first, again, files, err = _spoil_and_rerun(coder, crop, 1500, drop_sums, capsys)
    assert again.data == first.data and again.encodes == first.encodes and err == ""
    assert all(f.with_suffix(".sum").is_file() for f in files)
