"""The hyperprior h_e / h_d of LRISC (paper Section III-A-1, Fig. 1): fully convolutional with ReLU.

    y = h_e(z; theta_h),     (mu, sigma) = h_d(y_tilde; phi_h)       (eq. 2)

h_e takes z (``B x C x h x w``, h = H/16) to y (``B x M x ceil(h/4) x ceil(w/4)``); h_d maps the quantised
y back to the mean and scale of every element of z (``B x C x h x w`` each). h_d's output is cropped to z's
size, so any h, w work (not only multiples of 4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lrisc_sim.lrisc.config import HyperConfig


class HyperEncoder(nn.Module):
    """h_e: z ``B x C x h x w`` -> y ``B x M x ceil(h/4) x ceil(w/4)``."""

    def __init__(self, latent_channels: int, cfg: HyperConfig):
        super().__init__()
        w = cfg.width
        self.net = nn.Sequential(
            nn.Conv2d(latent_channels, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(w, cfg.hyper_channels, 5, stride=2, padding=2),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class HyperDecoder(nn.Module):
    """h_d: y_tilde ``B x M x h' x w'`` -> (mu, sigma), each ``B x C x h x w`` (``size`` = (h, w) of z).

    sigma = softplus(.) + sigma_min > 0.
    """

    def __init__(self, latent_channels: int, cfg: HyperConfig):
        super().__init__()
        w = cfg.width
        self.sigma_min = cfg.sigma_min
        self.net = nn.Sequential(
            nn.ConvTranspose2d(cfg.hyper_channels, w, 5, stride=2, padding=2, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(w, w * 3 // 2, 5, stride=2, padding=2, output_padding=1), nn.ReLU(),
            nn.Conv2d(w * 3 // 2, 2 * latent_channels, 3, padding=1),
        )

    def forward(self, y: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(y)[..., : size[0], : size[1]]
        mu, s = out.chunk(2, dim=1)
        return mu, F.softplus(s) + self.sigma_min
