"""Paired comparisons against a reference codec over the identical realizations of one sweep folder
(``lrisc-sim compare``; the module is not named ``compare`` so that ``lrisc_sim.compare`` stays the API function).

Every codec of a folder sees the same noise and gains (same seed, image and trial; ARCHITECTURE.md 3.5), so the
rows of a codec and of the reference are paired on (channel, cbr_target, snr_db, trial, image). Per codec and
point, with d = codec - ref per pair (formulas in ARCHITECTURE.md 6.5):

* ``diff`` = (1/I) sum_i dbar_i, dbar_i = image i's mean of d over its trials; ``ci95`` = t_{I-1} s / sqrt(I)
  over the I per-image means ``dbar_i`` (``lo``/``hi`` = diff -/+ ci95); ``p_t`` the one-sample t test of the
  ``dbar_i``; ``p_wilcoxon`` the Wilcoxon signed-rank test of the ``dbar_i`` (NaN with fewer than 6 images);
* ``kind = "average"`` rows: over the x axis that varies (SNR in dB, or ln CBR) with the other fixed, each
  image's average gap g_i = (1 / (x_J - x_1)) * trapezoid integral of its piecewise-linear dbar_i(x) over the
  common points x_1 < ... < x_J; ``diff`` = mean of g_i (= the average gap of the mean curves), CI and tests over
  the g_i, only images present at every common point.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from lrisc_sim.metrics import METRIC_NAMES

PAIR_KEY = ["channel", "cbr_target", "snr_db", "trial", "image"]  # identical realizations
POINT = ["channel", "cbr_target", "snr_db"]
COLUMNS = ["codec", "ref", "metric", "kind", "channel", "cbr_target", "snr_db", "axis", "x_min", "x_max",
           "n_points", "n_images", "n_pairs", "diff", "ci95", "lo", "hi", "p_t", "p_wilcoxon"]
AXES = {"snr_db": ("cbr_target", "snr_db"), "cbr_target": ("snr_db", "ln_cbr")}  # varying -> (fixed, axis name)


class CompareError(ValueError):
    """A comparison that cannot be made (unknown reference or metric, no results); one line naming the fix."""


def csv_name(ref: str) -> str:
    """The file name of a comparison against ``ref``: ``compare_<ref>.csv`` with characters other than letters,
    digits, ``.``, ``_`` and ``-`` replaced by ``_`` (specs like ``bpg-ldpc:qpsk-1/2``)."""
    return "compare_" + re.sub(r"[^A-Za-z0-9._-]", "_", ref) + ".csv"


def _where(channel: str, cbr: float, snr: float) -> str:
    from lrisc_sim.grammar import cbr_label

    return f"{channel}, CBR {cbr_label(cbr)}, SNR {snr:g} dB"


def _stat_row(values: np.ndarray, n_pairs: int) -> dict:
    """diff, ci95, lo, hi, p_t, p_wilcoxon and n_images of per-image values ``I``."""
    from lrisc_sim.stats import paired_tests, t_halfwidth

    v = values[np.isfinite(values)]
    mean = float(v.mean()) if len(v) else float("nan")
    half = t_halfwidth(v)
    p_t, p_w = paired_tests(v)
    lo, hi = (mean - half, mean + half) if math.isfinite(half) else (float("nan"), float("nan"))
    return {"n_images": len(v), "n_pairs": n_pairs, "diff": mean, "ci95": half, "lo": lo, "hi": hi, "p_t": p_t,
            "p_wilcoxon": p_w}


def _metrics(df, ref: str, metrics) -> list[str]:
    present = [m for m in METRIC_NAMES if m in df and np.isfinite(df.loc[df.codec == ref, m].to_numpy(float)).any()]
    if metrics is None:
        return present
    chosen = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    for m in chosen:
        if m not in METRIC_NAMES:
            raise CompareError(f"--metrics {m}: not a metric; choose from {', '.join(METRIC_NAMES)}")
        if m not in present:
            raise CompareError(f"--metrics {m}: not computed for {ref} in this folder (computed: "
                               f"{', '.join(present) or 'none'}); leave it out of --metrics")
    if not chosen:
        raise CompareError(f"--metrics: give at least one of {', '.join(present)}")
    return chosen


def compare_frame(df, ref: str, metrics=None):
    """Paired differences of every other codec of the results table ``df`` (``results.load``) to ``ref``:
    a DataFrame with ``COLUMNS`` (``kind`` "point" or "average"); its ``attrs["notes"]`` lists what was skipped
    (points one codec lacks, images without a partner)."""
    import pandas as pd

    codecs = list(dict.fromkeys(df["codec"]))
    if ref not in codecs:
        raise CompareError(f"reference codec '{ref}' has no rows in this folder (codecs: {', '.join(codecs)}); "
                           "choose one of them with --ref")
    mets = _metrics(df, ref, metrics)
    df = df.assign(image=df["image"].astype(str))
    r = df[df.codec == ref]
    ref_points = {tuple(p) for p in r[POINT].drop_duplicates().itertuples(index=False)}
    rows, notes = [], []
    for codec in (c for c in codecs if c != ref):
        c = df[df.codec == codec]
        points = {tuple(p) for p in c[POINT].drop_duplicates().itertuples(index=False)}
        for p in sorted(ref_points - points):
            notes.append(f"{codec} has no rows at {_where(*p)} where {ref} has; that point is skipped")
        for p in sorted(points - ref_points):
            notes.append(f"{ref} has no rows at {_where(*p)} where {codec} has; that point is skipped")
        m = c.merge(r, on=PAIR_KEY, suffixes=("", "_ref"))
        per_image: dict[str, dict[tuple, pd.Series]] = {k: {} for k in mets}
        for (channel, cbr, snr), g in m.groupby(POINT, sort=True):
            n_ref = int(((r.channel == channel) & (r.cbr_target == cbr) & (r.snr_db == snr)).sum())
            n_c = int(((c.channel == channel) & (c.cbr_target == cbr) & (c.snr_db == snr)).sum())
            if len(g) < max(n_ref, n_c):
                notes.append(f"{codec} vs {ref} at {_where(channel, cbr, snr)}: {len(g)} (image, trial) pairs of "
                             f"{max(n_ref, n_c)} rows; rows without a partner are skipped")
            for met in mets:
                d = g[met].to_numpy(float) - g[f"{met}_ref"].to_numpy(float)
                ok = np.isfinite(d)
                im = pd.Series(d[ok]).groupby(g["image"].to_numpy()[ok]).mean()
                per_image[met][(channel, cbr, snr)] = im
                rows.append({"codec": codec, "ref": ref, "metric": met, "kind": "point", "channel": channel,
                             "cbr_target": cbr, "snr_db": snr, "axis": "", "x_min": float("nan"),
                             "x_max": float("nan"), "n_points": 1, **_stat_row(im.to_numpy(float), int(ok.sum()))})
        for met in mets:
            rows += _averages(codec, ref, met, per_image[met], notes)
    out = pd.DataFrame(rows, columns=COLUMNS)
    out.attrs["notes"] = notes
    return out


def _averages(codec: str, ref: str, met: str, per_image: dict, notes: list[str]) -> list[dict]:
    """The ``kind = "average"`` rows of one codec and metric: per varying axis and fixed (channel, other)."""
    import pandas as pd

    from lrisc_sim.stats import average_gap

    rows = []
    keys = list(per_image)
    for vary, (fixed, axis) in AXES.items():
        iv, fi = POINT.index(vary), POINT.index(fixed)
        groups: dict[tuple, list[tuple]] = {}
        for k in keys:
            if len(per_image[k]):
                groups.setdefault((k[0], k[fi]), []).append(k)
        for (channel, fval), ks in sorted(groups.items()):
            if len(ks) < 2:
                continue
            ks = sorted(ks, key=lambda k: k[iv])
            xs = np.array([k[iv] for k in ks], dtype=float)
            table = pd.concat([per_image[k].rename(i) for i, k in enumerate(ks)], axis=1)
            full = table.dropna()
            if len(full) < len(table):
                notes.append(f"average of {codec} vs {ref} ({met}) over {vary} at {channel}, "
                             f"{'CBR' if fixed == 'cbr_target' else 'SNR'} {fval:g}: {len(table) - len(full)} "
                             "image(s) lack a point of the range and are left out")
            t = xs if vary == "snr_db" else np.log(xs)
            gaps = np.array([average_gap(t, row) for row in full.to_numpy(float)])
            row = {"codec": codec, "ref": ref, "metric": met, "kind": "average", "channel": channel,
                   "cbr_target": fval if fixed == "cbr_target" else float("nan"),
                   "snr_db": fval if fixed == "snr_db" else float("nan"), "axis": axis,
                   "x_min": float(xs[0]), "x_max": float(xs[-1]), "n_points": len(ks),
                   **_stat_row(gaps, int(len(full) * len(ks)))}
            rows.append(row)
    return rows


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return "<.001" if p < 0.001 else f"{p:.3f}"


def format_compare(table) -> str:
    """A fixed-width text table of ``compare_frame``'s result: one line per codec and point (and per average),
    one ``diff ±CI (p)`` cell per metric."""
    from lrisc_sim.grammar import cbr_label

    if table.empty:
        return "(nothing to compare)"
    mets = list(dict.fromkeys(table["metric"]))
    prec = {"psnr": 2, "ms_ssim": 3, "lpips": 3}
    names = {"psnr": "PSNR (dB)", "ms_ssim": "MS-SSIM", "lpips": "LPIPS"}
    ref = table["ref"].iloc[0]
    w = 27
    cw = max(18, *(len(str(c)) for c in table["codec"]))  # long specs (e.g. with a checkpoint) in full
    head = (f"{'codec':<{cw}} {'channel':<12} {'CBR':>14} {'SNR (dB)':>12} {'images':>6} "
            + " ".join(f"{names.get(m, m) + ' diff (p)':>{w}}" for m in mets))
    lines = [f"paired differences codec - {ref}", head, "-" * len(head)]
    key = ["codec", "kind", "channel", "cbr_target", "snr_db", "axis"]
    t = table.assign(_k=(table["kind"] == "average").astype(int))
    order = list(dict.fromkeys(table["codec"]))
    t = t.assign(_c=t["codec"].map({c: i for i, c in enumerate(order)}))
    t = t.sort_values(["_c", "_k", "channel", "cbr_target", "snr_db"], na_position="first")
    for _, g in t.groupby(key, sort=False, dropna=False):
        r = g.iloc[0]
        if r["kind"] == "average":
            if r["axis"] == "snr_db":
                cbr, snr = cbr_label(r["cbr_target"]), f"avg {r['x_min']:g}:{r['x_max']:g}"
            else:
                cbr, snr = f"avg {cbr_label(r['x_min'])}:{cbr_label(r['x_max'])}", f"{r['snr_db']:g}"
        else:
            cbr, snr = cbr_label(r["cbr_target"]), f"{r['snr_db']:g}"
        cells = []
        for m in mets:
            x = g[g.metric == m]
            if x.empty or not math.isfinite(x["diff"].iloc[0]):
                cells.append(f"{'-':>{w}}")
                continue
            x, p = x.iloc[0], prec.get(m, 3)
            ci = f"{x['ci95']:.{p}f}" if math.isfinite(x["ci95"]) else "n/a"
            text = f"{x['diff']:+.{p}f} ±{ci} ({_p(x['p_t'])})"
            cells.append(f"{text:>{w}}")
        lines.append(f"{r['codec']:<{cw}} {r['channel']:<12.12} {cbr:>14} {snr:>12} {int(g['n_images'].max()):>6} "
                     + " ".join(cells))
    lines.append("diff: mean over images of each image's mean paired difference over trials, 95% t CI over images; "
                 "p: paired t test over images (Wilcoxon signed-rank p in the CSV)")
    lines.append("avg: average gap between the two curves over the common range (trapezoid integral / width; CBR on "
                 "a log axis), CI over the images' average gaps")
    return "\n".join(lines)


def run_compare(out: str | Path, ref: str, metrics=None, write: bool = True):
    """Compare every codec of the sweep folder ``out`` to ``ref`` (``compare_frame``) and write the table to
    ``out/compare_<ref>.csv`` (``csv_name``); returns the DataFrame (skipped points in ``attrs["notes"]``)."""
    from lrisc_sim.results import load_folder

    out = Path(out)
    df = load_folder(out, CompareError)
    table = compare_frame(df, ref, metrics)
    if write:
        notes = table.attrs.get("notes", [])
        table.to_csv(out / csv_name(ref), index=False)
        table.attrs["notes"] = notes
        table.attrs["path"] = str(out / csv_name(ref))
    return table
