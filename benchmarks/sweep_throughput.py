"""Sweep throughput per codec (images x SNR points per second) and the time split between encode, channel,
decode and metrics.

    python benchmarks/sweep_throughput.py [--codec softcast,uncoded,deepjscc] [--dataset builtin] [--snr 0:15:5]
        [--cbr 1/48] [--device auto] [--threads N] [--metrics psnr,ms_ssim,lpips]
"""

from __future__ import annotations

import argparse
import time

import torch

from channels import make_channel
from lrisc_sim.data import load_dataset
from lrisc_sim.engine import Engine, SweepConfig, resolve_device
from lrisc_sim.grammar import parse_cbr, parse_snr
from lrisc_sim.sweep_run import set_threads


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--codec", default="uncoded,softcast")
    p.add_argument("--dataset", default="builtin")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--snr", default="0:15:5")
    p.add_argument("--cbr", default="1/48")
    p.add_argument("--channel", default="awgn")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--trials", type=int, default=1)
    p.add_argument("--metrics", default="psnr,ms_ssim,lpips")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    set_threads(a.threads)
    dev = resolve_device(a.device)
    items = load_dataset(a.dataset, a.limit)
    snr, cbr = parse_snr(a.snr), parse_cbr(a.cbr)
    print(f"device {dev}, torch threads {torch.get_num_threads()}, {len(items)} images, SNR {snr}, "
          f"CBR {[str(c) for c in cbr]}, channel {a.channel}, metrics {a.metrics}")
    print(f"{'codec':<14} {'img-pts':>8} {'wall s':>8} {'img-pts/s':>10}   encode  channel  decode  metrics")
    for spec in a.codec.split(","):
        cfg = SweepConfig(codecs=[spec], snr_db=snr, cbr=cbr, channel=a.channel, dataset=a.dataset,
                          batch_size=a.batch_size, trials=a.trials, device=str(dev),
                          metrics=tuple(a.metrics.split(",")))
        eng = Engine(cfg, make_channel(a.channel), dev)
        eng.codec(spec)  # model loading is not part of the throughput
        tasks = eng.plan(items, set())
        t0 = time.perf_counter()
        n = 0
        for t in tasks:
            for rows in eng.run_task(t):
                n += len(rows)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        tim = eng.timings[spec]
        tot = sum(tim.values()) or 1.0
        split = "  ".join(f"{100 * tim[k] / tot:5.1f}%" for k in ("encode", "channel", "decode", "metrics"))
        print(f"{spec:<14} {n:>8} {wall:>8.2f} {n / wall:>10.2f}   {split}")


if __name__ == "__main__":
    main()
