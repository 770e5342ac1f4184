"""The analysis transform g_e of LRISC: z = g_e(x; theta_g) (paper Section II-A, Fig. 1).

Four stride-2 5x5 convolutions with generalized divisive normalisation (GDN, Balle et al. 2016) in between, so
the latent z has C channels at H/16 x W/16; each spatial position is one token z_i of length C.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lrisc_sim.lrisc.config import AnalysisConfig


class GDN(nn.Module):
    """Generalized divisive normalisation: y_c = x_c / sqrt(beta_c + sum_k gamma_ck x_k^2).

    Input/output ``B x ch x H x W``. beta and gamma are kept positive by a squared reparametrisation.
    """

    def __init__(self, ch: int, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.beta_min = beta_min
        self.beta = nn.Parameter(torch.ones(ch))
        self.gamma = nn.Parameter(torch.sqrt(torch.eye(ch) * gamma_init + 1e-12))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ch = x.shape[1]
        beta = self.beta**2 + self.beta_min
        gamma = (self.gamma**2).view(ch, ch, 1, 1)
        norm = F.conv2d(x * x, gamma, beta)
        return x * torch.rsqrt(norm)


class AnalysisTransform(nn.Module):
    """g_e: ``B x 3 x H x W`` in [0, 1] -> z ``B x C x H/16 x W/16`` (H, W multiples of 16).

    >>> g = AnalysisTransform(AnalysisConfig(widths=(8, 8, 8), latent_channels=8))
    >>> g(torch.rand(2, 3, 32, 48)).shape
    torch.Size([2, 8, 2, 3])
    """

    def __init__(self, cfg: AnalysisConfig):
        super().__init__()
        chans = (3, *cfg.widths, cfg.latent_channels)
        if len(chans) != 5:
            raise ValueError("g_e needs three hidden widths (four stride-2 stages to H/16)")
        layers: list[nn.Module] = []
        for i in range(4):
            layers.append(nn.Conv2d(chans[i], chans[i + 1], 5, stride=2, padding=2))
            if i < 3:
                layers.append(GDN(chans[i + 1]))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 16 or w % 16:
            raise ValueError(f"g_e needs H, W multiples of 16, got {h} x {w}")
        return self.net(2 * x - 1)
