"""LRISC as a trainable codec (paper Algorithm 1): its stages' losses and validation for the one trainer.

Used by ``lrisc-sim train RECIPE.toml`` with ``codec = "lrisc"`` (``recipes/lrisc_small.toml`` is the shipped
model's recipe). Model option (``[model]``): ``preset`` (``small``, ``paper``, ``tiny``). Stage options (any
``[[stages]]`` key that is not a trainer field):

* ``modules``: which groups of Algorithm 1 train: ``source`` (stage 1: g_e, g_d, h_e, h_d and the prior, no
  channel), ``jscc`` (stage 2: f_e, f_d through the channel, the source model frozen) or ``all`` (stage 3).
* eq. (11): ``eta`` (perceptual share, 0.5 in the paper), ``lam`` (rate weight; with ``lam_start`` and
  ``lam_ramp`` it ramps log-linearly from ``lam_start`` over that share of the steps, stage ``source``),
  ``lpips`` (false: no perceptual term), ``lpips_max_t`` (d_p only on estimates below that share of N).
* ``t_max_share``: the share of each batch at the last diffusion step n = N (the plain-MSE path that sets the first
  DDIM estimate); ``aux_weight`` and ``aux_warmup`` (steps): the warm-up decoder against the grey-image collapse.
* ``latent_weight``: ||z_hat - z~||^2 / ||z~||^2 through the channel (``jscc``, ``all``).
* ``fixed_share`` and ``fixed_snr``: the first share of a ``jscc`` stage at one SNR with the SNR modules off.
* ``cbr_min``, ``cbr_max``: each image's random target CBR (log-uniform) for the rate control in training.
* ``init_partial``: from ``init``, take each top-level module that fits whole (a changed architecture).
* validation: ``val_steps`` (denoising steps), ``val_snr`` (dB), ``val_cbr``.

Every random draw of a step comes from the trainer's per-step generator and the training link (no module draws
its own channel noise): the channel noise and fading are the evaluation channel's (``channels.training``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from channels.training import TrainingLink
from lrisc_sim.lrisc.config import preset
from lrisc_sim.lrisc.losses import Perceptual, rdp_loss
from lrisc_sim.lrisc.model import LRISC
from lrisc_sim.trainer import Batch, LossOutput, StageConfig, TrainTask

MODULES = {"source": 1, "jscc": 2, "all": 3}
#: stage option -> (kind, low, high, default)
OPTIONS: dict[str, tuple[str, float | None, float | None, Any]] = {
    "modules": ("str", None, None, "source"),
    "eta": ("float", 0.0, 1.0, 0.5),
    "lam": ("float", 0.0, 10.0, 0.02),
    "lam_start": ("float", 1e-9, 10.0, None),
    "lam_ramp": ("float", 0.0, 1.0, 0.0),
    "lpips": ("bool", None, None, True),
    "lpips_max_t": ("float", 0.0, 1.0, 1.0),
    "t_max_share": ("float", 0.0, 1.0, 0.0),
    "aux_weight": ("float", 0.0, 100.0, 0.0),
    "aux_warmup": ("int", 0, 10**9, 0),
    "latent_weight": ("float", 0.0, 100.0, 1.0),
    "fixed_share": ("float", 0.0, 1.0, 0.0),
    "fixed_snr": ("float", -50.0, 60.0, 10.0),
    "cbr_min": ("float", 1e-4, 1.0, 1 / 96),
    "cbr_max": ("float", 1e-4, 1.0, 1 / 16),
    "init_partial": ("bool", None, None, False),
    "val_steps": ("int", 1, 1000, None),
    "val_snr": ("float", -50.0, 60.0, 10.0),
    "val_cbr": ("float", 1e-4, 1.0, 1 / 48),
}


def opt(stage: StageConfig, name: str) -> Any:
    """A stage option with its default."""
    return stage.options.get(name, OPTIONS[name][3])


class LRISCTask(TrainTask):
    """Train the LRISC model one Algorithm-1 stage at a time (the stage's ``modules`` option)."""

    tag = "lrisc"

    def __init__(self, preset: str = "small"):
        if preset not in ("small", "paper", "tiny"):
            raise ValueError(f"lrisc preset {preset!r}: use small, paper or tiny")
        self.preset = preset
        self._perceptual: Perceptual | None = None

    def check_options(self, stage: StageConfig) -> None:
        bad = sorted(set(stage.options) - set(OPTIONS))
        if bad:
            raise ValueError(f"unknown lrisc stage option(s) {', '.join(bad)}; lrisc takes {', '.join(OPTIONS)}")
        for name, v in stage.options.items():
            kind, lo, hi, _ = OPTIONS[name]
            if name == "modules":
                if v not in MODULES:
                    raise ValueError(f"modules = {v!r}: use source, jscc or all")
                continue
            if kind == "bool":
                ok = isinstance(v, bool)
            elif kind == "int":
                ok = isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
            else:
                ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi
            if not ok:
                rng = "true or false" if kind == "bool" else f"{'an integer' if kind == 'int' else 'a number'} in " \
                                                              f"{lo:g}..{hi:g}"
                raise ValueError(f"{name} = {v!r}: give {rng}")
        if opt(stage, "cbr_min") > opt(stage, "cbr_max"):
            raise ValueError("cbr_min must not exceed cbr_max")
        if opt(stage, "lam_start") is not None and (opt(stage, "lam") <= 0 or opt(stage, "lam_ramp") <= 0):
            raise ValueError(f"lam_start = {opt(stage, 'lam_start')!r} ramps the rate weight up to lam over lam_ramp "
                             "of the steps: give lam > 0 and lam_ramp > 0, or drop lam_start")

    # ------------------------------------------------------------------ model
    def build(self, stage: StageConfig, init: Path | None, device: torch.device, log=print) -> LRISC:
        if init is None:
            if opt(stage, "init_partial"):
                raise ValueError(f"stage {stage.name}: init_partial needs init (the weights to take what fits from)")
            return LRISC(preset(self.preset)).to(device)
        if opt(stage, "init_partial"):
            model = LRISC(preset(self.preset))
            fresh = model.load_matching(init)
            log(f"preset '{self.preset}' initialised from {init} where it fits; fresh: {', '.join(fresh) or 'none'}")
            return model.to(device)
        model = LRISC.load(init, device)
        if model.cfg.preset != self.preset:
            raise ValueError(f"stage {stage.name}: {init} is preset '{model.cfg.preset}', the recipe's model is "
                             f"'{self.preset}': set [model] preset or init_partial = true")
        log(f"initialising from {init}")
        return model

    def trainable(self, model: LRISC, stage: StageConfig) -> list[torch.nn.Parameter]:
        model.requires_grad_(False)
        params: list[torch.nn.Parameter] = []
        for m in model.stage_modules(MODULES[opt(stage, "modules")]):
            m.requires_grad_(True)
            params += list(m.parameters())
        return params

    def perceptual(self, stage: StageConfig, device: torch.device) -> Perceptual | None:
        if not opt(stage, "lpips"):
            return None
        if self._perceptual is None:
            from lrisc_sim.lpips import get_lpips

            self._perceptual = get_lpips(device)
        return self._perceptual

    # ------------------------------------------------------------------ loss
    def loss(self, model: LRISC, batch: Batch, link: TrainingLink, stage: StageConfig) -> LossOutput:
        """One step of Algorithm 1 for the stage's modules (eq. 7, 9-11) on ``batch.x`` ``B x 3 x H x W``."""
        x, g, step = batch.x, batch.generator, batch.step
        b = x.shape[0]
        diff = model.diffusion
        eta = opt(stage, "eta")
        perceptual = self.perceptual(stage, x.device) if eta > 0 else None
        kind = MODULES[opt(stage, "modules")]
        if kind == 1:
            lat = model.latent(x, "noise")
            w = self.warmup_factor(stage, step)
            index = self.with_t_max(diff.sample_timesteps(b, x.device, high_fraction=0.5 * w, generator=g), stage,
                                    diff, g)
            ctx = model.g_d.context(lat.z_tilde)
            xn = diff.add_noise(2 * x - 1, torch.randn(x.shape, generator=g).to(x.device), index)
            x_bar = model.g_d(xn, diff.time_input(index), context=ctx)
            aux_w = opt(stage, "aux_weight") * (0.1 + 0.9 * w)
            extra = {"aux": aux_w * (model.g_d.context_net.aux(ctx) - (2 * x - 1)).pow(2).mean()} if aux_w > 0 else {}
            return rdp_loss(x, [(x_bar, index)], lat.rate_bits(), diff, perceptual, eta, self.lam(stage, step),
                            extra, lpips_max_index=self.lpips_max_index(stage, diff))
        snr = batch.snr_db
        fixed = kind == 2 and step < int(opt(stage, "fixed_share") * stage.steps)
        if fixed:
            snr = torch.full_like(snr, float(opt(stage, "fixed_snr")))
        model.set_snr_modules(not fixed)
        if kind == 2:
            with torch.no_grad():
                lat = model.latent(x, "noise")
        else:
            lat = model.latent(x, "noise")
        q = self.rate_indices(model, lat.token_bits().detach(), tuple(x.shape[-2:]), stage, g,
                              tuple(lat.z.shape[-2:]))
        noise = torch.randn(x.shape, generator=g).to(x.device)
        z_hat = self.through_link(model, lat.z_tilde, q, snr, link, batch)
        index = self.with_t_max(diff.sample_timesteps(b, x.device, generator=g), stage, diff, g)
        xn = diff.add_noise(2 * x - 1, noise, index)
        t = diff.time_input(index)
        estimates = [(model.g_d(xn, t, z_hat), index)]
        if kind == 3:
            estimates.append((model.g_d(xn, t, lat.z_tilde), index))
        target = lat.z_tilde.detach()
        nmse = (z_hat - target).pow(2).mean() / target.pow(2).mean().clamp(min=1e-6)
        extra = {"latent": opt(stage, "latent_weight") * nmse}
        rate = lat.rate_bits() if kind == 3 else None
        out = rdp_loss(x, estimates, rate, diff, perceptual, eta, opt(stage, "lam"), extra)
        return LossOutput(out.total, out.parts)

    @staticmethod
    def through_link(model: LRISC, z_t: torch.Tensor, q: torch.Tensor, snr: torch.Tensor, link: TrainingLink,
                     batch: Batch) -> torch.Tensor:
        """f_e -> the training channel and equaliser -> f_d, as the codec decodes (unbiased symbols, the
        per-token SNR of the equalised noise); returns z_hat ``B x C x h x w``."""
        from lrisc_sim.lrisc.jscc import token_snr

        s, _ = model.f_e(z_t, q, snr)
        rx = link.send(s, snr, batch.realization)
        gain = rx.gain.clamp(min=1e-12)
        snr_i = token_snr(rx.noise_var / gain**2, q, model.f_d.quantizer)
        return model.f_d(rx.s_hat / gain, q, z_t.shape[-2:], snr_i)

    # ------------------------------------------------------------------ schedules of the loss
    @staticmethod
    def warmup_factor(stage: StageConfig, step: int) -> float:
        """1 at step 0, linearly down to 0 at ``aux_warmup`` (0 without warm-up)."""
        n = opt(stage, "aux_warmup")
        return max(0.0, 1.0 - step / n) if n > 0 else 0.0

    @staticmethod
    def lam(stage: StageConfig, step: int) -> float:
        """Rate weight at ``step``: ``lam_start`` ramped log-linearly to ``lam`` over ``lam_ramp`` of the steps."""
        lam, start, ramp = opt(stage, "lam"), opt(stage, "lam_start"), opt(stage, "lam_ramp")
        if start is None or ramp <= 0 or lam <= 0:
            return lam
        t = min(step / max(ramp * stage.steps, 1), 1.0)
        return math.exp(math.log(start) + t * (math.log(lam) - math.log(start)))

    @staticmethod
    def lpips_max_index(stage: StageConfig, diff) -> int | None:
        m = opt(stage, "lpips_max_t")
        return None if m >= 1 else int(m * diff.cfg.num_train_timesteps)

    @staticmethod
    def with_t_max(index: torch.Tensor, stage: StageConfig, diff, g: torch.Generator) -> torch.Tensor:
        """``index`` with a ``t_max_share`` of the batch moved to the last step n = N."""
        share = opt(stage, "t_max_share")
        if share <= 0:
            return index
        at_t = (torch.rand(index.shape[0], generator=g) < share).to(index.device)
        return torch.where(at_t, torch.full_like(index, diff.cfg.num_train_timesteps - 1), index)

    @staticmethod
    def rate_indices(model: LRISC, token_bits: torch.Tensor, hw: tuple[int, int], stage: StageConfig,
                     g: torch.Generator, grid: tuple[int, int]) -> torch.Tensor:
        """Rate indices q (``B x L``) for random target CBRs (log-uniform), from the inference rate control."""
        from lrisc_sim.lrisc.jscc import RateControlError, rate_control
        from lrisc_sim.lrisc.rate_index import RateIndexCoding

        b = token_bits.shape[0]
        lo, hi = opt(stage, "cbr_min"), opt(stage, "cbr_max")
        u = torch.rand(b, generator=g, dtype=torch.float64)
        cbr = torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        budget = torch.floor(cbr * 3 * hw[0] * hw[1]).to(token_bits.device)
        jc = model.cfg.jscc
        try:
            return rate_control(token_bits, budget, model.f_e.quantizer, coding=RateIndexCoding("auto",
                                tuple(jc.side_codes)), grid=grid, block=jc.rate_block).q
        except RateControlError:
            return torch.zeros_like(token_bits, dtype=torch.long)

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self, model: LRISC, val: list[tuple[str, torch.Tensor]], link: TrainingLink, stage: StageConfig,
                 device: torch.device) -> dict[str, float]:
        """PSNR / LPIPS of full sampling on the held-out crops: ``source`` stages without a channel
        (z~ = round(z)), the others through the codec over the training channel at ``val_snr`` and ``val_cbr``
        (seed 0, trial 0, ids = file stems). ``std_ratio`` (output / source pixel std) flags the grey-image
        collapse when it falls towards 0."""
        from lrisc_sim.lrisc.codec import LRISCCodec
        from lrisc_sim.metrics import psnr, quantize
        from lrisc_sim.transmission import send

        if not val:
            return {}
        model.eval()
        perceptual = self.perceptual(stage, device) if opt(stage, "lpips") else None
        steps = opt(stage, "val_steps")
        kind = MODULES[opt(stage, "modules")]
        snr, cbr = float(opt(stage, "val_snr")), float(opt(stage, "val_cbr"))
        psnrs, lps, ratios, cbrs = [], [], [], []
        codec = LRISCCodec(model, steps=steps)
        for vid, im in val:
            x = im[None].to(device)
            if kind == 1:
                lat = model.latent(x, "round")
                y = model.reconstruct(lat.z_tilde, [0], steps)
            else:
                model.set_snr_modules(True)
                t = send(codec, x, cbr, snr, link.channel, [vid], seed=0, trial=0, equalizer=link.equalizer)
                y = t.output
                cbrs.append(float(t.cbr["cbr_total"][0]))
            y = quantize(y)
            psnrs.append(float(psnr(x, y)[0]))
            if perceptual is not None:
                lps.append(float(perceptual(x, y)[0]))
            ratios.append(float(y.std() / x.std().clamp(min=1e-6)))
        out = {"psnr": round(float(np.mean(psnrs)), 3), "std_ratio": round(float(np.mean(ratios)), 3)}
        if lps:
            out["lpips"] = round(float(np.mean(lps)), 4)
        if cbrs:
            out.update({"snr_db": snr, "cbr_target": cbr, "cbr_total": round(float(np.mean(cbrs)), 5)})
        return out

    def card(self, model: LRISC, stage: StageConfig) -> dict[str, Any]:
        return {"preset": model.cfg.preset, "modules": opt(stage, "modules"),
                "parameters": {name: sum(p.numel() for p in m.parameters()) for name, m in model.named_children()}
                | {"total": sum(p.numel() for p in model.parameters())},
                "perceptual_loss": "LPIPS (alex, v0.1)" if opt(stage, "lpips") and opt(stage, "eta") > 0 else None}
