"""Third-party codecs and channels: the example plugin package (examples/lrisc-sim-example-plugin) installed and
used through entry points and ``package.module:Name`` specs, on identical channel realizations."""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lrisc_sim.cli import main
from lrisc_sim.plugins import CHANNEL_GROUP, CODEC_GROUP, entry_points

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lrisc-sim-example-plugin"


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The example plugin's module; installed (pip, into a temporary folder on sys.path) unless it already is."""
    extra = None
    if "pixel-repeat" not in entry_points(CODEC_GROUP):
        extra = tmp_path_factory.mktemp("site")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--target", str(extra), str(EXAMPLE)], check=True)
        sys.path.insert(0, str(extra))
        importlib.invalidate_caches()
    old = os.environ.get("PYTHONPATH")
    if extra is not None:  # for the CLI in a subprocess
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra), old]))
    yield importlib.import_module("lrisc_sim_example_plugin")
    if extra is not None:
        sys.path.remove(str(extra))
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def test_entry_points_are_listed_with_their_origin(plugin):
    assert entry_points(CODEC_GROUP)["pixel-repeat"].target == "lrisc_sim_example_plugin:make_pixel_repeat"
    assert "phase-noise" in entry_points(CHANNEL_GROUP)
    for cmd, name in (("codecs", "pixel-repeat"), ("channels", "phase-noise")):
        r = subprocess.run([sys.executable, "-m", "lrisc_sim.cli", cmd], capture_output=True, text=True, check=True)
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith(name))
        assert " ok " in line and "[plugin lrisc-sim-example-plugin 0.1.0]" in line
        assert "[built-in]" in r.stdout


def test_plugin_channel_theory(plugin):
    from channels.realization import Realization
    from lrisc_sim import make_channel

    ch = make_channel("phase-noise:sigma=0.1")
    assert isinstance(ch, plugin.PhaseNoise) and ch.sigma == 0.1
    h = ch.gains(Realization(0, [f"i{j}" for j in range(64)], 0), 400)
    assert torch.allclose(h.abs(), torch.ones_like(h.abs()), atol=1e-5)
    steps = torch.angle(h[:, 1:] * h[:, :-1].conj())
    assert abs(float(steps.std()) - 0.1) < 0.005 and abs(float(steps.mean())) < 0.005
    with pytest.raises(ValueError, match="KEY=VALUE"):
        make_channel("phase-noise:0.1")


def test_sweep_with_plugins_on_identical_realizations(plugin, tmp_path):
    """A plugin codec and a built-in one over a plugin channel: rows for both, the plugin codec improves with
    SNR, and both see the same phase trajectory and noise (common random numbers)."""
    import lrisc_sim

    x = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # smooth content
    a = lrisc_sim.send("pixel-repeat", x, 1 / 8, 10.0, "phase-noise:sigma=0.05", ids=["a", "b"])
    b = lrisc_sim.send("uncoded", x, 1 / 8, 10.0, "phase-noise:sigma=0.05", ids=["a", "b"])
    k = min(a.received.raw.h.shape[1], b.received.raw.h.shape[1])
    assert torch.equal(a.received.raw.h[:, :k], b.received.raw.h[:, :k])
    na = a.received.raw.y - a.received.raw.h * a.encoded.symbols
    nb = b.received.raw.y - b.received.raw.h * b.encoded.symbols
    assert torch.allclose(na[:, :k], nb[:, :k], atol=1e-6)
    assert (a.cbr["cbr_total"] <= 1 / 8 + 1e-12).all()

    folder = tmp_path / "imgs"
    folder.mkdir()
    from lrisc_sim.transmission import save_image

    for i in range(2):
        save_image(x[i], folder / f"im{i}.png")
    df = lrisc_sim.sweep("pixel-repeat:4,uncoded", snr="0,20", cbr="1/8", channel="phase-noise:sigma=0.02",
                         dataset=str(folder), metrics=("psnr",), out=tmp_path / "s", progress=False, device="cpu")
    assert set(df.codec) == {"pixel-repeat:4", "uncoded"} and len(df) == 8
    pr = df[df.codec == "pixel-repeat:4"].groupby("snr_db").psnr.mean()
    assert pr[20.0] > pr[0.0] + 1
    assert (df.cbr_total <= 1 / 8 + 1e-12).all()


def test_module_path_specs_and_errors(plugin, tmp_path, capsys):
    from lrisc_sim import load_codec, make_channel

    c = load_codec("lrisc_sim_example_plugin:make_pixel_repeat:4", device="cpu")
    assert isinstance(c, plugin.PixelRepeat) and c.step == 4
    assert isinstance(make_channel("lrisc_sim_example_plugin:PhaseNoise:sigma=0.3"), plugin.PhaseNoise)
    exp = tmp_path / "e.toml"
    exp.write_text('[grid]\nsnr = "10"\ncbr = "1/8"\n[channel]\nmodel = "lrisc_sim_example_plugin:PhaseNoise"\n'
                   '[[codecs]]\nspec = "lrisc_sim_example_plugin:make_pixel_repeat"\n')
    from lrisc_sim.experiment import ExperimentError, load_experiment

    assert load_experiment(exp).sweep.codecs == ["lrisc_sim_example_plugin:make_pixel_repeat"]
    exp.write_text(exp.read_text().replace("make_pixel_repeat", "nothing_here"))
    with pytest.raises(ExperimentError, match=r"codecs\[0\].spec.*has no 'nothing_here'"):
        load_experiment(exp)
    for args, msg in ((["--codec", "no_such_pkg.mod:Thing"], "cannot import module no_such_pkg.mod"),
                      (["--codec", "uncoded", "--channel", "lrisc_sim_example_plugin:nope"], "has no 'nope'")):
        rc = main(["sweep", "--dataset", str(EXAMPLE / "README.md"), "--out", str(tmp_path / "o"), "--no-progress",
                   *args])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and msg in err and len(err.splitlines()) == 1


def test_pixel_repeat_is_exact_without_noise(plugin):
    """At 100 dB the decoder returns the area-downsampled image upsampled back (the codec's own bound)."""
    import torch.nn.functional as F

    import lrisc_sim

    x = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(1))
    t = lrisc_sim.send("pixel-repeat", x, 1 / 4, 100.0, "awgn")
    hh, ww = t.encoded.state["size"]
    ref = F.interpolate(F.interpolate(x, size=(hh, ww), mode="area"), size=(24, 32), mode="bilinear",
                        align_corners=False).clamp(0, 1)
    assert 3 * hh * ww <= 2 * t.encoded.symbols.shape[1] and math.isclose(float((t.output - ref).abs().max()), 0,
                                                                          abs_tol=1e-4)


def test_example_plugin_declares_its_options(plugin, capsys):
    """The example codec declares ``step`` once (``PixelRepeat.options``): specs and ARG are checked by it, the
    listing shows it, and its factory is marked (``codec_factory``) so specs may name it."""
    from lrisc_sim import load_codec
    from lrisc_sim.codec import OptionError
    from lrisc_sim.plugins import FACTORY_MARK

    assert getattr(plugin.make_pixel_repeat, FACTORY_MARK) == "codec"
    assert load_codec("pixel-repeat:step=4", device="cpu").step == 4
    assert load_codec("pixel-repeat:4", device="cpu").step == 4
    for spec, msg in (("pixel-repeat:stpe=4", "'stpe' is not an option of pixel-repeat (its options: step"),
                      ("pixel-repeat:step=0", "step must be an integer in [1, 64], got '0'"),
                      ("pixel-repeat:abc", "step must be an integer in [1, 64], got 'abc'")):
        with pytest.raises(OptionError, match=msg.replace("(", r"\(").replace("[", r"\[")):
            load_codec(spec, device="cpu")
    assert main(["codecs", "--options", "pixel-repeat"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("pixel-repeat[:ARG]") and "step" in out and "an integer in [1, 64]" in out


def test_the_plugins_trainable_codec_trains_over_rayleigh_and_runs_in_a_sweep(plugin, tmp_path, monkeypatch):
    """A third-party codec with a TrainTask trains with `lrisc-sim train RECIPE.toml` over Rayleigh block fading,
    its loss falls, and the exported model runs in a sweep through the plugin's codec."""
    import numpy as np
    from PIL import Image

    from lrisc_sim import sweep

    monkeypatch.setenv("LRISC_SIM_CACHE", str(tmp_path / "cache"))
    photos = tmp_path / "photos"
    photos.mkdir()
    yy, xx = np.mgrid[0:64, 0:64]
    for i in range(4):  # smooth images: a linear patch code can learn them
        img = np.stack([np.sin((xx + 7 * i) / 9.0), np.cos((yy - 5 * i) / 11.0), np.sin((xx + yy) / 13.0)], -1)
        Image.fromarray(((img + 1) * 127.5).astype("uint8")).save(photos / f"p{i}.png")
    (tmp_path / "r.toml").write_text(f"""
name = "lin"
codec = "linear-jscc"
[model]
patch = 4
reals = 8
[data]
train = ["{photos}"]
val = 1
val_crop = 64
[[stages]]
name = "rayleigh"
steps = 60
batch = 3
crop = 32
lr = 1e-2
warmup = 5
ema = 0
val_every = 30
channel = "rayleigh-block"
snr = "10:20"
""")
    assert main(["train", str(tmp_path / "r.toml"), "--threads", "1"]) == 0
    ck = tmp_path / "cache" / "train" / "lin" / "rayleigh.safetensors"
    import json

    card = json.loads(ck.with_suffix(".json").read_text())
    assert card["model"] == "example-linear-jscc" and "Rayleigh" in card["channel"] and card["status"] == "final"
    v = [h["val"]["psnr"] for h in card["history"]]
    assert v[-1] > v[0]  # it learned something over fading
    df = sweep(codecs=[f"linear-jscc:checkpoint={ck}"], snr="10", cbr=1 / 12, dataset=str(photos),
               out=str(tmp_path / "sw"), metrics=("psnr",), progress=False, quiet=True)
    assert len(df) == 4 and (df["psnr"] > 10).all()


def test_plugin_codec_and_channel_under_the_link_axes(plugin, tmp_path):
    """The link axes apply to plugin codecs and channels as to built-in ones: estimated CSI (pilots interpolated
    over the plugin channel's gains), a constellation and a design SNR, each variant in its own channel column."""
    import lrisc_sim

    df = lrisc_sim.sweep("pixel-repeat:4", snr="5,20", cbr="1/8", channel="phase-noise:sigma=0.02", limit=1,
                         csi="perfect,ls:2", constellation="none,qam16", design_snr="channel,10", metrics="psnr",
                         out=tmp_path / "link", progress=False, device="cpu")
    assert df["channel"].nunique() == 8 and len(df) == 16
    est = df[df["channel"].str.contains("CSI ls:2")]
    assert all(i["cbr_pilot"] > 0 and i["csi_nmse"] >= 0 for i in map(json.loads, est["info"]))
    q = df[df["channel"].str.contains("QAM16")]
    assert all("sqnr_db" in i for i in map(json.loads, q["info"]))
    plain = df[df["channel"] == "phase-noise:sigma=0.02"].set_index("snr_db").psnr
    assert plain[20.0] > plain[5.0]
