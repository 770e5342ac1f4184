"""The conditional diffusion decoder g_d of LRISC: training loss (eq. 7) and deterministic sampling (eq. 8).

    q(x_n | x_{n-1}) = N(sqrt(1 - beta_n) x_{n-1}, beta_n I)                                    (5)
    L(theta, x0) = E_{x0, n, eps} || alpha_n / (1 - alpha_n) x0 - X_theta(x_n, z_hat, n / N_train) ||^2   (7)
    x_{n-1} = sqrt(alpha_{n-1}) X_theta(x_n, z_hat, n/N) + sqrt(1 - alpha_{n-1}) eps_theta(x_n, z_hat, n/N)  (8)

with alpha_n = prod_{i<=n} (1 - beta_i) and x_n = sqrt(alpha_n) x0 + sqrt(1 - alpha_n) eps. The network
predicts x0 directly (Salimans & Ho, ref. [12]). We read eq. (7)'s factor alpha_n / (1 - alpha_n) (the SNR of
step n) as a loss weight on || x0 - X_theta ||^2; ``loss_weighting``: ``snr`` uses it as is, ``clipped_snr``
(default) clamps it to [1, ``snr_clip``] (truncated SNR, Salimans & Ho, and min-SNR clipping: the raw SNR
reaches 10^4 at small n and makes training unstable), ``none`` uses 1.

Sampling uses diffusers' ``DPMSolverMultistepScheduler`` with ``prediction_type="sample"``, "trailing" timesteps
(the first call at n = N_train) and a final step to alpha = 1 (``final_sigmas_type="zero"``): ``ddim`` is its
first-order dpmsolver++ update, which is exactly eq. (8) (deterministic DDIM, eta = 0; Lu et al. 2022);
``dpm`` is the second-order one, the faster option. Not diffusers' ``DDIMScheduler``: its step goes to
n - N_train // steps, not to the next of its own trailing timesteps, so for step counts that do not divide
N_train (3, 6, 7, 9, ...) every later network call sees a state one noise level off its time input and the
last step ends at alpha_1 < 1 instead of alpha = 1, leaving sqrt(1 - alpha_1) eps_theta (0.01 eps for the
linear schedule) in the output. ``tests/test_lrisc_diffusion.py`` checks that each call's state has the noise
level of its time input, as in training. Images live in [-1, 1] here; callers convert from/to [0, 1]. The
first x_N is drawn from per-image seeded generators, so decoding is reproducible and independent of the batch
composition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from lrisc_sim.lrisc.config import DiffusionConfig

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_n, t in (0, 1]) -> x0 estimate


class ConditionalDiffusion:
    """Noise schedule, eq. (7) loss and samplers of g_d. Holds no network (the U-Net is passed in).

    >>> d = ConditionalDiffusion(DiffusionConfig(num_train_timesteps=100, steps=3))
    >>> x = d.sample(lambda x, t: torch.zeros_like(x), (1, 3, 8, 8), seeds=[0])
    >>> x.shape
    torch.Size([1, 3, 8, 8])
    """

    def __init__(self, cfg: DiffusionConfig):
        from diffusers import DDPMScheduler

        self.cfg = cfg
        self._train = DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                                    beta_start=cfg.beta_start, beta_end=cfg.beta_end, prediction_type="sample")
        self.alphas_cumprod = self._train.alphas_cumprod.float()  # alpha_n of the paper, n = index + 1

    # ------------------------------------------------------------------ training (eq. 7)
    def time_input(self, index: torch.Tensor) -> torch.Tensor:
        """Continuous time n / N_train of scheduler indices (index = n - 1)."""
        return (index.float() + 1) / self.cfg.num_train_timesteps

    def sample_timesteps(self, b: int, device: torch.device, high_fraction: float = 0.0,
                         generator: torch.Generator | None = None) -> torch.Tensor:
        """n - 1 ~ Unif{0..N-1} (Algorithm 1, line 4); with ``high_fraction`` > 0 that share of the batch is
        drawn from the upper half (more noise), which forces the network to use z_hat (warm-up)."""
        n = self.cfg.num_train_timesteps
        idx = torch.randint(0, n, (b,), generator=generator).to(device)
        if high_fraction > 0:
            hi = torch.randint(n // 2, n, (b,), generator=generator).to(device)
            pick = torch.rand(b, generator=generator).to(device) < high_fraction
            idx = torch.where(pick, hi, idx)
        return idx

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """x_n = sqrt(alpha_n) x0 + sqrt(1 - alpha_n) eps (Algorithm 1, line 5)."""
        a = self.alphas_cumprod.to(x0.device)[index].view(-1, 1, 1, 1)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def weights(self, index: torch.Tensor) -> torch.Tensor:
        """Loss weight of step n (B): the eq. (7) factor alpha_n / (1 - alpha_n), per ``loss_weighting``."""
        a = self.alphas_cumprod.to(index.device)[index]
        snr = a / (1 - a)
        mode = self.cfg.loss_weighting
        if mode == "snr":
            return snr
        if mode == "clipped_snr":
            return snr.clamp(min=1.0, max=self.cfg.snr_clip)
        if mode == "none":
            return torch.ones_like(snr)
        raise ValueError(f"unknown loss weighting '{mode}': use 'clipped_snr', 'snr' or 'none'")

    def loss(self, x0_hat: torch.Tensor, x0: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Eq. (7) per image (B): w_n * mean over pixels of (x0 - X_theta)^2, images in [-1, 1]."""
        return self.weights(index) * (x0_hat - x0).pow(2).flatten(1).mean(1)

    # ------------------------------------------------------------------ sampling (eq. 8)
    def scheduler(self, sampler: str | None = None):
        """A fresh diffusers scheduler for ``sampler`` (``ddim`` or ``dpm``), prediction_type "sample"."""
        from diffusers import DPMSolverMultistepScheduler

        c = self.cfg
        name = sampler or c.sampler
        orders = {"ddim": 1, "dpm": 2}  # dpmsolver++ of order 1 is DDIM (eq. 8) with eta = 0
        if name not in orders:
            raise ValueError(f"unknown sampler '{name}': use 'ddim' or 'dpm'")
        return DPMSolverMultistepScheduler(num_train_timesteps=c.num_train_timesteps, beta_schedule=c.beta_schedule,
                                           beta_start=c.beta_start, beta_end=c.beta_end, prediction_type="sample",
                                           algorithm_type="dpmsolver++", solver_order=orders[name],
                                           thresholding=False, timestep_spacing="trailing", lower_order_final=True,
                                           final_sigmas_type="zero")

    @staticmethod
    def initial_noise(shape: Sequence[int], seeds: Sequence[int], device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """x_N ~ N(0, I), one CPU generator per image seeded by ``seeds[b]`` (reproducible on every device)."""
        b = shape[0]
        if len(seeds) != b:
            raise ValueError(f"need one seed per image: {len(seeds)} seeds for {b} images")
        rows = [torch.randn(tuple(shape[1:]), generator=torch.Generator().manual_seed(int(s) & (2**63 - 1)))
                for s in seeds]
        return torch.stack(rows).to(device=device, dtype=dtype)

    @torch.no_grad()
    def sample(self, denoise: Denoiser, shape: Sequence[int], seeds: Sequence[int], steps: int | None = None,
               sampler: str | None = None, device: torch.device | str = "cpu", eta: float = 0.0) -> torch.Tensor:
        """Sampling: ``steps`` calls of ``denoise(x_n, n / N_train)`` -> x0 ``shape`` in [-1, 1].

        ``eta`` = 0 (default) is deterministic (eq. 8 for ``ddim``). ``eta`` > 0 is stochastic DDIM (Song et al.
        2021, eq. 12) on the same trailing timesteps, only with the ``ddim`` sampler: with the x0 estimate
        X = X_theta(x_n), eps_hat = (x_n - sqrt(alpha_n) X) / sqrt(1 - alpha_n) and
        sigma = eta sqrt((1 - alpha_m) / (1 - alpha_n)) sqrt(1 - alpha_n / alpha_m) for the next step m < n,

            x_m = sqrt(alpha_m) X + sqrt(1 - alpha_m - sigma^2) eps_hat + sigma z,   z ~ N(0, I),

        so eta = 1 is ancestral (DDPM-like) sampling and the last step (alpha = 1) returns X. The z of image b come
        from the generator that drew its x_N (seeded by ``seeds[b]``), so stochastic decoding stays reproducible
        and independent of the batch."""
        steps = int(steps or self.cfg.steps)
        name = sampler or self.cfg.sampler
        if not 0.0 <= float(eta) <= 1.0:
            raise ValueError(f"sampler noise eta={eta}: give a value in [0, 1] (0: deterministic DDIM)")
        sch = self.scheduler(name)
        sch.set_timesteps(steps, device=device)
        if eta > 0:
            if name != "ddim":
                raise ValueError(f"sampler noise eta={eta} needs the ddim sampler, not {name}: use sampler=ddim")
            return self._sample_stochastic(denoise, shape, seeds, [int(t) for t in sch.timesteps], device, eta)
        x = self.initial_noise(shape, seeds, device)
        for t in sch.timesteps:
            index = torch.full((shape[0],), int(t), device=device, dtype=torch.long)
            x0 = denoise(x, self.time_input(index)).clamp(-1, 1)  # x0 clipped to the data range
            x = sch.step(x0, t, x).prev_sample
        return x.clamp(-1, 1)

    def _sample_stochastic(self, denoise: Denoiser, shape: Sequence[int], seeds: Sequence[int],
                           timesteps: list[int], device: torch.device | str, eta: float) -> torch.Tensor:
        """Stochastic DDIM (see :meth:`sample`) over ``timesteps`` (descending scheduler indices)."""
        gens = [torch.Generator().manual_seed(int(s) & (2**63 - 1)) for s in seeds]
        x = torch.stack([torch.randn(tuple(shape[1:]), generator=g) for g in gens]).to(device)
        ac = self.alphas_cumprod.double()
        for i, t in enumerate(timesteps):
            index = torch.full((shape[0],), t, device=device, dtype=torch.long)
            x0 = denoise(x, self.time_input(index)).clamp(-1, 1)
            a_t = float(ac[t])
            a_m = float(ac[timesteps[i + 1]]) if i + 1 < len(timesteps) else 1.0
            eps = (x - a_t ** 0.5 * x0) / (1 - a_t) ** 0.5
            sigma = eta * ((1 - a_m) / (1 - a_t)) ** 0.5 * max(1 - a_t / a_m, 0.0) ** 0.5
            x = a_m ** 0.5 * x0 + max(1 - a_m - sigma ** 2, 0.0) ** 0.5 * eps
            if sigma > 0:
                z = torch.stack([torch.randn(tuple(shape[1:]), generator=g) for g in gens]).to(device)
                x = x + sigma * z
        return x.clamp(-1, 1)
