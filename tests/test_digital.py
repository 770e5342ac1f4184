"""Tests of the digital separation baseline (BPG/HEVC/JPEG2000 + 5G LDPC + QAM, envelope, capacity bound)."""

from __future__ import annotations

import math
import os
import stat
import sys
import textwrap
from fractions import Fraction

import numpy as np
import pytest
import torch

from baselines.digital.codecs import (
    FALLBACK_RGB,
    CapacityCodec,
    EnvelopeCodec,
    availability,
    fallback_images,
    make_bpg_capacity,
    make_bpg_ldpc,
    make_j2k_capacity,
    make_j2k_ldpc,
    psnr_uint8,
)
from baselines.digital.link import CRC_BITS, LDPCLink, plan_blocks
from baselines.digital.mcs import STANDARD_MCS, parse_mcs
from baselines.digital.source import (
    BPGCoder,
    CoderFailed,
    HEVCCoder,
    JPEG2000Coder,
    MissingBinaryError,
    join_heif,
    make_source_coder,
    rate_match,
    split_heif,
)
from channels.awgn import AWGN
from channels.base import ChannelOutput, equalize
from channels.fading import RayleighFading
from channels.realization import Realization
from lrisc_sim.codec import Context
from lrisc_sim.transmission import send


pytestmark = pytest.mark.usefixtures("one_thread")


def run_codec(codec, x, cbr, snr_db, channel, real, eq="mmse"):
    """One batch at one point through ``lrisc_sim.send`` on the realization ``real``: (Decoded, Encoded)."""
    t = send(codec, x, cbr, snr_db, channel, real.image_ids, real.seed, real.trial, eq)
    return t.decoded, t.encoded


run_envelope = run_codec  # the envelope runs through the same contract


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 96 x 128 natural-photo crop shipped with scikit-image (no download)."""
    from skimage.data import astronaut

    return np.ascontiguousarray(astronaut()[40:136, 150:278])


def as_batch(*images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


# ---------------------------------------------------------------------------------------------------- MCS
def test_mcs_names_and_errors():
    assert [m.name for m in STANDARD_MCS] == ["qpsk-1/3", "qpsk-1/2", "qpsk-2/3", "16qam-1/2", "16qam-2/3",
                                              "64qam-1/2"]
    m = parse_mcs("16QAM_2/3")
    assert (m.bits_per_symbol, m.rate, m.efficiency) == (4, Fraction(2, 3), Fraction(8, 3))
    assert parse_mcs("4qam-1/2") == parse_mcs("qpsk-1/2")
    for bad in ("qpsk", "8psk-1/2", "qpsk-1/10", "qpsk-1/0", "64qam-99/100"):
        with pytest.raises(ValueError, match="MCS"):
            parse_mcs(bad)


# ---------------------------------------------------------------------------------------------------- layout
@pytest.mark.parametrize("uses", [7, 50, 600, 3072, 9001, 24576, 36865, 98304, 123457])
def test_block_layout_never_exceeds_budget(uses):
    for m in STANDARD_MCS + (parse_mcs("qpsk-1/5"), parse_mcs("qpsk-3/10"), parse_mcs("256qam-9/10")):
        lay = plan_blocks(m, uses)
        if lay is None:
            assert uses * m.bits_per_symbol * m.rate < 8 + CRC_BITS + 12
            continue
        assert lay.uses <= uses
        assert lay.n_cb % m.bits_per_symbol == 0
        assert 12 <= lay.k_cb <= (8448 if m.rate >= Fraction(1, 3) else 3824)
        # the code rate is R up to the rounding of K and N (base graph 1 needs K / N >= 1/3)
        assert m.rate <= Fraction(lay.k_cb, lay.n_cb) <= m.rate + Fraction(m.bits_per_symbol, lay.n_cb)
        assert 8 * lay.max_bytes + lay.header_bits + lay.num_blocks * CRC_BITS <= lay.num_blocks * lay.k_cb
        assert lay.max_bytes < 2 ** lay.header_bits
        # little is wasted: at most one block's rounding per block plus the header
        assert lay.coded_bits > uses * m.bits_per_symbol - lay.num_blocks * m.bits_per_symbol * 4


def test_link_roundtrip_noiseless():
    lay = plan_blocks(parse_mcs("16qam-1/2"), 1500)
    link = LDPCLink(lay)
    rng = np.random.default_rng(1)
    payloads = [rng.bytes(lay.max_bytes), b"", rng.bytes(17)]
    s = link.transmit(payloads)
    assert s.shape == (3, lay.uses) and s.dtype == torch.complex64
    assert abs(float((s.abs() ** 2).mean()) - 1) < 0.05  # scrambled: unit mean power despite zero padding
    res = link.receive(s, torch.full(s.shape, 1e-3), active=torch.tensor([True, True, False]))
    assert res.payloads == [payloads[0], b"", None]
    assert res.block_ok[:2].all() and not res.block_ok[2].any()
    with pytest.raises(ValueError, match="exceeds"):
        link.transmit([rng.bytes(lay.max_bytes + 1)])


# ---------------------------------------------------------------------------------------------------- BLER
def _bler_llrs(link: LDPCLink, ebno_db: float, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LLRs of ``n`` random code words over AWGN (rate-1/2 QPSK: Es/N0 = Eb/N0) and their info bits."""
    g = torch.Generator().manual_seed(seed)
    k = link.layout.k_cb - CRC_BITS
    u = torch.randint(0, 2, (n, k), generator=g).float()
    c = link.scrambler(link.enc(link.crc_enc(u)), binary=True)
    s = link.mapper(c)
    n0 = 10 ** (-ebno_db / 10)
    w = torch.complex(torch.randn(s.shape, generator=g), torch.randn(s.shape, generator=g)) * math.sqrt(n0 / 2)
    llr = link.scrambler(link.demapper(s + w, torch.full(s.shape, n0)), binary=False)
    return llr, u


def test_bler_rate_half_qpsk_awgn():
    """5G LDPC k = 1024, rate 1/2, QPSK, 20 iterations: BLER > 0.5 at 0.75 dB and < 0.1 at 1.5 dB Eb/N0."""
    lay = plan_blocks(parse_mcs("qpsk-1/2"), 1024)
    assert (lay.num_blocks, lay.k_cb, lay.n_cb) == (1, 1024, 2048)
    link = LDPCLink(lay, num_iter=20, decode_batch=64, early_stop=False, stop_on_failure=False)
    bler = {}
    for ebno in (0.75, 1.5):
        llr, u = _bler_llrs(link, ebno, 128, seed=7)
        bits, ok = link.decode_llrs(llr)
        errors = (bits != u).any(dim=1)
        assert torch.equal(~ok, errors)  # the CRC flags exactly the failed blocks
        bler[ebno] = float(errors.float().mean())
    assert bler[0.75] > 0.5
    assert bler[1.5] < 0.1


def test_early_stop_gives_the_same_decisions():
    lay = plan_blocks(parse_mcs("qpsk-1/2"), 1024)
    full = LDPCLink(lay, early_stop=False, decode_batch=32)
    fast = LDPCLink(lay, early_stop=True, decode_batch=32)
    llr, u = _bler_llrs(full, 1.25, 48, seed=3)
    b1, ok1 = full.decode_llrs(llr)
    b2, ok2 = fast.decode_llrs(llr)
    assert torch.equal(ok1, ok2)
    assert torch.equal(b1[ok1], b2[ok2]) and torch.equal(b1[ok1], u[ok1])


def test_stop_on_failure_keeps_the_outcome():
    lay = plan_blocks(parse_mcs("qpsk-1/2"), 9000)  # 2 blocks of 4500 bits
    assert lay.num_blocks == 2
    rng = np.random.default_rng(0)
    payloads = [rng.bytes(lay.max_bytes) for _ in range(6)]
    a, b = LDPCLink(lay, stop_on_failure=False), LDPCLink(lay, stop_on_failure=True, decode_batch=6)
    s = a.transmit(payloads)
    n0 = 10 ** (-1.0 / 10)
    g = torch.Generator().manual_seed(11)
    y = s + torch.complex(torch.randn(s.shape, generator=g), torch.randn(s.shape, generator=g)) * math.sqrt(n0 / 2)
    ra, rb = a.receive(y, torch.full(s.shape, n0)), b.receive(y, torch.full(s.shape, n0))
    assert ra.payloads == rb.payloads and ra.decoded.all()
    lost = [p is None for p in ra.payloads]
    assert 0 < sum(lost) < 6
    assert (rb.blocks_failed[torch.tensor(lost)] >= 1).all() and rb.decoded.sum() < ra.decoded.sum()


# ---------------------------------------------------------------------------------------------------- source coders
def test_heif_container_split_is_lossless(photo):
    c = HEVCCoder()
    heif = c.heif_at(photo, 30)
    bare = split_heif(heif)
    assert len(heif) - len(bare) == 292  # container boxes minus the 4-byte NAL prefixes of VPS/SPS/PPS
    assert join_heif(bare, c.template(photo.shape[:2])) == heif
    assert c.decode(bare[:-7], photo.shape[:2]) is None
    assert c.decode(b"\x00\x01\x02", photo.shape[:2]) is None


def test_hevc_psnr_matches_measured(photo):
    """x265 4:4:4 constant QP via pillow-heif on the fixture crop; values measured with pillow-heif 1.8.1
    (libheif 1.23.6, x265 4.3): QP 22/32/42 -> 39.92/33.93/28.30 dB (skimage astronaut [64:192, 160:288])."""
    from skimage.data import astronaut

    a = np.ascontiguousarray(astronaut()[64:192, 160:288])
    c = HEVCCoder()
    for q, ref in ((22, 39.922), (32, 33.925), (42, 28.296)):
        out = c.decode(c.encode_at(a, q), a.shape[:2])
        p = 10 * np.log10(255 ** 2 / np.mean((a.astype(float) - out) ** 2))
        assert abs(p - ref) < 0.3, (q, p, ref)


def test_rate_match_fits_and_is_the_best(photo):
    for coder in (HEVCCoder(), JPEG2000Coder()):
        for budget in (700, 2500):
            fit = rate_match(coder, photo, budget)
            assert fit is not None and len(fit.data) <= budget
            qs = list(coder.qualities(budget))
            nxt = qs.index(fit.quality) + 1
            if nxt < len(qs):  # the next better quality does not fit
                assert len(coder.encode_at(photo, qs[nxt])) > budget
    assert rate_match(HEVCCoder(), photo, 20) is None


FAKE_BPGENC = """\
import sys
import numpy as np
from PIL import Image
a = sys.argv[1:]
opt = dict(zip(a[:-1:2], a[1:-1:2]))
assert opt["-f"] == "444", "chroma must be 444"
q = int(opt["-q"])
img = np.asarray(Image.open(a[-1]).convert("RGB"))
step = q + 1
body = (img // step * step).astype(np.uint8).tobytes()
head = b"FBPG" + bytes([q]) + img.shape[0].to_bytes(2, "big") + img.shape[1].to_bytes(2, "big")
data = head + body + b"\\0" * (100 * (51 - q))
open(opt["-o"], "wb").write(data)
"""

FAKE_BPGDEC = """\
import sys
import numpy as np
from PIL import Image
a = sys.argv[1:]
d = open(a[-1], "rb").read()
if d[:4] != b"FBPG":
    sys.exit(1)
h, w = int.from_bytes(d[5:7], "big"), int.from_bytes(d[7:9], "big")
img = np.frombuffer(d[9:9 + 3 * h * w], np.uint8).reshape(h, w, 3)
Image.fromarray(img).save(a[a.index("-o") + 1])
"""


def _script(path, body: str) -> str:
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_bpg_wrapper_with_stand_in_binaries(tmp_path, monkeypatch):
    enc = _script(tmp_path / "bpgenc", FAKE_BPGENC)
    dec = _script(tmp_path / "bpgdec", FAKE_BPGDEC)
    img = (np.arange(16 * 24 * 3) % 251).astype(np.uint8).reshape(16, 24, 3)
    coder = BPGCoder(enc, dec, min_side=1)  # no padding (tests/test_bpg_real_path.py tests it)
    # file size = 9 + 1152 + 100 (51 - q): the best q fitting 3000 bytes is 33 (q = 32 needs 3061)
    fit = rate_match(coder, img, 3000)
    assert fit.quality == 33 and len(fit.data) == 9 + 1152 + 1800
    out = coder.decode(fit.data, (16, 24))
    assert np.array_equal(out, img // 34 * 34)
    assert coder.decode(b"junk", (16, 24)) is None
    # found on PATH and through the environment variables
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ.get("PATH", ""))
    assert make_source_coder("auto").name == "bpg"
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("LRISC_BPGENC", enc)
    monkeypatch.setenv("LRISC_BPGDEC", dec)
    assert BPGCoder().bpgenc == enc


def test_missing_bpgenc_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("LRISC_BPGENC", raising=False)
    monkeypatch.delenv("LRISC_BPGDEC", raising=False)
    with pytest.raises(MissingBinaryError, match="bellard.org/bpg.*source=hevc"):
        make_bpg_ldpc("qpsk-1/2", source="bpg")
    # auto falls back to HEVC-intra and says so in every row
    assert "hevc" in make_bpg_ldpc("qpsk-1/2").source.name
    with pytest.raises(MissingBinaryError, match="not an executable"):
        BPGCoder(bpgenc="/nonexistent/bpgenc")


def test_configured_bpg_binaries_are_never_silently_replaced(tmp_path, monkeypatch, capsys):
    from baselines.digital import source as src

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(src, "_FALLBACK_NOTED", [])
    monkeypatch.setattr(src, "_BPG_TESTED", set())
    enc = _script(tmp_path / "bpgenc", FAKE_BPGENC)
    dec = _script(tmp_path / "bpgdec", FAKE_BPGDEC)
    # a configured binary that does not exist: an error, not HEVC
    monkeypatch.setenv("LRISC_BPGENC", str(tmp_path / "no-such-bpgenc"))
    monkeypatch.setenv("LRISC_BPGDEC", dec)
    with pytest.raises(MissingBinaryError, match="no-such-bpgenc"):
        make_bpg_ldpc("qpsk-1/2")
    # one that fails: its path and exit status, and what it printed (or that it printed nothing)
    for body, said in (("import sys; print('cannot open input', file=sys.stderr); sys.exit(3)", "cannot open input"),
                       ("import sys; sys.exit(1)", "it said: nothing")):
        bad = _script(tmp_path / "bad_bpgenc", body)
        monkeypatch.setenv("LRISC_BPGENC", bad)
        with pytest.raises(CoderFailed, match="exit status") as e:
            make_bpg_ldpc("qpsk-1/2")
        msg = str(e.value)
        assert bad in msg and said in msg and "\n" not in msg
        assert f"exit status {3 if 'cannot' in said else 1}" in msg and "LRISC_BPGENC" in msg
    bad_dec = _script(tmp_path / "bad_bpgdec", "import sys; sys.exit(2)")
    monkeypatch.setenv("LRISC_BPGENC", enc)
    monkeypatch.setenv("LRISC_BPGDEC", bad_dec)
    with pytest.raises(CoderFailed, match=f"{bad_dec} failed decoding a 64x64 test image \\(exit status 2"):
        make_bpg_ldpc("qpsk-1/2")
    # configured and working: BPG
    monkeypatch.setenv("LRISC_BPGDEC", dec)
    assert make_bpg_ldpc("qpsk-1/2").source.name == "bpg"
    assert capsys.readouterr().err == ""
    # nothing configured, nothing on PATH: HEVC-intra, announced once on stderr
    monkeypatch.delenv("LRISC_BPGENC")
    monkeypatch.delenv("LRISC_BPGDEC")
    for _ in range(2):
        assert "hevc" in make_bpg_ldpc("qpsk-1/2").source.name
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bpgenc and bpgdec not found on PATH" in err[0] and "HEVC-intra" in err[0]


# ---------------------------------------------------------------------------------------------------- codecs
def test_factories_and_availability():
    env = make_bpg_ldpc(None)
    assert isinstance(env, EnvelopeCodec)
    assert [v.mcs.name for v in env.variants()] == [m.name for m in STANDARD_MCS]
    assert all(not v.snr_aware_encoder for v in env.variants())
    assert make_bpg_ldpc("64qam-1/2").name == "bpg-ldpc:64qam-1/2"
    assert isinstance(make_bpg_capacity(None), CapacityCodec) and make_bpg_capacity(None).snr_aware_encoder
    assert isinstance(make_j2k_ldpc("qpsk-2/3").source, JPEG2000Coder)
    assert make_j2k_capacity(None).name == "jpeg2000-capacity"
    assert make_bpg_capacity("csit").csit and make_bpg_capacity("csit").name == "bpg-capacity:csit"
    with pytest.raises(ValueError, match="csit"):
        make_bpg_capacity("qpsk-1/2")
    assert [v.mcs.name for v in make_bpg_ldpc(None, mcs="16qam-1/2,qpsk-1/3").variants()] == ["qpsk-1/3",
                                                                                             "16qam-1/2"]
    with pytest.raises(TypeError, match="num_iters"):
        make_bpg_ldpc(None, num_iters=5)
    with pytest.raises(ValueError, match="MCS"):
        make_bpg_ldpc("qpsk-3/4x")
    for name in ("bpg-ldpc", "bpg-capacity", "jpeg2000-ldpc", "jpeg2000-capacity"):
        assert availability(name) == "ok"


def test_budget_never_exceeded(photo):
    x = as_batch(photo, photo[::-1].copy())
    for cbr in (1 / 48, 1 / 12, 1 / 3):
        ctx = Context.of(x)
        for codec in (make_bpg_ldpc("qpsk-1/3"), make_bpg_ldpc("64qam-1/2")):
            enc = codec.encode(x, cbr, ctx)
            k = ctx.budget(cbr)
            assert enc.symbols.shape[1] <= k and (enc.length <= k).all() and (enc.side_bits == 0).all()
            lay = enc.state.layout
            for n, p in zip(enc.info["source_bytes"], enc.state.payloads):
                assert p is None or (len(p) == n <= lay.max_bytes)
        cap = make_bpg_capacity(None)
        enc = cap.encode(x, cbr, Context.of(x, snr_db=torch.tensor([5.0, 5.0])))
        assert (enc.length == k).all()
        assert all(8 * n <= k * math.log2(1 + 10 ** 0.5) for n in enc.info["source_bytes"])


def test_deterministic(photo):
    x = as_batch(photo)
    real = Realization(3, ["p"], 0)
    outs = []
    for _ in range(2):
        codec = make_bpg_ldpc("qpsk-2/3")
        dec, enc = run_codec(codec, x, 1 / 6, 3.0, RayleighFading(coherence=64), real)
        outs.append((enc.symbols, dec.images, dec.ok, enc.info["source_bytes"]))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    assert torch.equal(outs[0][2], outs[1][2]) and outs[0][3] == outs[1][3]


def test_lost_image_is_the_fallback_image(photo):
    x = as_batch(photo, photo)
    real = Realization(0, ["a", "b"], 0)
    codec = make_bpg_ldpc("64qam-1/2")
    dec, enc = run_codec(codec, x, 1 / 8, -5.0, AWGN(), real)
    assert not dec.ok.any()
    assert torch.equal(dec.images, fallback_images(2, *x.shape[-2:]))
    assert all(f > 0 for f in dec.info["blocks_failed"])
    assert torch.allclose(dec.images[0, :, 0, 0], torch.tensor(FALLBACK_RGB))
    dec, _ = run_codec(codec, x, 1 / 8, 25.0, AWGN(), real)
    assert dec.ok.all()
    # nothing fits a tiny budget: lost at any SNR
    dec, enc = run_codec(make_bpg_ldpc("qpsk-1/2"), x, 1 / 400, 30.0, AWGN(), real)
    assert not dec.ok.any() and enc.info["source_bytes"] == [0, 0]
    # the capacity bound in a deep fade (gains set by hand)
    cap = make_bpg_capacity(None)
    enc = cap.encode(x, 1 / 8, Context.of(x, snr_db=torch.tensor([10.0, 10.0])))
    h = torch.ones_like(enc.symbols)
    h[0] *= 0.05
    n0 = torch.full((2,), 0.1)
    out = ChannelOutput(y=h * enc.symbols, h=h, n0=n0, snr_db=torch.full((2,), 10.0))
    dec = cap.decode(equalize(out), enc)
    assert dec.ok.tolist() == [False, True]
    assert torch.equal(dec.images[0], fallback_images(1, *x.shape[-2:])[0])


def test_mmse_and_zf_give_the_same_decisions(photo):
    x = as_batch(photo)
    real = Realization(1, ["p"], 0)
    codec = make_bpg_ldpc("16qam-1/2")
    d1, _ = run_codec(codec, x, 1 / 6, 9.0, RayleighFading(coherence=1), real, eq="mmse")
    d2, _ = run_codec(codec, x, 1 / 6, 9.0, RayleighFading(coherence=1), real, eq="zf")
    assert torch.equal(d1.ok, d2.ok) and d1.info["blocks_failed"] == d2.info["blocks_failed"]


@pytest.mark.parametrize("channel,snr", [(AWGN(), 4.0), (RayleighFading(), 6.0)], ids=["awgn", "rayleigh-block"])
def test_envelope_dominates_every_mcs_and_capacity_dominates_envelope(photo, channel, snr):
    small = photo[:64, :96]
    x = as_batch(small, small[:, ::-1].copy())
    real = Realization(5, ["a", "b"], 0)
    env = make_bpg_ldpc(None)
    cbr = 1 / 8
    dec, enc = run_envelope(env, x, cbr, snr, channel, real)
    p_env = psnr_uint8(x, dec.images)
    won = enc.info["mcs"]
    assert all(m == "none" or m in [s.name for s in STANDARD_MCS] for m in won)
    n_ok = 0
    for m in STANDARD_MCS:
        d, e = run_codec(make_bpg_ldpc(m.name), x, cbr, snr, channel, real)
        n_ok += int(d.ok.sum())
        assert (p_env >= psnr_uint8(x, d.images) - 1e-9).all(), m.name
        for i, w in enumerate(won):
            if w == m.name:  # the winner's row is that MCS's row
                assert bool(d.ok[i]) and torch.equal(d.images[i], dec.images[i])
                assert int(enc.length[i]) == int(e.length[i])
    assert 0 < n_ok < 2 * len(STANDARD_MCS)  # an SNR where some MCS fail and some succeed
    # the capacity bound with channel knowledge at the transmitter dominates the envelope on any channel
    dc, _ = run_codec(make_bpg_capacity("csit"), x, cbr, snr, channel, real)
    assert dc.ok.all() and (psnr_uint8(x, dc.images) >= p_env - 1e-9).all()
    if isinstance(channel, AWGN):
        dn, _ = run_codec(make_bpg_capacity(None), x, cbr, snr, channel, real)
        assert torch.equal(dn.images, dc.images)  # no fading: the same budget
        # pruning does not change the envelope
        full, enc_full = run_envelope(make_bpg_ldpc(None, prune=False), x, cbr, snr, channel, real)
        assert torch.equal(full.images, dec.images) and enc_full.info["mcs"] == enc.info["mcs"]
        for s in (snr, 12.0):
            dc, _ = run_codec(make_bpg_capacity(None), x, cbr, s, channel, real)
            de, _ = run_envelope(env, x, cbr, s, channel, real) if s != snr else (dec, enc)
            assert dc.ok.all()
            assert (psnr_uint8(x, dc.images) >= psnr_uint8(x, de.images) - 1e-9).all()


def test_jpeg2000_envelope_and_capacity(photo):
    small = photo[:64, :96]
    x = as_batch(small)
    real = Realization(2, ["j"], 0)
    dec, enc = run_envelope(make_j2k_ldpc(None), x, 1 / 8, 8.0, AWGN(), real)
    assert dec.ok.all() and enc.info["mcs"][0] != "none"
    assert enc.info["source_coder"][0].startswith("jpeg2000")
    p_env = psnr_uint8(x, dec.images)
    p_fb = psnr_uint8(x, fallback_images(1, 64, 96))
    assert (p_env > p_fb + 5).all()
    dc, _ = run_codec(make_j2k_capacity(None), x, 1 / 8, 8.0, AWGN(), real)
    assert (psnr_uint8(x, dc.images) >= p_env - 1e-9).all()
