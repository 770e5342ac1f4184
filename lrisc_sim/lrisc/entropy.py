"""Entropy models of LRISC: the factorized prior p(y) and the Gaussian conditional p(z|y) of eq. (2).

    p_{z|y}(z | y) = prod_i ( N(mu_i, sigma_i) * U(-1/2, 1/2) )(z_i),   (mu, sigma) = h_d(y)      (2)

The convolution with the unit-width uniform density makes the likelihood of a value the probability mass of a
unit bin around it: Phi((z - mu + 1/2) / sigma) - Phi((z - mu - 1/2) / sigma). In training, quantisation is
replaced by additive U(-1/2, 1/2) noise (Algorithm 1, line 6); at inference values are rounded.

The factorized prior (Balle et al., 2018, appendix 6.1) models each channel of y with a learned monotone
cumulative c_m(y) = sigmoid(f_K(...f_1(y))), each f_k an affine map with positive weights followed (except the
last) by x + tanh(a) tanh(x); its likelihood is c_m(y + 1/2) - c_m(y - 1/2), again the density convolved with
U(-1/2, 1/2).

Example::

    >>> gc = GaussianConditional()
    >>> lik = gc.likelihood(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3), torch.ones(1, 2, 3, 3))
    >>> round(float(lik[0, 0, 0, 0]), 4)   # Phi(0.5) - Phi(-0.5)
    0.3829
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LIKELIHOOD_MIN = 1e-9


def quantize(x: torch.Tensor, mode: str, mean: torch.Tensor | None = None) -> torch.Tensor:
    """Quantisation proxy. ``noise``: x + U(-1/2, 1/2) (training); ``round``: round(x - mean) + mean
    (inference; ``mean`` 0 if None); ``ste``: rounding with a straight-through gradient. Shapes preserved."""
    if mode == "noise":
        return x + torch.empty_like(x).uniform_(-0.5, 0.5)
    m = mean if mean is not None else torch.zeros_like(x)
    if mode == "round":
        return torch.round(x - m) + m
    if mode == "ste":
        return x + (torch.round(x - m) + m - x).detach()
    raise ValueError(f"unknown quantisation mode '{mode}': use 'noise', 'round' or 'ste'")


def bits(likelihood: torch.Tensor) -> torch.Tensor:
    """-log2 of a likelihood (information content in bits), elementwise."""
    return -torch.log2(likelihood)


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x / math.sqrt(2.0))


class GaussianConditional(nn.Module):
    """Likelihood of z under N(mu, sigma) convolved with U(-1/2, 1/2) (eq. 2).

    Input: z, mu, sigma (same shape, e.g. ``B x C x H/16 x W/16``; sigma > 0, bounded below by ``sigma_min``).
    Output: likelihoods, same shape, in [``LIKELIHOOD_MIN``, 1].
    Computed on the lower tail by symmetry (|z - mu|) for accuracy far from the mean.
    """

    def __init__(self, sigma_min: float = 0.11):
        super().__init__()
        self.sigma_min = sigma_min

    def likelihood(self, z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = sigma.clamp(min=self.sigma_min)
        v = (z - mu).abs()
        upper = _std_normal_cdf((0.5 - v) / s)
        lower = _std_normal_cdf((-0.5 - v) / s)
        return (upper - lower).clamp(min=LIKELIHOOD_MIN)

    def forward(self, z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        with torch.autocast(z.device.type, enabled=False):  # likelihoods in float32 under mixed precision
            return self.likelihood(z.float(), mu.float(), sigma.float())


class FactorizedPrior(nn.Module):
    """Learned per-channel density p(y) for the hyper-latent y (Balle et al. 2018), convolved with U(-1/2, 1/2).

    Parameters
    ----------
    channels : M, channels of y.
    filters : hidden sizes of the per-channel density network (default (3, 3, 3)).
    init_scale : initial width of the density.

    Input: y ``B x M x h x w``. Output: likelihoods ``B x M x h x w`` in [``LIKELIHOOD_MIN``, 1].
    ``cdf(y)`` is the learned cumulative c_m (same shape); it is monotone, 0 at -inf and 1 at +inf.
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for k in range(len(dims) - 1):
            init = math.log(math.expm1(1.0 / scale / dims[k + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[k + 1], dims[k]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, dims[k + 1], 1).uniform_(-0.5, 0.5)))
            if k < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[k + 1], 1)))

    def logits(self, v: torch.Tensor) -> torch.Tensor:
        """Logits of the cumulative for ``v`` shaped ``M x 1 x N`` -> ``M x 1 x N``."""
        for k, (m, b) in enumerate(zip(self.matrices, self.biases)):
            v = torch.matmul(F.softplus(m), v) + b
            if k < len(self.factors):
                v = v + torch.tanh(self.factors[k]) * torch.tanh(v)
        return v

    def _flat(self, y: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        b, m = y.shape[:2]
        if m != self.channels:
            raise ValueError(f"factorized prior has {self.channels} channels, input has {m}")
        return y.transpose(0, 1).reshape(m, 1, -1), y.shape

    def _unflat(self, v: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        b, m = shape[:2]
        return v.reshape(m, b, *shape[2:]).transpose(0, 1)

    def cdf(self, y: torch.Tensor) -> torch.Tensor:
        v, shape = self._flat(y)
        return self._unflat(torch.sigmoid(self.logits(v)), shape)

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        v, shape = self._flat(y)
        lower = self.logits(v - 0.5)
        upper = self.logits(v + 0.5)
        sign = -torch.sign(lower + upper).detach()
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        lik = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()
        return self._unflat(lik, shape).clamp(min=LIKELIHOOD_MIN)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(y.device.type, enabled=False):  # likelihoods in float32 under mixed precision
            return self.likelihood(y.float())
