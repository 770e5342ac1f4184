"""LRISC sampler of g_d: every network call sees the noise level that its time input had in training.

Training (Algorithm 1) feeds X_theta the state x_n = sqrt(alpha_n) x0 + sqrt(1 - alpha_n) eps together with the
time input n / N_train (``ConditionalDiffusion.add_noise`` and ``time_input`` of the same index n - 1). The
samplers must call the network on states of exactly that form: with a denoiser that always returns the same
x0, deterministic DDIM keeps the first call's noise estimate eps_N = (x_N - sqrt(alpha_N) x0) / sqrt(1 - alpha_N)
fixed, so the state at every later call is known in closed form, and the output must be x0 itself (the last
step goes to alpha = 1).
"""

from __future__ import annotations

import pytest
import torch

from lrisc_sim.lrisc.config import DiffusionConfig
from lrisc_sim.lrisc.diffusion import ConditionalDiffusion


def _run(d: ConditionalDiffusion, steps: int, sampler: str):
    torch.manual_seed(0)
    x0 = torch.rand(1, 3, 8, 8) * 2 - 1
    calls = []

    def net(x, t):
        calls.append((x.clone(), t.clone()))
        return x0.expand_as(x)

    out = d.sample(net, (1, 3, 8, 8), seeds=[5], steps=steps, sampler=sampler)
    eps = d.initial_noise((1, 3, 8, 8), [5])
    return x0, eps, calls, out


@pytest.mark.parametrize("sampler", ["ddim", "dpm"])
@pytest.mark.parametrize("steps", list(range(1, 11)))
def test_each_call_sees_the_training_state_of_its_time_input(sampler, steps):
    d = ConditionalDiffusion(DiffusionConfig(num_train_timesteps=1000))
    x0, eps, calls, out = _run(d, steps, sampler)
    n_train = d.cfg.num_train_timesteps
    assert len(calls) == steps
    a_n = d.alphas_cumprod[n_train - 1]
    eps_n = (eps - a_n.sqrt() * x0) / (1 - a_n).sqrt()  # the noise DDIM carries from the first call on
    assert float(calls[0][1][0]) == 1.0  # the first call at n = N_train ("trailing" timesteps)
    for k, (x, t) in enumerate(calls):
        index = torch.round(t * n_train).long() - 1  # inverse of time_input
        assert torch.allclose(d.time_input(index), t)
        if k == 0:
            assert torch.equal(x, eps)  # x_N ~ N(0, I): the training state at n = N has sqrt(alpha_N) < 0.007
            continue
        expected = d.add_noise(x0, eps_n, index)  # the state training pairs with this time input
        assert torch.allclose(x, expected, atol=2e-5), (k, int(index[0]))
    assert torch.allclose(out, x0, atol=1e-5)  # last step to alpha = 1: no eps left in the output


def test_time_inputs_decrease_and_stay_on_the_training_grid():
    d = ConditionalDiffusion(DiffusionConfig(num_train_timesteps=100, steps=3))
    _, _, calls, _ = _run(d, 6, "ddim")
    ts = [float(t[0]) for _, t in calls]
    assert ts == sorted(ts, reverse=True) and len(set(ts)) == len(ts)
    assert all(abs(t * 100 - round(t * 100)) < 1e-4 and 0 < t <= 1 for t in ts)


def test_unknown_sampler_is_refused():
    d = ConditionalDiffusion(DiffusionConfig(num_train_timesteps=100))
    with pytest.raises(ValueError, match="unknown sampler"):
        d.scheduler("euler")


def test_stochastic_ddim_reduces_to_eq8_at_eta_0_and_is_reproducible():
    """eta = 0 of the hand-written stochastic DDIM equals the scheduler's deterministic eq. (8); eta > 0 adds noise
    from each image's own generator (same seeds, same output; another batch, same rows)."""
    from lrisc_sim.lrisc.config import DiffusionConfig
    from lrisc_sim.lrisc.diffusion import ConditionalDiffusion

    d = ConditionalDiffusion(DiffusionConfig(num_train_timesteps=1000, steps=4))
    net = lambda x, t: 0.5 * torch.tanh(x) * (1 - t.view(-1, 1, 1, 1))  # noqa: E731 (any smooth denoiser)
    shape = (2, 3, 8, 8)
    det = d.sample(net, shape, seeds=[1, 2], steps=5)
    sch = d.scheduler("ddim")
    sch.set_timesteps(5)
    manual = d._sample_stochastic(net, shape, [1, 2], [int(t) for t in sch.timesteps], "cpu", 0.0)
    assert torch.allclose(det, manual, atol=1e-5)
    a = d.sample(net, shape, seeds=[1, 2], steps=5, eta=1.0)
    b = d.sample(net, shape, seeds=[1, 2], steps=5, eta=1.0)
    one = d.sample(net, (1, 3, 8, 8), seeds=[2], steps=5, eta=1.0)
    assert torch.equal(a, b) and torch.allclose(a[1:], one, atol=1e-6)
    assert (a - det).abs().max() > 1e-3  # the noise does something
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        d.sample(net, shape, seeds=[1, 2], eta=1.5)
    with pytest.raises(ValueError, match="ddim"):
        d.sample(net, shape, seeds=[1, 2], sampler="dpm", eta=0.5)
