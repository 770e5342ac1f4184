r"""Pilot-based channel estimation (``channels.pilots``) against theory.

Monte Carlo checks use fixed seeds (deterministic) and a tolerance of Z = 5 standard errors of the estimator,
computed from the sample size: for an exponential variable (|e|^2 of a circular Gaussian error) the standard error
of the mean of N samples is mean / sqrt(N); elsewhere the stated variance, or the sample standard deviation of
independent per-image (or per-block) statistics.

Effective SINR of ZF with estimated CSI (tested in ``test_zf_effective_sinr_lmmse``). On Rayleigh block fading the
LMMSE estimate from P pilots decomposes the gain as h = h_hat + e with e ~ CN(0, s2), s2 = N0 / (P + N0),
independent of h_hat ~ CN(0, 1 - s2) (jointly Gaussian, orthogonality principle). ZF with the estimate gives

    s_hat = y / h_hat = s + (e s + n) / h_hat,   so for |s| = 1:   E[|s_hat - s|^2 | h_hat] = (N0 + s2) / |h_hat|^2,

i.e. the effective SINR is |h_hat|^2 / (N0 + s2) (perfect CSI: |h|^2 / N0), with mean (1 - s2) / (N0 + s2).
With LS (h_hat = h + e, e ~ CN(0, N0/P)), |h_hat|^2 |s_hat - s|^2 = |n - e s|^2 has mean N0 (1 + 1/P), but e is
correlated with h_hat, so only the unconditional mean is tested.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from channels import AWGN, Channel, RayleighFading, Realization, RicianFading, equalize, make_channel
from channels.pilots import (
    CSI,
    FAST_PERIOD,
    MAX_PILOTS,
    BlockPilots,
    InterpolatedPilots,
    OFDMPilots,
    PilotLink,
    linear_weights,
    parse_csi,
    tdl_frequency_covariance,
)

SEED = 2024
Z = 5.0


def ids(n: int, prefix: str = "img") -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(n)]


def unit_symbols(b: int, k: int, seed: int = 0) -> torch.Tensor:
    """B x k unit-modulus symbols (random phases) from a fixed torch generator."""
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(b, k, generator=g, dtype=torch.float64) * (2 * math.pi)
    return torch.polar(torch.ones_like(phase), phase).to(torch.complex64)


def assert_mean(samples: torch.Tensor, expected: float, std: float | None = None, what: str = "") -> None:
    """|mean - expected| <= Z standard errors (``std`` the per-sample standard deviation, else the sample's)."""
    x = samples.double().reshape(-1)
    n = x.numel()
    sd = float(x.std()) if std is None else std
    tol = Z * sd / math.sqrt(n)
    assert abs(float(x.mean()) - expected) <= tol, f"{what}: mean {float(x.mean()):.6g}, theory {expected:.6g}, " \
                                                   f"tolerance {tol:.3g} ({n} samples)"


# -- the CSI grammar -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, method, p, label", [
    ("perfect", "perfect", 0, "perfect"), (" Perfect ", "perfect", 0, "perfect"), ("ls", "ls", 1, "ls:1"),
    ("ls:2", "ls", 2, "ls:2"), ("LMMSE", "lmmse", 1, "lmmse:1"), ("lmmse: 64", "lmmse", 64, "lmmse:64"),
])
def test_parse_csi(spec, method, p, label):
    csi = parse_csi(spec)
    assert (csi.method, csi.pilots, csi.label) == (method, p, label)
    assert parse_csi(csi.label) == csi
    assert csi.perfect == (method == "perfect")


@pytest.mark.parametrize("spec", ["", "mmse", "ls:0", f"ls:{MAX_PILOTS + 1}", "ls:1.5", "ls:", "lmmse:x", "perfect:1",
                                  "ls:2:3", "ls:-1", "ls:١", None, 3])
def test_parse_csi_errors_are_one_line(spec):
    with pytest.raises(ValueError) as e:
        parse_csi(spec)
    msg = str(e.value)
    assert "\n" not in msg and "accepted CSI specs" in msg and "ls[:P]" in msg


def test_csi_dataclass_checks():
    with pytest.raises(ValueError):
        CSI("ls", 0)
    with pytest.raises(ValueError):
        CSI("perfect", 2)
    with pytest.raises(ValueError):
        CSI("zf", 1)


# -- layouts: pilots() and max_data() ---------------------------------------------------------------------------


def _schemes():
    eye = torch.eye(12, dtype=torch.complex128)
    return [BlockPilots(1, "ls", None), BlockPilots(3, "lmmse", None), BlockPilots(2, "ls", 8),
            BlockPilots(7, "ls", 8), InterpolatedPilots(4, "ls", 16), InterpolatedPilots(1, "ls", 2),
            OFDMPilots(1, "ls", 12, eye, slot=3), OFDMPilots(5, "ls", 12, eye, slot=3),
            OFDMPilots(12, "ls", 12, eye, slot=3), OFDMPilots(5, "ls", 12, eye, slot=1),
            OFDMPilots(3, "ls", 12, eye, slot=14)]


@pytest.mark.parametrize("scheme", _schemes(), ids=lambda s: f"{type(s).__name__}-{s.p}")
def test_pilots_and_max_data_exact(scheme):
    prev = 0
    for b in range(0, 500):
        m = scheme.max_data(b)
        assert m >= prev, "max_data must be monotone"
        prev = m
        assert m + scheme.pilots(m) == scheme.frame_length(m) <= b
        assert scheme.frame_length(m + 1) > b, f"one more data symbol fits budget {b}"
    for k in range(0, 300):
        n = scheme.frame_length(k)
        d, p = scheme.data_positions(k), scheme.pilot_positions(k)
        assert d.numel() == k and n == k + scheme.pilots(k)
        both = torch.cat([d, p])
        assert both.unique().numel() == both.numel() and (both < n).all() and (both >= 0).all()
        assert bool((d[1:] > d[:-1]).all()) and bool((p[1:] > p[:-1]).all())
        if k:
            assert p.numel() >= 1, "every frame with data carries pilots"
        idle = n - both.numel()
        if isinstance(scheme, OFDMPilots):
            # the unused resource elements complete the last pilot comb: after the last data symbol, in its OFDM symbol
            assert idle <= scheme.fft - scheme.p
            if idle:
                used = set(both.tolist())
                gaps = [i for i in range(n) if i not in used]
                assert min(gaps) > int(d[-1]) and max(gaps) // scheme.fft == int(d[-1]) // scheme.fft
        else:
            assert idle == 0
    # a frame is a prefix of the longer frame's role sequence (identical realizations)
    d300, p300 = scheme.data_positions(300), scheme.pilot_positions(300)
    for k in (1, 7, 50, 299):
        assert torch.equal(scheme.data_positions(k), d300[:k])
        p = scheme.pilot_positions(k)
        assert torch.equal(p, p300[: p.numel()])


def test_block_layout_by_hand():
    s = BlockPilots(2, "ls", 8)  # 2 pilots + 6 data per block of 8
    assert s.frame_length(12) == 16 and s.frame_length(13) == 19 and s.pilots(13) == 6
    assert s.max_data(16) == 12 and s.max_data(18) == 12 and s.max_data(19) == 13
    assert s.data_positions(8).tolist() == [2, 3, 4, 5, 6, 7, 10, 11]
    assert s.pilot_positions(8).tolist() == [0, 1, 8, 9]
    one = BlockPilots(3, "ls", None)
    assert one.pilots(1000) == 3 and one.max_data(3) == 0 and one.max_data(4) == 1 and one.pilots(0) == 0


def test_link_budget_rules():
    perfect = PilotLink("perfect", AWGN())
    assert perfect.pilots(100) == 0 and perfect.max_data(77) == 77
    link = PilotLink("ls:4", RayleighFading(coherence=64))
    for b in (0, 4, 5, 63, 64, 68, 1000, 3072):
        m = link.max_data(b)
        assert m + link.pilots(m) <= b < m + 1 + link.pilots(m + 1)
    with pytest.raises(ValueError):
        link.max_data(-1)
    assert "perfect CSI" in perfect.describe() and "perfect CSI" in PilotLink("perfect", RayleighFading()).describe()
    assert "perfect CSI" not in link.describe() and "2 pilot" not in link.describe() and "4 pilot" in link.describe()


@pytest.mark.parametrize("csi, channel, words", [
    ("ls:8", RayleighFading(coherence=8), ["ls:8", "rayleigh-block:L=8", "P < 8"]),
    ("lmmse:3", RicianFading(4.0, coherence=2), ["lmmse:3", "rician-block:K=4,L=2"]),
    (f"ls:{FAST_PERIOD}", RayleighFading(coherence=1), ["rayleigh-fast", f"D={FAST_PERIOD}"]),
])
def test_pilots_that_do_not_fit_are_one_line_errors(csi, channel, words):
    with pytest.raises(ValueError) as e:
        PilotLink(csi, channel)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


@pytest.mark.parametrize("spec", ["awgn", "rayleigh-block:L=16", "rayleigh-fast", "tdl-a:fft=32"])
def test_empty_frame(spec):
    est = PilotLink("lmmse:2", make_channel(spec)).transmit(torch.zeros(2, 0, dtype=torch.complex64), 5.0,
                                                            Realization(SEED, ids(2), 0))
    assert est.out.y.shape == est.out.h.shape == est.err_var.shape == (2, 0)
    assert est.n_pilots.tolist() == [0, 0] and est.nmse.tolist() == [0, 0]


def test_linear_weights_hold_at_the_ends():
    i0, i1, w = linear_weights(torch.arange(10), torch.tensor([2, 6]))
    v = torch.tensor([1.0, 5.0], dtype=torch.float64)
    got = (1 - w) * v[i0] + w * v[i1]
    assert got.tolist() == [1, 1, 1, 2, 3, 4, 5, 5, 5, 5]


# -- perfect CSI and identical realizations ---------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["awgn", "rayleigh", "rayleigh-block:L=16", "rician-fast:K=2"])
def test_perfect_is_the_plain_channel_bit_for_bit(spec):
    ch = make_channel(spec)
    s = unit_symbols(3, 40, seed=1)
    snr = torch.tensor([0.0, 7.5, 20.0])
    ref = ch(s, snr, Realization(SEED, ids(3), 2))
    est = PilotLink("perfect", ch).transmit(s, snr, Realization(SEED, ids(3), 2))
    for a, b in [(est.out.y, ref.y), (est.out.h, ref.h), (est.out.n0, ref.n0), (est.out.snr_db, ref.snr_db),
                 (est.h_true, ref.h)]:
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert est.n_pilots.tolist() == [0, 0, 0] and est.nmse.tolist() == [0, 0, 0] and est.frame is None


@pytest.fixture(scope="module")
def tdl_static():
    """TDL-A, 300 ns delay spread, static (speed 0), 64 subcarriers."""
    return make_channel("tdl-a:ds=300e-9,fft=64")


@pytest.mark.parametrize("spec, csi", [("awgn", "ls:2"), ("rayleigh", "lmmse:3"), ("rayleigh-block:L=16", "ls:2"),
                                       ("rician:K=4,L=24", "lmmse:4"), ("rayleigh-fast", "ls:1"),
                                       ("tdl-a:speed=30,fft=32", "ls:4")])
def test_identical_realizations(spec, csi):
    ch = make_channel(spec)
    link = PilotLink(csi, ch)
    k1, k2 = 50, 300
    a = unit_symbols(4, k1, seed=1)
    b = unit_symbols(4, k2, seed=2)  # another codec: other symbols, more of them
    b_prefix = torch.cat([a, b[:, k1:]], dim=1)  # a codec whose first k1 symbols are a's
    ea = link.transmit(a, 10.0, Realization(SEED, ids(4), 1))
    eb = link.transmit(b, 10.0, Realization(SEED, ids(4), 1))
    ep = link.transmit(b_prefix, 10.0, Realization(SEED, ids(4), 1))
    assert torch.equal(ea.h_true, eb.h_true[:, :k1]), "same gains at the first k1 data positions"
    assert torch.equal(ea.out.y, ep.out.y[:, :k1]), "same noise: same y for the same first symbols"
    na = ea.n_pilots[0].item()
    pa = link.scheme.pilot_positions(k1)
    # the pilots do not depend on the data: identical pilot observations
    assert torch.equal(link.scheme.ls_at_pilots(ea.frame.y, k1), eb.frame.y[:, pa])
    assert torch.equal(ea.frame.y[:, pa], ep.frame.y[:, pa]) and na == link.pilots(k1)
    if spec in ("awgn", "rayleigh", "rayleigh-block:L=16", "rician:K=4,L=24"):
        assert torch.equal(ea.out.h, eb.out.h[:, :k1]), "block estimates depend only on the block's pilots"
    # same image ids and trial in another batch (other order, other size): the same rows, bit for bit
    order = [3, 1]
    sub = link.transmit(a[order], 10.0, Realization(SEED, [ids(4)[i] for i in order], 1))
    for x, y in [(sub.out.y, ea.out.y), (sub.out.h, ea.out.h), (sub.h_true, ea.h_true), (sub.nmse, ea.nmse)]:
        assert torch.equal(x, y[order])
    other = link.transmit(a, 10.0, Realization(SEED, ids(4), 2))
    assert not torch.equal(other.out.y, ea.out.y), "another trial gives other draws"


# -- block fading: LS and LMMSE against theory -------------------------------------------------------------------

B_BLOCK, L_BLOCK, BLOCKS = 100, 32, 40  # 4000 independent coherence blocks


def block_errors(csi: str, snr_db: float, channel: Channel | None = None):
    """(estimate, true gain) of every coherence block: B x BLOCKS each."""
    ch = channel or RayleighFading(coherence=L_BLOCK)
    link = PilotLink(csi, ch)
    d = L_BLOCK - link.csi.pilots
    est = link.transmit(unit_symbols(B_BLOCK, BLOCKS * d), snr_db, Realization(SEED, ids(B_BLOCK), 0))
    assert est.n_pilots[0].item() == BLOCKS * link.csi.pilots
    return est.out.h[:, ::d], est.h_true[:, ::d], est


@pytest.mark.parametrize("p", [1, 2, 8])
@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_ls_error_variance_is_n0_over_p(p, snr_db):
    h_hat, h, est = block_errors(f"ls:{p}", snr_db)
    var = 10 ** (-snr_db / 10) / (p * abs(1.0) ** 2)  # N0 / (P |pilot|^2), unit-power pilots
    e2 = (h_hat - h).abs() ** 2  # exponential with mean N0/P: standard deviation = mean
    assert_mean(e2, var, std=var, what=f"LS P={p} SNR={snr_db}")
    assert torch.allclose(est.err_var, torch.full_like(est.err_var, var))
    # unbiased: E[h_hat - h] = 0
    assert_mean((h_hat - h).real, 0.0, std=math.sqrt(var / 2), what="LS bias")


@pytest.mark.parametrize("p", [1, 4])
@pytest.mark.parametrize("snr_db", [0.0, 10.0])
def test_lmmse_error_variance_and_orthogonality(p, snr_db):
    n0 = 10 ** (-snr_db / 10)
    s2 = n0 / (p + n0)
    h_hat, h, est = block_errors(f"lmmse:{p}", snr_db)
    e = h - h_hat
    assert_mean(e.abs() ** 2, s2, std=s2, what=f"LMMSE MSE P={p} SNR={snr_db}")
    assert_mean(h_hat.abs() ** 2, 1 - s2, std=1 - s2, what="E|h_hat|^2 = 1 - s2")
    # orthogonality principle: E[h_hat^* e] = 0 (|h_hat^* e| has standard deviation sqrt((1 - s2) s2))
    assert_mean((h_hat.conj() * e).real, 0.0, std=math.sqrt((1 - s2) * s2 / 2), what="orthogonality")
    assert torch.allclose(est.err_var, torch.full_like(est.err_var, s2))
    # LMMSE beats LS at every SNR
    ls_hat, ls_h, _ = block_errors(f"ls:{p}", snr_db)
    assert float(e.abs().pow(2).mean()) < float((ls_hat - ls_h).abs().pow(2).mean())


def test_lmmse_on_rician_and_awgn_uses_the_unit_prior():
    # Rician with a uniform LOS phase has E h = 0, E|h|^2 = 1: the same linear MMSE and the same error N0/(P+N0)
    n0 = 10 ** (-0.5)
    h_hat, h, _ = block_errors("lmmse:2", 5.0, RicianFading(4.0, coherence=L_BLOCK))
    s2 = n0 / (2 + n0)
    assert_mean((h - h_hat).abs() ** 2, s2, what="Rician LMMSE")
    # AWGN: one block per image, estimate shrunk towards 0 by 1 / (1 + N0/P): mean square error N0 / (P + N0)
    link = PilotLink("lmmse:2", AWGN())
    est = link.transmit(unit_symbols(400, 8), 5.0, Realization(SEED, ids(400), 0))
    assert est.n_pilots[0].item() == 2
    assert_mean((est.out.h[:, 0] - 1).abs() ** 2, s2, what="AWGN LMMSE")
    ls = PilotLink("ls:2", AWGN()).transmit(unit_symbols(400, 8), 5.0, Realization(SEED, ids(400), 0))
    assert_mean((ls.out.h[:, 0] - 1).abs() ** 2, n0 / 2, std=n0 / 2, what="AWGN LS")


def test_zf_effective_sinr_lmmse():
    """Module docstring: E[|h_hat|^2 |s_hat - s|^2 | h_hat] = N0 + s2 for weak and strong estimates alike."""
    p, snr_db = 2, 5.0
    n0 = 10 ** (-snr_db / 10)
    s2 = n0 / (p + n0)
    d = L_BLOCK - p
    _, _, est = block_errors(f"lmmse:{p}", snr_db)
    s = unit_symbols(B_BLOCK, BLOCKS * d)
    rx = equalize(est.out, "zf")
    x = (est.out.h.abs() ** 2 * (rx.s_hat - s).abs() ** 2).reshape(B_BLOCK, BLOCKS, d).mean(dim=2).reshape(-1)
    g = est.out.h[:, ::d].abs().reshape(-1) ** 2
    sd = math.sqrt(s2 ** 2 + (2 * s2 * n0 + n0 ** 2) / d)  # Var of one block's mean of |e s + n|^2
    weak, strong = g <= g.median(), g > g.median()
    assert_mean(x[weak], n0 + s2, std=sd, what="weak half")
    assert_mean(x[strong], n0 + s2, std=sd, what="strong half")
    # effective SINR |h_hat|^2 / (N0 + s2): mean (1 - s2) / (N0 + s2), below perfect CSI's 1 / N0
    sinr = g / (n0 + s2)
    assert_mean(sinr, (1 - s2) / (n0 + s2), std=(1 - s2) / (n0 + s2), what="mean effective SINR")
    assert (1 - s2) / (n0 + s2) < 1 / n0


def test_zf_with_ls_estimate():
    p, snr_db = 4, 5.0
    n0 = 10 ** (-snr_db / 10)
    d = L_BLOCK - p
    _, _, est = block_errors(f"ls:{p}", snr_db)
    s = unit_symbols(B_BLOCK, BLOCKS * d)
    rx = equalize(est.out, "zf")
    x = (est.out.h.abs() ** 2 * (rx.s_hat - s).abs() ** 2).reshape(B_BLOCK, BLOCKS, d).mean(dim=2)
    ve = n0 / p
    sd = math.sqrt(ve ** 2 + (2 * ve * n0 + n0 ** 2) / d)
    assert_mean(x, n0 * (1 + 1 / p), std=sd, what="LS ZF effective noise")


def test_perfect_csi_is_the_limit_of_many_pilots():
    ch = RayleighFading(coherence=64)
    r = Realization(SEED, ids(50), 0)
    k = 64 * 12
    s = unit_symbols(50, k)
    nmse, dist = [], []
    for p in (1, 4, 16, 63):
        est = PilotLink(f"ls:{p}", ch).transmit(s, 10.0, r)
        perfect_rx = equalize(type(est.out)(est.out.y, est.h_true, est.out.n0, est.out.snr_db), "mmse")
        rx = equalize(est.out, "mmse")
        nmse.append(float(est.nmse.mean()))
        dist.append(float((rx.s_hat - perfect_rx.s_hat).abs().pow(2).mean()))
    assert all(a > 2 * b for a, b in zip(nmse, nmse[1:])), nmse
    assert all(a > b for a, b in zip(dist, dist[1:])), dist
    # noise-free pilots: the estimate is the true gain and the decoded symbols are the perfect-CSI ones
    est = PilotLink("ls:1", ch).transmit(s, 150.0, r)
    assert float(est.nmse.max()) < 1e-12
    exact = equalize(type(est.out)(est.out.y, est.h_true, est.out.n0, est.out.snr_db), "zf")
    assert torch.allclose(equalize(est.out, "zf").s_hat, exact.s_hat, atol=1e-5)
    assert torch.allclose(exact.s_hat, s, atol=1e-4)


# -- fast fading and channels the module does not know ------------------------------------------------------------


def test_fast_fading_cannot_be_tracked():
    """i.i.d. gains: E|h_hat_t - h_t|^2 = 1 + ((1-w)^2 + w^2)(1 + N0) for LS (h_t independent of every pilot)."""
    n0 = 0.1
    link = PilotLink("ls:2", make_channel("rayleigh-fast"))
    k = (FAST_PERIOD - 2) * 20
    est = link.transmit(unit_symbols(200, k), 10.0, Realization(SEED, ids(200), 0))
    _, _, w = linear_weights(link.scheme.data_positions(k), link.scheme.pilot_positions(k))
    theory = float((1 + ((1 - w) ** 2 + w ** 2) * (1 + n0)).mean())
    per_image = (est.out.h - est.h_true).abs().pow(2).mean(dim=1)
    assert_mean(per_image, theory, what="fast-fading LS error")
    assert float(est.nmse.mean()) > 1.4


class SlowPhase(Channel):
    """A channel the pilot module does not know: unit gain whose phase turns once every 4000 uses."""

    name = "slow-phase"

    def gains(self, realization: Realization, k: int) -> torch.Tensor:
        phi0 = realization.uniform("phase", 1).double() * 2 * math.pi
        t = torch.arange(k, dtype=torch.float64)[None, :]
        arg = phi0 + 2 * math.pi * t / 4000
        return torch.polar(torch.ones_like(arg), arg).to(torch.complex64)


def test_slowly_varying_channel_is_tracked_by_interpolation():
    link = PilotLink("ls:1", SlowPhase())
    assert isinstance(link.scheme, InterpolatedPilots)
    k = (FAST_PERIOD - 1) * 40
    est = link.transmit(unit_symbols(100, k), 20.0, Realization(SEED, ids(100), 0))
    # the error is the pilot noise carried through the interpolation (err_var); the curvature of the phase over
    # 16 uses adds < 1e-4
    per_image = (est.out.h - est.h_true).abs().pow(2).mean(dim=1)
    assert_mean(per_image, float(est.err_var.mean()), what="interpolated LS on a slow channel")
    assert float(est.nmse.mean()) < 0.01


# -- TDL over OFDM -----------------------------------------------------------------------------------------------


def tdl_run(ch, csi: str, snr_db: float, b: int = 48, slots: int = 3):
    link = PilotLink(csi, ch)
    k = link.scheme._count_data(slots * link.scheme.slot * ch.fft_size)
    return link, link.transmit(unit_symbols(b, k), snr_db, Realization(SEED, ids(b), 0)), k


def test_tdl_ls_at_pilots_has_error_variance_n0(tdl_static):
    link, est, k = tdl_run(tdl_static, "ls:8", 10.0)
    pos = link.scheme.pilot_positions(k)
    e = link.scheme.ls_at_pilots(est.frame.y, k) - est.frame.h[:, pos]
    assert_mean(e.abs() ** 2, 0.1, std=0.1, what="LS at pilot REs")


def test_tdl_all_pilot_comb_closed_form(tdl_static):
    """P = F: every subcarrier of a pilot OFDM symbol is a pilot, so on a static channel the error at OFDM symbol
    m = S j + r between pilot symbols is N0 ((1 - r/S)^2 + (r/S)^2), and N0 after the last pilot symbol."""
    f = tdl_static.fft_size
    link, est, k = tdl_run(tdl_static, f"ls:{f}", 10.0, slots=2)
    sch = link.scheme
    m = sch.data_positions(k) // f
    n_sym, n_ps = sch._num_symbols(k)
    a = (m % sch.slot).double() / sch.slot
    last = (n_ps - 1) * sch.slot
    theory = torch.where(m < last, (1 - a) ** 2 + a ** 2, torch.ones_like(a)) * 0.1
    assert torch.allclose(est.err_var[0].double(), theory, atol=1e-7)
    e2 = (est.out.h - est.h_true).abs() ** 2
    # one sample per image: the mean over its data REs (weights per RE known, noise independent)
    assert_mean(e2.mean(dim=1), float(theory.mean()), what="all-pilot comb, linear in time")


def test_tdl_nmse_falls_with_more_pilots(tdl_static):
    nmse = []
    for p in (2, 8, 32):
        _, est, _ = tdl_run(tdl_static, f"ls:{p}", 30.0)
        nmse.append(float(est.nmse.mean()))
    assert nmse[0] > 3 * nmse[1] > 9 * nmse[2], nmse


@pytest.mark.parametrize("csi", ["ls:8", "lmmse:8", "lmmse:2"])
def test_tdl_error_matches_the_receiver_model(tdl_static, csi):
    """Static channel: err_var = frequency-interpolation error (from the profile's covariance) + carried noise."""
    _, est, _ = tdl_run(tdl_static, csi, 15.0, b=64)
    per_image = (est.out.h - est.h_true).abs().pow(2).mean(dim=1)
    assert_mean(per_image, float(est.err_var.mean()), what=csi)


def test_tdl_lmmse_beats_ls(tdl_static):
    for p in (4, 16):
        _, ls, _ = tdl_run(tdl_static, f"ls:{p}", 10.0)
        _, lm, _ = tdl_run(tdl_static, f"lmmse:{p}", 10.0)
        assert float(lm.nmse.mean()) < 0.8 * float(ls.nmse.mean())


def test_tdl_layout_errors_and_description(tdl_static):
    with pytest.raises(ValueError) as e:
        PilotLink("ls:64", make_channel("tdl-a:fft=32"))
    assert "\n" not in str(e.value) and "fft=32" in str(e.value)
    link = PilotLink("lmmse:4", tdl_static)
    assert isinstance(link.scheme, OFDMPilots) and "LMMSE across subcarriers" in link.describe()
    assert link.label == "lmmse:4"


def test_tdl_covariance_matches_sionna(tdl_static):
    from sionna.phy.ofdm import tdl_freq_cov_mat

    ref = tdl_freq_cov_mat("A", 30e3, tdl_static.fft_size, 300e-9, precision="double", device="cpu")
    assert torch.allclose(tdl_frequency_covariance(tdl_static), ref, atol=1e-6)


def test_tdl_linear_interpolation_matches_sionna_inside_the_comb():
    """Sionna's LSChannelEstimator ("lin") on the same pilot grid gives the same estimates between the outermost
    pilots; outside them Sionna extrapolates where this module holds."""
    from sionna.phy.ofdm import LSChannelEstimator, PilotPattern, ResourceGrid

    f, slot, p = 32, 4, 5
    sch = OFDMPilots(p, "ls", f, torch.eye(f, dtype=torch.complex128), slot=slot)
    n_sym = 2 * slot + 1
    k = sch._count_data(n_sym * f)
    assert sch.frame_length(k) == n_sym * f
    g = torch.Generator().manual_seed(SEED)
    y = torch.complex(torch.randn(3, n_sym * f, generator=g), torch.randn(3, n_sym * f, generator=g))
    mine, _ = sch.estimate(y, torch.full((3,), 0.1), k)
    mask = np.zeros([1, 1, n_sym, f])
    for m in range(0, n_sym, slot):
        mask[0, 0, m, sch.q] = 1
    pp = PilotPattern(mask, np.ones([1, 1, int(mask.sum())], np.complex64), device="cpu")
    rg = ResourceGrid(num_ofdm_symbols=n_sym, fft_size=f, subcarrier_spacing=30e3, pilot_pattern=pp, device="cpu")
    h, _ = LSChannelEstimator(rg, interpolation_type="lin", device="cpu")(y.reshape(3, 1, 1, n_sym, f),
                                                                         torch.full((3,), 0.1))
    pos = sch.data_positions(k)
    ref = h.reshape(3, -1)[:, pos]
    q = pos % f
    inside = (q >= sch.q[0]) & (q <= sch.q[-1])
    assert torch.allclose(mine[:, inside], ref[:, inside], atol=1e-5)
