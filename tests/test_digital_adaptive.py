"""Link adaptation of the digital baseline (``bpg-ldpc:adaptive``): the measured MCS thresholds, the decision rule,
and the codec against the fixed-MCS codecs and the genie envelope on the same realizations (the cliff effect)."""

from __future__ import annotations

import datetime
import json
import math

import numpy as np
import pytest
import torch

from baselines.digital import adaptation as ad
from baselines.digital.adaptation import ThresholdTable, choose_mcs, threshold_from_points
from baselines.digital.bler import BlerMeter, binomial_sigma, shannon_limit_db, single_block_layout
from baselines.digital.codecs import (AdaptiveCodec, EnvelopeCodec, fallback_images, make_bpg_ldpc, make_j2k_ldpc,
                                      psnr_uint8)
from baselines.digital.link import plan_blocks
from baselines.digital.mcs import STANDARD_MCS, parse_mcs
from channels.awgn import AWGN
from channels.base import equalize
from channels.realization import Realization
from lrisc_sim.codec import Context
from lrisc_sim.transmission import send

pytestmark = pytest.mark.usefixtures("one_thread")

KODAK_USES = 24576  # a 768 x 512 image at CBR 1/48: blocks of about 8192 bits for every MCS
CBR = 1 / 6  # for the 64 x 64 crops: 2048 channel uses, the lowest quality fits qpsk-1/3 (at 1/8 it does not)


@pytest.fixture(scope="module")
def table() -> ThresholdTable:
    return ThresholdTable.load()


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads(ad.THRESHOLDS_FILE.read_text())


@pytest.fixture(scope="module")
def crops() -> torch.Tensor:
    """Two 64 x 64 natural-photo crops (scikit-image, no download): ``2 x 3 x 64 x 64``."""
    from skimage.data import astronaut

    a = np.ascontiguousarray(astronaut()[40:104, 150:214])
    b = np.ascontiguousarray(astronaut()[200:264, 260:324])
    return torch.from_numpy(np.stack([a, b])).permute(0, 3, 1, 2).float() / 255


def run(codec, x, cbr, snr_db, real):
    t = send(codec, x, cbr, snr_db, AWGN(), real.image_ids, real.seed, real.trial)
    return t.decoded, t.encoded


# ---------------------------------------------------------------------------------------------------- the table
def test_table_is_generated_complete_and_consistent(raw, table):
    assert raw["command"] == ad.COMMAND and datetime.date.fromisoformat(raw["date"])
    assert raw["target_bler"] == ad.TARGET_BLER == table.target_bler
    g = raw["grid"]
    assert (g["coarse_step_db"], g["coarse_blocks"], g["fine_step_db"], g["fine_blocks"]) == (
        ad.COARSE_STEP_DB, ad.COARSE_BLOCKS, ad.FINE_STEP_DB, ad.FINE_BLOCKS)
    assert raw["link"]["num_iter"] == 20 and raw["link"]["demapping"] == "app"
    assert table.names() == [m.name for m in STANDARD_MCS]
    for m in STANDARD_MCS:
        entry = raw["mcs"][m.name]
        assert entry["shannon_limit_db"] == pytest.approx(shannon_limit_db(m), abs=1e-4)
        assert [c["k_cb"] for c in entry["curves"]] == [single_block_layout(m, k).k_cb for k in raw["block_lengths"]]
        for c in entry["curves"]:
            # the threshold is the interpolation of its own points (not typed in), above the Shannon limit
            assert c["threshold_db"] == pytest.approx(threshold_from_points(c["points"], raw["target_bler"]),
                                                      abs=1e-4)
            assert shannon_limit_db(m) < c["threshold_db"] < shannon_limit_db(m) + 4
            fine = [p for p in c["points"] if p["stage"] == "fine"]
            assert all(p["blocks"] == ad.FINE_BLOCKS for p in fine)
            assert all(p["undetected"] == 0 for p in c["points"])  # the CRC catches every failed block
            # the grid is the 0.1 dB lattice
            assert all(abs(p["snr_db"] * 10 - round(p["snr_db"] * 10)) < 1e-9 for p in c["points"])


def test_thresholds_are_monotone_in_efficiency_and_block_length(raw, table):
    for k in raw["block_lengths"]:
        t = [table.threshold(m, single_block_layout(m, k).k_cb) for m in STANDARD_MCS]
        assert all(a < b for a, b in zip(t, t[1:])), (k, t)
    for m in STANDARD_MCS:
        t = [table.threshold(m, k) for k in table.lengths(m)]
        # longer blocks have a steeper waterfall: never a higher threshold (0.05 dB: Monte Carlo slack)
        assert all(b <= a + 0.05 for a, b in zip(t, t[1:])), (m.name, t)


def test_threshold_interpolates_in_log_block_length(table):
    m = parse_mcs("16qam-1/2")
    ks = table.lengths(m)
    t = [table.threshold(m, k) for k in ks]
    mid = int(round(math.sqrt(ks[1] * ks[2])))  # halfway in log2 K
    assert table.threshold(m, mid) == pytest.approx((t[1] + t[2]) / 2, abs=2e-3)
    assert table.threshold(m, 40) == t[0] and table.threshold(m, 8448) == t[-1]  # constant outside


def test_remeasured_point_agrees_with_the_table(raw):
    """A point of the qpsk-1/2 curve at the shortest block (the most informative: BLER nearest 1/2), measured
    again on independent blocks (another seed): the two estimates differ by less than 4 standard deviations of
    their difference, sqrt(p (1 - p) (1/n1 + 1/n2)) with the pooled p (two-sided false alarm 6e-5). About 2 s."""
    m = parse_mcs("qpsk-1/2")
    curve = raw["mcs"][m.name]["curves"][0]
    lay = single_block_layout(m, raw["block_lengths"][0])
    assert lay.k_cb == curve["k_cb"]
    fine = [p for p in curve["points"] if p["stage"] == "fine"]
    p0 = min(fine, key=lambda p: abs(p["errors"] / p["blocks"] - 0.5))
    n = 200
    got = BlerMeter(lay, n, seed=raw["seed"] + 1).at(p0["snr_db"])
    assert got.undetected == 0
    pooled = (p0["errors"] + got.errors) / (p0["blocks"] + n)
    sigma = binomial_sigma(pooled, 1) * math.sqrt(1 / p0["blocks"] + 1 / n)
    assert 0 < pooled < 1
    assert abs(got.bler - p0["errors"] / p0["blocks"]) <= 4 * sigma, (p0, got)


def test_bler_meter_prefix_and_extremes():
    lay = single_block_layout(parse_mcs("16qam-2/3"), 256)
    meter = BlerMeter(lay, 24, seed=3)
    assert meter.at(30.0).errors == 0 and meter.at(0.0).errors == 24
    # the first n blocks of a larger measurement are a smaller measurement (common random numbers)
    small = BlerMeter(lay, 10, seed=3)
    snr = shannon_limit_db(lay.mcs) + 1.5
    full = meter.link.receive(*_rx(meter, snr, 24))
    part = small.link.receive(*_rx(small, snr, 10))
    assert torch.equal(full.block_ok[:10], part.block_ok)
    with pytest.raises(ValueError, match="single"):
        BlerMeter(plan_blocks(parse_mcs("qpsk-1/2"), 9000), 4)


def _rx(meter, snr, n):
    from baselines.digital.link import unbiased

    rx = equalize(AWGN()(meter.symbols[:n], snr, Realization(meter.seed, meter.ids[:n], 0)))
    return unbiased(rx.s_hat, rx.noise_var, rx.gain)


# ---------------------------------------------------------------------------------------------------- the rule
def test_rule_at_hand_picked_snrs(table):
    lay = {m: plan_blocks(m, KODAK_USES) for m in STANDARD_MCS}
    thr = [table.threshold(m, lay[m].k_cb) for m in STANDARD_MCS]
    assert all(b - a > 0.05 for a, b in zip(thr, thr[1:]))
    for j, (m, t) in enumerate(zip(STANDARD_MCS, thr)):
        above = choose_mcs(table, STANDARD_MCS, KODAK_USES, t + 0.01)
        assert (above.mcs, above.qualified) == (m, True) and above.threshold_db == pytest.approx(t)
        below = choose_mcs(table, STANDARD_MCS, KODAK_USES, t - 0.01)
        assert below.mcs == STANDARD_MCS[max(j - 1, 0)] and below.qualified == (j > 0)
        # the margin is subtracted from the told SNR
        assert choose_mcs(table, STANDARD_MCS, KODAK_USES, t + 0.01, margin_db=0.02).mcs == below.mcs
        assert choose_mcs(table, STANDARD_MCS, KODAK_USES, t - 0.5, margin_db=-0.51).mcs == m
    assert choose_mcs(table, STANDARD_MCS, KODAK_USES, 40.0).mcs.name == "64qam-1/2"
    # a restricted set, in any order
    sub = [parse_mcs("16qam-1/2"), parse_mcs("qpsk-1/3")]
    assert choose_mcs(table, sub, KODAK_USES, thr[4] + 1).mcs.name == "16qam-1/2"
    assert choose_mcs(table, sub, KODAK_USES, thr[3] - 0.01).mcs.name == "qpsk-1/3"
    # the threshold is that of the block length of the image's layout: short blocks need more SNR
    small = 768  # e.g. a 64 x 64 crop at CBR 1/16
    m = parse_mcs("qpsk-1/2")
    t_small = table.threshold(m, plan_blocks(m, small).k_cb)
    assert t_small > thr[1]
    assert choose_mcs(table, [m], small, (t_small + thr[1]) / 2).qualified is False
    # nothing fits a tiny budget: the most robust MCS, not qualified
    tiny = choose_mcs(table, STANDARD_MCS, 10, 30.0)
    assert tiny.mcs.name == "qpsk-1/3" and not tiny.qualified and math.isnan(tiny.threshold_db)
    with pytest.raises(ValueError, match="finite"):
        choose_mcs(table, STANDARD_MCS, KODAK_USES, float("nan"))
    with pytest.raises(ValueError, match="256qam-1/2"):
        choose_mcs(table, [parse_mcs("256qam-1/2")], KODAK_USES, 10.0)


# ---------------------------------------------------------------------------------------------------- the codec
def test_factory_options_and_labels(tmp_path):
    from lrisc_sim.registry import make_codec, option_lines

    a = make_bpg_ldpc("adaptive")
    assert isinstance(a, AdaptiveCodec) and a.snr_aware_encoder and a.name == "bpg-ldpc:adaptive"
    assert [v.mcs.name for v in a.variants()] == [m.name for m in STANDARD_MCS] and a.margin == 0
    assert "told SNR" in a.describe() and "BLER 0.1" in a.describe()
    j = make_j2k_ldpc("adaptive", mcs="16qam-1/2,qpsk-1/2", margin=1.0)
    assert j.name == "jpeg2000-ldpc:adaptive" and j.variants()[0].source.name.startswith("jpeg2000")
    assert [v.mcs.name for v in j.variants()] == ["qpsk-1/2", "16qam-1/2"] and "margin 1 dB" in j.describe()
    c = make_codec("bpg-ldpc:adaptive:margin=1.5")
    assert isinstance(c, AdaptiveCodec) and c.margin == 1.5
    env = make_bpg_ldpc(None)
    assert isinstance(env, EnvelopeCodec) and "best-MCS envelope (genie)" in env.describe()
    assert any("margin" in line for line in option_lines("bpg-ldpc"))
    for arg in (None, "qpsk-1/2"):
        with pytest.raises(TypeError, match="adaptive"):
            make_bpg_ldpc(arg, margin=1.0)
    with pytest.raises(ValueError, match="adaptive"):
        make_bpg_ldpc("adaptiv")
    with pytest.raises(ValueError, match="256qam-1/2"):
        make_bpg_ldpc("adaptive", mcs="qpsk-1/2,256qam-1/2")
    bad = tmp_path / "t.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="regenerate"):
        make_bpg_ldpc("adaptive", thresholds=str(bad))
    x = torch.rand(1, 3, 64, 64)
    with pytest.raises(ValueError, match="snr_db"):
        a.encode(x, 1 / 8, Context.of(x))


@pytest.mark.parametrize("snr", [1.0, 4.5, 8.8, 9.0])
def test_adaptive_equals_fixed_mcs_and_stays_below_the_genie(crops, snr):
    """Told SNR = channel SNR over AWGN: each image is the fixed-MCS codec's of the chosen MCS, bit for bit, and
    never beats the genie envelope on the same realization. At 8.8 dB, just below the 16qam-2/3 threshold
    (8.95 dB at these blocks), the rule sends 16qam-1/2 while the genie finds that 16qam-2/3 got through for
    image a on this realization: 30.79 vs 32.87 dB."""
    cbr = CBR
    real = Realization(4, ["a", "b"], 0)
    dec, enc = run(make_bpg_ldpc("adaptive"), crops, cbr, snr, real)
    table = ThresholdTable.load()
    k = Context.of(crops).budget(cbr)
    want = choose_mcs(table, STANDARD_MCS, k, snr)
    assert enc.info["mcs"] == [want.mcs.name] * 2 and enc.info["mcs_qualified"] == [want.qualified] * 2
    assert enc.info["told_snr_db"] == [snr, snr] and dec.info["mcs"] == enc.info["mcs"]
    assert enc.info["mcs_threshold_db"][0] == pytest.approx(want.threshold_db, abs=1e-4)
    d_fix, e_fix = run(make_bpg_ldpc(want.mcs.name), crops, cbr, snr, real)
    assert torch.equal(enc.symbols, e_fix.symbols) and torch.equal(enc.length, e_fix.length)
    assert torch.equal(dec.images, d_fix.images) and torch.equal(dec.ok, d_fix.ok)
    assert dec.info["blocks_failed"] == d_fix.info["blocks_failed"]
    assert enc.info["source_bytes"] == e_fix.info["source_bytes"]
    d_env, _ = run(make_bpg_ldpc(None), crops, cbr, snr, real)
    p_ad, p_env = psnr_uint8(crops, dec.images), psnr_uint8(crops, d_env.images)
    assert (p_ad <= p_env + 1e-9).all()
    assert bool((p_ad < p_env - 1).any()) == (snr == 8.8)
    assert dec.ok.all()  # at or above the threshold of its block length, these images get through


def test_cliff_when_the_transmitter_is_told_too_much(crops):
    """Told 10 dB over a 0 dB channel: the MCS of 10 dB fails and the images are lost (the cliff); told 0 dB
    over the same channel, the robust MCS decodes. Images of one batch may be told different SNRs."""
    codec = make_bpg_ldpc("adaptive")
    cbr = CBR
    real = Realization(9, ["a", "b"], 0)

    def over(told: list[float], channel_db: float):
        enc = codec.encode(crops, cbr, Context.of(crops, snr_db=torch.tensor(told)))
        rx = equalize(AWGN()(enc.symbols, channel_db, real))
        return enc, codec.decode(rx, enc)

    enc, dec = over([10.0, 10.0], 0.0)
    assert all(parse_mcs(m).efficiency >= 2 for m in enc.info["mcs"]) and all(enc.info["mcs_qualified"])
    assert not dec.ok.any() and all(f >= 1 for f in dec.info["blocks_failed"])
    assert torch.equal(dec.images, fallback_images(2, 64, 64))
    _, dec10 = over([10.0, 10.0], 10.0)
    assert dec10.ok.all()
    enc, dec = over([0.0, 0.0], 0.0)
    assert enc.info["mcs"] == ["qpsk-1/3"] * 2 and all(enc.info["mcs_qualified"]) and dec.ok.all()
    # one batch, two beliefs: the row told 0 dB survives the 0 dB channel, the row told 10 dB does not
    enc, dec = over([0.0, 10.0], 0.0)
    assert enc.info["mcs"][0] == "qpsk-1/3" and enc.info["mcs"][1] != "qpsk-1/3"
    assert dec.ok.tolist() == [True, False]
    # told below every threshold: the most robust MCS, and the info says it did not qualify
    enc, _ = over([-8.0, -8.0], 0.0)
    assert enc.info["mcs"] == ["qpsk-1/3"] * 2 and enc.info["mcs_qualified"] == [False, False]


def test_sweep_encodes_per_snr(crops, tmp_path):
    """Through the engine (an SNR-aware encoder): the rows of each SNR carry the MCS chosen for that SNR."""
    from PIL import Image

    import lrisc_sim

    data = tmp_path / "imgs"
    data.mkdir()
    for name, img in zip(("a", "b"), crops):
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(data / f"{name}.png")
    rows = lrisc_sim.sweep("bpg-ldpc:adaptive", snr="0,10", cbr="1/6", channel="awgn", dataset=data,
                           out=tmp_path / "out", metrics="psnr", progress=False)
    assert len(rows) == 4 and rows["ok"].all()
    mcs = {(r.snr_db, json.loads(r.info)["mcs"]) for r in rows.itertuples()}
    table = ThresholdTable.load()
    k = Context.of(crops).budget(CBR)
    assert mcs == {(s, choose_mcs(table, STANDARD_MCS, k, s).mcs.name) for s in (0.0, 10.0)}
