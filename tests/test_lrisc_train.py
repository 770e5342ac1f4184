"""LRISC training (Algorithm 1) through the one trainer: each stage's loss falls on tiny crops, the recipe resumes
with its EMA, continues a carried later stage on a new machine, and takes what fits from another architecture."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from channels.awgn import AWGN
from channels.training import TrainingLink
from lrisc_sim.lrisc.config import preset
from lrisc_sim.lrisc.model import LRISC
from lrisc_sim.lrisc.task import LRISCTask
from lrisc_sim.recipe import RecipeError, run_recipe
from lrisc_sim.trainer import Batch, StageConfig

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LRISC_SIM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 8, size // 8, generator=g)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def _stage(modules: str, **options) -> StageConfig:
    return StageConfig(name="s", steps=1000, options={"modules": modules, "lpips": False, "eta": 0.0,
                                                      "cbr_min": 1 / 16, "cbr_max": 1 / 8, **options})


@pytest.mark.parametrize("modules", ["source", "jscc", "all"])
def test_a_few_steps_lower_the_stage_loss(modules):
    torch.manual_seed(0)
    task, model = LRISCTask("tiny"), LRISC(preset("tiny"))
    st = _stage(modules)
    task.check_options(st)
    params = task.trainable(model, st)
    opt = torch.optim.Adam(params, lr=3e-3)
    x = _smooth_images(2, 32)
    link = TrainingLink(AWGN(), (0.0, 20.0))
    snr, realization = link.draw(0, 2)

    def loss(backward: bool) -> float:
        torch.manual_seed(123)  # same noise, timesteps, SNR and CBR every time: a deterministic objective
        batch = Batch(x, snr, realization, 10_000, torch.Generator().manual_seed(5))
        out = task.loss(model, batch, link, st)
        if backward:
            opt.zero_grad()
            out.total.backward()
            opt.step()
        return float(out.total.detach())

    before = loss(False)
    for _ in range(15):
        loss(True)
    after = loss(False)
    assert after < before, (modules, before, after)
    trained = {id(p) for p in params}  # only the stage's modules are trained
    assert trained and all(not p.requires_grad for p in model.parameters() if id(p) not in trained)


def test_t_max_share_moves_that_share_to_the_last_step():
    """t_max_share: about that share of the batch at n = N (index N - 1), the rest as sampled; every stage."""
    model = LRISC(preset("tiny"))
    diff, n = model.diffusion, model.diffusion.cfg.num_train_timesteps
    index = torch.zeros(4000, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(LRISCTask.with_t_max(index, _stage("source", t_max_share=0.0), diff, g), index)
    moved = LRISCTask.with_t_max(index, _stage("source", t_max_share=0.25), diff, g)
    assert set(moved.tolist()) == {0, n - 1} and abs(float((moved == n - 1).float().mean()) - 0.25) < 0.03
    seen = []
    loss = diff.loss
    diff.loss = lambda x_est, target, idx: (seen.append(idx), loss(x_est, target, idx))[1]
    link = TrainingLink(AWGN(), (10.0, 10.0))
    snr, r = link.draw(0, 2)
    for modules in ("source", "jscc", "all"):  # every stage takes it
        batch = Batch(_smooth_images(2, 32), snr, r, 10_000, torch.Generator().manual_seed(1))
        LRISCTask("tiny").loss(model, batch, link, _stage(modules, t_max_share=1.0))
    assert len(seen) == 4 and all(bool((i == n - 1).all()) for i in seen)


def _folder(tmp_path: Path, n: int = 4, size: int = 40) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((size, size + 8, 3)) * 255).astype(np.uint8)).save(d / f"im{i}.png")
    return d


def _recipe(tmp_path: Path, stages: str, head: str = "", name: str = "lr") -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(f"""name = "{name}"
codec = "lrisc"
{head}
[model]
preset = "tiny"
[data]
train = ["{_folder(tmp_path) if not (tmp_path / 'imgs').exists() else tmp_path / 'imgs'}"]
val = 1
val_crop = 32
[defaults]
batch = 2
crop = 32
val_every = 2
lpips = false
val_steps = 1
warmup = 1
{stages}""")
    return p


def test_a_resumed_stage_keeps_its_ema_and_state_is_safetensors(tmp_path, cache):
    """Stopped after its first step (--max-minutes 0), the same recipe resumes: the state is safetensors + JSON
    (weights, optimizer, RNG, EMA), the EMA goes on counting, and the export holds the EMA weights."""
    from lrisc_sim.train_state import read_state

    p = _recipe(tmp_path, '[[stages]]\nname = "s1"\nmodules = "source"\nsteps = 4\nema = 0.5\nlr = 1e-2\n')
    card = run_recipe(p, threads=1, max_minutes=0)
    assert card["steps"] == 1 and card["status"].startswith("in training")
    state = cache / "train" / "lr" / "s1.state.safetensors"
    tensors, doc = read_state(state)  # never a pickle
    assert doc["meta"]["step"] == 1 and doc["meta"]["ema_updates"] == 1 and doc["meta"]["stage"] == "s1"
    assert "rng.cpu" in tensors and any(k.startswith("opt.") for k in tensors)
    assert any(k.startswith("ema.") for k in tensors)
    card = run_recipe(p, threads=1)
    assert card["status"] == "final" and [h["step"] for h in card["history"]] == [1, 2, 4]
    assert card["parameters"]["total"] == sum(p.numel() for p in LRISC(preset("tiny")).parameters())
    tensors, doc = read_state(state)
    assert doc["meta"]["ema_updates"] == 4  # continued, not restarted
    final = LRISC.load(cache / "train" / "lr" / "s1.safetensors").state_dict()
    raw = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    ema = {k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")}
    w = "g_e.net.0.weight"
    assert torch.equal(final[w], ema[w]) and not torch.equal(final[w], raw[w])
    assert card["stage"]["ema"] == 0.5 and card["modules"] == "source"


def test_a_stage_from_the_previous_one_needs_it(tmp_path):
    p = _recipe(tmp_path, '[[stages]]\nname = "s1"\nmodules = "source"\nsteps = 1\n'
                          '[[stages]]\nname = "s2"\nmodules = "jscc"\ninit = "previous"\nsteps = 1\n')
    with pytest.raises(RecipeError, match="run that stage first"):
        run_recipe(p, threads=1, only="s2")


def test_init_partial_keeps_what_fits_and_names_the_rest(tmp_path, cache):
    other = preset("tiny")
    old = LRISC(replace(other, unet=replace(other.unet, widths=(8, 8))))  # a g_d that does not fit the preset
    old.save(tmp_path / "old.safetensors")
    stage = '[[stages]]\nname = "s1"\nmodules = "source"\nsteps = 1\ninit_partial = true\n'
    msgs: list[str] = []
    run_recipe(_recipe(tmp_path, stage + f'init = "{tmp_path / "old.safetensors"}"\n'), threads=1, log=msgs.append)
    line = next(m for m in msgs if "fresh:" in m)
    assert line.split("fresh: ")[1] == "g_d"  # every other module came from the file
    m = LRISC.load(cache / "train" / "lr" / "s1.safetensors")
    assert m.cfg.unet.widths == preset("tiny").unet.widths  # the preset's architecture, not the file's
    with pytest.raises(ValueError, match="init_partial needs init"):
        run_recipe(_recipe(tmp_path, stage, name="lr2"), threads=1)


def test_a_carried_later_stage_continues_on_a_new_machine_without_the_previous_one(tmp_path, cache):
    """The running stage's export is carried (committed); a new machine with neither the state nor stage 1's
    weights goes on from it, is interrupted, and resumes its state with the same command."""
    p = _recipe(tmp_path, '[[stages]]\nname = "s1"\nmodules = "source"\nsteps = 1\n'
                          '[[stages]]\nname = "s2"\nmodules = "jscc"\ninit = "previous"\nsteps = 4\nval_every = 1\n',
                head=f'carry = "{tmp_path / "carry"}"')
    card = run_recipe(p, threads=1, max_minutes=0)  # s1 (one step) done, s2 stopped after its first step
    assert card["stage"]["name"] == "s2" and card["steps"] == 1
    carried = tmp_path / "carry" / "lr.s2.safetensors"
    assert [q.name for q in (tmp_path / "carry").iterdir()] and carried.is_file()
    shutil.rmtree(cache)  # a new machine
    msgs: list[str] = []
    card = run_recipe(p, threads=1, max_minutes=0, log=msgs.append)
    assert any("s1: skipped" in m for m in msgs) and any("continuing the export" in m for m in msgs)
    assert card["steps"] == 2 and not (cache / "train" / "lr" / "s1.safetensors").exists()
    msgs.clear()
    card = run_recipe(p, threads=1, log=msgs.append)  # the state here: resumed, stage 1 not needed
    assert any("resumed" in m for m in msgs)
    assert card["status"] == "final" and [h["step"] for h in card["history"]] == [0, 1, 2, 3, 4]  # 0: its start
    assert not list((tmp_path / "carry").glob("lr.*"))  # finished: nothing left to carry
