"""Paired comparisons: rows paired on (channel, CBR, SNR, trial, image), differences averaged per image then over
images, t CI and tests over images, the Bjontegaard-style average gap (trapezoid, log CBR axis), skipped pairs
noted; all against hand-computed values."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from lrisc_sim.cli import main
from lrisc_sim.paired import compare_frame, csv_name, run_compare
from lrisc_sim.results import COLUMNS

T2 = 4.302652729749464  # Student t quantile 0.975, 2 degrees of freedom


def _row(codec, cbr, snr, trial, image, psnr, lpips=0.5):
    return {"codec": codec, "cbr_target": cbr, "cbr_payload": cbr, "cbr_side": 0.0, "cbr_total": cbr,
            "snr_db": snr, "channel": "awgn", "trial": trial, "image": image, "psnr": psnr, "ms_ssim": float("nan"),
            "lpips": lpips, "seconds": 0.1, "ok": True, "seed": 0, "side_charge": "fixed", "info": ""}


# per image, the PSNR difference B - A at SNR 0, 5, 15 dB (two trials at 0 dB, averaged per image)
DIFFS = {"x": ((1, 3), 4, 4), "y": ((0, 2), 2, 5), "z": ((3, 3), 6, 6)}


def _table(extra=()) -> pd.DataFrame:
    rows = []
    for img, (d0, d5, d15) in DIFFS.items():
        base = {"x": 20.0, "y": 22.0, "z": 18.0}[img]
        for trial in (0, 1):
            rows += [_row("A", 1 / 16, 0.0, trial, img, base + trial), _row("B", 1 / 16, 0.0, trial, img,
                                                                             base + trial + d0[trial])]
        rows += [_row("A", 1 / 16, 5.0, 0, img, base), _row("B", 1 / 16, 5.0, 0, img, base + d5)]
        rows += [_row("A", 1 / 16, 15.0, 0, img, base), _row("B", 1 / 16, 15.0, 0, img, base + d15)]
    rows += list(extra)
    df = pd.DataFrame(rows, columns=COLUMNS).sample(frac=1, random_state=0)  # pairing must not rely on order
    return df


def test_point_differences_and_average_gap_by_hand():
    t = compare_frame(_table(), "A", ["psnr"])
    p = t[(t.kind == "point")].set_index("snr_db")
    # 0 dB: per-image means 2, 1, 3 -> 2, sd 1
    r = p.loc[0.0]
    assert (r["codec"], r["ref"], r["n_images"], r["n_pairs"]) == ("B", "A", 3, 6)
    assert r["diff"] == pytest.approx(2.0) and r["ci95"] == pytest.approx(T2 / math.sqrt(3))
    assert (r["lo"], r["hi"]) == pytest.approx((2 - T2 / math.sqrt(3), 2 + T2 / math.sqrt(3)))
    tval = 2 / (1 / math.sqrt(3))
    assert r["p_t"] == pytest.approx(1 - tval / math.sqrt(tval ** 2 + 2))  # t_2 two-sided p, closed form
    assert math.isnan(r["p_wilcoxon"])  # fewer than 6 images
    # 5 dB: 4, 2, 6 -> 4, sd 2
    assert p.loc[5.0, "diff"] == pytest.approx(4.0) and p.loc[5.0, "ci95"] == pytest.approx(2 * T2 / math.sqrt(3))
    # average over 0..15 dB, trapezoid with unequal steps: g = (5 (d0 + d5) / 2 + 10 (d5 + d15) / 2) / 15
    g = {i: (5 * (np.mean(d[0]) + d[1]) / 2 + 10 * (d[1] + d[2]) / 2) / 15 for i, d in DIFFS.items()}
    a = t[t.kind == "average"].iloc[0]
    assert (a["axis"], a["x_min"], a["x_max"], a["n_points"], a["n_images"]) == ("snr_db", 0.0, 15.0, 3, 3)
    assert a["diff"] == pytest.approx(np.mean(list(g.values())))
    assert a["ci95"] == pytest.approx(T2 * np.std(list(g.values()), ddof=1) / math.sqrt(3))
    assert math.isnan(a["snr_db"]) and a["cbr_target"] == pytest.approx(1 / 16)


def test_average_over_cbr_uses_a_log_axis():
    # differences 0, 3, 3 at CBR 1/16, 1/8, 1/2 for both images: on ln CBR the steps are ln 2 and 2 ln 2
    rows = []
    for img, base in (("x", 20.0), ("y", 25.0)):
        for cbr, d in ((1 / 16, 0.0), (1 / 8, 3.0), (1 / 2, 3.0)):
            rows += [_row("A", cbr, 10.0, 0, img, base), _row("B", cbr, 10.0, 0, img, base + d)]
    t = compare_frame(pd.DataFrame(rows, columns=COLUMNS), "A", "psnr")
    a = t[t.kind == "average"].iloc[0]
    assert a["axis"] == "ln_cbr" and a["snr_db"] == 10.0 and math.isnan(a["cbr_target"])
    assert a["diff"] == pytest.approx((1.5 * 1 + 3 * 2) / 3)  # 2.5 (on a linear CBR axis it would be 2.79)
    assert a["ci95"] == 0.0  # both images have the same gap


def test_wilcoxon_from_six_images():
    rows = []
    for i, d in enumerate([0.5, 1.0, 1.5, 2.0, 2.5, 3.0]):
        rows += [_row("A", 1 / 16, 0.0, 0, f"i{i}", 20.0), _row("B", 1 / 16, 0.0, 0, f"i{i}", 20.0 + d)]
    r = compare_frame(pd.DataFrame(rows, columns=COLUMNS), "A", ["psnr"]).iloc[0]
    assert r["p_wilcoxon"] == pytest.approx(2 / 2 ** 6)  # all six signs positive: exact two-sided p
    assert r["diff"] == pytest.approx(1.75)


def test_missing_pairs_are_skipped_with_a_note():
    extra = [_row("C", 1 / 16, 0.0, 0, "x", 21.0), _row("C", 1 / 16, 0.0, 0, "y", 22.0),  # no z, no 5/15 dB
             _row("C", 1 / 16, 20.0, 0, "x", 30.0)]  # a point the reference lacks
    t = compare_frame(_table(extra), "A", ["psnr"])
    c = t[t.codec == "C"]
    assert list(c["snr_db"]) == [0.0]  # no average: one common point
    assert c.iloc[0]["n_images"] == 2 and c.iloc[0]["n_pairs"] == 2
    assert c.iloc[0]["diff"] == pytest.approx(((21 - 20) + (22 - 22)) / 2)  # trial 0 of x and y
    notes = "\n".join(t.attrs["notes"])
    assert "C has no rows at awgn, CBR 1/16, SNR 5 dB where A has" in notes
    assert "A has no rows at awgn, CBR 1/16, SNR 20 dB where C has" in notes
    assert "2 (image, trial) pairs of 6 rows" in notes


def test_cli_writes_the_csv_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    df = _table()
    df["codec"] = df["codec"].map({"A": "bpg-ldpc:qpsk-1/2", "B": "__main__:Mine"})
    df.to_csv(out / "results.csv", index=False)
    assert main(["compare", str(out), "--ref", "bpg-ldpc:qpsk-1/2"]) == 0
    text = capsys.readouterr().out
    assert csv_name("bpg-ldpc:qpsk-1/2") == "compare_bpg-ldpc_qpsk-1_2.csv"
    saved = pd.read_csv(out / "compare_bpg-ldpc_qpsk-1_2.csv")
    assert set(saved["metric"]) == {"psnr", "lpips"}  # MS-SSIM was not computed
    lpips = saved[saved.metric == "lpips"]
    assert (lpips["diff"] == 0).all() and (lpips["p_t"] == 1.0).all()  # identical LPIPS: no difference
    assert "+2.00 ±2.48 (0.074)" in text and "avg 0:15" in text and "__main__:Mine" in text
    assert main(["compare", str(out), "--ref", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "reference codec 'nope'" in err and "__main__:Mine" in err
    assert main(["compare", str(out), "--ref", "__main__:Mine", "--metrics", "ms_ssim"]) == 2
    assert "--metrics ms_ssim: not computed" in capsys.readouterr().err


def test_api_returns_the_frame_and_warns_about_skipped_points(tmp_path):
    import lrisc_sim

    out = tmp_path / "run"
    out.mkdir()
    _table([_row("C", 1 / 16, 0.0, 0, "x", 21.0)]).to_csv(out / "results.csv", index=False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        t = lrisc_sim.compare(out, "A", metrics="psnr")
    assert {"B", "C"} == set(t["codec"]) and (out / "compare_A.csv").is_file()
    assert any("C has no rows at" in str(x.message) for x in w)
    with pytest.raises(ValueError, match="has no results.csv"):
        run_compare(tmp_path / "empty", "A")
