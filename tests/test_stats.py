"""Statistics over the right unit: the image (trials are nested in images). Hand computations on a tiny table,
coverage on simulated data with known variance components, clipping to the metric's range, n/a with one image,
exact binomial intervals for the success rate, and the committed tables' means unchanged."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lrisc_sim.results import format_summary, load, summarize
from lrisc_sim.stats import average_gap, clopper_pearson, image_means, interval_text, nested_interval, t_halfwidth

T2 = 4.302652729749464  # Student t quantile 0.975 with 2 degrees of freedom (tables)
ROOT = Path(__file__).resolve().parents[1]


def _rows(point: dict, images: dict, cbr_total: float, ok: list[bool]) -> list[dict]:
    """Rows of one point: ``images`` maps image id -> list over trials of (psnr, ms_ssim, lpips)."""
    rows, i = [], 0
    for img, trials in images.items():
        for t, (p, s, lp) in enumerate(trials):
            rows.append({**point, "trial": t, "image": img, "psnr": p, "ms_ssim": s, "lpips": lp,
                         "cbr_payload": cbr_total, "cbr_side": 0.0, "cbr_total": cbr_total, "ok": ok[i],
                         "seconds": 1.0})
            i += 1
    return rows


def _tiny() -> pd.DataFrame:
    pt = {"codec": "c", "channel": "awgn", "cbr_target": 0.25, "snr_db": 5.0}
    three = {"a": [(20, 0.99, 0.05), (22, 0.99, 0.07)],
             "b": [(24, 0.95, 0.02), (26, 0.97, 0.02)],
             "c": [(29, 0.90, 0.40), (29, 0.90, 0.40)]}
    rows = _rows(pt, three, 0.2, [True, True, True, False, True, True])
    rows += _rows({**pt, "snr_db": 10.0}, {"a": [(30, 0.5, 0.1), (32, 0.6, 0.3)]}, 0.24, [True, True])
    return pd.DataFrame(rows)


def test_summary_is_the_hand_computation_over_images():
    s = summarize(_tiny()).set_index("snr_db")
    r = s.loc[5.0]
    assert (r["n"], r["n_images"], r["n_trials"]) == (6, 3, 2)
    # PSNR: image means 21, 25, 29 -> mean 25, sd 4 -> t_2 * 4 / sqrt(3)
    assert r["psnr"] == pytest.approx(25.0)
    assert r["psnr_ci95"] == pytest.approx(T2 * 4 / math.sqrt(3))
    assert (r["psnr_lo"], r["psnr_hi"]) == pytest.approx((25 - T2 * 4 / math.sqrt(3), 25 + T2 * 4 / math.sqrt(3)))
    # MS-SSIM: image means 0.99, 0.96, 0.90 -> 0.95, sd sqrt(0.0021); the upper bound is clipped at 1
    half = T2 * math.sqrt(0.0021) / math.sqrt(3)
    assert r["ms_ssim"] == pytest.approx(0.95) and r["ms_ssim_ci95"] == pytest.approx(half)
    assert r["ms_ssim_hi"] == 1.0 and r["ms_ssim_lo"] == pytest.approx(0.95 - half)
    # LPIPS: image means 0.06, 0.02, 0.40 -> 0.16, sd sqrt(0.0436); the lower bound is clipped at 0
    half = T2 * math.sqrt(0.0436) / math.sqrt(3)
    assert r["lpips"] == pytest.approx(0.16) and r["lpips_ci95"] == pytest.approx(half)
    assert r["lpips_lo"] == 0.0 and r["lpips_hi"] == pytest.approx(0.16 + half)
    # the old pooled interval (6 rows as if independent) was narrower: t_5 s_6 / sqrt(6)
    pooled = t_halfwidth([20, 22, 24, 26, 29, 29])
    assert pooled < r["psnr_ci95"] / 2
    # ok: 5 of 6 transmissions, Clopper-Pearson = beta quantiles; used CBR 0.2 < 0.9 x 0.25
    from scipy.stats import beta

    assert r["ok_rate"] == pytest.approx(5 / 6)
    assert r["ok_lo"] == pytest.approx(beta.ppf(0.025, 5, 2)) and r["ok_hi"] == pytest.approx(0.975 ** (1 / 6))
    assert bool(r["underfilled"]) and not bool(s.loc[10.0]["underfilled"])  # 0.24 >= 0.225


def test_one_image_has_no_interval_and_prints_na():
    s = summarize(_tiny())
    r = s.set_index("snr_db").loc[10.0]
    assert r["n_images"] == 1 and r["psnr"] == pytest.approx(31.0)  # mean over the image's two trials
    for m in ("psnr", "ms_ssim", "lpips"):
        assert math.isnan(r[f"{m}_ci95"]) and math.isnan(r[f"{m}_lo"]) and math.isnan(r[f"{m}_hi"])
    text = format_summary(s)
    line = next(ln for ln in text.splitlines() if " 10.0 " in ln)
    assert "31.00 ±n/a" in line and "±0.00" not in text
    assert "n/a: fewer than two images" in text
    assert "0.20000*" in text and "* CBR used below 90% of the target" in text  # the underfilled point
    assert "0.950 -0.114/+0.050" in text and "0.160 -0.160/+0.519" in text  # bounds clipped at 1 and 0


def test_nested_interval_covers_the_true_mean_where_the_pooled_one_does_not():
    """y_ij = mu + a_i + e_ij, a_i ~ N(0, 3^2) per image, e_ij ~ N(0, 1) per trial, 4 images x 3 trials: the t
    interval over the image means covers mu in 95% of repetitions (exact under this model); the pooled interval
    over the 12 rows undercovers."""
    rng = np.random.default_rng(1)
    mu, sa, se, n_img, n_tr, reps = 25.0, 3.0, 1.0, 4, 3, 4000
    ids = np.repeat(np.arange(n_img), n_tr)
    y = mu + rng.normal(0, sa, (reps, n_img, 1)) + rng.normal(0, se, (reps, n_img, n_tr))
    nested = pooled = 0
    for r in range(reps):
        iv = nested_interval(y[r].ravel(), ids)
        nested += abs(iv.mean - mu) <= iv.half
        pooled += abs(y[r].mean() - mu) <= t_halfwidth(y[r].ravel())
    assert 0.935 <= nested / reps <= 0.965  # 95% +- 4.4 standard errors
    assert pooled / reps < 0.85
    # summarize computes the same intervals (one point per repetition)
    k = 200
    df = pd.DataFrame({"codec": "c", "channel": "awgn", "cbr_target": 0.25, "snr_db": np.repeat(np.arange(k), 12),
                       "trial": np.tile(np.tile(np.arange(n_tr), n_img), k), "image": np.tile(ids, k).astype(str),
                       "psnr": y[:k].ravel(), "ms_ssim": np.nan, "lpips": np.nan, "cbr_payload": 0.25,
                       "cbr_side": 0.0, "cbr_total": 0.25, "ok": True, "seconds": 0.0})
    s = summarize(df)
    want = [nested_interval(y[r].ravel(), ids) for r in range(k)]
    assert s["psnr"].to_numpy() == pytest.approx([w.mean for w in want])
    assert s["psnr_ci95"].to_numpy() == pytest.approx([w.half for w in want])


def test_primitives():
    assert list(image_means([1, 3, np.nan, 5, 7], ["b", "b", "a", "a", "a"])) == [6.0, 2.0]  # a: NaN dropped
    assert math.isnan(t_halfwidth([3.0])) and math.isnan(t_halfwidth([]))
    assert t_halfwidth([1.0, 3.0, 5.0]) == pytest.approx(T2 * 2 / math.sqrt(3))
    assert clopper_pearson(0, 10)[0] == 0.0 and clopper_pearson(10, 10)[1] == 1.0
    assert clopper_pearson(0, 10)[1] == pytest.approx(1 - 0.025 ** (1 / 10))  # closed form at k = 0
    assert all(math.isnan(v) for v in clopper_pearson(0, 0))
    assert average_gap([0, 5, 15], [2, 4, 4]) == pytest.approx((5 * 3 + 10 * 4) / 15)
    assert interval_text(1.0, float("nan"), float("nan"), float("nan"), 2) == "1.00 ±n/a"
    assert interval_text(1.0, 0.5, 0.5, 1.5, 2) == "1.00 ±0.50"
    assert interval_text(float("nan"), 0.5, 0.5, 1.5, 2) == "-"


@pytest.mark.parametrize("name", ["fig4_snr", "fig5_cbr", "fading"])
def test_committed_tables_keep_their_means(name):
    folder = ROOT / "results" / name
    if not (folder / "results.csv").is_file():
        pytest.skip(f"{folder} has no results.csv")
    s = summarize(load(folder / "results.csv"))
    old = pd.read_csv(folder / "summary.csv")
    key = ["codec", "channel", "cbr_target", "snr_db"]
    merged = s.merge(old, on=key, suffixes=("", "_old"))
    assert len(merged) == len(old) == len(s)
    for m in ("psnr", "ms_ssim", "lpips", "cbr_total", "ok_rate"):
        np.testing.assert_allclose(merged[m], merged[f"{m}_old"], rtol=1e-12, atol=1e-12, equal_nan=True)


def test_lost_images_are_not_underfill():
    """A digital codec that sends nothing for a lost image (cbr_total 0, ok False) fills the budget with the
    others: not marked underfilled; the loss shows in ok_rate."""
    from lrisc_sim.results import summarize

    pt = {"codec": "d", "channel": "awgn", "cbr_target": 0.25, "snr_db": 0.0}
    imgs = {"a": [(20, 0.9, 0.1)], "b": [(21, 0.9, 0.1)]}
    df = pd.DataFrame(_rows(pt, imgs, 0.25, [True, True]) + _rows(pt, {"c": [(13, 0.3, 0.9)]}, 0.0, [False]))
    r = summarize(df).iloc[0]
    assert not bool(r["underfilled"]) and float(r["ok_rate"]) == pytest.approx(2 / 3)
    half = pd.DataFrame(_rows(pt, imgs, 0.1, [True, True]))
    assert bool(summarize(half).iloc[0]["underfilled"])
