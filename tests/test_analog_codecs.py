"""Uncoded and SoftCast baselines: quality vs SNR, CBR accounting, power, LLSE theory, fading."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from baselines.analog import make_uncoded
from baselines.softcast import dct2, idct2, make_softcast
from channels.awgn import AWGN
from channels.base import ChannelOutput, equalize, snr_to_n0
from channels.power import average_power
from channels.realization import Realization
from lrisc_sim.codec import Context, SideInfoCharge, cbr_report, encoder_needs_snr
from lrisc_sim.registry import make_codec


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Two natural 128 x 128 crops (astronaut, chelsea): 2 x 3 x 128 x 128 in [0, 1]."""
    skd = pytest.importorskip("skimage.data")
    a = torch.from_numpy(skd.astronaut()[:384, 64:448].copy()).permute(2, 0, 1).float() / 255
    c = torch.from_numpy(skd.chelsea()[:256, 100:356].copy()).permute(2, 0, 1).float() / 255
    a = F.interpolate(a[None], size=(128, 128), mode="area")
    c = F.interpolate(c[None], size=(128, 128), mode="area")
    return torch.cat([a, c])


def send(codec, x, cbr, snr, channel="awgn", eq="mmse", seed=0):
    """Encode, pass through the channel, equalise; returns (encoded, received)."""
    enc = codec.encode(x, cbr, Context.of(x))
    b = x.shape[0]
    real = Realization(seed, [f"img{i}" for i in range(b)], 0)
    snr_t = torch.full((b,), float(snr))
    if channel == "awgn":
        out = AWGN()(enc.symbols, snr_t, real)
    else:  # per-symbol Rayleigh fading, built by hand: y = h s + n
        k = enc.symbols.shape[1]
        h = real.cn("fading", k)
        n0 = snr_to_n0(snr_t)
        out = ChannelOutput(y=h * enc.symbols + real.cn("noise", k) * n0.sqrt()[:, None], h=h, n0=n0, snr_db=snr_t)
    return enc, equalize(out, eq)


def psnr(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return -10 * torch.log10(((y - x) ** 2).mean(dim=(1, 2, 3)))


@pytest.mark.parametrize("make,cbr", [(make_softcast, 1 / 16), (make_uncoded, 1 / 2), (make_uncoded, 1 / 16)])
def test_psnr_increases_with_snr(photos, make, cbr):
    codec = make(None)
    values = []
    for snr in (0, 5, 10, 15):
        enc, rx = send(codec, photos, cbr, snr)
        dec = codec.decode(rx, enc)
        assert dec.images.shape == photos.shape and dec.ok.all()
        assert dec.images.min() >= 0 and dec.images.max() <= 1
        values.append(psnr(dec.images, photos))
    v = torch.stack(values)  # SNR x B
    assert (v[1:] > v[:-1] + 1.0).all(), v
    assert (v[0] > 10).all()


def test_softcast_quality_in_expected_range(photos):
    codec = make_softcast(None)
    enc, rx = send(codec, photos, 1 / 16, 10)
    p = psnr(codec.decode(rx, enc).images, photos)
    assert (p > 22).all() and (p < 35).all(), p


def test_uncoded_approaches_lossless(photos):
    codec = make_uncoded(None)
    # CBR 1/2: the side information leaves a few pixels out (interpolated), so near-lossless
    enc, rx = send(codec, photos, 1 / 2, 60)
    assert enc.info["tx"] == ["skip 128x128"] * 2
    assert (psnr(codec.decode(rx, enc).images, photos) > 40).all()
    # CBR 1: every pixel, repeated into the spare uses
    enc, rx = send(codec, photos, 1.0, 60)
    assert enc.info["tx"] == ["repeat 128x128"] * 2
    assert (psnr(codec.decode(rx, enc).images, photos) > 65).all()


@pytest.mark.parametrize("make", [make_softcast, make_uncoded])
@pytest.mark.parametrize("hw", [(128, 128), (96, 160), (75, 61)])
@pytest.mark.parametrize("cbr", [1 / 64, 1 / 48, 1 / 16, 1 / 2])
def test_cbr_budget_and_power(make, hw, cbr):
    x = torch.rand(2, 3, *hw) * 0.3 + torch.linspace(0, 0.6, hw[1])  # smooth-ish content
    codec = make(None)
    ctx = Context(hw)
    enc = codec.encode(x, cbr, ctx)
    budget = ctx.budget(cbr)
    rep = cbr_report(enc, hw, ctx.side_charge)
    used = rep["cbr_total"] * 3 * hw[0] * hw[1]
    assert (used <= budget + 1e-6).all(), (used, budget)
    assert (used >= 0.9 * budget).all(), (used, budget)
    assert (enc.length <= enc.symbols.shape[1]).all() and enc.symbols.dtype == torch.complex64
    assert torch.allclose(average_power(enc.symbols, enc.length), torch.ones(2), atol=1e-4)
    tail = torch.arange(enc.symbols.shape[1])[None] >= enc.length[:, None]
    assert (enc.symbols[tail] == 0).all()


@pytest.mark.parametrize("make", [make_softcast, make_uncoded])
def test_capacity_side_charge(make, photos):
    codec = make(None)
    charge = SideInfoCharge("capacity")
    assert encoder_needs_snr(codec, charge) and not encoder_needs_snr(codec, SideInfoCharge())
    snr = torch.tensor([0.0, 20.0])
    enc = codec.encode(photos, 1 / 16, Context((128, 128), charge, snr))
    rep = cbr_report(enc, (128, 128), charge, snr)
    assert (rep["cbr_total"] <= 1 / 16 + 1e-12).all()
    assert enc.length[1] > enc.length[0]  # cheaper side information at 20 dB leaves more payload


def test_softcast_llse_beats_zf_and_matches_theory(photos):
    llse, zf = make_softcast(None), make_softcast("estimator=zf")
    for snr in (0, 10):
        enc, rx = send(llse, photos, 1 / 16, snr)
        mse = ((llse.estimate(rx, enc) - photos) ** 2).mean(dim=(1, 2, 3))
        mse_zf = ((zf.estimate(rx, enc) - photos) ** 2).mean(dim=(1, 2, 3))
        assert (mse < mse_zf).all()
        theory = llse.expected_mse(rx, enc)
        assert torch.allclose(mse, theory, rtol=0.05), (mse, theory)


def test_fading_per_symbol_gains(photos):
    codec = make_softcast(None)
    # given h the expected MSE weights each coefficient by its own gain, so one image fluctuates: pool trials
    mse, theory = 0.0, 0.0
    for seed in range(8):
        enc, rx = send(codec, photos, 1 / 16, 10, channel="rayleigh", seed=seed)
        mse += ((codec.estimate(rx, enc) - photos) ** 2).mean()
        theory += codec.expected_mse(rx, enc).mean()
    assert abs(mse / theory - 1) < 0.1, (mse, theory)
    # the estimate uses the per-symbol noise, so it does not depend on the equaliser (same information)
    enc, rx = send(codec, photos, 1 / 16, 10, channel="rayleigh")
    _, rx_zf = send(codec, photos, 1 / 16, 10, channel="rayleigh", eq="zf")
    assert torch.allclose(codec.estimate(rx_zf, enc), codec.estimate(rx, enc), atol=1e-3)
    _, awgn = send(codec, photos, 1 / 16, 10)
    assert (psnr(codec.decode(rx, enc).images, photos) < psnr(codec.decode(awgn, enc).images, photos)).all()
    unc = make_uncoded(None)
    enc, rx = send(unc, photos, 1 / 4, 10, channel="rayleigh")
    p = psnr(unc.decode(rx, enc).images, photos)
    assert torch.isfinite(p).all() and (p > 12).all()


@pytest.mark.parametrize("make", [make_softcast, make_uncoded])
def test_encoding_independent_of_batch(make, photos):
    codec = make(None)
    both = codec.encode(photos, 1 / 48)
    one = codec.encode(photos[1:], 1 / 48)
    k = int(one.length[0])
    assert both.length[1] == k and torch.equal(both.side_bits[1:], one.side_bits)
    assert torch.allclose(both.symbols[1, :k], one.symbols[0, :k], atol=1e-6)


def test_dct_is_orthonormal():
    x = torch.rand(2, 3, 24, 40)
    c = dct2(x)
    assert torch.allclose(idct2(c), x, atol=1e-5)
    assert torch.allclose(c.pow(2).sum(), x.pow(2).sum(), rtol=1e-5)
    assert torch.allclose(c[..., 0, 0], x.mean(dim=(2, 3)) * math.sqrt(24 * 40), atol=1e-5)


def test_factories_and_errors():
    assert make_codec("softcast:32").chunk == 32
    assert make_codec("softcast:chunk=8,var_bits=16", device="cpu").var_bits == 16
    assert make_codec("uncoded:zf").estimator == "zf"
    with pytest.raises(ValueError, match="unknown option"):
        make_softcast("chunks=3")
    codec = make_uncoded(None)
    with pytest.raises(ValueError, match="too few"):
        codec.encode(torch.rand(1, 3, 16, 16), 1 / 64)
    sc = make_softcast(None)
    with pytest.raises(ValueError, match="too few"):
        sc.encode(torch.rand(1, 3, 16, 16), 1 / 64, Context((16, 16), SideInfoCharge("fixed", 2.0)))
    with pytest.raises(ValueError, match="side_charge is a setting of the sweep"):
        make_softcast(None, side_charge="capacity")
