"""Finite constellations: quantisation SNR of a Gaussian input against numerical integration, unit power, and
identical channel realizations whatever the constellation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from channels.constellation import Constellation, constellation_points, parse_constellation


def reference_sqnr(points: np.ndarray) -> float:
    """SQNR (dB) of nearest-point mapping of s ~ CN(0, 1), with the mapped points rescaled to unit power, by
    integrating over a 2-D grid (density e^{-|s|^2} / pi): independent of any random draw."""
    g = np.linspace(-6, 6, 1201)
    re, im = np.meshgrid(g, g)
    s = re + 1j * im
    w = np.exp(-np.abs(s) ** 2) / math.pi * (g[1] - g[0]) ** 2
    q = points[np.abs(s.reshape(-1, 1) - points[None, :]).argmin(1)].reshape(s.shape)
    p = (w * np.abs(q) ** 2).sum() / w.sum()
    err = (w * np.abs(s - q / math.sqrt(p)) ** 2).sum() / w.sum()
    return float(-10 * math.log10(err / ((w * np.abs(s) ** 2).sum() / w.sum())))


@pytest.mark.parametrize("spec", ["qpsk", "qam16", "qam64", "psk8"])
def test_quantisation_snr_of_a_gaussian_input_matches_integration(spec):
    c = Constellation(spec)
    g = torch.Generator().manual_seed(0)
    n = 200_000
    s = torch.complex(torch.randn(1, n, generator=g), torch.randn(1, n, generator=g)) / math.sqrt(2)
    s = s / s.abs().pow(2).mean().sqrt()
    q, sqnr = c.quantize(s.to(torch.complex64))
    ref = reference_sqnr(c.points.numpy().astype(np.complex128))
    assert float(sqnr[0]) == pytest.approx(ref, abs=0.05)
    assert float(q.abs().pow(2).mean()) == pytest.approx(1.0, abs=1e-5)  # P = 1 per image


def test_more_points_quantise_finer_and_points_stay_on_the_constellation():
    g = torch.Generator().manual_seed(1)
    s = torch.complex(torch.randn(2, 4096, generator=g), torch.randn(2, 4096, generator=g)) / math.sqrt(2)
    sq = [float(Constellation(x).quantize(s)[1].mean()) for x in ("qpsk", "qam16", "qam64", "qam256")]
    assert sq == sorted(sq) and sq[-1] - sq[0] > 10
    c = Constellation("qam16")
    q, _ = c.quantize(s)
    # every mapped symbol is a constellation point times the image's one rescaling factor (unit power per image)
    back = q * (c.nearest(s).abs() ** 2).mean(1, keepdim=True).sqrt()
    dist = (back[..., None] - c.points[None, None, :]).abs().min(-1).values
    assert float(dist.max()) < 1e-5


def test_lengths_are_respected_and_exact_points_give_infinite_sqnr():
    c = Constellation("qpsk")
    pts = c.points
    s = torch.stack([pts.repeat(2), torch.cat([pts, torch.zeros(4, dtype=torch.complex64)])])
    q, sqnr = c.quantize(s, torch.tensor([8, 4]))
    assert torch.allclose(q[0], s[0]) and math.isinf(float(sqnr[0])) and math.isinf(float(sqnr[1]))
    assert torch.equal(q[1, 4:], torch.zeros(4, dtype=torch.complex64))


def test_identical_realizations_whatever_the_constellation():
    from channels import make_channel
    from channels.realization import Realization

    ch = make_channel("rayleigh-block")
    g = torch.Generator().manual_seed(2)
    s = torch.complex(torch.randn(3, 64, generator=g), torch.randn(3, 64, generator=g)) / math.sqrt(2)
    outs = []
    for spec in ("qpsk", "qam64", "psk8"):
        q, _ = Constellation(spec).quantize(s)
        o = ch(q, 5.0, Realization(0, ["a", "b", "c"], 0))
        outs.append((o.h, o.y - o.h * q))
    for h, n in outs[1:]:
        assert torch.equal(h, outs[0][0]) and torch.allclose(n, outs[0][1], atol=1e-6)


@pytest.mark.parametrize("bad", ["qam8", "qam3", "psk3", "ofdm", "qam", "psk4096"])
def test_bad_constellations_are_one_line(bad):
    with pytest.raises(ValueError) as e:
        parse_constellation(bad)
    assert "\n" not in str(e.value)


def test_points_have_unit_power():
    for kind, m in (("qam", 4), ("qam", 16), ("qam", 64), ("psk", 2), ("psk", 8), ("psk", 16)):
        assert float(constellation_points(kind, m).abs().pow(2).mean()) == pytest.approx(1.0, abs=1e-6)
