"""LRISC variable-length JSCC: rate quantiser, rate control (total CBR <= target), packing, power, SNR modules."""

from __future__ import annotations

import math

import pytest
import torch

from lrisc_sim.codec import SideInfoCharge
from lrisc_sim.lrisc.config import SNRAdaptConfig, preset
from lrisc_sim.lrisc.jscc import (JSCCDecoder, JSCCEncoder, RateControlError, RateIndexCoding, RateQuantizer, pack,
                                  rate_control, token_mask, token_snr, unpack)
from lrisc_sim.lrisc.snr_adapt import SNRAdapter

torch.set_num_threads(1)
LEVELS = (2, 4, 8, 12, 16, 24, 32, 48)


def test_quantizer_nearest_level():
    q = RateQuantizer(LEVELS)
    k = torch.tensor([0.0, 2.9, 3.1, 13.9, 14.1, 100.0])
    assert q.lengths(q.index(k)).tolist() == [2, 2, 4, 12, 16, 48]
    with pytest.raises(ValueError):
        RateQuantizer((4, 2))


def test_more_entropy_more_symbols():
    q = RateQuantizer(LEVELS)
    e = torch.linspace(1, 400, 64)[None]  # increasing information content
    rd = rate_control(e, 700, q)
    v = q.lengths(rd.q)[0]
    assert bool((v[1:] >= v[:-1]).all()) and int(v[-1]) > int(v[0])
    # an image with more entropy everywhere gets at least as many symbols at the same beta
    beta = rd.beta[:1, None].double()
    lo = q.lengths(q.index(beta * e.double())).sum()
    hi = q.lengths(q.index(beta * 2 * e.double())).sum()
    assert int(hi) >= int(lo)


@pytest.mark.parametrize("charge", [SideInfoCharge(), SideInfoCharge("fixed", 2.0), SideInfoCharge("capacity")])
@pytest.mark.parametrize("coding", ["auto", "fixed", "enumerative"])
def test_total_cbr_never_above_target(charge, coding):
    g = torch.Generator().manual_seed(1)
    q = RateQuantizer(LEVELS)
    h, w = 128, 96
    L = (h // 16) * (w // 16)
    snr = torch.tensor([0.0, 5.0, 10.0, 15.0])
    e = torch.rand(4, L, generator=g) ** 3 * 300
    for cbr in (1 / 96, 1 / 48, 1 / 24, 1 / 8, 1.0):
        budget = math.floor(cbr * 3 * h * w)
        rd = rate_control(e, budget, q, charge, RateIndexCoding(coding), snr)
        total = rd.payload.double() + charge.uses(RateIndexCoding(coding).bits(rd.q, len(LEVELS)), snr)
        assert bool((total <= budget).all()), (cbr, total, budget)
        assert torch.equal(rd.payload, q.lengths(rd.q).sum(1))
        # the budget is used well: one more level step for the cheapest token would not fit or all are at max
        assert bool(((total > 0.8 * budget) | (rd.q == len(LEVELS) - 1).all(1)).all())


def test_rate_control_minimum_fallback_and_error():
    q = RateQuantizer(LEVELS)
    e = torch.full((1, 16), 100.0)
    rd = rate_control(e, 16 * 2 + 16 * 3 + 1, q, coding=RateIndexCoding("fixed"))
    assert int(rd.payload) == 32 and bool((rd.q == 0).all())
    with pytest.raises(RateControlError, match="raise the CBR"):
        rate_control(e, 40, q)


def test_rate_index_coding():
    c = RateIndexCoding("auto")
    q_const = torch.zeros(1, 1000, dtype=torch.long)
    q_rand = torch.randint(0, 8, (1, 1000), generator=torch.Generator().manual_seed(0))
    fixed = RateIndexCoding("fixed").bits(q_rand, 8)
    assert float(fixed) == 3000
    assert float(c.bits(q_const, 8)) < 100  # constant indices cost only the header
    assert float(c.bits(q_rand, 8)) <= 3002  # 2 flag bits + at most n bits per token
    # enumerative code length within the header of L * H(empirical)
    counts = torch.bincount(q_rand[0], minlength=8).double()
    p = counts / counts.sum()
    ent = float(-(p[p > 0] * p[p > 0].log2()).sum() * 1000)
    assert float(RateIndexCoding("enumerative").bits(q_rand, 8)) <= ent + 7 * 10 + 1


def test_pack_unpack_round_trip():
    q = RateQuantizer((1, 2, 3, 4))
    idx = torch.tensor([[0, 3, 1], [2, 2, 2]])
    mask = token_mask(idx, q)
    full = torch.randn(2, 3, 4, dtype=torch.complex64) * mask
    s, length = pack(full, mask)
    assert length.tolist() == [1 + 4 + 2, 9] and s.shape == (2, 9)
    assert torch.equal(s[0, :7], torch.cat([full[0, 0, :1], full[0, 1, :4], full[0, 2, :2]]))
    assert torch.all(s[0, 7:] == 0)
    assert torch.equal(unpack(s, mask), full)


def _codec_parts(seed: int = 0):
    torch.manual_seed(seed)
    cfg = preset("tiny")
    c = cfg.analysis.latent_channels
    return cfg, JSCCEncoder(c, cfg.jscc, cfg.snr), JSCCDecoder(c, cfg.jscc, cfg.snr)


def test_encoder_unit_power_per_image_and_lengths():
    cfg, fe, fd = _codec_parts()
    z = torch.randn(3, cfg.analysis.latent_channels, 2, 3) * torch.tensor([0.1, 1.0, 10.0]).view(3, 1, 1, 1)
    q = torch.randint(0, 4, (3, 6), generator=torch.Generator().manual_seed(2))
    s, length = fe(z, q, torch.tensor([0.0, 5.0, 10.0]))
    assert s.dtype == torch.complex64 and s.shape == (3, int(length.max()))
    assert torch.equal(length, fe.quantizer.lengths(q).sum(1))
    for b in range(3):
        p = float((s[b, : length[b]].detach().abs() ** 2).mean())
        assert p == pytest.approx(1.0, rel=1e-5)
        assert torch.all(s[b, length[b]:] == 0)
    z_hat = fd(s, q, (2, 3), torch.tensor([0.0, 5.0, 10.0]))
    assert z_hat.shape == z.shape


def test_snr_modules_change_output_with_snr():
    torch.manual_seed(0)
    a = SNRAdapter(16, SNRAdaptConfig(sm_hidden=8))
    x = torch.randn(2, 5, 16)
    # freshly built, the module is the identity (its last FC starts at zero)
    assert torch.allclose(a(x, torch.tensor([0.0, 10.0])), x)
    torch.nn.init.normal_(a.fcs[-1].weight, std=0.5)
    y0 = a(x, torch.tensor([0.0, 0.0]))
    y1 = a(x, torch.tensor([15.0, 15.0]))
    assert not torch.allclose(y0, y1, atol=1e-4)
    a.enabled = False
    assert torch.equal(a(x, torch.tensor([0.0, 15.0])), x)
    # per-token SNR_i is accepted too
    assert a(x, torch.zeros(2, 5)).shape == x.shape

    cfg, fe, fd = _codec_parts()
    for m in (fe.snr, fd.snr):
        torch.nn.init.normal_(m.fcs[-1].weight, std=0.5)
    z = torch.randn(1, cfg.analysis.latent_channels, 2, 2)
    q = torch.full((1, 4), 2)
    s_lo, _ = fe(z, q, torch.tensor([0.0]))
    s_hi, _ = fe(z, q, torch.tensor([15.0]))
    assert not torch.allclose(s_lo, s_hi, atol=1e-4)
    d_lo = fd(s_lo, q, (2, 2), torch.tensor([0.0]))
    d_hi = fd(s_lo, q, (2, 2), torch.tensor([15.0]))
    assert not torch.allclose(d_lo, d_hi, atol=1e-4)


def test_token_snr():
    q = RateQuantizer((1, 2))
    idx = torch.tensor([[0, 1]])
    nv = torch.tensor([[0.1, 0.01, 0.01, 5.0]])  # token 0 uses slot 0; token 1 slots 1-2; slot 3 is padding
    snr = token_snr(nv, idx, q)
    assert torch.allclose(snr, torch.tensor([[10.0, 20.0]]), atol=1e-4)
