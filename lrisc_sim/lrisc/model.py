"""The assembled LRISC model (paper Fig. 1): g_e, h_e/h_d with the entropy models, f_e/f_d, g_d.

    z = g_e(x)            y = h_e(z)          (mu, sigma) = h_d(y~)          p(z~|y~) (eq. 2), p(y~)
    s = f_e(z~, q, SNR)   (eq. 3-4)            s_hat = h s + n (eq. 1)        z_hat = f_d(s_hat, q, SNR_i)
    x_hat0 = g_d(x_N, z_hat): DDIM / DPM-Solver sampling of the conditional U-Net (eq. 8)

Shapes: x ``B x 3 x H x W`` in [0, 1] (H, W multiples of ``cfg.multiple``); z, z_hat ``B x C x H/16 x W/16``;
y ``B x M x H/64 x W/64`` (rounded up); q ``B x L`` (L = H W / 256); s ``B x k`` complex64.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from channels.base import snr_to_n0
from lrisc_sim.lrisc.analysis import AnalysisTransform
from lrisc_sim.lrisc.config import LRISCConfig
from lrisc_sim.lrisc.diffusion import ConditionalDiffusion
from lrisc_sim.lrisc.entropy import FactorizedPrior, GaussianConditional, bits, quantize
from lrisc_sim.lrisc.hyperprior import HyperDecoder, HyperEncoder
from lrisc_sim.lrisc.jscc import JSCCDecoder, JSCCEncoder
from lrisc_sim.lrisc.unet import ConditionalUNet
from lrisc_sim.model_io import register_model


@dataclass
class Latent:
    """Output of ``LRISC.latent``.

    z : ``B x C x h x w`` analysis output g_e(x) (the "latent feature" of Fig. 6).
    z_tilde : quantised z (U(-1/2, 1/2) noise in training, mean-shifted rounding at inference).
    y_tilde : ``B x M x h' x w'`` quantised hyper-latent.
    mu, sigma : ``B x C x h x w`` parameters of p(z|y) (eq. 2).
    lik_z, lik_y : likelihoods of z_tilde and y_tilde (same shapes as them).
    """

    z: torch.Tensor
    z_tilde: torch.Tensor
    y_tilde: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor
    lik_z: torch.Tensor
    lik_y: torch.Tensor

    def token_bits(self) -> torch.Tensor:
        """-log2 p(z_i | y) per token (``B x L``, summed over the C channels): the entropy guiding eq. (3)."""
        return bits(self.lik_z).flatten(2).sum(1)

    def rate_bits(self) -> torch.Tensor:
        """-log2 p(z|y) - log2 p(y) per image (B): the rate term of eq. (9)/(11), in bits."""
        return bits(self.lik_z).flatten(1).sum(1) + bits(self.lik_y).flatten(1).sum(1)


@register_model("lrisc")
class LRISC(nn.Module):
    """The LRISC networks (Fig. 1) and the diffusion schedule of g_d.

    >>> from lrisc_sim.lrisc.config import preset
    >>> m = LRISC(preset("tiny")).eval()
    >>> lat = m.latent(torch.rand(1, 3, 32, 32))
    >>> lat.z.shape, lat.token_bits().shape
    (torch.Size([1, 8, 2, 2]), torch.Size([1, 4]))
    """

    def __init__(self, cfg: LRISCConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.analysis.latent_channels
        self.g_e = AnalysisTransform(cfg.analysis)
        self.h_e = HyperEncoder(c, cfg.hyper)
        self.h_d = HyperDecoder(c, cfg.hyper)
        self.prior_y = FactorizedPrior(cfg.hyper.hyper_channels, cfg.hyper.prior_filters)
        self.cond_z = GaussianConditional(cfg.hyper.sigma_min)
        self.f_e = JSCCEncoder(c, cfg.jscc, cfg.snr)
        self.f_d = JSCCDecoder(c, cfg.jscc, cfg.snr)
        self.g_d = ConditionalUNet(c, cfg.unet)
        self.diffusion = ConditionalDiffusion(cfg.diffusion)

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this (the latent's downsampling)."""
        return self.cfg.multiple

    def config_dict(self) -> dict:
        """The architecture as a JSON-able dict (``lrisc_sim.model_io``)."""
        return self.cfg.to_dict()

    @classmethod
    def from_config(cls, d: dict) -> LRISC:
        """A fresh model of the architecture ``d`` (``config_dict``'s output)."""
        return cls(LRISCConfig.from_dict(d))

    # ------------------------------------------------------------------ groups of Algorithm 1
    def stage_modules(self, stage: int) -> list[nn.Module]:
        """Modules trained in a stage: 1 -> g_e, g_d, h_e, h_d (+ prior); 2 -> f_e, f_d; 3 -> all."""
        source = [self.g_e, self.h_e, self.h_d, self.prior_y, self.g_d]
        if stage == 1:
            return source
        if stage == 2:
            return [self.f_e, self.f_d]
        if stage == 3:
            return source + [self.f_e, self.f_d]
        raise ValueError(f"stage must be 1, 2 or 3, got {stage}")

    def set_snr_modules(self, enabled: bool) -> None:
        """Switch the SNR adaptation modules of f_e and f_d on or off (identity)."""
        self.f_e.snr.enabled = enabled
        self.f_d.snr.enabled = enabled

    # ------------------------------------------------------------------ source side
    def latent(self, x: torch.Tensor, mode: str | None = None) -> Latent:
        """g_e, h_e, h_d and the likelihoods; ``mode`` ``noise`` (default in training) or ``round``."""
        mode = mode or ("noise" if self.training else "round")
        z = self.g_e(x)
        y = self.h_e(z)
        y_t = quantize(y, mode)
        mu, sigma = self.h_d(y_t, z.shape[-2:])
        z_t = quantize(z, mode, mu if mode != "noise" else None)
        return Latent(z=z, z_tilde=z_t, y_tilde=y_t, mu=mu, sigma=sigma,
                      lik_z=self.cond_z(z_t, mu, sigma), lik_y=self.prior_y(y_t))

    # ------------------------------------------------------------------ channel part (training helper)
    def jscc_awgn(self, z_t: torch.Tensor, q: torch.Tensor, snr_db: torch.Tensor,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """f_e -> AWGN (eq. 1 with h = 1) -> f_d, for training: returns (z_hat, symbols, length).

        N0 is the channel layer's (``channels.base.snr_to_n0``); the noise CN(0, N0) is drawn here from
        ``generator`` (re and im N(0, N0 / 2)), differentiably and without the per-image streams of the sweeps.
        """
        s, length = self.f_e(z_t, q, snr_db)
        n0 = snr_to_n0(snr_db)[:, None]
        noise = torch.complex(torch.randn(s.shape, generator=generator), torch.randn(s.shape, generator=generator))
        s_hat = s + noise.to(s.device) * torch.sqrt(n0 / 2)
        z_hat = self.f_d(s_hat, q, z_t.shape[-2:], snr_db)
        return z_hat, s, length

    # ------------------------------------------------------------------ receiver side
    def predict_x0(self, x0: torch.Tensor, z_cond: torch.Tensor, index: torch.Tensor,
                   noise: torch.Tensor | None = None) -> torch.Tensor:
        """One-step estimate x_bar0 = X_theta(x_n, z, n/N_train) (Algorithm 1, lines 5-7), all in [-1, 1]
        except x0 given in [0, 1]. Returns ``B x 3 x H x W`` in the [-1, 1] data scale."""
        x = 2 * x0 - 1
        eps = torch.randn_like(x) if noise is None else noise
        x_n = self.diffusion.add_noise(x, eps, index)
        return self.g_d(x_n, self.diffusion.time_input(index), z_cond)

    @torch.no_grad()
    def reconstruct(self, z_hat: torch.Tensor, seeds: list[int], steps: int | None = None,
                    sampler: str | None = None, eta: float = 0.0) -> torch.Tensor:
        """g_d: z_hat ``B x C x h x w`` -> images ``B x 3 x 16h x 16w`` in [0, 1] by sampling (eq. 8; ``eta`` > 0:
        stochastic DDIM, ``ConditionalDiffusion.sample``)."""
        ctx = self.g_d.context(z_hat)
        b, _, h, w = z_hat.shape
        x = self.diffusion.sample(lambda xn, t: self.g_d(xn, t, context=ctx), (b, 3, 16 * h, 16 * w), seeds,
                                  steps=steps, sampler=sampler, device=z_hat.device, eta=eta)
        return (x + 1) / 2

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, card: dict | None = None) -> None:
        """``path`` .safetensors in the one model format (``lrisc_sim.model_io``) and, if given, the JSON model card
        beside it."""
        from lrisc_sim.model_io import save_model

        save_model(self, path, card)

    def load_matching(self, path: str | Path) -> list[str]:
        """Warm start of a changed architecture: take from the LRISC checkpoint ``path`` every top-level module
        (``g_e``, ``h_e``, ``h_d``, ``prior_y``, ``f_e``, ``f_d``, ``g_d``) whose tensors all fit this model's by
        name and shape, whole; a module that does not fit whole (e.g. g_d under a new U-Net) starts fresh.
        Returns the modules that start fresh."""
        old = LRISC.load(path).state_dict()  # checks the file (no pickle, an LRISC checkpoint)
        own = self.state_dict()
        fresh = []
        for name, module in self.named_children():
            keys = [k for k in own if k.split(".")[0] == name]
            if keys and all(k in old and old[k].shape == own[k].shape for k in keys) and \
                    sum(k.split(".")[0] == name for k in old) == len(keys):
                module.load_state_dict({k[len(name) + 1:]: old[k] for k in keys})
            elif keys:
                fresh.append(name)
        return fresh

    @staticmethod
    def load(path: str | Path, device: str | torch.device = "cpu") -> LRISC:
        """Read an LRISC model file (``lrisc_sim.model_io``; eval mode); one-line ``CheckpointError`` otherwise."""
        from lrisc_sim.model_io import load_model

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"LRISC checkpoint {path} not found")
        return load_model(path, expect="lrisc", device=device)
