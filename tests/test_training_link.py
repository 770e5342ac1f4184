"""The training path of the channel layer against theory and against the evaluation path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from channels import make_channel
from channels.base import equalize
from channels.realization import Realization
from channels.training import TrainingLink, parse_snr_range


def _unit(b: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    s = torch.complex(torch.randn(b, k, generator=g), torch.randn(b, k, generator=g))
    return s / s.abs().pow(2).mean(1, keepdim=True).sqrt()


def test_awgn_training_path_has_the_stated_snr_and_carries_gradients():
    link = TrainingLink(make_channel("awgn"), (7.0, 7.0))
    s = _unit(4, 20000).requires_grad_(True)
    snr, r = link.draw(step=3, b=4)
    rx = link.send(s, snr, r)
    n0 = 10 ** (-0.7)
    noise = rx.raw.y - s.detach()
    assert float(noise.detach().abs().pow(2).mean()) == pytest.approx(n0, rel=0.02)  # E|n|^2 = N0 = 10^(-SNR/10)
    rx.s_hat.real.sum().backward()
    g = 1 / (1 + n0)  # MMSE with h = 1: d s_hat / d s = |h|^2 / (|h|^2 + N0)
    assert torch.allclose(s.grad.real, torch.full_like(s.grad.real, g), atol=1e-5)


def test_training_snr_is_uniform_per_image_and_reproducible():
    link = TrainingLink(make_channel("awgn"), (0.0, 20.0), seed=5)
    snr, _ = link.draw(step=1, b=20000)
    assert float(snr.min()) >= 0 and float(snr.max()) <= 20
    assert float(snr.mean()) == pytest.approx(10.0, abs=0.15) and float(snr.var()) == pytest.approx(400 / 12, rel=0.05)
    assert torch.equal(snr, link.draw(step=1, b=20000)[0]) and not torch.equal(snr, link.draw(step=2, b=20000)[0])


@pytest.mark.parametrize("spec", ["rayleigh-fast", "rician-fast:K=3"])
def test_fading_gains_have_the_theoretical_statistics(spec):
    link = TrainingLink(make_channel(spec), (10.0, 10.0))
    snr, r = link.draw(step=0, b=8)
    h = link.send(_unit(8, 5000), snr, r).raw.h
    p = h.abs().pow(2).flatten().double()
    assert float(p.mean()) == pytest.approx(1.0, rel=0.03)  # E|h|^2 = 1
    if spec.startswith("rayleigh"):  # |h|^2 ~ Exp(1): variance 1
        assert float(p.var()) == pytest.approx(1.0, rel=0.08)
    else:  # Rician K: Var|h|^2 = (1 + 2K) / (1 + K)^2
        assert float(p.var()) == pytest.approx(7 / 16, rel=0.08)


def test_equalized_snr_under_rayleigh_matches_theory():
    """ZF over fast Rayleigh: the effective noise variance of s_hat is N0 / |h|^2 per symbol, and the measured
    error s_hat - s matches it symbol by symbol on average."""
    link = TrainingLink(make_channel("rayleigh-fast"), (5.0, 5.0), equalizer="zf")
    s = _unit(4, 20000)
    snr, r = link.draw(step=0, b=4)
    rx = link.send(s, snr, r)
    err = (rx.s_hat - s).abs().pow(2)
    ratio = (err / rx.noise_var).mean()
    assert float(ratio) == pytest.approx(1.0, rel=0.03)
    h2 = rx.raw.h.abs().pow(2)
    assert torch.allclose(rx.noise_var, 10 ** (-0.5) / h2, rtol=1e-5)


def test_a_shared_seed_gives_the_evaluation_paths_received_symbols():
    ch = make_channel("rayleigh-block")
    link = TrainingLink(ch, (3.0, 3.0), seed=11)
    s = _unit(3, 64)
    snr, r = link.draw(step=42, b=3)
    train = link.send(s, snr, r)
    ev = equalize(ch(s, 3.0, Realization(11, link.ids(42, 3), 0)), "mmse")
    assert torch.equal(train.raw.y, ev.raw.y) and torch.equal(train.s_hat, ev.s_hat)
    # a rank's slice of the global batch sees the same symbols as in the whole batch
    part = link.send(s[1:], snr[1:], r.subset([1, 2]))
    assert torch.equal(part.raw.y, train.raw.y[1:])


@pytest.mark.parametrize("bad", ["x", "5:1", "nan", (0, float("inf")), "1:2:3"])
def test_bad_training_snr_is_one_line(bad):
    with pytest.raises(ValueError, match="training SNR"):
        parse_snr_range(bad)
