"""Stage-1 recipe options: the plain-MSE share at n = N, the LPIPS mask by step, the rate-weight ramp."""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from lrisc_sim.lrisc.config import DiffusionConfig, TrainConfig
from lrisc_sim.lrisc.diffusion import ConditionalDiffusion
from lrisc_sim.lrisc.losses import rdp_loss
from lrisc_sim.lrisc.train import lpips_max_index, stage1_lam


def test_rate_weight_ramps_in_log_from_start_to_lam():
    tc = replace(TrainConfig(), lam=0.02, lam_start=0.0002, lam_ramp=0.5, steps=(1000, 1, 1))
    assert math.isclose(stage1_lam(0, tc), 0.0002)
    assert math.isclose(stage1_lam(250, tc), 0.002, rel_tol=1e-9)  # half-way in log
    assert math.isclose(stage1_lam(500, tc), 0.02) and math.isclose(stage1_lam(900, tc), 0.02)
    assert stage1_lam(0, TrainConfig()) == TrainConfig().lam  # no ramp by default


def test_perceptual_term_only_below_the_step_limit():
    diff = ConditionalDiffusion(DiffusionConfig(num_train_timesteps=100))
    x0 = torch.rand(4, 3, 8, 8)
    est = torch.zeros(4, 3, 8, 8)
    index = torch.tensor([99, 10, 99, 20])
    per = lambda a, b: torch.ones(a.shape[0])  # noqa: E731 (distance 1 for every image)
    full = rdp_loss(x0, [(est, index)], None, diff, per, eta=0.5)
    masked = rdp_loss(x0, [(est, index)], None, diff, per, eta=0.5,
                      lpips_max_index=lpips_max_index(replace(TrainConfig(), lpips_max_t=0.5), diff))
    assert math.isclose(full.parts["d_p"], 1.0) and math.isclose(masked.parts["d_p"], 0.5)  # 2 of 4 images
    assert math.isclose(full.parts["d"], masked.parts["d"])
    assert lpips_max_index(TrainConfig(), diff) is None
