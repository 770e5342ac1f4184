"""The BPG path with binaries that behave like libbpg 0.9.8's (issue 25, item 7).

The reference ``bpgenc`` (x265 inside) crashes with SIGSEGV below 64 x 64 pixels. The stand-in of
``tests/fake_bpg`` does the same and is otherwise a real lossy coder whose file format is documented, so that the
bytes a sweep charges can be computed here by hand (``fake_bpg.expected_file``).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from baselines.digital import source as src
from baselines.digital.source import BPG_MIN_SIDE, BPGCoder, CoderFailed, pad_to_min, rate_match

FAKE = Path(__file__).resolve().parent / "fake_bpg"


def _fake_module():
    spec = importlib.util.spec_from_file_location("fake_bpg", FAKE / "fake_bpg.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fake = _fake_module()


@pytest.fixture()
def stand_in(monkeypatch):
    """(bpgenc, bpgdec) paths of the stand-in, run by this interpreter; self-test memo emptied."""
    monkeypatch.setenv("PYTHON", sys.executable)
    monkeypatch.setattr(src, "_BPG_TESTED", set())
    monkeypatch.delenv("LRISC_BPGENC", raising=False)
    monkeypatch.delenv("LRISC_BPGDEC", raising=False)
    src.ENCODE_CACHE.clear()
    yield str(FAKE / "bpgenc"), str(FAKE / "bpgdec")
    src.ENCODE_CACHE.clear()


def _photo(h: int, w: int, y: int = 100, x: int = 200) -> np.ndarray:
    from skimage.data import astronaut

    return np.ascontiguousarray(astronaut()[y: y + h, x: x + w])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse))


def test_stand_in_crashes_below_64_like_the_reference(stand_in, tmp_path):
    enc, dec = stand_in
    for (h, w), crash in (((63, 64), True), ((64, 40), True), ((64, 64), False)):
        img = _photo(h, w)
        Image.fromarray(img).save(tmp_path / "in.png")
        r = subprocess.run([enc, "-f", "444", "-q", "30", "-o", str(tmp_path / "o.bpg"), str(tmp_path / "in.png")],
                           capture_output=True)
        if crash:
            assert r.returncode == -11, (h, w, r.returncode)  # killed by SIGSEGV
        else:
            assert r.returncode == 0 and (tmp_path / "o.bpg").read_bytes() == fake.expected_file(img, 30)


def test_self_test_passes_with_a_binary_that_crashes_below_64(stand_in):
    enc, dec = stand_in
    coder = BPGCoder(enc, dec)  # the 16 x 16 self-test of old stopped here: "failed encoding a 16x16 image"
    assert coder.min_side == BPG_MIN_SIDE == 64 and (enc, dec, 8, 64) in src._BPG_TESTED
    assert "padded" in coder.describe()
    # without padding, the crash is reported as one: the binary, the image size and the signal
    raw = BPGCoder(enc, dec, min_side=1)
    with pytest.raises(CoderFailed, match=r"failed encoding a 32x32 image at -q 30 \(exit status -11: killed by "
                                          r"SIGSEGV, a crash") as e:
        raw.encode_at(_photo(32, 32), 30)
    assert enc in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("hw", [(32, 32), (40, 80), (64, 64), (70, 96)])
def test_small_images_are_padded_and_the_padded_bytes_charged(stand_in, hw):
    enc, dec = stand_in
    coder = BPGCoder(enc, dec)
    img = _photo(*hw)
    sent = np.pad(img, ((0, max(0, 64 - hw[0])), (0, max(0, 64 - hw[1])), (0, 0)), mode="edge")
    assert np.array_equal(pad_to_min(img, 64), sent)
    for q in (51, 30):
        data = coder.encode_at(img, q)
        assert data == fake.expected_file(sent, q)  # the file of the padded image, every byte of it
        out = coder.decode(data, hw)
        assert out.shape == (*hw, 3) and np.array_equal(out, fake.decode_file(data)[: hw[0], : hw[1]])
    if hw[0] < 64 or hw[1] < 64:  # padding costs bytes, and they are charged
        assert len(fake.expected_file(sent, 30)) > len(fake.expected_file(img, 30))
    # the receiver knows the size: a file of another size is no image of this one
    assert coder.decode(fake.expected_file(_photo(64, 72), 30), hw) is None
    fit = rate_match(coder, img, 4000)
    assert fit is not None and len(fit.data) <= 4000 and fit.data == fake.expected_file(sent, fit.quality)


def test_sweep_with_the_stand_in_on_64_and_32_pixel_images(stand_in, tmp_path, monkeypatch):
    import lrisc_sim

    enc, dec = stand_in
    monkeypatch.setenv("LRISC_BPGENC", enc)
    monkeypatch.setenv("LRISC_BPGDEC", dec)
    data = tmp_path / "imgs"
    data.mkdir()
    images = {"big": _photo(64, 64), "small": _photo(32, 32, 300, 300)}
    for name, img in images.items():
        Image.fromarray(img).save(data / f"{name}.png")
    rows = lrisc_sim.sweep("bpg-ldpc:64qam-1/2,bpg-capacity", snr="25", cbr="1/2", channel="awgn", dataset=data,
                           out=tmp_path / "out", metrics="psnr", progress=False)
    assert len(rows) == 4 and rows["ok"].all()
    from baselines.digital.link import plan_blocks
    from baselines.digital.mcs import parse_mcs

    for r in rows.itertuples():
        info = json.loads(r.info)
        img = images[r.image]
        h, w = img.shape[:2]
        assert info["source_coder"] == "bpg"
        file = fake.expected_file(pad_to_min(img, 64), info["source_quality"])
        assert info["source_bytes"] == len(file)  # the padded file's bytes are what is charged
        assert info["source_bpp"] == pytest.approx(8 * len(file) / (h * w))  # per pixel of the real image
        k = int(3 * h * w / 2)
        if r.codec == "bpg-capacity":
            assert 8 * len(file) <= k * np.log2(1 + 10 ** 2.5)
        else:
            layout = plan_blocks(parse_mcs("64qam-1/2"), k)
            assert len(file) <= layout.max_bytes and r.cbr_payload == pytest.approx(layout.uses / (3 * h * w))
        want = _psnr(img, fake.decode_file(file)[:h, :w])
        assert r.psnr == pytest.approx(want, abs=1e-3)
    small = rows[rows["image"] == "small"]
    assert (small.apply(lambda r: json.loads(r["info"])["source_bytes"], axis=1) > 0).all()
