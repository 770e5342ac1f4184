"""DeepJSCC baseline: exact CBR, power, shapes, training, checkpoints, errors."""

from __future__ import annotations

import json
import math
import shutil
from fractions import Fraction

import numpy as np
import pytest
import torch

from baselines.deepjscc import (CHECKPOINT_DIR, DeepJSCC, DeepJSCCCodec, DeepJSCCConfig, DeepJSCCError,
                                checkpoint_name, default_levels, latent_channels, load_model, make_deepjscc, save_model)
from baselines.deepjscc_train import TrainConfig, evaluate, parse_snr_range, train, write_summary
from channels.awgn import AWGN
from channels.base import equalize
from channels.power import average_power
from channels.realization import Realization
from lrisc_sim.codec import Context
from lrisc_sim.data import pad_to_multiple

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
    assert "lrisc-sim train deepjscc --cbr 1/96 --snr 10 --data DIR" in msg
    with pytest.raises(DeepJSCCError, match="cannot give CBR 1/40 exactly"):
        codec.encode(torch.rand(1, 3, 64, 64), 1 / 40)
    with pytest.raises(DeepJSCCError, match="not found"):
        load_model(tmp_path / "nope.safetensors")
    (tmp_path / "bad.safetensors").write_text("garbage")
    with pytest.raises(DeepJSCCError, match="not a readable DeepJSCC checkpoint"):
        load_model(tmp_path / "bad.safetensors")


def test_snr_range_parsing():
    assert parse_snr_range("10") == (10, 10)
    assert parse_snr_range("0:20") == (0, 20)
    with pytest.raises(DeepJSCCError, match="bad training SNR"):
        parse_snr_range("20:0")
    with pytest.raises(DeepJSCCError, match="bad training SNR"):
        make_deepjscc("ten")


def test_short_training_lowers_loss(tmp_path):
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:80, 0:80] / 80.0
    for i in range(4):  # smooth colour images, easy to learn
        a = rng.uniform(0.2, 1.0, 3)
        im = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (a[c] * xx + a[(c + 1) % 3] * yy)) for c in range(3)], -1)
        Image.fromarray((im * 255).astype(np.uint8)).save(data / f"im{i}.png")
    cfg = TrainConfig(cbr="1/16", snr="5:15", data=str(data), val="1", steps=60, batch_size=4, crop=32, lr=3e-3,
                      out=str(tmp_path / "out"), val_every=20, val_crop=64, threads=1, warmup=5,
                      state=str(tmp_path / "state" / "s.safetensors"), arch=DeepJSCCConfig(**SMALL))
    card = train(cfg, log=lambda *a: None)
    hist = card["validation"]["history"]
    assert [h["step"] for h in hist] == [20, 40, 60]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert card["training_snr_db"] == [5.0, 15.0] and card["cbr"] == "1/16"
    assert card["command"].startswith("lrisc-sim train deepjscc --cbr 1/16 --snr 5:15")
    out = tmp_path / "out" / "deepjscc_cbr1-16_snr5-15.safetensors"
    assert out.is_file() and out.with_suffix(".json").is_file()
    # resume from the saved state continues from step 60 without redoing work
    cfg.steps, cfg.resume = 80, True
    card2 = train(cfg, log=lambda *a: None)
    assert [h["step"] for h in card2["validation"]["history"]] == [20, 40, 60, 80]
    ev = evaluate(out, data, snr_db=10.0)
    assert ev["n_images"] == 4 and ev["cbr_used"] == [round(1 / 16, 8)]
    assert 5 < ev["psnr_mean"] < 60
    table = write_summary(tmp_path / "out").read_text()
    assert "| 1/16 | 8 | 24 |" in table
    # the state is gone (a new machine): continue from the exported weights with a fresh optimizer
    (tmp_path / "state" / "s.safetensors").unlink()
    cfg.steps = 100
    msgs = []
    card3 = train(cfg, log=msgs.append)
    assert any("fresh optimizer" in m for m in msgs)
    assert [h["step"] for h in card3["validation"]["history"]] == [20, 40, 60, 80, 100]
    assert card3["cpu_hours"] >= card2["cpu_hours"]


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


def test_warm_start_loads_the_trunk_and_several_folders(tmp_path):
    from baselines.deepjscc import load_model

    a, b = _smooth_images(tmp_path / "a"), _smooth_images(tmp_path / "b")
    base = dict(snr="10", data=f"{a},{b}", val="1", steps=4, batch_size=2, crop=32, val_every=4, val_crop=32,
                threads=1, warmup=2)
    src = TrainConfig(cbr="1/16", out=str(tmp_path / "o1"), state=str(tmp_path / "s1.safetensors"),
                      arch=DeepJSCCConfig(**SMALL), **base)
    card = train(src, log=lambda *a: None)
    assert card["data"]["train_images"] == 5  # 3 + 3 minus the held-out one of the first folder
    ckpt = tmp_path / "o1" / "deepjscc_cbr1-16_snr10.safetensors"
    from baselines.deepjscc_train import warm_start

    msgs = []  # (training refuses --steps 0, so the warm start is checked on its own)
    m2 = DeepJSCC(DeepJSCCConfig(**{**SMALL, "cbr": "1/32"}))
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
    from baselines.deepjscc import save_model
    from baselines.deepjscc_train import warm_start

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


def test_pickled_training_state_is_refused_and_never_run(tmp_path):
    import pickle

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    state = tmp_path / "state.safetensors"
    state.write_bytes(pickle.dumps({"model": Evil()}))
    data = _smooth_images(tmp_path / "d")
    cfg = TrainConfig(cbr="1/16", data=str(data), val="1", steps=2, batch_size=2, crop=32, val_every=2,
                      out=str(tmp_path / "o"), state=str(state), resume=True, threads=1, arch=DeepJSCCConfig(**SMALL))
    with pytest.raises(DeepJSCCError, match="pickle"):
        train(cfg, log=lambda *a: None)
    assert not marker.exists()


@pytest.mark.skipif(not list(CHECKPOINT_DIR.glob("*.safetensors")), reason="no shipped checkpoints")
def test_shipped_checkpoints_found():
    codec = make_deepjscc(None)
    assert Fraction(1, 48) in codec.paths
    assert "checkpoints for CBR" in codec.describe()


def test_warm_start_from_garbage_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 64)
    data = _smooth_images(tmp_path / "d")
    cfg = TrainConfig(cbr="1/16", data=str(data), val="1", steps=1, batch_size=2, crop=32, val_every=1,
                      out=str(tmp_path / "o"), state=str(tmp_path / "s.safetensors"), init=str(bad), threads=1,
                      arch=DeepJSCCConfig(**SMALL))
    with pytest.raises(DeepJSCCError, match="bad.safetensors"):
        train(cfg, log=lambda *a: None)


def test_streaming_workers_train_and_shard_the_files(tmp_path):
    from lrisc_sim.data import StreamingCrops, image_paths

    data = _smooth_images(tmp_path / "d", n=4)
    cfg = TrainConfig(cbr="1/16", data=str(data), val="1", steps=3, batch_size=2, crop=32, val_every=3,
                      out=str(tmp_path / "o"), state=str(tmp_path / "s.safetensors"), threads=1, workers=1,
                      arch=DeepJSCCConfig(**SMALL))
    card = train(cfg, log=lambda *a: None)
    assert card["steps"] == 3
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


def test_kodak_curve_in_the_card_and_summary(tmp_path):
    """--kodak-every N records the evaluation folder's PSNR of the exported weights every N steps."""
    data = _smooth_images(tmp_path / "d")
    cfg = TrainConfig(cbr="1/16", data=str(data), val="1", steps=4, batch_size=2, crop=32, val_every=2,
                      out=str(tmp_path / "o"), state=str(tmp_path / "s.safetensors"), threads=1,
                      arch=DeepJSCCConfig(**SMALL), eval_kodak=str(data), kodak_every=4)
    card = train(cfg, log=lambda *a: None)
    hist = card["validation"]["history"]
    assert "kodak_psnr" not in hist[0] and hist[1]["step"] == 4
    # the same number as evaluating the exported weights directly (the final evaluation of the same weights)
    assert hist[1]["kodak_psnr"] == card["kodak"]["psnr_mean"]
    assert "--kodak-every 4" in card["command"]
    table = write_summary(tmp_path / "o").read_text()
    assert f"(Kodak {hist[1]['kodak_psnr']:.2f})" in table


def test_resume_keeps_the_warm_start_and_summary_states_recipe_and_order(tmp_path):
    """A run resumed without --init (from its state, or from its exported weights) still names its warm start;
    the summary lists each recipe and says whether the Kodak PSNR rises strictly with the CBR."""
    data = _smooth_images(tmp_path / "d")
    base = dict(snr="10", data=str(data), val="1", batch_size=2, crop=32, val_every=2, val_crop=32, threads=1,
                warmup=1)
    src = TrainConfig(cbr="1/32", out=str(tmp_path / "a"), state=str(tmp_path / "a.safetensors"), steps=2,
                      arch=DeepJSCCConfig(**SMALL), eval_kodak=str(data), **base)
    train(src, log=lambda *a: None)
    ckpt = str(tmp_path / "a" / "deepjscc_cbr1-32_snr10.safetensors")
    run = dict(cbr="1/16", out=str(tmp_path / "b"), state=str(tmp_path / "b.safetensors"), eval_kodak=str(data),
               **base)
    train(TrainConfig(steps=2, init=ckpt, arch=DeepJSCCConfig(**SMALL), **run), log=lambda *a: None)
    card = train(TrainConfig(steps=4, resume=True, arch=DeepJSCCConfig(**SMALL), **run), log=lambda *a: None)
    assert card["warm_start"] == ckpt and card["steps"] == 4 and f"--init {ckpt}" in card["command"]
    (tmp_path / "b.safetensors").unlink()  # a new machine: only the committed weights and card
    card = train(TrainConfig(steps=6, resume=True, arch=DeepJSCCConfig(**SMALL), **run), log=lambda *a: None)
    assert card["warm_start"] == ckpt and card["steps"] == 6
    assert card["optimizer"]["schedule_steps"] == [[0, 2], [2, 4], [4, 6]]  # each resume lengthened the cosine
    for p in (tmp_path / "a").iterdir():
        shutil.copy(p, tmp_path / "b")
    text = write_summary(tmp_path / "b").read_text()
    assert ("| 1/16 | 6 (cosine over 2 from step 0, then 4 from step 2, then 6 from step 4) | 2 x 32^2 | 0.001 -> "
            "5e-05 (warm-up 1) | 0.999 | `deepjscc_cbr1-32_snr10.safetensors` (the trained 1/32, c-channel layers by "
            "overlap) |") in text
    assert "| 1/32 | 2 | 2 x 32^2 |" in text  # one schedule: just the steps
    k32 = json.loads((tmp_path / "b" / "deepjscc_cbr1-32_snr10.json").read_text())["kodak"]["psnr_mean"]
    k16 = card["kodak"]["psnr_mean"]
    verdict = "rises strictly" if k32 < k16 else "does NOT rise strictly"
    assert f"Kodak PSNR at 10 dB {verdict} with the CBR" in text
