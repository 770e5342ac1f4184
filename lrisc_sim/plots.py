"""Plots of a sweep summary for papers: metrics against SNR (one curve per codec and CBR) and against CBR, with
95% CI bands (the clipped ``M_lo``/``M_hi`` of ``results.summarize``), an optional paired-difference panel, PNG,
PDF or SVG. ``plot_folder`` redraws a sweep folder from its ``results.csv`` (``lrisc-sim plot``)."""

from __future__ import annotations

import colorsys
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lrisc_sim.grammar import cbr_label
from lrisc_sim.metrics import METRIC_NAMES

LABELS = {"psnr": "PSNR (dB)", "ms_ssim": "MS-SSIM", "lpips": "LPIPS (lower is better)"}
FORMATS = ("png", "pdf", "svg")
PANEL = (3.4, 2.6)  # inches per panel: one panel fits a column (3.5 in) at 100%, so the fonts below stay legible
RC = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
      "legend.fontsize": 8, "figure.titlesize": 9, "svg.fonttype": "none", "pdf.fonttype": 42, "ps.fonttype": 42}
FOOT_PT = 7  # provenance lines under the axes
DPI = 150
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


class PlotError(ValueError):
    """A bad plot request (label, format, metric, folder); one line naming the fix."""


def parse_formats(value: str | Sequence[str]) -> tuple[str, ...]:
    """``"png,pdf"`` or ``["png", "svg"]`` -> the formats, each one of ``FORMATS``; ``PlotError`` otherwise."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out = tuple(dict.fromkeys(str(f).strip().lower().lstrip(".") for f in items if str(f).strip()))
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise PlotError(f"--format {','.join(bad) or repr(value)}: choose from {', '.join(FORMATS)} "
                        "(comma-separated, e.g. png,pdf)")
    return out


def parse_labels(pairs: Sequence[str]) -> dict[str, str]:
    """``["lrisc=LRISC (ours)", ...]`` -> {codec: text}; ``PlotError`` for a pair without ``=`` or an empty side."""
    out = {}
    for pair in pairs:
        codec, sep, text = pair.partition("=")
        if not sep or not codec.strip() or not text.strip():
            raise PlotError(f"--label {pair!r}: use CODEC=TEXT, e.g. --label 'lrisc=LRISC (ours)'")
        out[codec.strip()] = text.strip()
    return out


def curve_styles(n: int) -> list[dict]:
    """``n`` styles (color, linestyle, marker) with ``n`` distinct colours: tab10 up to 10, tab20 (dark shades
    first) up to 20, beyond that evenly spaced hues at two lightnesses; line styles and markers cycle as well, so
    that curves differ in more than colour (and in print)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    if n <= 10:
        colors = [to_hex(colormaps["tab10"](i)) for i in range(n)]
    elif n <= 20:
        t20 = colormaps["tab20"]
        colors = [to_hex(t20(i)) for i in list(range(0, 20, 2)) + list(range(1, 20, 2))][:n]
    else:
        colors = [to_hex(colorsys.hls_to_rgb(i / n, 0.35 if i % 2 else 0.55, 0.75)) for i in range(n)]
    return [{"color": c, "linestyle": LINESTYLES[i % len(LINESTYLES)], "marker": MARKERS[i % len(MARKERS)]}
            for i, c in enumerate(colors)]


def _metrics_present(summary, metrics) -> list[str]:
    return [m for m in metrics if m in summary and summary[m].notna().any()]


def _bounds(g, m: str) -> tuple[np.ndarray, np.ndarray]:
    """The band of a curve: the summary's clipped ``M_lo``/``M_hi`` (older summaries: mean -/+ ``M_ci95``,
    clipped to the metric's range here)."""
    from lrisc_sim.stats import clip_bounds

    if f"{m}_lo" in g and f"{m}_hi" in g:
        return g[f"{m}_lo"].to_numpy(float), g[f"{m}_hi"].to_numpy(float)
    pairs = [clip_bounds(float(v), float(c), m) for v, c in zip(g[m], g[f"{m}_ci95"])]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def _band(ax, xs, lo, hi, color) -> None:
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.any() and (hi[ok] > lo[ok]).any():
        ax.fill_between(xs, np.where(ok, lo, np.nan), np.where(ok, hi, np.nan), color=color, alpha=0.18, lw=0)


def _x_axis(ax, xcol: str, xs_all) -> None:
    if xcol == "cbr_target":
        ticks = sorted(xs_all)
        ax.set_xscale("log", base=2)
        ax.minorticks_off()
        ax.set_xticks(ticks)
        ax.set_xticklabels([cbr_label(t) for t in ticks], rotation=45)
    ax.grid(alpha=0.3)


def figures(summary, metrics=("psnr", "lpips", "ms_ssim"), title: str = "", note: str = "",
            labels: dict[str, str] | None = None, footer: Sequence[str] = (), diff=None) -> list[tuple[str, object]]:
    """The figures of a summary (``results.summarize``) as (file stem, matplotlib Figure): ``vs_snr`` when
    several SNRs, ``vs_cbr`` when several CBRs, one panel per metric; with ``diff`` (a ``paired.compare_frame``
    table) a second row of panels shows each codec's paired difference to the reference with its 95% CI band.
    Every curve has its own colour, line style and marker; the legend lists every curve under its label
    (``labels``: codec -> text), whatever the text."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = labels or {}
    mets = _metrics_present(summary, metrics)
    out = []
    if not mets or summary.empty:
        return out
    ref = None
    if diff is not None and not diff.empty:
        diff = diff[diff["kind"] == "point"]
        ref = diff["ref"].iloc[0] if not diff.empty else None
    many_channels = summary["channel"].nunique() > 1
    for xcol, other, stem, xlabel in (("snr_db", "cbr_target", "vs_snr", "SNR (dB)"),
                                      ("cbr_target", "snr_db", "vs_cbr", "CBR")):
        if summary[xcol].nunique() < 2:
            continue
        others = sorted(summary[other].unique())
        fixed = ""
        if len(others) == 1:
            fixed = f"CBR {cbr_label(others[0])}" if other == "cbr_target" else f"SNR {others[0]:g} dB"
        rank = {c: i for i, c in enumerate(dict.fromkeys([*labels, *summary["codec"]]))}  # labels' order first
        keys = sorted(dict.fromkeys(zip(summary["codec"], summary["channel"], summary[other])),
                      key=lambda k: (rank[k[0]], k[1], k[2]))
        styles = dict(zip(keys, curve_styles(len(keys))))

        def name(codec, channel, o):
            lab = labels.get(codec, codec)
            if len(others) > 1:
                lab += f", CBR {cbr_label(o)}" if other == "cbr_target" else f", {o:g} dB"
            return lab + (f" [{channel}]" if many_channels else "")

        nrows = 2 if ref is not None else 1
        with plt.rc_context(RC):
            foot = [w for line in footer for w in textwrap.wrap(line, int(55 * len(mets)),
                                                                subsequent_indent="    ")]
            foot_h = (FOOT_PT + 2) / 72 * len(foot) + (0.1 if foot else 0)
            names = [name(*k) for k in keys]
            legend_w = 0.6 + 0.062 * max(len(s) for s in names)
            wrapped = [w for part in (note.split("\n") if note else []) for w in
                       textwrap.wrap(part, int(62 * len(mets) + 12 * legend_w))]
            title_lines = ([title] if title else []) + wrapped
            head_h = 0.17 * len(title_lines)
            fig_w = PANEL[0] * len(mets) + legend_w
            fig_h = PANEL[1] * nrows + head_h + foot_h
            fig, axes = plt.subplots(nrows, len(mets), figsize=(fig_w, fig_h), squeeze=False)
            handles = {}
            for ax, m in zip(axes[0], mets):
                for k in keys:
                    g = summary[(summary["codec"] == k[0]) & (summary["channel"] == k[1]) & (summary[other] == k[2])]
                    g = g.sort_values(xcol)
                    xs, ys = g[xcol].to_numpy(float), g[m].to_numpy(float)
                    st = styles[k]
                    line, = ax.plot(xs, ys, color=st["color"], linestyle=st["linestyle"], marker=st["marker"], ms=4,
                                    lw=1.3)
                    handles.setdefault(k, line)
                    _band(ax, xs, *_bounds(g, m), st["color"])
                ax.set_xlabel(xlabel + (f" ({fixed})" if fixed else ""))
                ax.set_ylabel(LABELS.get(m, m))
                _x_axis(ax, xcol, summary[xcol].unique())
            if ref is not None:
                for ax, m in zip(axes[1], mets):
                    d = diff[diff["metric"] == m]
                    for k in keys:
                        st = styles[k]
                        if k[0] == ref:
                            ax.axhline(0.0, color=st["color"], linestyle=st["linestyle"], lw=1.3)
                            continue
                        g = d[(d["codec"] == k[0]) & (d["channel"] == k[1]) & (d[other] == k[2])].sort_values(xcol)
                        if g.empty:
                            continue
                        xs = g[xcol].to_numpy(float)
                        ax.plot(xs, g["diff"].to_numpy(float), color=st["color"], linestyle=st["linestyle"],
                                marker=st["marker"], ms=4, lw=1.3)
                        _band(ax, xs, g["lo"].to_numpy(float), g["hi"].to_numpy(float), st["color"])
                    unit = " (dB)" if m == "psnr" else ""
                    ax.set_ylabel(f"{LABELS.get(m, m).split(' (')[0]} - {labels.get(ref, ref)}{unit}")
                    ax.set_xlabel(xlabel + (f" ({fixed})" if fixed else ""))
                    _x_axis(ax, xcol, summary[xcol].unique())
                    if d.empty:
                        ax.text(0.5, 0.5, "no paired rows", transform=ax.transAxes, ha="center")
            fig.legend([handles[k] for k in keys], names, loc="center right", frameon=False)
            if title_lines:
                fig.suptitle("\n".join(title_lines))
            if foot:
                fig.text(0.01, 0.01, "\n".join(foot), fontsize=FOOT_PT, va="bottom", ha="left")
            fig.tight_layout(rect=(0, foot_h / fig_h, 1 - legend_w / fig_w, 1))  # it leaves room for the title
        out.append((stem, fig))
    return out


def plot_summary(summary, out_dir: str | Path, metrics=("psnr", "lpips", "ms_ssim"), title: str = "",
                 note: str = "", labels: dict[str, str] | None = None, footer: Sequence[str] = (), *,
                 formats: str | Sequence[str] = ("png",), diff=None) -> list[Path]:
    """Write ``vs_snr.<fmt>`` (when several SNRs) and ``vs_cbr.<fmt>`` (when several CBRs) for each of
    ``formats`` into ``out_dir``; return the paths. ``footer`` lines (which source coder and checkpoints produced
    each curve) are printed under the axes; ``diff``: see ``figures``."""
    import matplotlib.pyplot as plt

    fmts = parse_formats(formats)
    out_dir = Path(out_dir)
    paths = []
    for stem, fig in figures(summary, metrics, title, note, labels, footer, diff):
        with plt.rc_context(RC):
            for fmt in fmts:
                p = out_dir / f"{stem}.{fmt}"
                fig.savefig(p, dpi=DPI)
                paths.append(p)
        plt.close(fig)
    return paths


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (ValueError, OSError):
        return {}
    return d if isinstance(d, dict) else {}


def plot_folder(out: str | Path, labels: dict[str, str] | None = None, formats: str | Sequence[str] = ("png",),
                diff: str | None = None, metrics: str | Sequence[str] | None = None) -> list[Path]:
    """Redraw the plots of a sweep folder from its ``results.csv`` (via ``results.summarize``): labels from the
    experiment file (``experiment.json``) overridden by ``labels``; title and notes from ``config.json`` and
    ``codecs.txt``; ``diff``: a reference codec for the paired-difference panel (``paired.compare_frame``).
    Returns the files written. Bad labels, formats, metrics or folders raise a one-line ``PlotError``."""
    from lrisc_sim.paired import compare_frame
    from lrisc_sim.results import load_folder, summarize

    out = Path(out)
    fmts = parse_formats(formats)
    df = load_folder(out, PlotError)
    codecs = list(dict.fromkeys(df["codec"]))
    for c in labels or {}:
        if c not in codecs:
            raise PlotError(f"--label {c}=...: {c} has no rows in {out} (codecs: {', '.join(codecs)})")
    if diff is not None and diff not in codecs:
        raise PlotError(f"--diff {diff}: {diff} has no rows in {out} (codecs: {', '.join(codecs)})")
    present = [m for m in METRIC_NAMES if np.isfinite(df[m].to_numpy(float)).any()]
    if metrics is None:
        mets = [m for m in ("psnr", "lpips", "ms_ssim") if m in present]
    else:
        mets = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
        for m in mets:
            if m not in present:
                raise PlotError(f"--metrics {m}: not a metric computed in {out} (computed: {', '.join(present)})")
        if not mets:
            raise PlotError(f"--metrics: give at least one of {', '.join(present)}")
    exp, cfg = _read_json(out / "experiment.json"), _read_json(out / "config.json")
    names = {k: v for k, v in (exp.get("labels") or {}).items() if isinstance(v, str)}
    names.update(labels or {})
    head = f"{exp['title']}: " if isinstance(exp.get("title"), str) and exp.get("title") else ""
    what = (f"{cfg.get('dataset')} over {cfg.get('channel_description', cfg.get('channel', '?'))}" if cfg
            else out.name)
    rules = sorted({str(s) for s in df.get("side_charge", []) if isinstance(s, str)})
    trials = df.groupby(["codec", "cbr_target", "snr_db", "channel", "image"])["trial"].nunique().max()
    seeds = sorted({int(s) for s in df["seed"].dropna()})
    note = "; ".join(rules + [f"seed {', '.join(map(str, seeds))}", f"{int(trials)} trial(s)"])
    footer = (out / "codecs.txt").read_text(encoding="utf-8").splitlines() if (out / "codecs.txt").is_file() else []
    d = compare_frame(df, diff, mets) if diff is not None else None
    return plot_summary(summarize(df), out, mets, title=f"{head}{what}", note=note, labels=names, footer=footer,
                        formats=fmts, diff=d)
