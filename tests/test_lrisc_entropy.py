"""LRISC entropy models against closed forms (eq. 2) and the quantisation proxies."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate, stats

from lrisc_sim.lrisc.entropy import FactorizedPrior, GaussianConditional, bits, quantize

torch.set_num_threads(1)


def test_gaussian_conditional_matches_normal_cdf_difference():
    gc = GaussianConditional(sigma_min=1e-3)
    z = torch.tensor([0.0, 0.3, -1.7, 2.5, 8.0], dtype=torch.float64)
    mu = torch.tensor([0.0, 0.1, 0.5, -1.0, 0.0], dtype=torch.float64)
    sigma = torch.tensor([1.0, 0.5, 2.0, 0.7, 1.5], dtype=torch.float64)
    got = gc.likelihood(z, mu, sigma)
    want = stats.norm.cdf((z + 0.5 - mu) / sigma) - stats.norm.cdf((z - 0.5 - mu) / sigma)
    assert torch.allclose(got, torch.as_tensor(want), rtol=1e-9, atol=1e-12)


def test_gaussian_conditional_is_gaussian_convolved_with_uniform():
    """(N(mu, sigma) * U(-1/2, 1/2))(z) = integral over u in [-1/2, 1/2] of N(z - u; mu, sigma)."""
    gc = GaussianConditional(sigma_min=1e-3)
    for z, mu, s in [(0.2, 0.0, 0.3), (1.4, -0.2, 1.1), (-3.0, 0.5, 2.0)]:
        num, _ = integrate.quad(lambda u: stats.norm.pdf(z - u, mu, s), -0.5, 0.5)
        got = float(gc.likelihood(torch.tensor(z, dtype=torch.float64), torch.tensor(mu, dtype=torch.float64),
                                  torch.tensor(s, dtype=torch.float64)))
        assert got == pytest.approx(num, rel=1e-7)


def test_gaussian_conditional_sums_to_one_over_integers_and_is_bounded():
    gc = GaussianConditional()
    z = torch.arange(-60, 61, dtype=torch.float64) + 0.25
    lik = gc.likelihood(z, torch.full_like(z, 0.25), torch.full_like(z, 3.0))
    assert float(lik.sum()) == pytest.approx(1.0, abs=1e-6)
    far = gc.likelihood(torch.tensor([1e4]), torch.tensor([0.0]), torch.tensor([0.2]))
    assert float(far) > 0 and math.isfinite(float(bits(far)))


def test_factorized_prior_single_layer_is_logistic():
    """With no hidden layers the cumulative is sigmoid(softplus(m) y + b): a logistic distribution."""
    prior = FactorizedPrior(2, filters=())
    with torch.no_grad():
        prior.matrices[0].fill_(math.log(math.expm1(1.7)))  # softplus -> 1.7
        prior.biases[0].copy_(torch.tensor([0.3, -0.4]).view(2, 1, 1))
    y = torch.tensor([[[[0.0, 1.0]], [[-2.0, 0.5]]]])  # 1 x 2 x 1 x 2
    got = prior.likelihood(y)
    b = torch.tensor([0.3, -0.4]).view(1, 2, 1, 1)
    want = torch.sigmoid(1.7 * (y + 0.5) + b) - torch.sigmoid(1.7 * (y - 0.5) + b)
    assert torch.allclose(got, want, atol=1e-6)


def test_factorized_prior_is_a_distribution():
    torch.manual_seed(0)
    prior = FactorizedPrior(3, filters=(3, 3))
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(0.3 * torch.randn_like(p))
    grid = torch.arange(-200, 201, dtype=torch.float32)
    y = grid.view(1, 1, 1, -1).expand(1, 3, 1, -1).contiguous()
    lik = prior.likelihood(y).detach()
    assert torch.allclose(lik.sum(-1).flatten(), torch.ones(3), atol=1e-4)
    c = prior.cdf(y).detach()
    assert bool((c[..., 1:] >= c[..., :-1] - 1e-6).all())
    assert float(c[..., 0].max()) < 1e-3 and float(c[..., -1].min()) > 1 - 1e-3


def test_quantize_modes():
    x = torch.tensor([0.2, 1.6, -2.4])
    mean = torch.tensor([0.5, 0.5, 0.5])
    assert torch.equal(quantize(x, "round", mean), torch.round(x - mean) + mean)
    torch.manual_seed(0)
    n = quantize(torch.zeros(10000), "noise")
    assert float(n.abs().max()) <= 0.5 and abs(float(n.mean())) < 0.02
    xs = x.clone().requires_grad_(True)
    quantize(xs, "ste").sum().backward()
    assert torch.equal(xs.grad, torch.ones(3))
    with pytest.raises(ValueError):
        quantize(x, "floor")
