"""Training losses of LRISC (paper Section III-B, eq. 9-11, Algorithm 1).

    L_RD  = E[ -lambda log p(z|y) - lambda log p(y) + d(x0, x_hat0) ]                                   (9)
    L_P   = E[ d_p(x0, x_hat0) ]                                                                       (10)
    L_RDP = E[ (1 - eta)[d(x0, x_hat0) + d(x0, x_bar0)] + eta[d_p(x0, x_hat0) + d_p(x0, x_bar0)]
               + lambda [-log p(z|y) - log p(y)] ]                                                     (11)

x_bar0 is the one-step estimate X_theta(x_n, z, n/N) conditioned on the latent without the channel, x_hat0 the
one conditioned on z_hat received through the channel. d is the squared error of eq. (7) (with its step weight,
on the [-1, 1] data scale), d_p the LPIPS distance of our metric module (on [0, 1]), the rate is in bits per
pixel. Stage 1 (Algorithm 1 line 8) uses x_bar0 only; stage 2 only x_hat0 (the x_bar0 terms do not depend on
f_e, f_d); stage 3 both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from lrisc_sim.lrisc.diffusion import ConditionalDiffusion
from lrisc_sim.trainer import LossOutput

Perceptual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, y) in [0, 1] -> B distances


def rdp_loss(x0: torch.Tensor, estimates: Sequence[tuple[torch.Tensor, torch.Tensor]], rate_bits: torch.Tensor | None,
             diffusion: ConditionalDiffusion, perceptual: Perceptual | None, eta: float = 0.5, lam: float = 0.01,
             extra: dict[str, torch.Tensor] | None = None, lpips_max_index: int | None = None) -> LossOutput:
    """Eq. (11) (eq. 9 + eq. 10 with weight eta) over the given one-step estimates.

    x0 : ``B x 3 x H x W`` in [0, 1].
    estimates : (x_est, index) pairs, x_est ``B x 3 x H x W`` on the [-1, 1] scale (x_hat0 and/or x_bar0),
        index ``B`` the diffusion step n - 1 each was made at.
    rate_bits : B bits of -log2 p(z|y) - log2 p(y) (None: no rate term, e.g. stage 2 where it is constant).
    perceptual : d_p, LPIPS (None: eta is applied to the squared error only, e.g. in tests without weights).
    extra : additional weighted terms (already scalar), added as they are (e.g. latent MSE, warm-up aux).
    lpips_max_index : d_p only on the estimates made at index < this (None: all); the others count 0 in the
        batch mean, so that the estimates from (almost) pure noise are trained by the squared error alone.
    """
    b, _, h, w = x0.shape
    target = 2 * x0 - 1
    d = x0.new_zeros(())
    dp = x0.new_zeros(())
    for x_est, index in estimates:
        d = d + diffusion.loss(x_est, target, index).mean()
        if perceptual is not None and eta > 0:
            keep = index < lpips_max_index if lpips_max_index is not None else torch.ones_like(index, dtype=torch.bool)
            if bool(keep.any()):
                dp = dp + perceptual(x0[keep], (x_est[keep] + 1) / 2).sum() / b
    total = (1 - eta) * d + eta * dp
    parts = {"d": float(d.detach()), "d_p": float(dp.detach())}
    if rate_bits is not None:
        bpp = rate_bits / (h * w)
        total = total + lam * bpp.mean()
        parts["bpp"] = float(bpp.mean().detach())
    for name, term in (extra or {}).items():
        total = total + term
        parts[name] = float(term.detach())
    parts["loss"] = float(total.detach())
    return LossOutput(total=total, parts=parts)


def psnr_01(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR (dB, B) of images in [0, 1] (float, no uint8 rounding: for training logs only)."""
    mse = (x - y).pow(2).flatten(1).mean(1).clamp(min=1e-10)
    return -10 * torch.log10(mse)
