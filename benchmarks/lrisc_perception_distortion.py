"""LRISC's perception-distortion curve at decode time: denoising steps x sampler noise -> PSNR, MS-SSIM, LPIPS.

    python benchmarks/lrisc_perception_distortion.py --data DIR [--held-out N] [--crop 256] [--steps 1,2,4,8,16] \\
        [--noise 0,0.5,1] [--snr 10] [--cbr 1/48] [--checkpoint PATH] [--out benchmarks/results/NAME.md]

Every image of ``DIR`` (centre crop ``--crop``) is encoded once per SNR and sent over AWGN with the common random
numbers of a sweep (seed 0, trial 0, ids = file stems); then decoded with each number of DDIM steps and each
sampler noise eta (``lrisc:steps=S,noise=ETA``: 0 is deterministic eq. 8, 1 ancestral). Metrics on uint8-rounded
outputs, mean over images. Writes a Markdown table and a PSNR-vs-LPIPS figure beside it (``.png``). Choose the
shipped defaults on held-out validation photos; report on Kodak.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    from channels.awgn import AWGN
    from lrisc_sim.data import image_paths, load_image
    from lrisc_sim.grammar import cbr_fraction
    from lrisc_sim.lrisc.codec import make_lrisc
    from lrisc_sim.metrics import lpips, ms_ssim, psnr, quantize
    from lrisc_sim.transmission import send

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="folder of images (validation photos, or Kodak for the report)")
    p.add_argument("--limit", type=int, default=None, help="first N images only")
    p.add_argument("--held-out", type=int, default=None, metavar="N",
                   help="the last N images of --data only: a recipe's validation split (val = N holds out the last "
                        "N photos of its first training folder)")
    p.add_argument("--crop", type=int, default=256, help="centre crop side (multiple of 32; MS-SSIM needs > 160)")
    p.add_argument("--steps", default="1,2,4,8,16", help="numbers of DDIM steps")
    p.add_argument("--noise", default="0,0.5,1", help="sampler noise etas in [0, 1]")
    p.add_argument("--snr", type=float, default=10.0, help="AWGN SNR in dB")
    p.add_argument("--cbr", default="1/48", help="target CBR")
    p.add_argument("--checkpoint", default=None, help="LRISC model file (default: the shipped one)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", default=None, help="Markdown file to write (and a .png beside it)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    steps = [int(s) for s in a.steps.split(",")]
    noises = [float(v) for v in a.noise.split(",")]
    cbr = float(cbr_fraction(a.cbr))
    paths = image_paths(a.data)
    if a.held_out is not None:
        if not 0 < a.held_out <= len(paths):
            p.error(f"--held-out {a.held_out}: {a.data} has {len(paths)} images; give 1..{len(paths)}")
        paths = paths[-a.held_out:]
    paths = paths[: a.limit]
    held = f" (held out: {', '.join(p.stem for p in paths)})" if a.held_out else ""
    images = []
    for path in paths:
        im = load_image(path)
        h, w = im.shape[-2:]
        s = min(h, w, a.crop) // 32 * 32
        i, j = (h - s) // 2, (w - s) // 2
        images.append((path.stem, im[None, :, i: i + s, j: j + s]))
    rows = []
    for eta in noises:
        for n in steps:
            opts = {"steps": n, "noise": eta} | ({"checkpoint": a.checkpoint} if a.checkpoint else {})
            codec = make_lrisc(**opts)
            m = {"psnr": [], "ms_ssim": [], "lpips": []}
            t0 = time.perf_counter()
            for vid, x in images:
                y = quantize(send(codec, x, cbr, a.snr, AWGN(), [vid], seed=0, trial=0).output)
                m["psnr"].append(float(psnr(x, y)[0]))
                m["ms_ssim"].append(float(ms_ssim(x, y)[0]))
                m["lpips"].append(float(lpips(x, y)[0]))
            sec = (time.perf_counter() - t0) / max(len(images), 1)
            rows.append({"noise": eta, "steps": n, **{k: sum(v) / len(v) for k, v in m.items()}, "s_per_image": sec})
            print(f"noise {eta:g} steps {n:2d}: PSNR {rows[-1]['psnr']:.2f} dB  MS-SSIM {rows[-1]['ms_ssim']:.4f}  "
                  f"LPIPS {rows[-1]['lpips']:.4f}  {sec:.2f} s/image", flush=True)
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"# LRISC perception-distortion at decode time ({time.strftime('%Y-%m-%d')})", "",
                 f"`python benchmarks/lrisc_perception_distortion.py {' '.join(argv or sys.argv[1:])}`", "",
                 f"{len(images)} images of {a.data}{held} ({a.crop} x {a.crop} centre crops), CBR {a.cbr}, AWGN "
                 f"{a.snr:g} dB, seed 0; checkpoint {a.checkpoint or 'shipped'}; {a.threads} thread(s).", "",
                 "| sampler noise | steps | PSNR (dB) | MS-SSIM | LPIPS | s / image |", "|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['noise']:g} | {r['steps']} | {r['psnr']:.2f} | {r['ms_ssim']:.4f} | {r['lpips']:.4f} | "
                  f"{r['s_per_image']:.2f} |" for r in rows]
        out.write_text("\n".join(lines) + "\n")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(3.6, 2.8))
        for eta in noises:
            rs = [r for r in rows if r["noise"] == eta]
            ax.plot([r["lpips"] for r in rs], [r["psnr"] for r in rs], marker="o", label=f"noise {eta:g}")
            for r in rs:
                ax.annotate(str(r["steps"]), (r["lpips"], r["psnr"]), fontsize=7, xytext=(2, 2),
                            textcoords="offset points")
        ax.set_xlabel("LPIPS (lower is better)")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out.with_suffix(".png"), dpi=150)
        print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
