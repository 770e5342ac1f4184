"""The generated results/README.md compares against the paper's claims with numbers computed from the tables."""

import pandas as pd
import pytest

from lrisc_sim.report import _claim_check, _lpips_reduction, _psnr_order


def _summary() -> pd.DataFrame:
    rows = []
    for snr, (lp_l, lp_d, ps_l, ps_d, ps_b) in {0.0: (0.5, 1.0, 20.0, 22.0, 18.0),
                                                  5.0: (0.3, 0.4, 25.0, 23.0, 24.0)}.items():
        rows += [dict(codec="lrisc", snr_db=snr, cbr_target=1 / 48, psnr=ps_l, lpips=lp_l),
                 dict(codec="deepjscc", snr_db=snr, cbr_target=1 / 48, psnr=ps_d, lpips=lp_d),
                 dict(codec="bpg-ldpc", snr_db=snr, cbr_target=1 / 48, psnr=ps_b, lpips=0.9)]
    return pd.DataFrame(rows)


def test_lpips_reduction_is_mean_of_per_point_reductions():
    text = _lpips_reduction(_summary(), "snr_db")
    # (1 - 0.5/1.0) = 50%, (1 - 0.3/0.4) = 25%  -> 37.5% on average
    assert "+37.5% reduction on average over 2 points" in text
    assert "+50.0%" in text and "+25.0%" in text


def test_claim_check_counts_points_where_lrisc_leads():
    assert _claim_check(_summary(), "snr_db") == (
        "LRISC has the highest PSNR at 1 of 2 points and the lowest LPIPS at 2 of 2 points.")
    assert _claim_check(_summary()[lambda d: d.codec != "lrisc"], "snr_db") is None


def test_psnr_order_lists_codecs_best_first():
    lines = _psnr_order(_summary(), "snr_db")
    assert lines[0] == "- 0 dB: deepjscc (22.00) > lrisc (20.00) > bpg-ldpc (18.00)"
    assert lines[1].startswith("- 5 dB: lrisc (25.00) > bpg-ldpc")


@pytest.mark.parametrize("x", ["snr_db", "cbr_target"])
def test_no_deepjscc_no_reduction(x):
    s = _summary()
    assert _lpips_reduction(s[s.codec != "deepjscc"], x) is None


def _cards(root, lrisc_psnr=(17.0, 18.0), deepjscc_psnr=(21.0, 23.0)):
    """A checkpoint folder with an LRISC card (3 stages) and one DeepJSCC card."""
    import json

    (root / "lrisc").mkdir(parents=True)
    (root / "deepjscc").mkdir()
    point = lambda p, lp, side: {"psnr": p, "lpips": lp, "cbr_side": side, "cbr_total": 0.02}  # noqa: E731
    card = {
        "preset": "small", "stage": 3, "steps": 25, "parameters": {"total": 12_345_678}, "device": "cpu",
        "threads": 2, "data": {"train_images": 86}, "training": {"crop": 256}, "validation": {"psnr": 18.0},
        "previous_stages": [{"stage": 1, "steps": 100, "validation": {"psnr": 21.37}},
                            {"stage": 2, "steps": 50, "validation": {"psnr": 18.5}}],
        "kodak": {"cbr_target": "1/48", "channel": "awgn",
                  "codecs": {"lrisc": {"0": point(lrisc_psnr[0], 0.5, 0.002), "10": point(lrisc_psnr[1], 0.4, 0.006)},
                             "deepjscc": {"0": point(deepjscc_psnr[0], 0.7, 0.0),
                                          "10": point(deepjscc_psnr[1], 0.6, 0.0)}},
                  "lpips_reduction_vs_deepjscc_pct": {"mean": 30.55}}}
    (root / "lrisc" / "lrisc_small.json").write_text(json.dumps(card))
    (root / "deepjscc" / "deepjscc_cbr1-48_snr10.json").write_text(json.dumps(
        {"cbr": "1/48", "steps": 900, "device": "cpu", "kodak": {"snr_db": 10.0, "psnr_mean": 25.0}}))
    return root


def test_checkpoint_notes_take_every_number_from_the_cards(tmp_path, monkeypatch):
    import lrisc_sim.report as report

    monkeypatch.setattr(report, "preset_parameters", lambda name: 76_657_326)
    notes = report.checkpoint_notes(_cards(tmp_path / "ck"))
    text = "\n".join(notes)
    assert notes[0] == ("- LRISC `small` preset: 12.3 M parameters (paper preset 77 M), trained 175 steps over three "
                        "stages on 86 photos as 256 x 256 crops on a CPU with 2 threads; the paper trains 10^6 steps "
                        "on 50 000 COCO crops of 256 x 256 on a GPU.")
    assert "0 dB: LRISC 17.00 dB / LPIPS 0.500, DeepJSCC 21.00 dB / 0.700" in notes[1]
    assert "LPIPS reduction vs DeepJSCC 30.6% on average (paper: 43.3%)" in notes[1]
    assert ("unlike the paper, LRISC's PSNR is below DeepJSCC's at every SNR: the small diffusion decoder reaches "
            "only 21.4 dB even without a channel (stage-1 validation crops), and rate indices take 20% of the "
            "channel uses.") in notes[1]  # (0.002 + 0.006) / 2 of 0.02
    assert "- DeepJSCC CBR 1/48: 900 steps on CPU, Kodak 10 dB PSNR 25.00 dB (paper-scale: 27.4 dB)" in notes
    assert "about" not in text and "2-core" not in text and "0.03 dB" not in text


def test_checkpoint_notes_follow_a_better_checkpoint(tmp_path, monkeypatch):
    import lrisc_sim.report as report

    monkeypatch.setattr(report, "preset_parameters", lambda name: None)  # no model here: the comparison is left out
    notes = report.checkpoint_notes(_cards(tmp_path / "ck", lrisc_psnr=(22.0, 24.0)))
    assert "(paper preset" not in notes[0]
    assert notes[1].endswith("as in the paper, LRISC's PSNR is above DeepJSCC's at every SNR.")
    assert "reaches only" not in notes[1]
    mixed = report.checkpoint_notes(_cards(tmp_path / "ck2", lrisc_psnr=(22.0, 18.0)))[1]
    assert "below DeepJSCC's at 1 of 2 SNRs" in mixed


def test_capacity_outage_is_counted_from_the_tables(tmp_path, monkeypatch):
    import lrisc_sim.report as report

    monkeypatch.setattr(report, "preset_parameters", lambda name: None)
    rows = [dict(codec=c, channel=ch, snr_db=snr, cbr_target=1 / 48, psnr=p)
            for ch, vals in (("rayleigh", {"bpg-capacity": (19.0, 26.0), "bpg-ldpc": (20.0, 25.0)}),
                             ("awgn", {"bpg-capacity": (25.0, 30.0), "bpg-ldpc": (22.0, 29.0)}))
            for c, ps in vals.items() for snr, p in zip((0.0, 10.0), ps)]
    last = report.checkpoint_notes(tmp_path / "none", {"fading": pd.DataFrame(rows)})[-1]
    assert last.endswith("falls short: over `rayleigh` (fading) it is below the envelope at 1 of 2 points.")
    assert "(per image and SNR the best of the 6 MCS" in last
    assert report.checkpoint_notes(tmp_path / "none")[-1].endswith("when a fading gain falls short.")


def test_preset_parameters_counts_the_networks_without_weights():
    import torch

    from lrisc_sim.lrisc.config import preset
    from lrisc_sim.lrisc.model import LRISC
    from lrisc_sim.report import preset_parameters

    torch.manual_seed(0)
    assert preset_parameters("tiny") == sum(p.numel() for p in LRISC(preset("tiny")).parameters())
