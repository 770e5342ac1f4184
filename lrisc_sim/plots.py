"""Plots of a sweep summary: metrics against SNR (one line per codec and CBR) and against CBR, with 95% CIs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lrisc_sim.grammar import cbr_label

LABELS = {"psnr": "PSNR (dB)", "ms_ssim": "MS-SSIM", "lpips": "LPIPS (lower is better)"}


def _metrics_present(summary, metrics) -> list[str]:
    return [m for m in metrics if m in summary and summary[m].notna().any()]


def plot_summary(summary, out_dir: str | Path, metrics=("psnr", "lpips", "ms_ssim"), title: str = "",
                 note: str = "", labels: dict[str, str] | None = None, footer: Sequence[str] = ()) -> list[Path]:
    """Write ``vs_snr.png`` (when several SNRs) and ``vs_cbr.png`` (when several CBRs); return the paths.

    ``footer`` lines (which source coder and checkpoints produced each curve) are printed under the axes."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    mets = _metrics_present(summary, metrics)
    paths = []
    if not mets or summary.empty:
        return paths
    for xcol, other, fname, xlabel in (("snr_db", "cbr_target", "vs_snr.png", "SNR (dB)"),
                                       ("cbr_target", "snr_db", "vs_cbr.png", "CBR")):
        if summary[xcol].nunique() < 2:
            continue
        width = int(30 * len(mets))
        foot = [w for line in footer for w in textwrap.wrap(line, 90 * len(mets), subsequent_indent="    ")]
        foot_h = 0.1 * len(foot) + (0.05 if foot else 0)
        legend_w = 2.6  # inches to the right of the axes, so that the legend never hides a curve
        fig_w = 4.6 * len(mets) + legend_w
        fig, axes = plt.subplots(1, len(mets), figsize=(fig_w, 4.2 + foot_h), squeeze=False)
        for ax, m in zip(axes[0], mets):
            for (codec, channel, o), g in summary.groupby(["codec", "channel", other], sort=True):
                g = g.sort_values(xcol)
                lab = (labels or {}).get(codec, codec) + (f", CBR {cbr_label(o)}" if other == "cbr_target" else f", {o:g} dB")
                if summary["channel"].nunique() > 1:
                    lab += f" [{channel}]"
                xs, ys, cs = g[xcol].to_numpy(), g[m].to_numpy(), g[f"{m}_ci95"].fillna(0).to_numpy()
                line, = ax.plot(xs, ys, marker="o", ms=4, label=lab)
                if (cs > 0).any():
                    ax.fill_between(xs, ys - cs, ys + cs, color=line.get_color(), alpha=0.2, lw=0)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(LABELS.get(m, m))
            if xcol == "cbr_target":
                ticks = sorted(summary[xcol].unique())
                ax.set_xscale("log", base=2)
                ax.minorticks_off()
                ax.set_xticks(ticks)
                ax.set_xticklabels([cbr_label(t) for t in ticks], rotation=45)
            ax.grid(alpha=0.3)
        handles, names = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, names, fontsize=8, loc="center right", frameon=False)
        wrapped = "\n".join(textwrap.fill(part, width) for part in note.split("\n")) if note else ""
        fig.suptitle(title + (f"\n{wrapped}" if wrapped else ""), fontsize=7)
        if foot:
            fig.text(0.01, 0.01, "\n".join(foot), fontsize=6, va="bottom", ha="left")
        fig.tight_layout(rect=(0, foot_h / (4.2 + foot_h), 1 - legend_w / fig_w, 1))
        p = out_dir / fname
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(p)
    return paths


