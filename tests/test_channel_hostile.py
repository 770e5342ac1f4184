"""Hostile channels (issue 29 item 4): the channel, not the codec, is blamed for its faults (wrong gain shape,
NaN gains, zero gains under ZF, exceptions), channel options are bounded at parse time (L, fft, ds, speed, fc,
scs), and memory is estimated before allocation. Plugin channels are defined here (cases ch_plug_wrongshape,
ch_plug_nan, ch_plug_zero, ch_plug_raises, ch_L1e30, ch_L1e9, ch_fft1e8, ch_ds_huge, ch_speed_huge)."""

from __future__ import annotations

import pytest
import torch

import lrisc_sim
from channels.base import Channel, ChannelError, check_alloc
from channels.fading import RayleighFading, RicianFading
from channels.realization import Realization
from channels.registry import make_channel, parse_channel_spec
from lrisc_sim.cli import main


class WrongShape(Channel):
    name = "wrong-shape"

    def __init__(self, extra: int = 7):
        self.extra = extra

    def gains(self, realization, k):
        return torch.ones(len(realization), k + self.extra, dtype=torch.complex64)


class NaNGains(Channel):
    name = "nan-gains"

    def gains(self, realization, k):
        h = torch.ones(len(realization), k, dtype=torch.complex64)
        h[:, 5] = complex("nan")
        return h


class ZeroGains(Channel):
    name = "zero-gains"

    def gains(self, realization, k):
        h = torch.ones(len(realization), k, dtype=torch.complex64)
        h[0, :10] = 0
        return h


class Raises(Channel):
    name = "raises"

    def gains(self, realization, k):
        raise RuntimeError("boom in gains")


class InfNoise(Channel):
    """Overrides the whole call and returns an infinite noise variance."""

    name = "inf-noise"

    def gains(self, realization, k):
        return torch.ones(len(realization), k, dtype=torch.complex64)

    def __call__(self, s, snr_db, realization):
        out = super().__call__(s, snr_db, realization)
        out.n0 = torch.full_like(out.n0, float("inf"))
        return out


def x64(n=1):
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("channel, equalizer, needles", [
    (WrongShape(), "mmse", ["channel 'wrong-shape' returned gains of shape 1 x 637, expected 1 x 630"]),
    (NaNGains(), "mmse", ["channel 'nan-gains' returned non-finite (NaN/inf) gains for 1 of 1 image",
                          "not the codec"]),
    (ZeroGains(), "zf", ["channel 'zero-gains' gave zero gains (h = 0) to image image0", "ZF cannot invert",
                         "--equalizer mmse"]),
    (Raises(), "mmse", ["channel 'raises' failed at SNR 10 dB, trial 0 (image image0): RuntimeError: boom in gains",
                        "not the codec"]),
    (InfNoise(), "mmse", ["channel 'inf-noise' produced non-finite (NaN/inf) noise variance n0 for image image0"]),
])
def test_channel_faults_blame_the_channel(channel, equalizer, needles):
    with pytest.raises(ChannelError) as e:
        lrisc_sim.send("uncoded", x64(), 1 / 16, 10.0, channel=channel, equalizer=equalizer)
    msg = str(e.value)
    assert "\n" not in msg and "checkpoint" not in msg and "codec 'uncoded'" not in msg
    for n in needles:
        assert n in msg, (n, msg)


def test_zero_gains_are_fine_under_mmse():
    t = lrisc_sim.send("uncoded", x64(), 1 / 16, 10.0, channel=ZeroGains(), equalizer="mmse")
    assert bool(torch.isfinite(t.output).all())


@pytest.mark.parametrize("name, needle", [("NaNGains", "returned non-finite (NaN/inf) gains"),
                                          ("WrongShape", "gains of shape 1 x 645, expected 1 x 638"),
                                          ("Raises", "RuntimeError: boom in gains")])
def test_cli_plugin_channel_faults(name, needle, tmp_path, tiny_folder, capsys):
    spec = f"tests.test_channel_hostile:{name}"
    rc = main(["sweep", "--no-progress", "--metrics", "psnr", "--dataset", str(tiny_folder), "--limit", "1",
               "--codec", "uncoded", "--snr", "10", "--cbr", "1/24", "--channel", spec, "--out", str(tmp_path / "o"),
               "--threads", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("lrisc-sim: error: "), err
    assert needle in err[-1] and "checkpoint" not in err[-1], err[-1]


# ---------------------------------------------------------------------------------------------- grammar bounds
@pytest.mark.parametrize("spec, needles", [
    ("rayleigh-block:L=1e30", ["value 1e30 out of range for L", "1..1e9", "one gain per image"]),
    ("rician:K=2,L=1e10", ["out of range for L"]),
    ("tdl-a:fft=1e8", ["value 1e8 out of range for fft", "1..4096"]),
    ("tdl-a:ds=1e300", ["value 1e300 out of range for ds", "ds=SECONDS<=1e-5"]),
    ("tdl-a:ds=1e-3", ["out of range for ds"]),
    ("tdl-a:speed=1e308", ["value 1e308 out of range for speed", "speed=M/S<=1000"]),
    ("tdl-a:fc=1e300", ["out of range for fc", "1e8..1e11"]),
    ("tdl-b:scs=1e-300", ["out of range for scs", "1e3..1e7"]),
])
def test_channel_options_are_bounded_at_parse_time(spec, needles):
    with pytest.raises(ValueError) as e:
        parse_channel_spec(spec)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"bad channel spec '{spec}'")
    for n in needles:
        assert n in msg, (n, msg)


def test_bounds_accept_physical_values():
    for spec in ("rayleigh-block:L=1e9", "tdl-a:ds=10e-6,speed=1000,fft=4096", "tdl-a:fc=1e8,scs=1e3",
                 "tdl-e:fc=1e11,scs=1e7,fft=1"):
        parse_channel_spec(spec)
    with pytest.raises(ValueError, match="fft_size must be an integer in 1..4096"):
        from channels.tdl import TDLChannel

        TDLChannel("A", fft_size=10**8)  # the class checks the same bounds (API use)


def test_huge_coherence_is_one_gain_per_image_without_the_memory():
    """L = 1e9 >= k: the same gains as one gain per image (rayleigh), to the bit, in B x k memory."""
    r = Realization(0, ["a", "b"], 0)
    big = make_channel("rayleigh-block:L=1e9")
    h = big.gains(r, 5000)
    assert torch.equal(h, RayleighFading().gains(Realization(0, ["a", "b"], 0), 5000))
    assert torch.equal(RicianFading(3.0, coherence=10**9).gains(r, 300),
                       RicianFading(3.0).gains(Realization(0, ["a", "b"], 0), 300))
    # below k the blocks are unchanged: L = 64 repeats each draw 64 times
    h64 = make_channel("rayleigh-block:L=64").gains(r, 200)
    g = r.cn("fading", 4)
    assert torch.equal(h64, g.repeat_interleave(64, dim=1)[:, :200])


def test_memory_is_estimated_before_allocation(monkeypatch):
    check_alloc("c", "x", 2.0**32, "fix")  # exactly the limit passes
    with pytest.raises(ChannelError, match=r"channel 'c' would allocate 4 GiB for x, over the limit of 4 GiB; fix"):
        check_alloc("c", "x", 2.0**32 + 2**30 * 0.001, "fix")
    pytest.importorskip("sionna")
    import channels.base as base

    ch = make_channel("tdl-a:speed=3,fft=4096")
    monkeypatch.setattr(base, "MAX_CHANNEL_BYTES", 2**20)  # 1 MiB: 4 images x 4096-subcarrier grid is more
    with pytest.raises(ChannelError, match=r"OFDM grid of 4 image\(s\) x 1 OFDM symbols x 4096 subcarriers.*"
                                           r"--batch-size"):
        ch.gains(Realization(0, list("abcd"), 0), 1000)
