"""Recipes and the one trainer: parsing, resuming, continuing elsewhere, every codec over any channel."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lrisc_sim.recipe import RecipeError, load_recipe, run_recipe, task_class
from lrisc_sim.trainer import Batch, LossOutput, NonFiniteLoss, StageConfig, TrainTask


@pytest.fixture()
def imgs(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8")).save(d / f"im{i}.png")
    return d


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LRISC_SIM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


DJ = """
name = "{name}"
codec = "deepjscc"
[model]
cbr = "1/16"
levels = 2
width = 8
first_width = 8
[data]
train = ["{imgs}"]
val = 1
val_crop = 64
[defaults]
batch = 2
crop = 32
channel = "{channel}"
snr = "0:20"
val_every = 2
[[stages]]
name = "a"
steps = {steps}
lr = 1e-3
"""


def recipe(tmp_path: Path, text: str, name: str = "r.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_deepjscc_trains_over_rayleigh_and_a_rerun_continues_instead_of_starting_over(tmp_path, imgs, cache):
    p = recipe(tmp_path, DJ.format(name="dj", imgs=imgs, channel="rayleigh-block", steps=4))
    card = run_recipe(p, threads=1, max_minutes=0)  # stops (and saves) after its first step
    assert card["steps"] == 1 and card["status"].startswith("in training")
    card = run_recipe(p, threads=1)  # the same command goes on at step 1
    assert card["steps"] == 4 and card["status"] == "final"
    assert [h["step"] for h in card["history"]] == [1, 2, 4]
    assert "Rayleigh" in card["channel"] and card["recipe_sha256"] and card["recipe"] == str(p)
    from lrisc_sim.model_io import load_model

    model = load_model(cache / "train" / "dj" / "a.safetensors", expect="deepjscc")
    assert model.cfg.cbr == "1/16"


def test_the_loss_curve_is_reproducible_and_follows_the_seed(tmp_path, imgs, cache):
    logs = []
    for i, seed in enumerate((0, 0, 1)):
        p = recipe(tmp_path, DJ.format(name=f"s{i}", imgs=imgs, channel="awgn", steps=3)
                   .replace("lr = 1e-3", f"lr = 1e-3\nseed = {seed}"), f"s{i}.toml")
        logs.append(run_recipe(p, threads=1)["history"][-1]["train"]["loss"])
    assert logs[0] == logs[1] and logs[0] != logs[2]


def test_a_carried_export_continues_on_another_machine(tmp_path, imgs, cache):
    text = DJ.format(name="cx", imgs=imgs, channel="awgn", steps=4).replace('codec = "deepjscc"',
                                                                         f'codec = "deepjscc"\ncarry = "{tmp_path}/carry"')
    p = recipe(tmp_path, text)
    run_recipe(p, threads=1, max_minutes=0)
    carried = tmp_path / "carry" / "cx.a.safetensors"
    assert carried.is_file() and json.loads(carried.with_suffix(".json").read_text())["steps"] == 1
    shutil.rmtree(cache)  # a new machine: no state, only the committed export
    card = run_recipe(p, threads=1)
    assert card["status"] == "final" and card["history"][0]["step"] == 1 and card["steps"] == 4
    assert not list((tmp_path / "carry").glob("cx.*"))  # the recipe is done: nothing left to carry


def test_lrisc_trains_every_stage_through_a_fading_channel(tmp_path, imgs, cache):
    text = f"""
name = "lr"
codec = "lrisc"
ship = "{tmp_path}/ship/lrisc_tiny.safetensors"
[model]
preset = "tiny"
[data]
train = ["{imgs}"]
val = 1
val_crop = 32
[defaults]
batch = 2
crop = 32
val_every = 2
lpips = false
val_steps = 1
channel = "rician:K=2"
snr = "0:20"
[[stages]]
name = "s1"
modules = "source"
steps = 1
[[stages]]
name = "s2"
modules = "jscc"
init = "previous"
steps = 2
fixed_share = 0.5
[[stages]]
name = "s3"
modules = "all"
init = "previous"
steps = 1
eta = 0.0
"""
    card = run_recipe(recipe(tmp_path, text), threads=1)
    assert card["status"] == "final" and card["modules"] == "all"
    assert card["history"][0]["step"] == 0  # a stage from other weights records its starting point
    assert 0 < card["validation"]["cbr_total"] <= 1 / 48 + 1e-9
    shipped = tmp_path / "ship" / "lrisc_tiny.safetensors"
    from lrisc_sim.lrisc.codec import make_lrisc

    codec = make_lrisc(checkpoint=str(shipped))
    assert codec.model.cfg.preset == "tiny" and shipped.with_suffix(".json").is_file()
    # the shipped card names every stage of the recipe with its CPU-hours, and their sum
    ship_card = json.loads(shipped.with_suffix(".json").read_text())
    stages = {st["name"]: st for st in ship_card["recipe_stages"]}
    assert list(stages) == ["s1", "s2", "s3"] and [st["steps"] for st in stages.values()] == [1, 2, 1]
    assert stages["s2"]["init"] == "previous" and stages["s3"]["validation"] == card["validation"]
    each = [json.loads((cache / "train" / "lr" / f"{n}.json").read_text())["cpu_hours"] for n in stages]
    assert ship_card["recipe_cpu_hours"] == pytest.approx(sum(each), abs=1e-4)  # (4 decimals: 0 for tiny stages)
    assert [st["cpu_hours"] for st in stages.values()] == pytest.approx(each, abs=1e-4)
    assert ship_card["history"] == card["history"]  # the last stage's card, with the lineage added


class NaNTask(TrainTask):
    """A plugin-style trainable codec whose loss turns NaN at step 2."""

    tag = "deepjscc"

    def build(self, stage, init, device, log=print):
        from baselines.deepjscc import DeepJSCC, DeepJSCCConfig

        return DeepJSCC(DeepJSCCConfig(cbr="1/16", levels=2, width=8, first_width=8))

    def loss(self, model, batch: Batch, link, stage) -> LossOutput:
        s = model.encode(batch.x)
        rx = link.send(s, batch.snr_db, batch.realization)
        v = rx.s_hat.real.pow(2).mean()
        return LossOutput(v * (float("nan") if batch.step >= 2 else 1.0))

    def validate(self, model, val, link, stage, device):
        return {"psnr": 0.0}


def test_a_non_finite_loss_stops_naming_the_step(tmp_path, imgs):
    text = DJ.format(name="nan", imgs=imgs, channel="awgn", steps=5).replace('codec = "deepjscc"',
                                                                          'codec = "tests.test_recipe:NaNTask"')
    text = text[: text.index("[model]")] + text[text.index("[data]"):]
    with pytest.raises(NonFiniteLoss, match="at step 3"):
        run_recipe(recipe(tmp_path, text), threads=1)


@pytest.mark.parametrize("edit,needle", [
    (lambda t: "bogus = 1\n" + t, "unknown key"),
    (lambda t: t.replace('name = "a"\n', ""), "give each stage a name"),
    (lambda t: t.replace("steps = 4", "steps = 0"), "steps = 0: must be an integer >= 1"),
    (lambda t: t.replace("lr = 1e-3", "lr = 1e-3\nema = 1.5"), "ema = 1.5"),
    (lambda t: t.replace('snr = "0:20"', 'snr = "nan"'), "training SNR"),
    (lambda t: t.replace('channel = "awgn"', 'channel = "warp"'), "warp"),
    (lambda t: t.replace("lr = 1e-3", 'lr = 1e-3\ninit = "previous"'), "no stage before it"),
    (lambda t: t.replace("lr = 1e-3", "lr = 1e-3\nwidth_mult = 3"), "unknown deepjscc stage option"),
    (lambda t: t.replace('codec = "deepjscc"', 'codec = "nosuch"'), "cannot be trained"),
    (lambda t: t.replace('cbr = "1/16"', 'cbr = "1/16"\nwidth2 = 3'), "[model] options do not fit"),
    (lambda t: t.replace("levels = 2", "levels = 99"), "levels = 99"),
])
def test_bad_recipes_are_one_line_errors_naming_the_key(tmp_path, imgs, edit, needle):
    p = recipe(tmp_path, edit(DJ.format(name="bad", imgs=imgs, channel="awgn", steps=4)))
    with pytest.raises((RecipeError, ValueError)) as e:
        run_recipe(p, threads=1)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_recipe_cannot_call_arbitrary_objects(tmp_path, imgs):
    marker = tmp_path / "marker"
    with pytest.raises(RecipeError, match="not a lrisc_sim.trainer.TrainTask subclass"):
        task_class("os:system")
    p = recipe(tmp_path, DJ.format(name="x", imgs=imgs, channel="awgn", steps=1)
               .replace('codec = "deepjscc"', 'codec = "os:system"'))
    with pytest.raises(RecipeError):
        run_recipe(p)
    assert not marker.exists()


def test_stage_learning_rate_warms_up_then_decays_to_lr_final():
    st = StageConfig(steps=100, lr=1e-3, lr_final=1e-4, warmup=10)
    assert st.lr_at(0) == pytest.approx(1e-4, rel=1e-3)  # 1/10 of the warm-up ramp at the first step
    assert st.lr_at(9) == pytest.approx(1e-4 + 0.5 * 9e-4 * (1 + np.cos(np.pi * 0.09)))  # warm-up over
    assert st.lr_at(100) == pytest.approx(1e-4)
    assert st.lr_at(50, warm_from=45) == pytest.approx(0.6 * (1e-4 + 0.5 * 9e-4 * (1 + np.cos(np.pi / 2))))
