"""DeepJSCC baseline: exact CBR, power, shapes, training through recipes, warm starts, Kodak summary, errors."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from baselines.deepjscc import (CHECKPOINT_DIR, DeepJSCC, DeepJSCCCodec, DeepJSCCConfig, DeepJSCCError,
                                checkpoint_name, default_levels, latent_channels, load_model, make_deepjscc, save_model)
from baselines.deepjscc_eval import add_kodak, evaluate, write_summary
from baselines.deepjscc_task import warm_start
from channels.awgn import AWGN
from channels.base import equalize
from channels.power import average_power
from channels.realization import Realization
from lrisc_sim.codec import Context
from lrisc_sim.data import pad_to_multiple
from lrisc_sim.recipe import run_recipe

SMALL = dict(first_width=8, width=8)


def small_model(cbr: str = "1/48", seed: int = 0) -> DeepJSCC:
    """A narrow model at the default depth of ``cbr`` (d = 8 for 1/48, d = 4 for 1/16)."""
    torch.manual_seed(seed)
    levels = default_levels(cbr)
    return DeepJSCC(DeepJSCCConfig(cbr=cbr, levels=levels, extra=4 - levels, **SMALL)).eval()


@pytest.fixture
def codec(tmp_path):
    for cbr in ("1/48", "1/16"):
        save_model(small_model(cbr), tmp_path / f"{checkpoint_name(cbr, 10)}.safetensors")
    return DeepJSCCCodec(snr=10, dirs=[tmp_path])


def test_channel_table():
    cbrs = ("1/64", "1/48", "1/32", "1/24", "1/16")
    assert [latent_channels(c, 3) for c in cbrs] == [6, 8, 12, 16, 24]
    assert [2 ** default_levels(c) for c in cbrs] == [8, 8, 8, 4, 4]
    assert [latent_channels(c, default_levels(c)) for c in cbrs] == [6, 8, 12, 4, 6]
    assert latent_channels("1/48", 2) == 2  # the original depth (d = 4)
    with pytest.raises(DeepJSCCError, match="not an even integer"):
        latent_channels("1/40", 3)
    with pytest.raises(ValueError, match="bad CBR"):  # the grammar's GridError (lrisc_sim.grammar.cbr_fraction)
        latent_channels("one/48", 3)
    with pytest.raises(DeepJSCCError, match="not an even integer"):
        default_levels("1/40")


@pytest.mark.parametrize("hw", [(64, 64), (96, 128), (512, 768), (100, 130), (33, 47)])
@pytest.mark.parametrize("cbr", ["1/48", "1/16"])
def test_exact_cbr_and_unit_power(codec, hw, cbr):
    x = torch.rand(2, 3, *hw)
    enc = codec.encode(pad_to_multiple(x, codec.multiple), Fraction(cbr), Context(hw))
    n = 3 * hw[0] * hw[1]
    k = math.floor(Fraction(cbr) * n)
    assert enc.symbols.dtype == torch.complex64 and enc.symbols.shape == (2, k)
    assert (enc.length == k).all() and (enc.side_bits == 0).all()
    if hw[0] % 8 == 0 and hw[1] % 8 == 0:
        assert Fraction(k, n) == Fraction(cbr)  # exact for multiples of d
    assert torch.allclose(average_power(enc.symbols, enc.length), torch.ones(2), atol=1e-5)


def test_shapes_and_decode(codec):
    model = codec.model_for("1/48")
    x = torch.rand(3, 3, 64, 96)
    assert model.encoder(x).shape == (3, 8, 8, 12)
    assert model(x, 10.0).shape == x.shape
    enc = codec.encode(x, 1 / 48)
    assert enc.symbols.shape == (3, 8 * 12 * 8 // 2)  # (H/8)(W/8) c / 2
    rx = equalize(AWGN()(enc.symbols, 10.0, Realization(0, ["a", "b", "c"], 0)))
    out = codec.decode(rx, enc)
    assert out.images.shape == x.shape and out.ok.all()
    assert 0 <= out.images.min() and out.images.max() <= 1
    # noiseless link: the codec equals the model's own encode/decode
    clean = equalize(AWGN()(enc.symbols, 200.0, Realization(0, ["a", "b", "c"], 0)))
    with torch.no_grad():
        ref = model.decode(model.encode(x), (8, 12))
    assert torch.allclose(codec.decode(clean, enc).images, ref, atol=1e-4)


def test_d4_model_shapes(codec):
    model = codec.model_for("1/16")
    assert model.cfg.factor == 4 and codec.multiple == 8  # the codec pads for its deepest model
    x = torch.rand(2, 3, 64, 96)
    assert model.encoder(x).shape == (2, 6, 16, 24)
    assert model(x, 10.0).shape == x.shape


def test_padded_size_decodes(codec):
    x = torch.rand(1, 3, 50, 70)
    xp = pad_to_multiple(x, codec.multiple)
    enc = codec.encode(xp, 1 / 16, Context.of(x))
    rx = equalize(AWGN()(enc.symbols, 10.0, Realization(0, ["a"], 0)))
    assert codec.decode(rx, enc).images.shape == xp.shape


def test_complex_channel_noise_power():
    torch.manual_seed(0)
    n = torch.randn(200_000, dtype=torch.complex64)  # what DeepJSCC.forward scales by sqrt(N0)
    assert abs(float((n.abs() ** 2).mean()) - 1.0) < 0.01


def test_save_load_round_trip(tmp_path):
    model = small_model("1/24", seed=3)
    p = tmp_path / "m.safetensors"
    save_model(model, p, card={"cbr": "1/24"})
    again = load_model(p)
    assert again.cfg == model.cfg and (tmp_path / "m.json").is_file()
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        s1, s2 = model.encode(x), again.encode(x)
        assert torch.equal(s1, s2)
        hw = (32 // model.cfg.factor, 48 // model.cfg.factor)
        assert torch.equal(model.decode(s1, hw), again.decode(s2, hw))


def test_missing_checkpoint_message(codec, tmp_path):
    with pytest.raises(DeepJSCCError) as e:
        codec.encode(torch.rand(1, 3, 64, 64), 1 / 96)
    msg = str(e.value)
    assert "\n" not in msg
    assert "no DeepJSCC checkpoint for CBR 1/96" in msg and "have 1/48, 1/16" in msg
    assert "lrisc-sim train RECIPE.toml" in msg and 'cbr = "1/96"' in msg
    with pytest.raises(DeepJSCCError, match="cannot give CBR 1/40 exactly"):
        codec.encode(torch.rand(1, 3, 64, 64), 1 / 40)
    with pytest.raises(DeepJSCCError, match="not found"):
        load_model(tmp_path / "nope.safetensors")
    (tmp_path / "bad.safetensors").write_text("garbage")
    with pytest.raises(DeepJSCCError, match="not a readable DeepJSCC checkpoint"):
        load_model(tmp_path / "bad.safetensors")


def test_snr_range_parsing():
    from channels.training import parse_snr_range

    assert parse_snr_range("10") == (10, 10)
    assert parse_snr_range("0:20") == (0, 20)
    with pytest.raises(ValueError, match="bad training SNR"):
        parse_snr_range("20:0")
    with pytest.raises(DeepJSCCError, match="bad training SNR"):
        make_deepjscc("ten")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LRISC_SIM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _smooth_images(folder, n=3, size=64):
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        a = rng.uniform(0.2, 1.0, 3)
        im = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (a[c] * xx + a[(c + 1) % 3] * yy)) for c in range(3)], -1)
        Image.fromarray((im * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    return folder


def recipe(tmp_path, name, data, cbr="1/16", steps=4, stage="", head="", levels=None, train=None):
    """A DeepJSCC recipe of a narrow model (8 filters) on 32 x 32 crops."""
    p = tmp_path / f"{name}.toml"
    lv = f"levels = {levels}\n" if levels else ""
    p.write_text(f"""name = "{name}"
codec = "deepjscc"
{head}
[model]
cbr = "{cbr}"
{lv}first_width = 8
width = 8
[data]
train = {json.dumps(train or [str(data)])}
val = 1
val_crop = 32
[defaults]
batch = 2
crop = 32
warmup = 1
lr = 1e-3
val_every = 2
[[stages]]
name = "a"
steps = {steps}
{stage}""")
    return p


def test_short_training_lowers_loss_resumes_and_continues_its_export(tmp_path, cache):
    data = _smooth_images(tmp_path / "data", n=4, size=80)
    p = recipe(tmp_path, "short", data, steps=60, stage='snr = "5:15"\nlr = 3e-3\nbatch = 4\nval_every = 20\n',
               head=f'ship = "{tmp_path / "out" / "deepjscc_cbr1-16_snr5-15.safetensors"}"')
    card = run_recipe(p, threads=1, log=lambda *a: None)
    hist = card["history"]
    assert [h["step"] for h in hist] == [20, 40, 60]
    assert hist[-1]["train"]["loss"] < hist[0]["train"]["loss"]
    assert card["stage"]["snr"] == "5:15" and card["cbr"] == "1/16" and "SNR uniform in [5, 15] dB" in card["channel"]
    out = tmp_path / "out" / "deepjscc_cbr1-16_snr5-15.safetensors"
    assert out.is_file() and out.with_suffix(".json").is_file()
    ev = evaluate(out, data, snr_db=10.0)
    assert ev["n_images"] == 4 and ev["cbr_used"] == [round(1 / 16, 8)]
    assert 5 < ev["psnr_mean"] < 60
    d, c = card["architecture"]["levels"], DeepJSCCConfig(**card["config"]).channels
    assert f"| 1/16 | {2 ** d} | {c} | 8/8 |" in write_summary(tmp_path / "out").read_text()
    # a longer run resumes the state at step 60; without the state, the export is continued, never overwritten
    p.write_text(p.read_text().replace("steps = 60", "steps = 80"))
    threads = torch.get_num_threads()
    try:
        card2 = run_recipe(p, threads=8, log=lambda *a: None)  # resumed with another thread count
    finally:
        torch.set_num_threads(threads)
    assert [h["step"] for h in card2["history"]] == [20, 40, 60, 80]
    # the time before the resume stays charged at 1 thread, only the time after it at 8
    added = card2["wall_time_s"] - card["wall_time_s"]
    assert card["wall_time_s"] * 7 / 3600 > 5e-4  # else the check below could not tell the two apart
    assert card2["cpu_hours"] == pytest.approx(card["cpu_hours"] + added * 8 / 3600, abs=2e-4)
    (cache / "train" / "short" / "a.state.safetensors").unlink()
    p.write_text(p.read_text().replace("steps = 80", "steps = 100"))
    msgs = []
    card3 = run_recipe(p, threads=1, log=msgs.append)
    assert any("continuing the export" in m for m in msgs) and any("fresh optimizer" in m for m in msgs)
    assert [h["step"] for h in card3["history"]] == [20, 40, 60, 80, 100]
    assert card3["cpu_hours"] >= card2["cpu_hours"]


def test_warm_start_loads_the_trunk_and_several_folders(tmp_path):
    from lrisc_sim.trainer import Data

    a, b = _smooth_images(tmp_path / "a"), _smooth_images(tmp_path / "b")
    train_paths, val = Data([str(a), str(b)], val=1, val_crop=32).split(8)
    assert len(train_paths) == 5 and [v[0] for v in val] == ["im2"]  # 3 + 3 minus the held-out one of the first
    ckpt = tmp_path / "src.safetensors"
    save_model(DeepJSCC(DeepJSCCConfig(cbr="1/16", levels=3, extra=1, **SMALL)), ckpt)
    msgs = []
    m2 = DeepJSCC(DeepJSCCConfig(cbr="1/32", levels=3, extra=1, **SMALL))
    warm_start(m2, ckpt, log=msgs.append)
    line = next(m for m in msgs if m.startswith("warm start"))
    assert "in part (encoder.net." in line and "decoder.net.0." in line  # the c-channel layers differ in shape
    m1 = load_model(ckpt)
    assert torch.equal(m1.encoder.net[0].weight, m2.encoder.net[0].weight)
    c2 = m2.encoder.net[-2].weight.shape[0]
    assert m1.encoder.net[-2].weight.shape[0] == 2 * c2  # 1/16 -> 1/32: the first half of the channels
    assert torch.equal(m1.encoder.net[-2].weight[:c2], m2.encoder.net[-2].weight)
    assert torch.equal(m1.decoder.net[0].weight[:c2], m2.decoder.net[0].weight)


def test_warm_start_to_more_channels_keeps_the_decoder(tmp_path):
    """From 1/32 to 1/16 (c 12 -> 24 at the same depth) the new model decodes its first 12 channels exactly as
    the checkpoint does, whatever the new channels carry, and encodes them the same."""
    torch.manual_seed(1)
    src = DeepJSCC(DeepJSCCConfig(cbr="1/32", levels=3, extra=1, **SMALL)).eval()
    path = tmp_path / "src.safetensors"
    save_model(src, path)
    torch.manual_seed(2)
    dst = DeepJSCC(DeepJSCCConfig(cbr="1/16", levels=3, extra=1, **SMALL)).eval()
    kept = warm_start(dst, path, log=lambda *a: None)
    assert "decoder.net.0.weight" in kept
    x = torch.rand(2, 3, 32, 32)
    z_src = src.encoder(x)
    z_dst = dst.encoder(x)
    c = z_src.shape[1]
    assert z_dst.shape[1] == 2 * c and torch.allclose(z_dst[:, :c], z_src, atol=1e-6)
    z = torch.cat([z_src, torch.randn_like(z_src) * 5], 1)
    assert torch.allclose(dst.decoder(z), src.decoder(z_src), atol=1e-6)


def test_pickled_training_state_is_refused_and_never_run(tmp_path, cache):
    import pickle

    from lrisc_sim.train_state import StateError

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    state = cache / "train" / "evil" / "a.state.safetensors"
    state.parent.mkdir(parents=True)
    state.write_bytes(pickle.dumps({"model": Evil()}))
    p = recipe(tmp_path, "evil", _smooth_images(tmp_path / "d"), steps=2)
    with pytest.raises(StateError, match="pickle"):
        run_recipe(p, threads=1, log=lambda *a: None)
    assert not marker.exists()


@pytest.mark.skipif(not list(CHECKPOINT_DIR.glob("*.safetensors")), reason="no shipped checkpoints")
def test_shipped_checkpoints_found():
    codec = make_deepjscc(None)
    assert Fraction(1, 48) in codec.paths
    assert "checkpoints for CBR" in codec.describe()


def test_warm_start_from_garbage_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 64)
    p = recipe(tmp_path, "garbage", _smooth_images(tmp_path / "d"), steps=1, stage=f'init = "{bad}"\n')
    with pytest.raises(DeepJSCCError, match="bad.safetensors") as e:
        run_recipe(p, threads=1, log=lambda *a: None)
    assert "\n" not in str(e.value)


def test_streaming_workers_train_and_shard_the_files(tmp_path):
    from lrisc_sim.data import StreamingCrops, image_paths

    data = _smooth_images(tmp_path / "d", n=4)
    p = recipe(tmp_path, "stream", data, steps=3)
    p.write_text(p.read_text().replace("val_crop = 32", "val_crop = 32\nworkers = 1"))
    card = run_recipe(p, threads=1, log=lambda *a: None)
    assert card["steps"] == 3 and card["status"] == "final"
    # two ranks with one worker each read disjoint halves of the files (constant images tell them apart)
    from PIL import Image

    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(4):
        Image.fromarray(np.full((40, 40, 3), 50 * i, np.uint8)).save(flat / f"c{i}.png")
    paths = image_paths(flat)
    levels = []
    for rank in (0, 1):
        it = iter(StreamingCrops(paths, 16, rank=rank, world=2, crops_per_image=1))
        crops = [next(it) for _ in range(6)]
        assert all(c.shape == (3, 16, 16) for c in crops)
        levels.append({round(float(c.mean()) * 255) for c in crops})
    assert levels == [{0, 100}, {50, 150}]


def test_warm_start_from_another_cbr_is_named_with_its_cpu_hours_and_summarised(tmp_path, cache):
    """A recipe warm-started from another CBR's model names it (and the CPU-hours behind it) in its card, also
    after a resume; the summary lists each model's start and recipe, its Kodak PSNR (add_kodak) and says whether
    the Kodak PSNR rises strictly with the CBR."""
    data = _smooth_images(tmp_path / "d")
    ship = tmp_path / "ship"
    src = ship / "deepjscc_cbr1-32_snr10.safetensors"
    run_recipe(recipe(tmp_path, "a", data, cbr="1/32", levels=3, steps=2, head=f'ship = "{src}"'), threads=1,
               log=lambda *a: None)
    card_a = json.loads(src.with_suffix(".json").read_text())
    dst = ship / "deepjscc_cbr1-16_snr10.safetensors"
    p = recipe(tmp_path, "b", data, cbr="1/16", levels=3, steps=4, stage=f'init = "{src}"\n', head=f'ship = "{dst}"')
    msgs = []
    card = run_recipe(p, threads=1, max_minutes=0, log=msgs.append)
    assert card["steps"] == 1 and any("in part" in m for m in msgs)  # the c-channel layers by overlap
    card = run_recipe(p, threads=1, log=lambda *a: None)  # resumed: the warm start is still named
    assert card["steps"] == 4 and card["warm_start"] == {"path": str(src), "cpu_hours": card_a["cpu_hours"]}
    k32, k16 = add_kodak(src, data)["psnr_mean"], add_kodak(dst, data)["psnr_mean"]
    assert json.loads(dst.with_suffix(".json").read_text())["kodak"]["psnr_mean"] == k16
    text = write_summary(ship).read_text()
    assert (f"| 1/16 | awgn | 4 | 2 x 32^2 | 0.001 -> 0.0001 (warm-up 1) | 0.999 | `deepjscc_cbr1-32_snr10.safetensors` "
            f"(the trained 1/32, c-channel layers by overlap) | `{p}` |") in text
    assert "| 1/32 | awgn | 2 | 2 x 32^2 |" in text and "| random initialisation |" in text
    verdict = "rises strictly" if k32 < k16 else "does NOT rise strictly"
    assert f"Kodak PSNR at 10 dB {verdict} with the CBR" in text
    row = next(r for r in text.splitlines() if r.startswith("| 1/16 | 8 |"))
    assert f"{card['cpu_hours'] + card_a['cpu_hours']:.2f}" in row  # the warm start's CPU-hours counted
