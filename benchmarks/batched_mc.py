"""Batched Monte Carlo decoding: images x (SNR, trial) points per second with one decoder call per point (before)
and with the points of a task stacked into one decoder call (after, ``--decode-batch``), on Kodak crops.

    python benchmarks/batched_mc.py [--kodak DIR] [--limit 4] [--crop 256] [--snr 0:15:5] [--trials 2]
        [--cbr 1/48] [--codec softcast,deepjscc,lrisc] [--decode-batch N] [--threads 1] [--metrics ...]

Kodak is read from ``--kodak``, else ``$LRISC_SIM_KODAK``, else ``../shared/data/kodak`` beside the checkout; the
first ``--limit`` images are centre-cropped to ``--crop`` x ``--crop``. "batched" puts every point of a task into
one decoder call unless ``--decode-batch`` says otherwise (sweeps bound it by ``engine.DECODE_PIXELS``). softcast
and deepjscc may decode batched in sweeps (same numbers to the bit, checked here); LRISC stays per point in sweeps
(its batched U-Net rounds differently, about 1e-5) and is switched to batched decoding here to measure it. The printed ``max |diff|``
is the largest difference of PSNR, MS-SSIM and LPIPS between the two modes over all rows.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import torch

from channels import make_channel
from lrisc_sim.data import Item, folder_images
from lrisc_sim.engine import Engine, SweepConfig, resolve_device
from lrisc_sim.results import Row
from lrisc_sim.grammar import parse_cbr, parse_snr
from lrisc_sim.sweep_run import set_threads

ROOT = Path(__file__).resolve().parents[1]


def kodak_crops(folder: Path, limit: int, crop: int) -> list[Item]:
    items = folder_images(folder)[:limit]
    out = []
    for it in items:
        _, h, w = it.image.shape
        c = min(crop, h, w)
        y, x = (h - c) // 2, (w - c) // 2
        out.append(Item(it.id, it.image[:, y : y + c, x : x + c].contiguous()))
    return out


def run(eng: Engine, spec: str, items: list[Item]) -> tuple[float, list[Row]]:
    tasks = eng.plan(items, set())
    t0 = time.perf_counter()
    rows = [r for t in tasks for point in eng.run_task(t) for r in point]
    if eng.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, rows


def max_diff(a: list[Row], b: list[Row]) -> float:
    d = 0.0
    for r, s in zip(a, b, strict=True):
        assert (r.snr_db, r.trial, r.image) == (s.snr_db, s.trial, s.image)
        for m in ("psnr", "ms_ssim", "lpips"):
            a_m, b_m = getattr(r, m), getattr(s, m)
            if not (math.isnan(a_m) and math.isnan(b_m)):
                d = max(d, abs(a_m - b_m))
    return d


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kodak", default=os.environ.get("LRISC_SIM_KODAK") or str(ROOT.parent / "shared/data/kodak"))
    p.add_argument("--limit", type=int, default=4)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--snr", default="0:15:5")
    p.add_argument("--trials", type=int, default=2)
    p.add_argument("--cbr", default="1/48")
    p.add_argument("--codec", default="softcast,deepjscc,lrisc")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--decode-batch", type=int, default=None,
                   help="rows per decoder call when batched (default: every point of a task in one call)")
    p.add_argument("--metrics", default="psnr,ms_ssim,lpips")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    set_threads(a.threads)
    dev = resolve_device(a.device)
    items = kodak_crops(Path(a.kodak), a.limit, a.crop)
    snr, cbr = parse_snr(a.snr), parse_cbr(a.cbr)
    print(f"device {dev}, torch threads {torch.get_num_threads()}, {len(items)} Kodak images centre-cropped to "
          f"{a.crop}x{a.crop}, SNR {snr} dB, {a.trials} trials, CBR {[str(c) for c in cbr]}, AWGN, "
          f"--batch-size {a.batch_size}, metrics {a.metrics}")
    print(f"{'codec':<10} {'mode':<22} {'img-pts':>7} {'wall s':>8} {'img-pts/s':>9} {'decode s':>8} "
          f"{'speed-up':>8}  max |diff|")
    for spec in a.codec.split(","):
        res = {}
        for mode in ("per point", "batched"):
            cfg = SweepConfig(codecs=[spec], snr_db=snr, cbr=cbr, batch_size=a.batch_size, trials=a.trials,
                              device=str(dev), metrics=tuple(a.metrics.split(",")),
                              decode_batch=1 if mode == "per point" else (a.decode_batch or
                                                                          a.batch_size * len(snr) * a.trials))
            eng = Engine(cfg, make_channel("awgn"), dev)
            codec = eng.codec(spec)  # model loading is not part of the throughput
            if mode == "batched":
                codec.batched_decode = True  # LRISC's opt-in; softcast and deepjscc have it already
            warm = SweepConfig(**{**cfg.__dict__, "snr_db": snr[:1], "trials": 1})
            run(Engine(warm, make_channel("awgn"), dev, codec_factory=lambda s: codec), spec, items[:1])  # warm-up
            hw = tuple(items[0].image.shape[-2:])
            per = min(eng.points_per_decode(codec, min(a.batch_size, len(items)), hw), len(snr) * a.trials)
            wall, rows = run(eng, spec, items)
            res[mode] = (wall, rows, eng.timings[spec]["decode"], per)
        base = res["per point"][0]
        for mode, (wall, rows, dec, per) in res.items():
            label = mode if mode == "per point" else f"batched ({per} pts/call)"
            diff = "" if mode == "per point" else f"{max_diff(res['per point'][1], rows):.3g}"
            print(f"{spec:<10} {label:<22} {len(rows):>7} {wall:>8.2f} {len(rows) / wall:>9.2f} {dec:>8.2f} "
                  f"{base / wall:>7.2f}x  {diff}", flush=True)


if __name__ == "__main__":
    main()
