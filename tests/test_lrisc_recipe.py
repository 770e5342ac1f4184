"""Stage-1 recipe options of LRISCTask: the plain-MSE share at n = N, the LPIPS mask by step, the rate-weight
ramp (recipe keys t_max_share, lpips_max_t, lam_start / lam_ramp)."""

from __future__ import annotations

import math

import pytest
import torch

from lrisc_sim.lrisc.config import DiffusionConfig
from lrisc_sim.lrisc.diffusion import ConditionalDiffusion
from lrisc_sim.lrisc.losses import rdp_loss
from lrisc_sim.lrisc.task import LRISCTask
from lrisc_sim.trainer import StageConfig


def stage(**options) -> StageConfig:
    return StageConfig(name="s", steps=1000, options=options)


def test_rate_weight_ramps_in_log_from_start_to_lam():
    st = stage(lam=0.02, lam_start=0.0002, lam_ramp=0.5)
    assert math.isclose(LRISCTask.lam(st, 0), 0.0002)
    assert math.isclose(LRISCTask.lam(st, 250), 0.002, rel_tol=1e-9)  # half-way in log
    assert math.isclose(LRISCTask.lam(st, 500), 0.02) and math.isclose(LRISCTask.lam(st, 900), 0.02)
    assert LRISCTask.lam(stage(), 0) == 0.02  # no ramp by default


def test_perceptual_term_only_below_the_step_limit():
    diff = ConditionalDiffusion(DiffusionConfig(num_train_timesteps=100))
    x0 = torch.rand(4, 3, 8, 8)
    est = torch.zeros(4, 3, 8, 8)
    index = torch.tensor([99, 10, 99, 20])
    per = lambda a, b: torch.ones(a.shape[0])  # noqa: E731 (distance 1 for every image)
    full = rdp_loss(x0, [(est, index)], None, diff, per, eta=0.5)
    masked = rdp_loss(x0, [(est, index)], None, diff, per, eta=0.5,
                      lpips_max_index=LRISCTask.lpips_max_index(stage(lpips_max_t=0.5), diff))
    assert math.isclose(full.parts["d_p"], 1.0) and math.isclose(masked.parts["d_p"], 0.5)  # 2 of 4 images
    assert math.isclose(full.parts["d"], masked.parts["d"])
    assert LRISCTask.lpips_max_index(stage(), diff) is None


@pytest.mark.parametrize("options,says", [({"t_max_share": 2}, "t_max_share = 2"), ({"eta": -0.5}, "eta = -0.5"),
                                          ({"modules": "g_e"}, "use source, jscc or all"),
                                          ({"lpips": 1}, "true or false"), ({"bogus": 1}, "unknown lrisc"),
                                          ({"cbr_min": 0.1, "cbr_max": 0.05}, "cbr_min must not exceed"),
                                          ({"lam": 0, "lam_start": 0.1, "lam_ramp": 0.5}, "give lam > 0"),
                                          ({"lam_start": 0.1}, "lam_ramp > 0")])
def test_bad_stage_options_are_named(options, says):
    with pytest.raises(ValueError, match=says.replace("(", r"\(")):
        LRISCTask("tiny").check_options(stage(**options))
