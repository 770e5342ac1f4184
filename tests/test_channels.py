"""Channel layer: BER against theory, SNR and power conventions, identical realizations, spec grammar.

Statistical tolerances are stated next to each check; every test uses fixed seeds, so it is deterministic, and
the tolerances are at least 3.5 standard deviations of the estimator (most are 4 or more).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from channels import (
    AWGN,
    CHANNEL_INFO,
    Channel,
    ChannelOutput,
    RayleighFading,
    Realization,
    RicianFading,
    TDLChannel,
    available_channels,
    equalize,
    make_channel,
    normalize_power,
    parse_channel_spec,
)
from channels.power import average_power

SEED = 1234


def q_function(x: float) -> float:
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def ids(n: int, prefix: str = "img") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(n)]


@pytest.fixture(scope="module")
def qpsk():
    """Sionna's QPSK mapper and APP demapper (hard decisions are taken from the LLRs)."""
    from sionna.phy.mapping import Demapper, Mapper

    return Mapper("qam", 2, device="cpu"), Demapper("app", "qam", 2, device="cpu")


def qpsk_errors(qpsk, channel: Channel, realization: Realization, k: int, ebno_db: float, mode: str = "zf"):
    """Send k random QPSK symbols per image through ``channel``; return (bit errors B x 2k, ChannelOutput)."""
    mapper, demapper = qpsk
    b = len(realization)
    gen = torch.Generator().manual_seed(SEED + realization.trial)
    bits = torch.randint(0, 2, (b, 2 * k), generator=gen).float()
    s = mapper(bits).to(torch.complex64)
    esno_db = ebno_db + 10 * math.log10(2.0)  # QPSK: Es = 2 Eb
    out = channel(s, esno_db, realization)
    rx = equalize(out, mode)
    y = rx.s_hat / rx.gain  # unbiased estimate of s
    no = rx.noise_var / rx.gain**2  # [B, k]: Demapper aligns `no` from the right (ARCHITECTURE.md section 11.1)
    llr = demapper(y, no)  # ln P(b=1)/P(b=0)
    hard = (llr > 0).float()
    return (hard != bits).float(), out


# ----------------------------------------------------------------------------------------------- BER vs theory


@pytest.mark.parametrize("ebno_db", [0.0, 4.0])
def test_qpsk_ber_awgn_matches_theory(qpsk, ebno_db):
    # 400k bits: relative std of the BER estimate sqrt((1-p)/(n p)) = 0.6% at 0 dB and 1.4% at 4 dB (< 5% / 3.5)
    r = Realization(SEED, ids(100), trial=0)
    err, _ = qpsk_errors(qpsk, AWGN(), r, 2000, ebno_db)
    ber = err.mean().item()
    theory = q_function(math.sqrt(2 * 10 ** (ebno_db / 10)))
    assert abs(ber / theory - 1) < 0.05, (ebno_db, ber, theory)


def rayleigh_theory(ebno_db: float) -> float:
    g = 10 ** (ebno_db / 10)
    return 0.5 * (1 - math.sqrt(g / (1 + g)))


@pytest.mark.parametrize("mode", ["zf", "mmse"])
def test_qpsk_ber_rayleigh_fast_matches_theory(qpsk, mode):
    # fast fading, 400k bits at 10 dB: p = 2.33e-2, relative std <= 1.5% (bits of one symbol share h) < 5% / 3
    r = Realization(SEED, ids(100), trial=1)
    err, _ = qpsk_errors(qpsk, make_channel("rayleigh-fast"), r, 2000, 10.0, mode)
    theory = rayleigh_theory(10.0)
    assert abs(err.mean().item() / theory - 1) < 0.05


@pytest.mark.parametrize("ebno_db", [0.0, 5.0])
def test_qpsk_ber_rayleigh_block_matches_theory(qpsk, ebno_db):
    # one h per image: the estimator's variance is dominated by the h draws, so use many images (10000 h's).
    r = Realization(SEED, ids(10000), trial=2)
    err, out = qpsk_errors(qpsk, make_channel("rayleigh"), r, 16, ebno_db)
    assert torch.all(out.h == out.h[:, :1])  # block fading: one gain per image
    per_image = err.mean(dim=1).double()
    ber = per_image.mean().item()
    theory = rayleigh_theory(ebno_db)
    sigma = per_image.std().item() / math.sqrt(len(per_image))
    # 5% or, where the h draws make that less than 4 standard deviations (5 dB: sigma = 1.5%), 4 sigma
    assert abs(ber - theory) < max(0.05 * theory, 4 * sigma), (ber, theory, sigma)
    # conditional check without the h variance: the BER given the drawn h equals Q(sqrt(2 Eb/N0 |h|^2))
    g = 10 ** (ebno_db / 10)
    cond = torch.special.ndtr(-torch.sqrt(2 * g * out.h[:, 0].abs().double() ** 2))
    n_bits = err.numel()
    # given h, the 2k bits of an image are independent (I and Q see independent noise): binomial variance
    sigma_noise = math.sqrt((cond * (1 - cond)).sum().item() * err.shape[1]) / n_bits
    assert abs(ber - cond.mean().item()) < 4 * sigma_noise
    # and the drawn h have the right distribution: E[Q(sqrt(2 g |h|^2))] = closed form
    sigma_h = cond.std().item() / math.sqrt(len(cond))
    assert abs(cond.mean().item() - theory) < 4 * sigma_h


def test_qpsk_ber_rayleigh_coherence_blocks(qpsk):
    # L = 8: 200 images x 2000 symbols = 50000 independent h, enough for 5% at 5 dB (relative std 0.7%)
    r = Realization(SEED, ids(200), trial=3)
    err, out = qpsk_errors(qpsk, make_channel("rayleigh-block:L=8"), r, 2000, 5.0)
    assert torch.equal(out.h[:, 0:8], out.h[:, :1].expand(-1, 8)) and not torch.equal(out.h[:, 7], out.h[:, 8])
    theory = rayleigh_theory(5.0)
    assert abs(err.mean().item() / theory - 1) < 0.05


# ------------------------------------------------------------------------------------------- SNR and power


def test_awgn_empirical_snr():
    # 200k noise samples per image: std of the power estimate 1/sqrt(n) = 0.22% = 0.0097 dB (0.05 dB = 5 sigma)
    snr = torch.tensor([-3.0, 0.0, 7.5, 15.0])
    k = 200_000
    r = Realization(SEED, ["a", "b", "c", "d"], trial=0)
    s = normalize_power(torch.polar(torch.ones(4, k), torch.rand(4, k, generator=torch.Generator().manual_seed(0)) * 6.3))
    for ch in (AWGN(), make_channel("rayleigh-fast")):
        out = ch(s, snr, r)
        noise = out.y - out.h * s
        measured = 10 * torch.log10(1.0 / (noise.abs() ** 2).mean(dim=1))
        assert torch.all((measured - snr).abs() < 0.05), measured
        assert torch.allclose(out.n0, 10 ** (-snr / 10)) and torch.equal(out.snr_db, snr)


def test_scalar_snr_broadcasts():
    out = AWGN()(torch.ones(3, 5, dtype=torch.complex64), 10.0, Realization(0, ids(3), 0))
    assert out.snr_db.shape == (3,) and torch.allclose(out.n0, torch.full((3,), 0.1))


def test_normalize_power_per_image_variable_lengths():
    gen = torch.Generator().manual_seed(5)
    s = torch.complex(torch.randn(4, 100, generator=gen), torch.randn(4, 100, generator=gen)) * torch.tensor(
        [[0.1], [3.0], [1.0], [50.0]])
    length = torch.tensor([100, 37, 1, 64])
    for p in (1.0, 2.0):
        x = normalize_power(s, length, power=p)
        assert torch.allclose(average_power(x, length), torch.full((4,), p), rtol=1e-5)
        mask = torch.arange(100)[None, :] >= length[:, None]
        assert torch.all(x[mask] == 0)
    full = normalize_power(s)
    assert torch.allclose((full.abs() ** 2).mean(dim=1), torch.ones(4), rtol=1e-5)


MODELS = ["rayleigh", "rayleigh-block:L=16", "rayleigh-fast", "rician:K=4", "rician-block:K=0.5,L=8",
          "rician-fast:K=4", "tdl-a", "tdl-a:speed=30", "tdl-c:ds=300e-9,speed=3", "tdl-d:speed=3", "tdl-a30"]


@pytest.fixture(scope="module")
def channels_by_spec():
    return {spec: make_channel(spec) for spec in MODELS + ["awgn"]}


@pytest.mark.parametrize("spec", MODELS)
def test_mean_gain_power_is_one(channels_by_spec, spec):
    # per-image mean of |h|^2 over 128 symbols, 2000 images: |mean - 1| < 4 standard errors (and < 0.06)
    r = Realization(SEED, ids(2000), trial=4)
    h = channels_by_spec[spec].gains(r, 128)
    assert h.shape == (2000, 128) and h.dtype == torch.complex64
    per_image = (h.abs() ** 2).mean(dim=1).double()
    se = per_image.std().item() / math.sqrt(len(per_image))
    assert abs(per_image.mean().item() - 1) < min(4 * se + 1e-3, 0.06), (per_image.mean().item(), se)


def test_tdl_profile_and_frequency_correlation(channels_by_spec):
    ch = channels_by_spec["tdl-a"]
    assert abs(ch.powers.sum().item() + ch.los_power - 1) < 1e-5
    d = channels_by_spec["tdl-d:speed=3"]
    assert d.los and abs(d.powers.sum().item() + d.los_power - 1) < 1e-5
    # E[H(f + df) H(f)^*] = sum_l P_l exp(-j 2 pi df tau_l): checks delays, powers and the RE mapping
    r = Realization(SEED, ids(3000), trial=5)
    h = ch.gains(r, 128).to(torch.complex128)
    for lag in (1, 8, 32):
        emp = (h[:, lag:] * h[:, :-lag].conj()).mean()
        th = (ch.powers.double() * torch.exp(-2j * math.pi * lag * ch.subcarrier_spacing * ch.delays.double())).sum()
        assert abs(emp - th) < 0.06, (lag, emp, th)


def test_tdl_doppler_time_variation(channels_by_spec):
    # static channel: same response every OFDM symbol; moving terminal: it changes
    r = Realization(SEED, ids(4), trial=0)
    h0 = channels_by_spec["tdl-a"].gains(r, 128 * 20).reshape(4, 20, 128)
    assert torch.equal(h0[:, 0], h0[:, 19])
    h1 = channels_by_spec["tdl-a:speed=30"].gains(r, 128 * 20).reshape(4, 20, 128)
    assert not torch.allclose(h1[:, 0], h1[:, 19])


def test_rician_moments():
    # E|h|^4 = (K^2 + 4K + 2) / (K + 1)^2 for unit-power Rician; 20000 independent draws, 4 standard errors
    r = Realization(SEED, ids(20), trial=6)
    for K in (0.0, 1.0, 4.0):
        p = RicianFading(K, coherence=1).gains(r, 1000).abs().double() ** 2
        m4 = (p**2).mean().item()
        se = (p**2).std().item() / math.sqrt(p.numel())
        assert abs(m4 - (K * K + 4 * K + 2) / (K + 1) ** 2) < 4 * se


def test_rician_large_k_tends_to_unit_gain():
    r = Realization(SEED, ids(50), trial=0)
    spread = [((RicianFading(K, fast=True).gains(r, 200).abs() - 1).abs().mean().item()) for K in (1, 10, 100, 1e4)]
    assert all(a > b for a, b in zip(spread, spread[1:]))
    assert (RicianFading(1e8).gains(r, 10).abs() - 1).abs().max() < 1e-3
    h = make_channel("rician-fast:K=inf").gains(r, 10)
    assert torch.allclose(h.abs(), torch.ones_like(h.abs()))
    assert torch.allclose(h, h[:, :1].expand(-1, 10))  # fast Rician: LOS phase per image, no diffuse part left
    assert not torch.allclose(h[0, 0], h[1, 0])


# --------------------------------------------------------------------------------- identical realizations


@pytest.mark.parametrize("spec", ["awgn"] + MODELS)
def test_identical_realizations(channels_by_spec, spec):
    ch = channels_by_spec[spec]
    gen = torch.Generator().manual_seed(7)
    k = 300
    s = normalize_power(torch.complex(torch.randn(3, 1000, generator=gen), torch.randn(3, 1000, generator=gen)))
    names = ["kodim01", "kodim02", "kodim03"]
    full = ch(s[:, :k], 5.0, Realization(SEED, names, trial=0))

    def same(a: ChannelOutput, b: ChannelOutput, rows, n):
        # gains are bit-identical; y = h s + n may differ by 1 ulp because torch's vectorised complex multiply
        # rounds the last elements of a buffer differently from the others (so the tolerance is float32 eps)
        return torch.equal(a.h, b.h[rows, :n]) and torch.allclose(a.y, b.y[rows, :n], rtol=0, atol=1e-6)

    # other batch composition and size, shorter transmission (prefix): same numbers for the same image
    sub = ch(s[[2, 0], :100], 5.0, Realization(SEED, ["kodim03", "kodim01"], trial=0))
    assert same(sub, full, [2, 0], 100)
    # longer transmission of one image alone: its first k symbols are unchanged
    long = ch(s[1:2], 5.0, Realization(SEED, ["kodim02"], trial=0))
    assert same(ChannelOutput(long.y[:, :k], long.h[:, :k], long.n0, long.snr_db), full, [1], k)
    # the subset helper gives the same streams
    assert torch.equal(ch.gains(Realization(SEED, names, 0).subset([1]), k), full.h[1:2])
    # another trial, another seed, another image: different noise (and gains for fading channels)
    for other in (Realization(SEED, names, trial=1), Realization(SEED + 1, names, trial=0)):
        o = ch(s[:, :k], 5.0, other)
        assert not torch.allclose(o.y, full.y)
        if spec != "awgn":
            assert not torch.allclose(o.h, full.h)
    assert not torch.allclose(full.y[0] - full.h[0] * s[0, :k], full.y[1] - full.h[1] * s[1, :k])
    if spec != "awgn":
        assert not torch.allclose(full.h[0], full.h[1])


def test_gains_are_the_same_at_every_snr(channels_by_spec):
    ch = channels_by_spec["rician:K=4"]
    r = Realization(SEED, ids(4), trial=0)
    s = torch.ones(4, 50, dtype=torch.complex64)
    a, b = ch(s, 0.0, r), ch(s, 20.0, r)
    assert torch.equal(a.h, b.h)
    assert torch.allclose((a.y - a.h * s) * 10 ** (-20 / 20), b.y - b.h * s, atol=1e-6)  # same unit noise


# --------------------------------------------------------------------------------------------- spec grammar


@pytest.mark.parametrize("spec, cls, name", [
    ("awgn", AWGN, "awgn"),
    ("rayleigh", RayleighFading, "rayleigh"),
    ("rayleigh-block", RayleighFading, "rayleigh"),
    ("RAYLEIGH-BLOCK:l=64", RayleighFading, "rayleigh-block:L=64"),
    ("rayleigh:L=64", RayleighFading, "rayleigh-block:L=64"),
    ("rayleigh-fast", RayleighFading, "rayleigh-fast"),
    (" rician:K=4 ", RicianFading, "rician:K=4"),
    ("rician:K=4,L=32", RicianFading, "rician-block:K=4,L=32"),
    ("rician-block:L=32,k=4", RicianFading, "rician-block:K=4,L=32"),
    ("rician-fast:K=0.5", RicianFading, "rician-fast:K=0.5"),
    ("rician-fast:K=inf", RicianFading, "rician-fast:K=inf"),
    ("tdl-a", TDLChannel, "tdl-a:ds=100e-9,fc=3.5e9,speed=0,scs=30e3,fft=128"),
    ("tdl-a:ds=300e-9,speed=3", TDLChannel, "tdl-a:ds=300e-9,fc=3.5e9,speed=3,scs=30e3,fft=128"),
    ("tdl-e:fft=72,scs=15e3,fc=2e9", TDLChannel, "tdl-e:ds=100e-9,fc=2e9,speed=0,scs=15e3,fft=72"),
    ("tdl-c300:speed=1", TDLChannel, "tdl-c300:fc=3.5e9,speed=1,scs=30e3,fft=128"),
])
def test_make_channel_specs(spec, cls, name):
    ch = make_channel(spec)
    assert isinstance(ch, cls) and ch.name == name
    assert make_channel(ch.name).name == name  # canonical names round-trip
    text = ch.describe()
    assert text and "\n" not in text


def test_spec_parameters():
    assert make_channel("rayleigh-block:L=64").coherence == 64
    assert make_channel("rayleigh-fast").coherence == 1
    ric = make_channel("rician-fast:K=4")
    assert ric.k_factor == 4.0 and ric.fast
    tdl = make_channel("tdl-b:ds=30e-9,speed=3,fc=3.5e9,scs=30e3,fft=72")
    assert (tdl.model, tdl.delay_spread, tdl.speed, tdl.fft_size) == ("B", 30e-9, 3.0, 72)
    assert abs(tdl.doppler_hz - 3 * 3.5e9 / 299792458.0) < 1e-9
    assert parse_channel_spec("rician:K=2,L=8") == ("rician", {"K": 2.0, "L": 8})


@pytest.mark.parametrize("spec", [
    "", "foo", "rayleigh-slow", "rician", "rician:L=8", "rician:K=-1", "rician:K=nan", "rician:K=abc",
    "rician:K=4,K=5", "rician-fast:K=4,L=8", "rayleigh:L=0", "rayleigh:L=2.5", "rayleigh:L=", "rayleigh:L",
    "rayleigh:", "rayleigh:M=3", "awgn:K=1", "rayleigh-fast:L=4", "tdl-a:ds=-1", "tdl-a:speed=-3",
    "tdl-a:fft=0", "tdl-a:ds=inf", "tdl-a30:ds=30e-9", "tdl-f", "tdl-a:,", "rician:K=4,,L=2",
])
def test_bad_specs_raise_one_line(spec):
    with pytest.raises(ValueError) as err:
        make_channel(spec)
    msg = str(err.value)
    assert "\n" not in msg and ("use " in msg or "accepted" in msg), msg


def test_unknown_name_lists_accepted_forms():
    with pytest.raises(ValueError, match="accepted channel specs: awgn; rayleigh"):
        make_channel("raleigh")


def test_registry_lists_every_channel():
    rows = [r for r in available_channels() if r[1] == "built-in"]  # installed plugins follow
    assert [r[0] for r in rows] == list(CHANNEL_INFO)
    assert {"awgn", "rayleigh", "rayleigh-fast", "rician", "rician-fast", "tdl-a", "tdl-e", "tdl-a30"} <= set(
        CHANNEL_INFO)
    for name, origin, status, summary in rows:
        assert status == "ok" and summary and "\n" not in summary  # sionna is installed here


def test_direct_construction_errors():
    with pytest.raises(ValueError):
        RicianFading(4.0, coherence=8, fast=True)
    with pytest.raises(ValueError):
        RayleighFading(coherence=0)
    with pytest.raises(ValueError):
        TDLChannel("Z")
    with pytest.raises(ValueError):  # batch of 2, realization of 1 image
        AWGN()(torch.ones(2, 3, dtype=torch.complex64), 0.0, Realization(0, ["a"], 0))


def test_gains_on_realization_device():
    r = Realization(SEED, ids(2), trial=0, device="cpu")
    for ch in (RayleighFading(), RicianFading(2.0, fast=True)):
        h = ch.gains(r, 10)
        assert h.device == r.device and h.dtype == torch.complex64 and h.shape == (2, 10)
    assert np.isfinite(make_channel("tdl-d").gains(r, 10).abs().numpy()).all()
