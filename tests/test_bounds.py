"""Bounds that bound (issue 25, item 5): in every committed figure under ``results/``, a curve labelled a bound
uses the channel knowledge of the envelope it bounds, and lies on or above it at every point.

The envelope ``bpg-ldpc`` (``jpeg2000-ldpc``) is genie-aided: per image and realization it keeps the best MCS. Its
bound is ``bpg-capacity:csit`` (coding at the realization's capacity) on any channel; ``bpg-capacity`` (no CSIT,
coding at log2(1 + SNR)) is a bound over AWGN only, and over fading an outage curve that must be labelled so.
Checked on the PSNR per point (channel, CBR, SNR), as the mean over images of each image's mean over trials.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

RESULTS = Path(__file__).resolve().parents[1] / "results"
ENVELOPES = ("bpg-ldpc", "jpeg2000-ldpc")
TOL = 1e-9


def _is_awgn(channel: str) -> bool:
    """AWGN whatever the equaliser and link variant of the column (``awgn [design 10 dB]`` is AWGN)."""
    from lrisc_sim.link import channel_of

    return channel_of(channel).split(":")[0].lower() == "awgn"


def bounds_of(envelope: str, channel: str) -> list[str]:
    """The codecs that bound ``envelope`` over ``channel`` with the same channel knowledge."""
    prefix = envelope[: -len("-ldpc")]
    return [f"{prefix}-capacity:csit"] + ([f"{prefix}-capacity"] if _is_awgn(channel) else [])


def point_means(rows: pd.DataFrame) -> pd.Series:
    """PSNR per (codec, channel, cbr_target, snr_db): mean over images of the per-image mean over trials.

    :input rows: the columns of ``results.csv`` (at least codec, channel, cbr_target, snr_db, image, psnr), or of
        ``summary.csv`` (no ``image``: its ``psnr`` is taken as the point's mean).
    """
    keys = ["codec", "channel", "cbr_target", "snr_db"]
    if "image" not in rows.columns:
        return rows.set_index(keys)["psnr"]
    per_image = rows.groupby(keys + ["image"])["psnr"].mean()
    return per_image.groupby(level=keys).mean()


def violations(rows: pd.DataFrame, labels: dict[str, str]) -> list[str]:
    """Everything wrong with the bounds of one figure, in words (empty: the bounds bound).

    * a codec labelled a bound that is not one for the channel (``*-capacity`` without CSIT over fading);
    * a no-CSIT capacity curve over fading whose label does not call it an outage curve;
    * a point where a bound's PSNR is below its envelope's (mean over images; images common to both).
    """
    out = []
    channels = sorted(set(rows["channel"]))
    for codec, label in labels.items():
        for ch in channels:
            if codec not in set(rows.loc[rows["channel"] == ch, "codec"]):
                continue
            valid = any(codec in bounds_of(e, ch) for e in ENVELOPES)
            if "bound" in label.lower() and not valid:
                out.append(f"{codec} is labelled '{label}' but is no bound over {ch}")
            if codec.endswith("-capacity") and not _is_awgn(ch) and "outage" not in label.lower():
                out.append(f"{codec} over {ch} is an outage curve, labelled '{label}'")
    for ch in channels:
        sub = rows[rows["channel"] == ch]
        for env in ENVELOPES:
            if env not in set(sub["codec"]):
                continue
            present = [b for b in bounds_of(env, ch) if b in set(sub["codec"])]
            if not _is_awgn(ch) and f"{env[:-5]}-capacity:csit" not in present:
                out.append(f"{env} over {ch} has no bound with CSIT ({env[:-5]}-capacity:csit)")
            for b in present:
                pair = sub[sub["codec"].isin([env, b])]
                if "image" in pair.columns:  # images both codecs have at a point
                    common = pair.groupby(["cbr_target", "snr_db", "image"])["codec"].transform("nunique") == 2
                    pair = pair[common]
                m = point_means(pair)
                for (cbr, snr), g in m.groupby(level=["cbr_target", "snr_db"]):
                    g = g.droplevel(["channel", "cbr_target", "snr_db"])
                    if env in g and b in g and g[b] < g[env] - TOL:
                        out.append(f"{b} ({g[b]:.3f} dB) below {env} ({g[env]:.3f} dB) over {ch} at CBR {cbr:.6g}, "
                                   f"SNR {snr:g} dB")
    return out


def _figures() -> list[Path]:
    return sorted(d for d in RESULTS.iterdir() if d.is_dir() and ((d / "results.csv").exists()
                                                                  or (d / "summary.csv").exists()))


def _rows(d: Path) -> pd.DataFrame:
    return pd.read_csv(d / "results.csv") if (d / "results.csv").exists() else pd.read_csv(d / "summary.csv")


def _labels(d: Path, rows: pd.DataFrame) -> dict[str, str]:
    labels = {c: c for c in sorted(set(rows["codec"]))}
    if (d / "experiment.json").exists():
        labels.update(json.loads((d / "experiment.json").read_text()).get("labels", {}))
    return labels


# ---------------------------------------------------------------------------------------------------- the checker
def _rows_of(points: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """Rows of a synthetic figure: (codec, channel) -> PSNR of images a, b at one point (CBR 1/48, 10 dB)."""
    return pd.DataFrame([{"codec": c, "channel": ch, "cbr_target": 1 / 48, "snr_db": 10.0, "image": img,
                          "trial": 0, "psnr": p} for (c, ch), ps in points.items() for img, p in zip("ab", ps)])


def test_checker_on_hand_made_figures():
    ok = _rows_of({("bpg-ldpc", "rayleigh"): [20.0, 30.0], ("bpg-capacity:csit", "rayleigh"): [19.0, 31.5],
                   ("bpg-capacity", "rayleigh"): [10.0, 12.0]})
    labels = {"bpg-ldpc": "envelope", "bpg-capacity:csit": "BPG+capacity, CSIT (bound)",
              "bpg-capacity": "no CSIT (outage)"}
    assert violations(ok, labels) == []  # mean 25.25 >= 25.0, though image a is below: the mean is checked
    low = _rows_of({("bpg-ldpc", "rayleigh"): [20.0, 30.0], ("bpg-capacity:csit", "rayleigh"): [19.0, 30.5]})
    assert violations(low, labels) == ["bpg-capacity:csit (24.750 dB) below bpg-ldpc (25.000 dB) over rayleigh at "
                                       "CBR 0.0208333, SNR 10 dB"]
    # the committed fading figure of old: the no-CSIT curve labelled as the bound, no CSIT bound
    old = _rows_of({("bpg-ldpc", "rayleigh"): [20.0, 30.0], ("bpg-capacity", "rayleigh"): [10.0, 12.0]})
    assert violations(old, {"bpg-ldpc": "envelope", "bpg-capacity": "BPG+capacity bound"}) == [
        "bpg-capacity is labelled 'BPG+capacity bound' but is no bound over rayleigh",
        "bpg-capacity over rayleigh is an outage curve, labelled 'BPG+capacity bound'",
        "bpg-ldpc over rayleigh has no bound with CSIT (bpg-capacity:csit)"]
    # over AWGN the no-CSIT capacity is the bound, and is checked as one
    awgn = _rows_of({("bpg-ldpc", "awgn"): [20.0, 30.0], ("bpg-capacity", "awgn"): [19.0, 30.0]})
    assert violations(awgn, {"bpg-capacity": "BPG+capacity (bound)"}) == [
        "bpg-capacity (24.500 dB) below bpg-ldpc (25.000 dB) over awgn at CBR 0.0208333, SNR 10 dB"]
    # trials are averaged per image first: image a 20 and 22 (mean 21), image b 30: envelope 25.5
    t = pd.concat([awgn, awgn.iloc[[0]].assign(trial=1, psnr=22.0)])
    assert point_means(t)[("bpg-ldpc", "awgn", 1 / 48, 10.0)] == pytest.approx(25.5)


def test_experiment_files_label_bounds_honestly():
    from lrisc_sim.experiment import load_experiment

    files = sorted((RESULTS.parent / "experiments").glob("*.toml"))
    assert files
    for f in files:
        e = load_experiment(f)
        channel = str(e.sweep.channel)
        for env in ENVELOPES:
            if env in e.sweep.codecs and not _is_awgn(channel):
                assert f"{env[:-5]}-capacity:csit" in e.sweep.codecs, f"{f.name}: {env} needs its CSIT bound"
        for codec, label in e.labels.items():
            if "bound" in label.lower():
                assert any(codec in bounds_of(x, channel) for x in ENVELOPES), (f.name, codec, label)
            if codec.endswith("-capacity") and not _is_awgn(channel):
                assert "outage" in label.lower() and "bound" not in label.lower(), (f.name, codec, label)


# ---------------------------------------------------------------------------------------------------- committed
@pytest.mark.parametrize("folder", _figures(), ids=lambda d: d.name)
def test_every_committed_bound_bounds(folder):
    rows = _rows(folder)
    assert {"codec", "channel", "cbr_target", "snr_db", "psnr"} <= set(rows.columns)
    problems = violations(rows, _labels(folder, rows))
    assert not problems, f"results/{folder.name}: " + "; ".join(problems)
