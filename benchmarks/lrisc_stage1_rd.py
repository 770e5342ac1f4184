"""Stage-1 rate-distortion of LRISC's source model (g_e + hyperprior + g_d, no channel) beside HEVC-intra on Kodak.

    python benchmarks/lrisc_stage1_rd.py [--checkpoint PATH ...] [--data DIR] [--limit N] [--crop S]
        [--steps 1,2,4,6,10] [--sweep-limit N] [--sampler ddim] [--cbr 1/48] [--snr 0,5,10,15]
        [--hevc-bpp 0.05,0.1,...] [--threads 1] [--out runs/bench/lrisc_stage1_rd]

For every image and LRISC checkpoint: z_tilde = rounded z (mean-shifted by mu, as at inference), decoded by the
diffusion decoder g_d with the checkpoint's sampler and step count (or ``--sampler`` / ``--default-steps``).
The rate is reported twice: ``bpp_model`` = (-log2 p(z|y) - log2 p(y)) / (H W) from the entropy model (its
likelihoods floored at 1e-9, as in training), and ``bpp_actual`` = the bytes of a real rANS code of y_hat and
z_hat with 16-bit tables (``lrisc_sim.lrisc.entropy_coding``, decoded back and checked). PSNR and LPIPS are the
project's (``lrisc_sim.metrics``: uint8-rounded, AlexNet LPIPS v0.1).

Beside it, HEVC-intra (x265 through pillow-heif, 4:4:4, the digital baseline's ``HEVCCoder``; bytes = the bare
HEVC stream as the baseline counts them; ``rate_match`` picks the best QP that fits) at
  * the LRISC rate: the same number of bytes as LRISC's actual code of that image, per checkpoint;
  * the rates the CBR budget allows over AWGN at each SNR: bpp = 3 CBR log2(1 + SNR) (Shannon capacity of the
    floor(3 CBR H W) complex channel uses; CBR 1/48: 0.0625 / 0.129 / 0.216 / 0.314 bpp at 0 / 5 / 10 / 15 dB),
    i.e. what any separated or source model can at most be given at that SNR;
  * a grid of rates (``--hevc-bpp``) for the curve.
For the first ``--sweep-limit`` images, each LRISC checkpoint is also decoded with ``--steps`` steps of its
sampler (PSNR / LPIPS vs denoising steps).

Writes to ``--out``: ``per_image.csv``, ``summary.csv``, ``summary.md`` (the printed tables) and ``rd.png``
(PSNR and LPIPS vs bpp). Cost on one CPU thread shared with other jobs, full-size Kodak (768 x 512), small
preset: about 70 s per image (6-step decode, rANS both ways, HEVC at 13 rates) plus about 140 s per swept image,
so the default (24 images, the 1/2/4/6/10-step sweep on the first 4) takes about 35-40 minutes there (less on
an idle core); ``--limit``, ``--sweep-limit`` and ``--crop`` make it shorter. The committed result
(``benchmarks/results/lrisc_stage1_rd``) used ``--limit 10 --sweep-limit 2`` (17 minutes).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrisc_sim.data import load_dataset  # noqa: E402
from lrisc_sim.metrics import lpips, psnr  # noqa: E402


def budget_bpp(cbr: float, snr_db: float) -> float:
    """Capacity-limited rate of a CBR budget over AWGN: 3 CBR log2(1 + SNR) bits per pixel."""
    return 3 * cbr * math.log2(1 + 10 ** (snr_db / 10))


def centre_crop(x: torch.Tensor, size: int | None, multiple: int) -> torch.Tensor:
    """Centre crop ``3 x H x W`` to ``size`` (None: whole image) and down to multiples of ``multiple``."""
    h, w = x.shape[-2:]
    sh, sw = (min(size, h), min(size, w)) if size else (h, w)
    sh, sw = sh // multiple * multiple, sw // multiple * multiple
    i, j = (h - sh) // 2, (w - sw) // 2
    return x[:, i: i + sh, j: j + sw]


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def quality(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    return float(psnr(x[None], y[None])[0]), float(lpips(x[None], y[None])[0])


def hevc_point(coder, x: torch.Tensor, max_bytes: int) -> dict:
    """HEVC-intra at the best QP whose bare stream fits ``max_bytes``."""
    from baselines.digital.source import rate_match

    h, w = x.shape[-2:]
    fit = rate_match(coder, to_uint8(x), max_bytes)
    if fit is None:
        return {"bpp": math.nan, "psnr": math.nan, "lpips": math.nan, "qp": math.nan}
    dec = coder.decode(fit.data, (h, w))
    y = torch.from_numpy(dec.astype(np.float32) / 255).permute(2, 0, 1)
    p, lp = quality(x, y)
    return {"bpp": 8 * len(fit.data) / (h * w), "psnr": p, "lpips": lp, "qp": fit.quality}


class Checkpoint:
    def __init__(self, path: str, sampler: str | None, steps: int | None, label: str | None = None):
        from lrisc_sim.lrisc.model import LRISC

        self.path = Path(path)
        self.model = LRISC.load(self.path)
        d = self.model.cfg.diffusion
        self.sampler = sampler or d.sampler
        self.steps = steps or d.steps
        self.label = label or self.path.stem

    @torch.no_grad()
    def run(self, x: torch.Tensor, image_id: str, sweep: list[int], actual: bool) -> tuple[list[dict], int]:
        """Rows for one image ``3 x H x W``; returns them and the bytes LRISC's code of it takes."""
        from lrisc_sim.lrisc.codec import image_seed
        from lrisc_sim.lrisc.entropy import bits
        from lrisc_sim.lrisc.entropy_coding import decode_latent, encode_latent

        m = self.model
        h, w = x.shape[-2:]
        xb = x[None]
        lat = m.latent(xb, "round")
        bz = float(bits(lat.lik_z).sum())
        by = float(bits(lat.lik_y).sum())
        n_bytes = math.ceil((bz + by) / 8)
        bpp_actual = math.nan
        if actual:
            bs = encode_latent(m, xb)
            if not torch.allclose(decode_latent(m, bs), lat.z_tilde, atol=1e-5):
                raise RuntimeError(f"{image_id}: the rANS round trip of the latent failed")
            n_bytes = bs.bits // 8
            bpp_actual = bs.bits / (h * w)
        base = {"codec": "lrisc", "checkpoint": self.label, "image": image_id, "bpp_model": (bz + by) / (h * w),
                "bpp_z": bz / (h * w), "bpp_y": by / (h * w), "bpp_actual": bpp_actual}
        seeds = [image_seed(x)]
        rows = []
        for k in sorted({self.steps, *sweep}):
            t0 = time.time()
            y = m.reconstruct(lat.z_tilde, seeds, k, self.sampler)[0]
            p, lp = quality(x, y)
            rows.append({**base, "label": f"{self.label} {self.sampler} {k}", "sampler": self.sampler, "steps": k,
                         "default_steps": k == self.steps,
                         "bpp": bpp_actual if actual else (bz + by) / (h * w), "psnr": p, "lpips": lp,
                         "seconds": time.time() - t0})
        return rows, n_bytes


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    keys = ["codec", "label", "checkpoint", "sampler", "steps", "default_steps", "snr_db", "target_bpp"]
    keys = [k for k in keys if k in rows]
    num = [c for c in ("bpp_model", "bpp_z", "bpp_y", "bpp_actual", "lrisc_bpp", "bpp", "psnr", "lpips", "qp",
                       "seconds")
           if c in rows]
    g = rows.groupby(keys, sort=False, dropna=False)
    out = g[num].mean().reset_index()
    out["n"] = g.size().values
    out["fit"] = g["psnr"].count().values  # images with a result (HEVC: whose budget held a stream)
    return out


def tables(summary: pd.DataFrame, per_image: pd.DataFrame, cbr: Fraction, snrs: list[float]) -> str:
    f2 = lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"  # noqa: E731
    f3 = lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"  # noqa: E731
    f4 = lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"  # noqa: E731
    lines = []
    n_img = per_image["image"].nunique()
    sizes = sorted(per_image["size"].unique())
    lines.append(f"Images: {n_img} ({', '.join(sizes)}).\n")
    lines.append("LRISC stage 1 (no channel; the checkpoint's sampler and steps) and HEVC-intra at the same bytes:\n")
    lines.append("| codec | bpp (model) | bpp (actual) | PSNR (dB) | LPIPS | n |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    lr = summary[(summary.codec == "lrisc") & (summary.default_steps == True)]  # noqa: E712
    for _, r in lr.iterrows():
        lines.append(f"| {r['label']} | {f3(r['bpp_model'])} | {f3(r['bpp_actual'])} | {f2(r['psnr'])} | "
                     f"{f3(r['lpips'])} | {int(r['n'])} |")
        hv = summary[(summary.codec == "hevc") & (summary.label == f"hevc at the rate of {r['checkpoint']}")]
        for _, h in hv.iterrows():
            lines.append(f"| {h['label']} | | {f3(h['bpp'])} | {f2(h['psnr'])} | {f3(h['lpips'])} | {int(h['n'])} |")
    lines.append(f"\nRates the CBR {cbr} budget allows over AWGN (3 CBR log2(1 + SNR) bpp) and HEVC-intra at them "
                 "(means over the images whose budget holds an HEVC stream at QP 51):\n")
    lines.append("| SNR (dB) | budget bpp | HEVC bpp | HEVC PSNR (dB) | HEVC LPIPS | images that fit |")
    lines.append("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in snrs:
        h = summary[(summary.codec == "hevc") & (summary.snr_db == s)]
        if len(h):
            h = h.iloc[0]
            fit = int(per_image[(per_image.codec == "hevc") & (per_image.snr_db == s)]["psnr"].notna().sum())
            lines.append(f"| {s:g} | {f4(h['target_bpp'])} | {f4(h['bpp'])} | {f2(h['psnr'])} | {f3(h['lpips'])} | "
                         f"{fit} |")
    grid = summary[(summary.codec == "hevc") & summary.label.str.startswith("hevc grid")]
    if len(grid):
        lines.append("\nHEVC-intra curve:\n")
        lines.append("| target bpp | bpp | PSNR (dB) | LPIPS |")
        lines.append("| ---: | ---: | ---: | ---: |")
        for _, h in grid.iterrows():
            lines.append(f"| {h['target_bpp']:g} | {f4(h['bpp'])} | {f2(h['psnr'])} | {f3(h['lpips'])} |")
    sw = per_image[(per_image.codec == "lrisc")]
    if len(sw) and sw["steps"].nunique() > 1:
        lines.append("\nLRISC stage 1 vs denoising steps (images decoded at every step count):\n")
        lines.append("| checkpoint | sampler | steps | PSNR (dB) | LPIPS | s / image | n |")
        lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for ck, g in sw.groupby("checkpoint", sort=False):
            counts = g.groupby("image")["steps"].nunique()
            full = counts[counts == counts.max()].index
            gg = g[g.image.isin(full)]
            for (smp, k), r in gg.groupby(["sampler", "steps"]):
                lines.append(f"| {ck} | {smp} | {int(k)} | {f2(r['psnr'].mean())} | {f3(r['lpips'].mean())} | "
                             f"{r['seconds'].mean():.1f} | {len(r)} |")
    return "\n".join(lines) + "\n"


def plot(summary: pd.DataFrame, cbr: Fraction, snrs: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    grid = summary[(summary.codec == "hevc") & (summary.fit == summary.n)].sort_values("bpp")  # every image fits
    lr = summary[(summary.codec == "lrisc") & (summary.default_steps == True)]  # noqa: E712
    for ax, metric, name in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "lpips", "LPIPS")):
        ax.plot(grid["bpp"], grid[metric], "o-", color="tab:blue", label="HEVC-intra (x265, 4:4:4)")
        colours = ["tab:red", "tab:orange", "tab:green", "tab:purple", "tab:brown"]
        for i, (_, r) in enumerate(lr.iterrows()):
            ax.plot([r["bpp"]], [r[metric]], "*", ms=14, color=colours[i % len(colours)],
                    label=f"LRISC stage 1: {r['label']} ({'rANS' if r['bpp_actual'] == r['bpp'] else 'model'} bits)")
        for s in snrs:
            b = budget_bpp(float(cbr), s)
            ax.axvline(b, color="grey", lw=0.8, ls=":")
            ax.text(b, ax.get_ylim()[1], f"{s:g} dB", fontsize=7, ha="center", va="bottom", color="grey")
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=min(len(labels), 3), bbox_to_anchor=(0.5, -0.08))
    fig.suptitle(f"Kodak, no channel; dotted: rates the CBR {cbr} budget allows at each SNR", fontsize=9, y=1.0)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from lrisc_sim.lrisc.codec import DEFAULT_CHECKPOINT

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", action="append", default=None,
                   help="LRISC checkpoint (repeat for several; LABEL=PATH names it); default: the shipped one")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "kodak"),
                   help="image folder, or 'kodak' (the simulator's cached copy)")
    p.add_argument("--limit", type=int, default=None, help="first N images")
    p.add_argument("--crop", type=int, default=None, help="centre crop size (multiple of 16; default: full images)")
    p.add_argument("--sampler", default=None, help="ddim or dpm (default: each checkpoint's)")
    p.add_argument("--default-steps", type=int, default=None, help="steps of the main decode (default: the model's)")
    p.add_argument("--steps", default="1,2,4,6,10", help="step counts of the sweep ('' for none)")
    p.add_argument("--sweep-limit", type=int, default=4, help="sweep the steps on the first N images")
    p.add_argument("--cbr", default="1/48")
    p.add_argument("--snr", default="0,5,10,15", help="SNRs (dB) whose capacity-limited rates are shown")
    p.add_argument("--hevc-bpp", default="0.05,0.1,0.2,0.3,0.5,0.8,1.2,1.6", help="HEVC curve rates ('' for none)")
    p.add_argument("--no-actual", action="store_true", help="skip the rANS code (bpp from the model only)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/bench/lrisc_stage1_rd")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    cbr = Fraction(a.cbr)
    snrs = [float(s) for s in a.snr.split(",") if s]
    sweep = [int(s) for s in a.steps.split(",") if s]
    grid_bpp = [float(s) for s in a.hevc_bpp.split(",") if s]
    cks = []
    for spec in a.checkpoint or [str(DEFAULT_CHECKPOINT)]:
        label, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        cks.append(Checkpoint(path, a.sampler, a.default_steps, label or None))
    from baselines.digital.source import HEVCCoder

    coder = HEVCCoder()
    multiple = max(c.model.cfg.multiple for c in cks)
    items = load_dataset(a.data, a.limit)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    t_start = time.time()
    for n, it in enumerate(items):
        x = centre_crop(it.image, a.crop, multiple)
        h, w = x.shape[-2:]
        size = f"{w}x{h}"
        t0 = time.time()
        for ck in cks:
            lr_rows, n_bytes = ck.run(x, it.id, sweep if n < a.sweep_limit else [], not a.no_actual)
            rows += [{**r, "size": size} for r in lr_rows]
            rows.append({"codec": "hevc", "label": f"hevc at the rate of {ck.label}", "checkpoint": ck.label,
                         "image": it.id, "size": size, "lrisc_bpp": 8 * n_bytes / (h * w),
                         **hevc_point(coder, x, n_bytes)})
        for s in snrs:
            b = budget_bpp(float(cbr), s)
            rows.append({"codec": "hevc", "label": f"hevc at the {s:g} dB budget", "snr_db": s, "image": it.id,
                         "size": size, "target_bpp": b, **hevc_point(coder, x, int(b * h * w // 8))})
        for b in grid_bpp:
            rows.append({"codec": "hevc", "label": f"hevc grid {b:g}", "image": it.id, "size": size,
                         "target_bpp": b, **hevc_point(coder, x, int(b * h * w // 8))})
        lr_def = [r for r in rows if r["image"] == it.id and r["codec"] == "lrisc" and r["default_steps"]]
        print(f"[{n + 1}/{len(items)}] {it.id} {size}: " + "; ".join(
            f"{r['checkpoint']} {r['bpp']:.3f} bpp {r['psnr']:.2f} dB LPIPS {r['lpips']:.3f}" for r in lr_def)
            + f" ({time.time() - t0:.0f} s)", flush=True)
    per_image = pd.DataFrame(rows)
    summary = summarise(per_image)
    per_image.to_csv(out / "per_image.csv", index=False, float_format="%.5g")
    summary.to_csv(out / "summary.csv", index=False, float_format="%.5g")
    text = tables(summary, per_image, cbr, snrs)
    cmd = "python benchmarks/lrisc_stage1_rd.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = (f"# LRISC stage-1 rate-distortion vs HEVC-intra\n\n`{cmd}` ({time.time() - t_start:.0f} s on "
            f"{torch.get_num_threads()} CPU thread(s)).\n\n" + text)
    (out / "summary.md").write_text(text)
    plot(summary, cbr, snrs, out / "rd.png")
    print(text)
    print(f"wrote {out / 'per_image.csv'}, {out / 'summary.csv'}, {out / 'summary.md'}, {out / 'rd.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
