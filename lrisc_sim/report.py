"""``results/README.md``: generated from the figures' tables, with the paper's claims beside our numbers."""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

from lrisc_sim.grammar import cbr_label
from lrisc_sim.link import channel_of

PAPER_CLAIMS = {
    "fig4_snr": ["LRISC has the highest PSNR over the whole SNR range.",
                 "LRISC lowers LPIPS by 43.3% on average compared with DeepJSCC."],
    "fig5_cbr": ["LRISC has a higher PSNR than DeepJSCC and BPG+LDPC at every CBR.",
                 "LRISC has the lowest LPIPS; BPG+LDPC the highest."],
    "fading": ["(not in the paper) the same codecs over Rayleigh block fading with perfect CSI."],
    "csi_estimation": ["(not in the paper) the codecs over Rayleigh block fading with pilots and an LS estimate of "
                       "the channel, against perfect CSI."],
    "snr_mismatch": ["(not in the paper; its Fig. 6 discussion invokes the cliff effect of digital schemes) every "
                     "codec told 10 dB whatever the channel's SNR, against the same codecs told the channel's SNR."],
    "constellation": ["(not in the paper) analog codecs whose symbols must be 16-QAM or 64-QAM points."],
}


def by_variant(t):
    """A table (summary or paired) of a folder with several link variants (``lrisc_sim.link``): each row's codec
    named with its variant, e.g. ``lrisc [CSI ls:2]`` (the default link keeps the plain name), so that every
    table and claim below treats a (codec, variant) pair as one curve. Folders of one variant are returned as they
    are."""
    if "channel" not in t or t["channel"].nunique() < 2:
        return t
    base = min(t["channel"].unique(), key=len)
    t = t.copy()
    t["codec"] = [c if ch == base else f"{c} {ch[len(base):].strip()}" if ch.startswith(base) else f"{c} [{ch}]"
                  for c, ch in zip(t["codec"], t["channel"])]
    return t


def _link_state(summary) -> list[str]:
    """The link's state per variant and SNR from a summary (means over a point's rows): pilot CBR, CSI NMSE, SQNR
    and the share of rows in outage; nothing for a folder without these columns."""
    cols = [c for c in ("cbr_pilot", "csi_nmse", "sqnr_db", "outage") if c in summary]
    if not cols:
        return []
    words = {"cbr_pilot": ("pilot CBR", 5), "csi_nmse": ("CSI NMSE", 4), "sqnr_db": ("SQNR (dB)", 2),
             "outage": ("outage share", 2)}
    out = ["Link state per point (summary.csv means: `cbr_pilot` pilot channel uses / 3HW, reported beside "
           "`cbr_total`; `csi_nmse` mean |h_est - h|^2 / mean |h|^2; `sqnr_db` of the constellation mapping; "
           "`outage` share of images decoded to nothing):", ""]
    for (codec, ch), g in summary.groupby(["codec", "channel"], sort=False):
        parts = []
        for c in cols:
            v = g.set_index("snr_db")[c].dropna()
            if v.empty:
                continue
            name, p = words[c]
            parts.append(f"{name} " + "/".join(f"{x:.{p}f}" for x in v) + f" at {'/'.join(f'{x:g}' for x in v.index)} dB")
        if parts:
            out.append(f"- {codec} over `{ch}`: " + "; ".join(parts))
    return out + [""] if len(out) > 2 else []


def _fmt(v: float, p: int) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{p}f}"


def _cell(r, metric: str, p: int) -> str:
    """mean ±CI of a summary row (``stats.interval_text``); bounds from ``M_lo``/``M_hi`` (older summaries: mean
    -/+ ``M_ci95`` clipped to the metric's range)."""
    from lrisc_sim.stats import clip_bounds, interval_text

    mean, half = float(r[metric]), float(r[metric + "_ci95"])
    if metric + "_lo" in r:
        lo, hi = float(r[metric + "_lo"]), float(r[metric + "_hi"])
    else:
        lo, hi = clip_bounds(mean, half, metric)
    return interval_text(mean, half, lo, hi, p)


def _table(summary, x: str) -> list[str]:
    xs = sorted(summary[x].unique())
    xl = [cbr_label(v) if x == "cbr_target" else f"{v:g} dB" for v in xs]
    lines = []
    for metric, p in (("psnr", 2), ("lpips", 3), ("ms_ssim", 3)):
        if summary[metric].isna().all():
            continue
        lines += [f"\n{metric.upper().replace('_', '-')} (mean over images ± 95% CI over images; -a/+b where a bound "
                  "is clipped to the metric's range, n/a with one image)\n",
                  "| codec | " + " | ".join(xl) + " |", "|---|" + "---|" * len(xs)]
        for codec, g in summary.groupby("codec", sort=False):
            cells = []
            for v in xs:
                r = g[g[x] == v]
                cells.append("-" if r.empty else _cell(r.iloc[0], metric, p))
            lines.append(f"| {codec} | " + " | ".join(cells) + " |")
    return lines


def _lpips_reduction(summary, x: str) -> str | None:
    """The LPIPS reduction of each LRISC codec of the table (``lrisc``, ``lrisc:point=distortion``, ...) against
    DeepJSCC, on average and per point."""
    b = summary[summary["codec"] == "deepjscc"].set_index(x)["lpips"]
    out = []
    for codec in [c for c in dict.fromkeys(summary["codec"]) if str(c).split(":")[0] == "lrisc"]:
        a = summary[summary["codec"] == codec].set_index(x)["lpips"]
        common = a.index.intersection(b.index)
        if len(common) == 0:
            continue
        red = (1 - a[common] / b[common]) * 100
        out.append(f"LPIPS of {'LRISC' if codec == 'lrisc' else codec} vs DeepJSCC: {red.mean():+.1f}% reduction on "
                   f"average over {len(common)} points (per point: {', '.join(f'{v:+.1f}%' for v in red)}; the "
                   "paper reports 43.3%).")
    return " ".join(out) or None


def _psnr_order(summary, x: str) -> list[str]:
    out = []
    for v, g in summary.groupby(x):
        g = g.sort_values("psnr", ascending=False)
        lab = cbr_label(v) if x == "cbr_target" else f"{v:g} dB"
        out.append(f"- {lab}: " + " > ".join(f"{r.codec} ({r.psnr:.2f})" for r in g.itertuples()))
    return out


def _claim_check(summary, x: str) -> str | None:
    """How often LRISC tops the PSNR ranking and the LPIPS ranking across the figure's points."""
    if "lrisc" not in set(summary["codec"]):
        return None
    n = best_psnr = best_lpips = 0
    for _, g in summary.groupby(x):
        if "lrisc" not in set(g["codec"]) or g["codec"].nunique() < 2:
            continue
        n += 1
        best_psnr += g.loc[g["psnr"].idxmax(), "codec"] == "lrisc"
        if g["lpips"].notna().any():
            best_lpips += g.loc[g["lpips"].idxmin(), "codec"] == "lrisc"
    if n == 0:
        return None
    return (f"LRISC has the highest PSNR at {best_psnr} of {n} points and the lowest LPIPS at {best_lpips} of "
            f"{n} points.")


PAPER_DEEPJSCC_KODAK_10DB = {"1/48": 27.4, "1/24": 30.0}  # literature, paper-scale training (ARCHITECTURE.md 5.2)
PAPER_LPIPS_REDUCTION_PCT = 43.3  # the paper's LRISC vs DeepJSCC LPIPS reduction (Fig. 4)
PAPER_LRISC_TRAINING = "10^6 steps on 50 000 COCO crops of 256 x 256 on a GPU"  # the paper's training (literature)
CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
_COUNT = {1: "one", 2: "two", 3: "three"}


@lru_cache(maxsize=None)
def preset_parameters(name: str) -> int | None:
    """Parameters of an LRISC preset's networks, counted on the meta device (no memory, no weights); None if the
    model cannot be built here."""
    try:
        import torch

        from lrisc_sim.lrisc.config import preset
        from lrisc_sim.lrisc.model import LRISC

        with torch.device("meta"):
            return sum(p.numel() for p in LRISC(preset(name)).parameters())
    except Exception:  # noqa: BLE001 (a missing optional package): the comparison is left out
        return None


def _hardware(card: dict) -> str:
    if card.get("device", "cpu") != "cpu":
        return "on a GPU"
    t = int(card.get("threads") or 1)
    return f"on a CPU with {t} thread{'s' if t != 1 else ''}"


def _lrisc_training_note(d: dict) -> str:
    """Size and training of the shipped LRISC model, every number from its card."""
    stages = [p for p in d.get("previous_stages", []) if isinstance(p, dict)] + [d]
    total = sum(int(p.get("steps") or 0) for p in stages)
    n = len(stages)
    size = f"{d['parameters']['total'] / 1e6:.1f} M parameters"
    paper = preset_parameters("paper") if d.get("preset") != "paper" else None
    if paper:
        size += f" (paper preset {paper / 1e6:.0f} M)"
    data, crop = d.get("data", {}), d.get("training", {}).get("crop")
    on = f" on {data['train_images']} photos" if "train_images" in data else ""
    crops = f" as {crop} x {crop} crops" if crop else ""
    return (f"- LRISC `{d.get('preset', '?')}` preset: {size}, trained {total} steps over {_COUNT.get(n, n)} "
            f"stage{'s' if n != 1 else ''}{on}{crops} {_hardware(d)}; the paper trains {PAPER_LRISC_TRAINING}.")


def _stage1_psnr(d: dict) -> float | None:
    """Validation PSNR of the model's stage 1 (no channel), from its card or its previous stages."""
    for c in [d] + list(reversed(d.get("previous_stages", []))):
        if isinstance(c, dict) and c.get("stage") == 1 and isinstance(c.get("validation"), dict):
            return c["validation"].get("psnr")
    return None


def _lrisc_kodak_note(d: dict) -> str | None:
    """LRISC against DeepJSCC on Kodak from the card's evaluation; the comparison and its reasons as measured."""
    k = d.get("kodak", {})
    cod = k.get("codecs", {})
    if "lrisc" not in cod or "deepjscc" not in cod:
        return None
    lr, dj = cod["lrisc"], cod["deepjscc"]
    snrs = [snr for snr in lr if snr in dj]
    rows = [f"{snr} dB: LRISC {lr[snr]['psnr']:.2f} dB / LPIPS {lr[snr]['lpips']:.3f}, "
            f"DeepJSCC {dj[snr]['psnr']:.2f} dB / {dj[snr]['lpips']:.3f}" for snr in snrs]
    cbr = k.get("cbr_target")
    text = f"- Kodak{f', CBR {cbr}' if cbr else ''}, {k.get('channel', 'awgn').upper()} (model card): {'; '.join(rows)}."
    red = k.get("lpips_reduction_vs_deepjscc_pct", {}).get("mean")
    if red is not None:
        text += (f" LPIPS reduction vs DeepJSCC {red:.1f}% on average "
                 f"(paper: {PAPER_LPIPS_REDUCTION_PCT}%)")
    below = sum(lr[snr]["psnr"] < dj[snr]["psnr"] for snr in snrs)
    if below == 0:
        return text + ("; as in the paper, " if red is not None else " As in the paper, ") + \
            "LRISC's PSNR is above DeepJSCC's at every SNR."
    where = "at every SNR" if below == len(snrs) else f"at {below} of {len(snrs)} SNRs"
    text += ("; unlike the paper, " if red is not None else " Unlike the paper, ") + \
        f"LRISC's PSNR is below DeepJSCC's {where}"
    why = []
    s1 = _stage1_psnr(d)
    if s1 is not None:
        why.append(f"the small diffusion decoder reaches only {s1:.1f} dB even without a channel (stage-1 "
                   "validation crops)")
    shares = [lr[snr]["cbr_side"] / lr[snr]["cbr_total"] for snr in snrs
              if lr[snr].get("cbr_total") and lr[snr].get("cbr_side") is not None]
    if shares:
        why.append(f"rate indices take {100 * sum(shares) / len(shares):.0f}% of the channel uses")
    return text + (": " + ", and ".join(why) if why else "") + "."


def _capacity_outage(summaries: dict | None) -> str:
    """Where ``bpg-capacity`` (no CSIT) falls below the ``bpg-ldpc`` envelope over fading, from the tables."""
    counts = []
    for name, s in sorted((summaries or {}).items()):
        if "channel" not in s or not {"bpg-capacity", "bpg-ldpc"} <= set(s["codec"]):
            continue
        for channel, g in s.groupby("channel"):
            if channel_of(channel).split(":")[0] == "awgn":
                continue
            x = "snr_db" if g["snr_db"].nunique() > 1 else "cbr_target"
            cap = g[g["codec"] == "bpg-capacity"].set_index(x)["psnr"]
            env = g[g["codec"] == "bpg-ldpc"].set_index(x)["psnr"]
            common = cap.index.intersection(env.index)
            if len(common):
                counts.append(f"over `{channel}` ({name}) it is below the envelope at "
                              f"{int((cap[common] < env[common]).sum())} of {len(common)} points")
    return (": " + "; ".join(counts)) if counts else ""


def checkpoint_notes(checkpoints: str | Path | None = None, summaries: dict | None = None) -> list[str]:
    """Facts from the shipped model cards (``checkpoints``, default the package's) and the figures' summary tables
    (``summaries``: name -> summary frame): size, training, Kodak scores against the paper-scale references."""
    ck = Path(checkpoints) if checkpoints is not None else CHECKPOINTS
    out = []
    card = ck / "lrisc" / "lrisc_small.json"
    if card.exists():
        d = json.loads(card.read_text())
        out.append(_lrisc_training_note(d))
        note = _lrisc_kodak_note(d)
        if note:
            out.append(note)
    for f in sorted((ck / "deepjscc").glob("*.json")):
        d = json.loads(f.read_text())
        kod = d.get("kodak", {})
        ref = PAPER_DEEPJSCC_KODAK_10DB.get(d.get("cbr"))
        if kod:
            dev = "CPU" if d.get("device", "cpu") == "cpu" else "GPU"
            out.append(f"- DeepJSCC CBR {d['cbr']}: {d['steps']} steps on {dev}, Kodak {kod.get('snr_db', 10):g} dB "
                       f"PSNR {kod['psnr_mean']:.2f} dB" + (f" (paper-scale: {ref} dB)" if ref else ""))
    from baselines.digital.mcs import STANDARD_MCS

    out.append(f"- The separation baselines are stronger than in the paper: `bpg-ldpc` is a genie-aided envelope "
               f"(per image and SNR the best of the {len(STANDARD_MCS)} MCS, 5G LDPC with QAM, of "
               "`baselines/digital/mcs.py`) over the source coder named under 'Produced by'; the fixed-MCS curves show the cliff and the loss of images whose coarsest encoding "
               "does not fit the budget. Over fading, the envelope's bound is `bpg-capacity:csit` (coding at the "
               "realization's capacity: the channel knowledge its genie has); `bpg-capacity` without CSIT is an "
               "outage curve there, not a bound (over AWGN the two coincide): it sends at log2(1+SNR) and is in "
               f"outage when a fading gain falls short{_capacity_outage(summaries)}.")
    return out or ["- (no model cards found)"]


def _paired_table(t, name: str, labels: dict) -> list[str]:
    """Markdown tables of a ``compare_REF.csv`` (``lrisc-sim compare``): per codec and point, the paired
    difference to the reference with its 95% CI over images, and the average gap over the range."""
    if t.empty or "diff" not in t:
        return []
    ref = str(t["ref"].iloc[0])
    out = [f"Paired differences to {labels.get(ref, ref)} over the identical realizations (`{name}`, written by "
           f"`lrisc-sim compare FOLDER --ref {ref}`): mean over images of each image's mean difference over trials "
           "± 95% CI over images; avg: the average gap between the curves over the common range."
           + (" A codec of a link variant ([...]) is paired with the reference over the same variant."
              if t["codec"].astype(str).str.contains(r"\[").any() else ""), ""]
    for m, title, p in (("psnr", "PSNR (dB)", 2), ("lpips", "LPIPS", 3)):
        tm = t[t["metric"] == m]
        if tm.empty:
            continue
        pts = tm[tm["kind"] != "average"]
        xs = sorted(pts["snr_db"].unique()) if pts["snr_db"].nunique() > 1 else sorted(pts["cbr_target"].unique())
        axis = "snr_db" if pts["snr_db"].nunique() > 1 else "cbr_target"
        head = [f"{v:g} dB" if axis == "snr_db" else _cbr(v) for v in xs]
        out += [f"{title}, codec - {labels.get(ref, ref)}", "", "| codec | " + " | ".join(head) + " | avg |",
                "|---|" + "---|" * (len(xs) + 1)]
        for codec in dict.fromkeys(tm["codec"]):
            g = tm[tm["codec"] == codec]
            cells = []
            for v in xs:
                r = g[(g["kind"] != "average") & (g[axis] == v)]
                cells.append(_diff(r, p))
            cells.append(_diff(g[g["kind"] == "average"], p))
            out.append(f"| {labels.get(codec, codec)} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def _cbr(v: float) -> str:
    from lrisc_sim.grammar import cbr_label

    return cbr_label(v)


def _diff(r, p: int) -> str:
    if r.empty or not math.isfinite(float(r["diff"].iloc[0])):
        return "-"
    ci = float(r["ci95"].iloc[0])
    return f"{float(r['diff'].iloc[0]):+.{p}f} ±{ci:.{p}f}" if math.isfinite(ci) else f"{float(r['diff'].iloc[0]):+.{p}f}"


def write_report(results_dir: str | Path = "results") -> Path:
    """Write ``results/README.md`` from every ``results/*/summary.csv`` (and the Fig. 6 grid)."""
    import pandas as pd

    root = Path(results_dir)
    lines = ["# Results", "", "Generated by `python -m lrisc_sim.report` from the tables that `lrisc-sim run "
             "experiments/NAME.toml` writes; never edited by hand. Each folder holds results.csv (per image), "
             "summary.csv (mean over images, 95% CI over images), plots and codecs.txt (which coder and "
             "checkpoints produced them).", ""]
    summaries = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        meta = json.loads((d / "experiment.json").read_text()) if (d / "experiment.json").exists() else {}
        lines += [f"## {d.name}: {meta.get('title', '')}", ""]
        if (d / "grid.png").exists():
            lines += [f"![{d.name}]({d.name}/grid.png)", ""]
            if (d / "metrics.csv").exists():
                m = pd.read_csv(d / "metrics.csv")
                lines += ["| codec | SNR | PSNR | LPIPS |", "|---|---|---|---|"]
                lines += [f"| {r.codec} | {r.snr_db:g} | {_fmt(getattr(r, 'psnr', float('nan')), 2)} | "
                          f"{_fmt(getattr(r, 'lpips', float('nan')), 3)} |" for r in m.itertuples()]
            if (d / "codecs.txt").exists():
                lines += ["", "Produced by:", ""] + [f"- {ln}" for ln in (d / "codecs.txt").read_text().splitlines()]
            lines.append("")
            continue
        if not (d / "summary.csv").exists():
            continue
        s = pd.read_csv(d / "summary.csv")
        summaries[d.name] = s
        state = _link_state(s)
        s = by_variant(s)
        x = "snr_db" if s["snr_db"].nunique() > 1 else "cbr_target"
        for png in ("vs_snr.png", "vs_cbr.png"):
            if (d / png).exists():
                lines += [f"![{d.name} {png}]({d.name}/{png})", ""]
        if (d / "codecs.txt").exists():
            lines += ["Produced by:", ""] + [f"- {ln}" for ln in (d / "codecs.txt").read_text().splitlines()] + [""]
        claims = PAPER_CLAIMS.get(d.name, [])
        if claims:
            lines += ["Paper: " + " ".join(claims), ""]
        ours = [t for t in (_lpips_reduction(s, x), _claim_check(s, x)) if t]
        if ours:
            lines += ["Ours: " + " ".join(ours), ""]
        lines += ["PSNR ordering (best first):"] + _psnr_order(s, x)
        lines += _table(s, x) + [""] + state
        for cmp in sorted(d.glob("compare_*.csv")):
            lines += _paired_table(by_variant(pd.read_csv(cmp)), cmp.name, meta.get("labels") or {})
    lines += ["## Where the small CPU-trained models differ from the paper", ""] + checkpoint_notes(summaries=summaries) + [""]
    out = root / "README.md"
    out.write_text("\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    print(write_report())
