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
