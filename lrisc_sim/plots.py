"""Plots of a sweep summary: metrics against SNR (one line per codec and CBR) and against CBR, with 95% CIs."""

from __future__ import annotations

from pathlib import Path

from lrisc_sim.grammar import cbr_label

LABELS = {"psnr": "PSNR (dB)", "ms_ssim": "MS-SSIM", "lpips": "LPIPS (lower is better)"}


def _metrics_present(summary, metrics) -> list[str]:
    return [m for m in metrics if m in summary and summary[m].notna().any()]


def plot_summary(summary, out_dir: str | Path, metrics=("psnr", "lpips", "ms_ssim"), title: str = "",
                 note: str = "", labels: dict[str, str] | None = None) -> list[Path]:
    """Write ``vs_snr.png`` (when several SNRs) and ``vs_cbr.png`` (when several CBRs); return the paths."""
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
        fig, axes = plt.subplots(1, len(mets), figsize=(5.2 * len(mets), 4.2), squeeze=False)
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
                ax.set_xticks(ticks)
                ax.set_xticklabels([cbr_label(t) for t in ticks], rotation=45)
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        import textwrap

        width = int(30 * len(mets))
        note = "\n".join(textwrap.fill(part, width) for part in note.split("\n")) if note else ""
        fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=7)
        fig.tight_layout()
        p = out_dir / fname
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(p)
    return paths


