"""The link axes of a sweep (lrisc_sim.link): estimated CSI, design SNR, constellation; per-row channel state.

Checked against hand computations: what a codec is told and what enters the channel, the rows' channel state
(|h|^2, instantaneous SNR, estimation error, pilot CBR), identical realizations across variants and codecs, and
the CLI / TOML / API front-ends (one-line errors, folder extension).
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from channels import make_channel
from channels.awgn import AWGN
from channels.base import Received
from channels.constellation import Constellation
from channels.realization import Realization
from lrisc_sim.codec import Codec, Context, Decoded, Encoded
from lrisc_sim.data import Item
from lrisc_sim.engine import Engine
from lrisc_sim.link import STATE_KEYS, LinkPath, LinkVariant, channel_column, row_state
from lrisc_sim.sweep_config import ConfigError, SweepConfig


class Recorder(Codec):
    """An SNR-aware codec that sends a fixed share of its budget of unit-power symbols (a seeded Gaussian pattern)
    and records what its encoder and decoder were told and what reached the decoder."""

    snr_aware_encoder = True

    def __init__(self, name: str = "rec", frac: float = 1.0):
        self.name, self.frac = name, frac
        self.told_enc: list[float] = []
        self.told_dec: list[float] = []
        self.rx: list[Received] = []
        self.sent: list[torch.Tensor] = []

    def encode(self, x, cbr, ctx=None):
        ctx = ctx or Context.of(x)
        b = x.shape[0]
        k = int(ctx.budget(cbr) * self.frac)
        g = torch.Generator().manual_seed(7)
        s = torch.complex(torch.randn(b, k, generator=g), torch.randn(b, k, generator=g)) / math.sqrt(2)
        s = s / (s.abs() ** 2).mean(dim=1, keepdim=True).sqrt()
        self.told_enc += [float(v) for v in ctx.snr_db]
        self.sent.append(s.to(torch.complex64))
        return Encoded(s.to(torch.complex64), torch.full((b,), k), torch.zeros(b))

    def decode(self, rx: Received, enc, ctx):
        self.told_dec += [float(v) for v in rx.snr_db]
        self.rx.append(rx)
        b = rx.s_hat.shape[0]
        return Decoded(torch.full((b, 3) + ctx.hw, 0.5), torch.ones(b, dtype=torch.bool))


def items(n: int = 2, hw=(16, 16)) -> list[Item]:
    g = torch.Generator().manual_seed(3)
    return [Item(f"im{i}", torch.rand(3, *hw, generator=g)) for i in range(n)]


def run(codec: Codec, channel: str = "awgn", snrs=(0.0,), **axes):
    cfg = SweepConfig(codecs=[codec.name], snr_db=list(snrs), cbr=[1 / 4], channel=channel, metrics=("psnr",),
                      **axes)
    eng = Engine(cfg, make_channel(channel), torch.device("cpu"), codec_factory=lambda spec: codec)
    rows = [r for task in eng.plan(items(), set()) for rs in eng.run_task(task) for r in rs]
    return eng, rows


def test_design_snr_is_what_the_encoder_is_told_and_the_receiver_knows_its_channel():
    c = Recorder()
    _, rows = run(c, snrs=(0.0, 15.0), design_snr=[None, 10.0])
    told = {(r.channel, r.snr_db) for r in rows}
    assert told == {("awgn", 0.0), ("awgn", 15.0), ("awgn [design 10 dB]", 0.0), ("awgn [design 10 dB]", 15.0)}
    # the default link tells each SNR; the design-10 variant tells the encoder 10 dB, encoding once for both points
    assert c.told_enc == [0.0, 0.0, 15.0, 15.0, 10.0, 10.0]
    # the receiver knows its channel (CSIR): the decoder sees the channel's SNR and N0 in both variants
    assert c.told_dec == [0.0, 0.0, 15.0, 15.0] * 2
    rx = c.rx[2]  # design 10 dB at channel 0 dB
    assert float(rx.raw.n0[0]) == pytest.approx(1.0, rel=1e-6)
    assert torch.allclose(rx.gain, torch.full_like(rx.gain, 0.5))  # MMSE with the true N0: 1 / (1 + 1)
    assert all(r.info.get("design_snr_db") == 10.0 for r in rows if "design" in r.channel)
    assert all("design_snr_db" not in r.info for r in rows if "design" not in r.channel)


def test_constellation_maps_every_symbol_and_keeps_the_realization():
    c = Recorder()
    _, rows = run(c, snrs=(10.0,), constellation=["none", "qam16"])
    plain, q16 = c.rx[0].raw, c.rx[1].raw
    s = c.sent[0]
    pts = Constellation("qam16")
    q, sqnr = pts.quantize(s)
    # the same noise whatever was sent (identical realizations): y - s vs y - q
    assert torch.allclose(plain.y - plain.h * s, q16.y - q16.h * q, atol=1e-6)
    # what entered the channel lies on the scaled 16-QAM grid, at unit power per image
    ratio = (q / pts.nearest(s))
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-5)
    assert torch.allclose((q.abs() ** 2).mean(1), torch.ones(2), atol=1e-5)
    got = [r.info["sqnr_db"] for r in rows if r.channel == "awgn [QAM16]"]
    assert got == pytest.approx([round(float(v), 4) for v in sqnr], abs=1e-4)
    assert all("sqnr_db" not in r.info for r in rows if r.channel == "awgn")


def test_default_link_rows_are_unchanged_over_awgn():
    _, rows = run(Recorder(), snrs=(5.0,))
    assert {r.channel for r in rows} == {"awgn"}
    assert all(not set(STATE_KEYS) & set(r.info) for r in rows)


def test_fading_rows_carry_the_channel_state_by_hand():
    c = Recorder(frac=0.5)
    _, rows = run(c, channel="rayleigh-block:L=8", snrs=(10.0,))
    h = c.rx[0].raw.h  # perfect CSI: the true gains
    k = c.sent[0].shape[1]
    for i, r in enumerate(rows):
        h2 = float((h[i, :k].abs() ** 2).mean())
        assert r.info["h2"] == pytest.approx(h2, rel=1e-5)
        assert r.info["snr_inst_db"] == pytest.approx(10 + 10 * math.log10(h2), abs=1e-3)
        assert r.info["outage"] is False
        assert "csi_nmse" not in r.info


def test_estimated_csi_rows_by_hand_and_two_codecs_share_pilots_noise_and_fading():
    a, b = Recorder("a", 1.0), Recorder("b", 0.5)
    cfg = SweepConfig(codecs=["a", "b"], snr_db=[5.0], cbr=[1 / 4], channel="rayleigh-block:L=16",
                      csi=["ls:2"], metrics=("psnr",))
    eng = Engine(cfg, make_channel(cfg.channel), torch.device("cpu"), codec_factory={"a": a, "b": b}.get)
    rows = [r for task in eng.plan(items(), set()) for rs in eng.run_task(task) for r in rs]
    ra, rb = a.rx[0].raw, b.rx[0].raw
    kb = b.sent[0].shape[1]
    # the same frame layout, gains, pilot noise and estimate on the first symbols of both codecs
    assert torch.equal(ra.h[:, :kb], rb.h[:, :kb])  # the estimates (built from the same pilots)
    path = LinkPath(LinkVariant(csi="ls:2"), make_channel(cfg.channel))
    real = Realization(0, ["im0", "im1"], 0)  # the rows' draws: the same noise and gains whatever is sent
    s1, s2 = a.sent[0], torch.flip(a.sent[0][:, :kb], dims=[1])
    _, o1, st1 = path.send(s1, torch.full((2,), s1.shape[1]), 5.0, real)
    _, o2, st2 = path.send(s2, torch.full((2,), kb), 5.0, real)
    assert torch.equal(st1.h_true[:, :kb], st2.h_true) and torch.equal(st1.h_est[:, :kb], st2.h_est)
    assert torch.allclose(o1.y[:, :kb] - st1.h_true[:, :kb] * s1[:, :kb], o2.y - st2.h_true * s2, atol=1e-6)
    n_uses = 3 * 16 * 16
    for r, codec in [(r, a if r.codec == "a" else b) for r in rows]:
        k = codec.sent[0].shape[1]
        assert r.info["cbr_pilot"] == pytest.approx(path.pilots.pilots(k) / n_uses)
        assert r.info["cbr_pilot"] == pytest.approx(2 * math.ceil(k / 14) / n_uses)  # 2 of every 16 uses
        assert 0 < r.info["csi_nmse"] < 5
        assert r.channel == "rayleigh-block:L=16 [CSI ls:2]"
    # the estimation error of LS with P = 2 pilots: N0 / 2 on average over many blocks
    real = Realization(0, [f"x{i}" for i in range(200)], 0)
    s = torch.ones(200, 14 * 20, dtype=torch.complex64)
    _, out, state = path.send(s, torch.full((200,), 14 * 20), 5.0, real)
    n0 = 10 ** -0.5
    assert float(((state.h_est - state.h_true).abs() ** 2).mean()) == pytest.approx(n0 / 2, rel=0.05)


def test_perfect_csi_variant_is_the_plain_channel_bit_for_bit():
    ch = make_channel("rayleigh-block:L=4")
    real = Realization(0, ["p", "q"], 1)
    s = torch.polar(torch.ones(2, 10), torch.linspace(0, 6, 20).reshape(2, 10)).to(torch.complex64)
    plain = ch(s, 3.0, real)
    _, out, state = LinkPath(LinkVariant(), ch).send(s, torch.tensor([10, 10]), 3.0, real)
    assert torch.equal(out.y, plain.y) and torch.equal(out.h, plain.h)
    assert state.h_est is None and int(state.n_pilots.sum()) == 0


def test_row_state_over_the_image_own_symbols():
    h = torch.tensor([[1 + 0j, 2 + 0j, 0j], [1j, 1j, 1j]], dtype=torch.complex64)
    from lrisc_sim.link import LinkState

    st = LinkState(h_true=h, h_est=None, n_pilots=torch.zeros(2, dtype=torch.int64), sqnr_db=None)
    out = row_state(LinkVariant(), st, torch.tensor([2, 3]), 0.0, True, torch.tensor([True, False]), 100)
    assert out["h2"] == [2.5, 1.0]
    assert out["snr_inst_db"] == pytest.approx([10 * math.log10(2.5), 0.0], abs=1e-4)
    assert out["outage"] == [False, True]


def test_channel_column_and_extension(tmp_path):
    assert channel_column("awgn", "mmse") == "awgn"
    assert channel_column("rayleigh", "zf", LinkVariant("lmmse:4", 10.0, "qam64")) == \
        "rayleigh (ZF) [CSI lmmse:4, QAM64, design 10 dB]"
    from lrisc_sim.identity import extension, union_grid

    cfg = SweepConfig(codecs=["softcast"], snr_db=[0.0], cbr=[1 / 48], csi=["perfect", "ls:2"],
                      constellation=["none"], design_snr=[None, 10])
    old = {"codecs": ["softcast"], "snr_db": [0.0], "cbr": ["1/48"], "trials": 1}  # before the link axes
    assert extension(old, cfg) == ["+1 CSI value (ls:2)", "+1 design SNR (10)"]
    assert union_grid(old, cfg)["csi"] == ["perfect", "ls:2"]


@pytest.mark.parametrize("axes, field, words", [
    ({"csi": ["ls:0"]}, "csi", "ls"),
    ({"csi": ["ls:2"], "channel": "rayleigh-block:L=2"}, "csi", "ls:2"),
    ({"design_snr": ["loud"]}, "design_snr", "channel"),
    ({"constellation": ["qam12"]}, "constellation", "qam"),
    ({"constellation": ["qam16", "QAM16"]}, "constellation", "same value"),
    ({"csi": []}, "csi", "at least one"),
])
def test_bad_link_values_are_one_line_errors(axes, field, words):
    kw = {"channel": axes.pop("channel", "awgn"), **axes}
    with pytest.raises(ConfigError) as e:
        SweepConfig(codecs=["softcast"], snr_db=[0.0], cbr=[1 / 48], **kw).validate()
    assert e.value.field == field and words in str(e.value) and "\n" not in str(e.value)


def test_cli_toml_and_api_front_ends(tmp_path):
    import lrisc_sim
    from lrisc_sim.experiment import load_experiment

    toml = tmp_path / "x.toml"
    toml.write_text('codecs = [{spec = "softcast"}]\ndataset = "builtin"\nlimit = 1\nmetrics = ["psnr"]\n'
                    '[channel]\nmodel = "rayleigh-block:L=64"\ncsi = ["perfect", "ls:1"]\ndesign_snr = 5\n'
                    'constellation = ["none", "qam64"]\n[grid]\nsnr = "0,10"\ncbr = "1/48"\n')
    exp = load_experiment(toml)
    assert exp.sweep.csi == ["perfect", "ls:1"] and exp.sweep.design_snr == [5]
    assert len(exp.sweep.link_variants()) == 4
    bad = tmp_path / "bad.toml"
    bad.write_text(toml.read_text().replace('"ls:1"', '"guess"'))
    with pytest.raises(ValueError, match=r"channel\.csi"):
        load_experiment(bad)
    df = lrisc_sim.sweep("softcast", snr="0", cbr="1/48", channel="rayleigh-block:L=64", limit=1,
                         out=tmp_path / "api", csi="perfect,ls:1", constellation=["none", "qam64"], metrics="psnr",
                         device="cpu", progress=False)
    assert sorted(set(df["channel"])) == ["rayleigh-block:L=64", "rayleigh-block:L=64 [CSI ls:1, QAM64]",
                                          "rayleigh-block:L=64 [CSI ls:1]", "rayleigh-block:L=64 [QAM64]"]
    summary = (tmp_path / "api" / "summary.csv").read_text().splitlines()[0]
    assert "cbr_pilot" in summary and "csi_nmse" in summary and "sqnr_db" in summary
    r = subprocess.run([sys.executable, "-m", "lrisc_sim.cli", "sweep", "--codec", "softcast", "--snr", "0",
                        "--csi", "ls:99", "--out", str(tmp_path / "cli"), "--limit", "1"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "--csi" in r.stderr and "Traceback" not in r.stderr


def test_send_api_takes_the_link_variant_and_matches_the_sweep_rows(tmp_path):
    """``lrisc_sim.send`` with the same ids, seed and link variant gives the numbers of a sweep's rows."""
    import lrisc_sim
    from lrisc_sim.data import load_dataset

    df = lrisc_sim.sweep("softcast", snr="3", cbr="1/48", channel="rayleigh-block:L=64", limit=1, out=tmp_path / "s",
                         csi="lmmse:2", design_snr=8, constellation="qam64", metrics="psnr", device="cpu",
                         progress=False)
    item = load_dataset("builtin", 1)[0]
    t = lrisc_sim.send("softcast", item.image, 1 / 48, 3.0, "rayleigh-block:L=64", ids=[item.id], csi="lmmse:2",
                       design_snr=8, constellation="qam64")
    from lrisc_sim.metrics import psnr

    assert float(psnr(item.image[None], t.output)[0]) == pytest.approx(float(df["psnr"].iloc[0]), abs=1e-4)
    assert float(t.received.snr_db[0]) == 3.0  # the receiver knows its channel; the design SNR is the encoder's
    with pytest.raises(ConfigError, match="csi"):
        lrisc_sim.send("softcast", item.image, 1 / 48, 3.0, "rayleigh-block:L=2", csi="ls:2")


def test_channel_of_a_column():
    from lrisc_sim.link import channel_of

    assert channel_of("awgn (ZF) [design 10 dB]") == "awgn"
    assert channel_of("rayleigh-block:L=64 [CSI ls:2]") == "rayleigh-block:L=64"
    assert channel_of("tdl-a:ds=1e-07") == "tdl-a:ds=1e-07"
