"""Time of one LRISC SNR point on a Kodak-sized image (768 x 512) on a fixed number of CPU threads, split into
its parts, for one or more checkpoints and step counts.

    python benchmarks/lrisc_decode_time.py [--checkpoint shipped,PATH ...] [--steps 1,2,4,6] [--threads 1]
        [--image ../shared/data/kodak/kodim23.png] [--snr 10] [--cbr 1/48] [--repeats 2] [--out FILE.md]

A point is what a sweep spends per image and SNR: encode (g_e, hyperprior, rate control, f_e), the AWGN
channel, f_d, the context maps of z_hat and ``steps`` U-Net calls (eq. 8). Each figure is the fastest of
``--repeats`` runs after a warm-up run (the machine may be shared; the fastest run is the least disturbed).
Checkpoints of any architecture work, trained or not: the time depends on the architecture only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "kodak" / "kodim23.png"


def time_point(codec, x: torch.Tensor, snr_db: float, cbr: float) -> dict[str, float]:
    """Seconds of each part of one point: encode, channel, f_d, context, U-Net calls (all of them), total."""
    from channels.awgn import AWGN
    from channels.base import equalize
    from channels.realization import Realization
    from lrisc_sim.codec import Context

    m = codec.model
    out: dict[str, float] = {}
    with torch.no_grad():
        t0 = time.perf_counter()
        ctx = Context.of(x, snr_db=torch.tensor([snr_db]))
        enc = codec.encode(x, cbr, ctx)
        t1 = time.perf_counter()
        rx = equalize(AWGN()(enc.symbols, snr_db, Realization(0, ["bench"], 0)))
        t2 = time.perf_counter()
        z_hat = codec.latent_hat(rx, enc)
        t3 = time.perf_counter()
        maps = m.g_d.context(z_hat)
        t4 = time.perf_counter()
        b, _, h, w = z_hat.shape
        m.diffusion.sample(lambda xn, t: m.g_d(xn, t, context=maps), (b, 3, 16 * h, 16 * w),
                           enc.state["seeds"], steps=codec.steps, sampler=codec.sampler)
        t5 = time.perf_counter()
    out.update(encode=t1 - t0, channel=t2 - t1, f_d=t3 - t2, context=t4 - t3, unet=t5 - t4, total=t5 - t0)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="shipped", help="comma-separated: 'shipped' or LRISC .safetensors paths")
    p.add_argument("--steps", default="1,2,4,6", help="comma-separated denoising step counts")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--image", default=str(DEFAULT_IMAGE))
    p.add_argument("--snr", type=float, default=10.0)
    p.add_argument("--cbr", default="1/48")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default=None, help="also write the table (markdown) here")
    a = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from lrisc_sim.data import load_image, pad_to_multiple
    from lrisc_sim.grammar import parse_cbr
    from lrisc_sim.lrisc.codec import DEFAULT_CHECKPOINT, make_lrisc

    if not Path(a.image).is_file():
        print(f"error: image {a.image} not found: pass --image PATH (a 768 x 512 Kodak image is the reference)",
              file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    cbr = float(parse_cbr(a.cbr)[0])
    steps = [int(s) for s in a.steps.split(",")]
    x0 = load_image(a.image)[None]
    lines = [f"One LRISC point (encode, AWGN {a.snr:g} dB, decode) of {Path(a.image).name} "
             f"({x0.shape[-1]} x {x0.shape[-2]}), CBR {a.cbr}, {a.threads} CPU thread(s), fastest of "
             f"{a.repeats} after a warm-up; seconds.", "",
             "| checkpoint | U-Net | steps | encode | channel | f_d | context | U-Net calls | per call | total |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    for spec in a.checkpoint.split(","):
        path = DEFAULT_CHECKPOINT if spec == "shipped" else Path(spec)
        codec = make_lrisc(str(path))
        u = codec.model.cfg.unet
        arch = f"patch {u.patch}, {'-'.join(map(str, u.widths))}"
        x = pad_to_multiple(x0, codec.multiple)
        for k in steps:
            codec.steps = k
            time_point(codec, x, a.snr, cbr)  # warm-up
            runs = [time_point(codec, x, a.snr, cbr) for _ in range(a.repeats)]
            best = min(runs, key=lambda r: r["total"])
            name = "shipped" if spec == "shipped" else Path(spec).name
            row = (f"| {name} | {arch} | {k} | {best['encode']:.2f} | {best['channel']:.3f} | {best['f_d']:.2f} | "
                   f"{best['context']:.2f} | {best['unet']:.2f} | {best['unet'] / k:.2f} | **{best['total']:.2f}** |")
            lines.append(row)
            print(row, flush=True)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
