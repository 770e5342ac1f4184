"""SNR-adaptive DeepJSCC (deepjscc-adaptive): AF modules by hand, exact CBR and power, the decoder's effective
SNR, the model format, warm start from DeepJSCC, training through a recipe and a sweep at two SNRs, errors."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from baselines.deepjscc import DeepJSCC, DeepJSCCConfig
from baselines.deepjscc_adaptive import (TAG, AdaptiveConfig, AdaptiveDeepJSCC, AdaptiveDeepJSCCCodec,
                                         AdaptiveJSCCError, AFModule, check_plan, effective_snr_db)
from baselines.deepjscc_adaptive_task import AdaptiveDeepJSCCTask, warm_start
from channels.awgn import AWGN
from channels.base import equalize
from channels.power import average_power
from channels.realization import Realization
from channels.training import TrainingLink
from lrisc_sim.codec import Context
from lrisc_sim.data import pad_to_multiple
from lrisc_sim.model_io import header, load_model, save_model
from lrisc_sim.recipe import RecipeError, load_recipe, run_recipe
from lrisc_sim.trainer import StageConfig

TINY = dict(cbr="1/16", levels=2, extra=1, first_width=8, width=8, af_hidden=4)


def tiny(seed: int = 0, randomize_af: bool = False, **kw) -> AdaptiveDeepJSCC:
    """A narrow model (d = 4, c = 6 at CBR 1/16); ``randomize_af``: AF modules away from the identity."""
    torch.manual_seed(seed)
    m = AdaptiveDeepJSCC(AdaptiveConfig(**{**TINY, **kw})).eval()
    if randomize_af:
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, p in m.named_parameters():
                if ".af." in name and ".fc2." in name:
                    p.copy_(torch.randn(p.shape, generator=g))
    return m


@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "adaptive.safetensors"
    save_model(tiny(randomize_af=True), path)
    return path


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LRISC_SIM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ---------------------------------------------------------------- the AF module and the model

def test_af_module_is_the_hand_formula_and_the_identity_when_fresh():
    torch.manual_seed(1)
    af = AFModule(5, 3)
    f = torch.randn(2, 5, 4, 6)
    snr = torch.tensor([0.0, 17.0])
    assert torch.equal(af(f, snr), f * 1.0)  # fresh: W2 = 0, b2 = 0 -> 2 sigmoid(0) = 1
    with torch.no_grad():
        af.fc2.weight.normal_()
        af.fc2.bias.normal_()
    w1, b1, w2, b2 = (t.detach().numpy().astype(np.float64) for t in
                      (af.fc1.weight, af.fc1.bias, af.fc2.weight, af.fc2.bias))
    fn = f.numpy().astype(np.float64)
    for i in range(2):
        u = np.concatenate([fn[i].mean(axis=(1, 2)), [snr[i].item() / 10]])
        a = 2 / (1 + np.exp(-(w2 @ np.maximum(w1 @ u + b1, 0) + b2)))
        assert np.allclose(af(f, snr)[i].detach().numpy(), a[:, None, None] * fn[i], atol=1e-5)
    assert not torch.allclose(af(f, torch.tensor([0.0, 0.0])), af(f, torch.tensor([20.0, 20.0])))


def test_shapes_and_the_output_depends_on_the_snr_on_both_sides():
    m = tiny(randomize_af=True)
    x = torch.rand(2, 3, 32, 32)
    s0, s20 = m.encode(x, 0.0), m.encode(x, 20.0)
    assert s0.shape == (2, 8 * 8 * 6 // 2) and s0.dtype == torch.complex64
    assert torch.allclose(average_power(s0), torch.ones(2), atol=1e-5)
    assert (s0 - s20).abs().max() > 1e-3  # the encoder adapts to the SNR
    y0, y20 = m.decode(s0, (8, 8), 0.0), m.decode(s0, (8, 8), 20.0)
    assert y0.shape == x.shape and 0 <= y0.min() and y0.max() <= 1
    assert (y0 - y20).abs().max() > 1e-3  # and so does the decoder
    # per-image SNRs: each row is the row of its own SNR
    both = m.encode(x, torch.tensor([0.0, 20.0]))
    assert torch.allclose(both[0], s0[0], atol=1e-6) and torch.allclose(both[1], s20[1], atol=1e-6)
    with pytest.raises(AdaptiveJSCCError, match="3 values for a batch of 2"):
        m.encode(x, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(AdaptiveJSCCError, match="not a multiple of 4"):
        m.encode(torch.rand(1, 3, 30, 32), 5.0)


def test_effective_snr_is_the_link_snr_over_awgn_and_the_fade_over_block_fading():
    s = torch.ones(2, 16, dtype=torch.complex64)
    r = Realization(0, ["a", "b"], 0)
    rx = equalize(AWGN()(s, torch.tensor([3.0, 12.5]), r))
    assert torch.allclose(effective_snr_db(rx), torch.tensor([3.0, 12.5]), atol=1e-4)
    from channels import make_channel

    out = make_channel("rayleigh-block")(s, torch.tensor([10.0, 10.0]), r)
    h2 = out.h.abs()[:, 0] ** 2
    for eq in ("zf", "mmse"):  # N0 / |h|^2 either way: 10 dB + 10 log10 |h|^2
        assert torch.allclose(effective_snr_db(equalize(out, eq)), 10 + 10 * torch.log10(h2), atol=1e-3)
    # fast fading: the SNR of the mean noise power, -10 log10(mean N0 / |h_i|^2), clamped to -50..60 dB
    out = make_channel("rayleigh-fast")(s, torch.tensor([10.0, 10.0]), r)
    want = -10 * torch.log10((0.1 / out.h.abs() ** 2).double().mean(1))
    assert torch.allclose(effective_snr_db(equalize(out, "zf"), 16).double(), want.clamp(-50, 60), atol=1e-3)


# ---------------------------------------------------------------- the codec

@pytest.mark.parametrize("hw", [(32, 32), (36, 44)])
def test_codec_exact_cbr_unit_power_and_decode(ckpt, hw):
    codec = AdaptiveDeepJSCCCodec(ckpt)
    assert codec.snr_aware_encoder and codec.multiple == 4 and codec.weight_files() == [ckpt]
    x = torch.rand(2, 3, *hw)
    xp = pad_to_multiple(x, codec.multiple)
    ctx = Context(hw, snr_db=torch.tensor([0.0, 10.0]))
    enc = codec.encode(xp, Fraction(1, 16), ctx)
    k = math.floor(Fraction(1, 16) * 3 * hw[0] * hw[1])
    assert enc.symbols.shape == (2, k) and (enc.length == k).all() and (enc.side_bits == 0).all()
    assert torch.allclose(average_power(enc.symbols, enc.length), torch.ones(2), atol=1e-5)
    # the SNR reaches the encoder: image 1 encoded at 10 dB differs from image 1 encoded at 0 dB
    enc0 = codec.encode(xp, Fraction(1, 16), Context(hw, snr_db=torch.tensor([0.0, 0.0])))
    assert torch.allclose(enc0.symbols[0], enc.symbols[0]) and not torch.allclose(enc0.symbols[1], enc.symbols[1])
    rx = equalize(AWGN()(enc.symbols, ctx.snr_db, Realization(0, ["a", "b"], 0)))
    out = codec.decode(rx, enc, ctx)
    assert out.images.shape == xp.shape and out.ok.all()
    if hw == (32, 32):  # no padding: the codec is the model's encode -> channel -> decode
        m = codec.model
        ref = m.decode(rx.s_hat / rx.gain, (8, 8), ctx.snr_db)
        assert torch.allclose(out.images, ref, atol=1e-6)


def test_codec_errors_are_one_line(ckpt, tmp_path, monkeypatch):
    codec = AdaptiveDeepJSCCCodec(ckpt)
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(AdaptiveJSCCError, match="for CBR 1/16, not CBR 1/48"):
        codec.encode(x, 1 / 48, Context((32, 32), snr_db=torch.tensor([5.0])))
    with pytest.raises(AdaptiveJSCCError, match="encodes for the link SNR"):
        codec.encode(x, 1 / 16)
    with pytest.raises(AdaptiveJSCCError, match="sweep runs CBR 1/16, 1/48: sweep --cbr 1/16"):
        check_plan({"checkpoint": str(ckpt)}, [1 / 48, 1 / 16])
    check_plan({"checkpoint": str(ckpt)}, [Fraction(1, 16)])
    import baselines.deepjscc_adaptive as mod

    monkeypatch.setattr(mod, "DEFAULT_CHECKPOINT", tmp_path / "none.safetensors")
    for call in (lambda: check_plan({}, [1 / 48]), lambda: AdaptiveDeepJSCCCodec()):
        with pytest.raises(AdaptiveJSCCError, match="lrisc-sim train recipes/deepjscc_adaptive_cbr1-48.toml"):
            call()
    dj = tmp_path / "dj.safetensors"
    torch.manual_seed(0)
    save_model(DeepJSCC(DeepJSCCConfig(cbr="1/16", levels=2, first_width=8, width=8)), dj)
    with pytest.raises(ValueError, match="is a deepjscc checkpoint, not a deepjscc-adaptive one") as e:
        AdaptiveDeepJSCCCodec(dj)
    assert "\n" not in str(e.value)


def test_registry_builds_it_and_lists_its_options(ckpt):
    from lrisc_sim.registry import check_spec, make_codec, option_lines

    codec = make_codec(TAG, checkpoint=str(ckpt))
    assert isinstance(codec, AdaptiveDeepJSCCCodec) and "CBR 1/16" in codec.describe()
    assert any(line.strip().startswith("checkpoint") for line in option_lines(TAG))
    with pytest.raises(ValueError, match="'steps' is not an option of deepjscc-adaptive"):
        check_spec(f"{TAG}:steps=3")


# ---------------------------------------------------------------- the model format

def test_save_load_round_trip_through_model_io(ckpt):
    tag, cfg = header(ckpt)
    assert tag == TAG and cfg == {**TINY, "kernel": 5}
    m = load_model(ckpt, expect=TAG)
    ref = tiny(randomize_af=True)
    assert isinstance(m, AdaptiveDeepJSCC) and not m.training
    for k, v in ref.state_dict().items():
        assert torch.equal(m.state_dict()[k], v), k
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(m.encode(x, 7.0), ref.encode(x, 7.0))


@pytest.mark.parametrize("change,needle", [
    ({"width": 0}, "width = 0"), ({"af_hidden": 5000}, "af_hidden = 5000"), ({"kernel": 4}, "kernel = 4"),
    ({"levels": True}, "levels = True"), ({"cbr": "1/40"}, "cbr = '1/40'"), ({"cbr": 0.5}, "cbr = 0.5"),
    ({"dropout": 0.1}, "unknown field 'dropout'")])
def test_from_config_bounds_name_the_field(change, needle):
    with pytest.raises(AdaptiveJSCCError, match=needle.replace("(", r"\(")) as e:
        AdaptiveDeepJSCC.from_config({**TINY, **change})
    assert "\n" not in str(e.value)


def test_a_forged_header_is_refused_before_any_allocation(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "forged.safetensors"
    cfg = {**TINY, "width": 10**6}
    save_file({"x": torch.zeros(1)}, str(p), metadata={"format": "lrisc-sim-model/1", "class": TAG,
                                                       "config": json.dumps(cfg)})
    with pytest.raises(ValueError, match="width = 1000000") as e:
        load_model(p, expect=TAG)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- warm start

def test_warm_start_from_a_deepjscc_copies_the_trunk_and_starts_as_that_model(tmp_path):
    torch.manual_seed(3)
    dj = DeepJSCC(DeepJSCCConfig(cbr="1/16", levels=2, extra=1, first_width=8, width=8)).eval()
    path = tmp_path / "dj.safetensors"
    save_model(dj, path)
    m = tiny(seed=9)
    logs: list[str] = []
    kept = warm_start(m, path, logs.append)
    assert kept and all(".af." in k for k in kept)  # everything but the AF modules came from the file
    for k, v in dj.state_dict().items():
        assert torch.equal(m.state_dict()[k], v), k
    assert "AF-module tensors start as the identity" in logs[0]
    x = torch.rand(2, 3, 32, 32)
    s = dj.encode(x)
    assert torch.allclose(m.encode(x, 3.0), s, atol=1e-6)
    noisy = s + 0.1 * torch.randn_like(s)
    assert torch.allclose(m.decode(noisy, (8, 8), 3.0), dj.decode(noisy, (8, 8)), atol=1e-6)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError) as e:
        warm_start(m, bad)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- training through a recipe, then a sweep

@pytest.fixture()
def imgs(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype("uint8")).save(d / f"im{i}.png")
    return d


RECIPE = """
name = "ad"
codec = "deepjscc-adaptive"
ship = "{ship}"
[model]
cbr = "1/16"
levels = 2
width = 8
first_width = 8
af_hidden = 4
[data]
train = ["{imgs}"]
val = 1
val_crop = 32
[[stages]]
name = "a"
init = "{init}"
steps = 3
batch = 2
crop = 32
lr = 1e-2
warmup = 1
ema = 0
channel = "awgn"
snr = "0:20"
val_snr = [0, 10, 15]
val_every = 3
"""


def test_a_tiny_recipe_trains_over_an_snr_range_and_the_export_runs_in_a_sweep(tmp_path, imgs, cache):
    import lrisc_sim

    torch.manual_seed(3)
    init = tmp_path / "dj.safetensors"
    save_model(DeepJSCC(DeepJSCCConfig(cbr="1/16", levels=2, extra=1, first_width=8, width=8)), init)
    ship = tmp_path / "ship" / "ad.safetensors"
    p = tmp_path / "ad.toml"
    p.write_text(RECIPE.format(imgs=imgs, init=init, ship=ship))
    card = run_recipe(p, threads=1)
    assert card["status"] == "final" and card["steps"] == 3 and card["model"] == TAG
    v = card["validation"]
    assert list(v)[:4] == ["psnr", "psnr_0dB", "psnr_10dB", "psnr_15dB"] and v["snr_db"] == [0.0, 10.0, 15.0]
    assert v["psnr"] == pytest.approx((v["psnr_0dB"] + v["psnr_10dB"] + v["psnr_15dB"]) / 3, abs=2e-4)
    assert len({v["psnr_0dB"], v["psnr_10dB"], v["psnr_15dB"]}) == 3  # each at its own SNR
    assert card["history"][0]["step"] == 0  # the warm start's own curve point
    assert card["warm_start"]["path"] == str(init) and "SNR uniform in [0, 20] dB" in card["channel"]
    assert ship.is_file() and header(ship)[0] == TAG
    trained = load_model(ship, expect=TAG)
    assert any(p.abs().max() > 0 for n, p in trained.named_parameters() if ".fc2." in n)  # the AF modules learnt
    df = lrisc_sim.sweep(TAG, snr=[0.0, 10.0], cbr="1/16", dataset=str(imgs), out=tmp_path / "sw",
                         metrics="psnr", device="cpu", checkpoints={TAG: str(ship)}, limit=2)
    assert len(df) == 4 and set(df["snr_db"]) == {0.0, 10.0}
    assert np.allclose(df["cbr_total"], 1 / 16) and np.isfinite(df["psnr"]).all()
    by = df.groupby("snr_db")["psnr"].mean()
    assert by[0.0] != by[10.0]
    with pytest.raises(ValueError, match="for CBR 1/16"):
        lrisc_sim.sweep(TAG, snr=[0.0], cbr="1/48", dataset=str(imgs), out=tmp_path / "sw2", metrics="psnr",
                        device="cpu", checkpoints={TAG: str(ship)}, limit=1)


def test_task_options_are_checked(tmp_path, imgs):
    task = AdaptiveDeepJSCCTask(cbr="1/16", levels=2, width=8, first_width=8, af_hidden=4)
    link = TrainingLink(AWGN(), (0.0, 20.0))
    assert task.val_snrs(StageConfig(), link) == [0.0, 10.0, 15.0]
    assert task.val_snrs(StageConfig(), TrainingLink(AWGN(), (12.0, 20.0))) == [15.0]
    assert task.val_snrs(StageConfig(), TrainingLink(AWGN(), (16.0, 20.0))) == [18.0]
    assert task.val_snrs(StageConfig(options={"val_snr": 5}), link) == [5.0]
    for bad in ({"val_snr": "10"}, {"val_snr": []}, {"val_snr": [0, 99]}, {"eta": 1}):
        with pytest.raises(ValueError, match="val_snr|unknown"):
            task.check_options(StageConfig(options=bad))
    with pytest.raises(ValueError, match="af_hidden = 0"):
        AdaptiveDeepJSCCTask(cbr="1/16", af_hidden=0)
    p = tmp_path / "r.toml"
    p.write_text(RECIPE.format(imgs=imgs, init=tmp_path / "none", ship=tmp_path / "s.safetensors")
                 .replace("af_hidden = 4", "af_hidden = 0").replace('init = "' + str(tmp_path / "none") + '"\n', ""))
    load_recipe(p)
    with pytest.raises(RecipeError, match=r"\[model\].*af_hidden = 0"):
        run_recipe(p, threads=1)
