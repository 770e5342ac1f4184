"""LRISC's side information (the rate indices q) under each rate-index code, on Kodak at a target CBR.

    python benchmarks/lrisc_side_info.py [--checkpoint PATH] [--data kodak] [--limit N] [--cbr 1/48]
        [--codings fixed,enumerative,context,auto] [--threads 1] [--out benchmarks/results/lrisc_side_info]

For every image and code (and, with ``auto``, every rate grid of ``--blocks``: one rate index per block x block
tokens; ``auto`` here chooses among all three codes, whatever the checkpoint's rule), the LRISC encoder runs its
rate control (``jscc.rate_control``: the largest beta with
payload + side uses <= floor(CBR 3 H W), side bits charged at 1 bit per channel use, the sweep default) and the
benchmark reports the side bits, their share of the budget, the payload uses left to the symbols and the mean
channel uses per token. Rate control does not depend on the SNR under the default charge, so one run covers
every SNR point. For the ``context`` code the real arithmetic coder (``rate_index.encode_context``) also runs
and its output is decoded back and compared, so ``coded_bits`` is a measured length, not the formula.

The first ``--decode-limit`` images are also sent over AWGN at ``--snr`` with each ``auto`` row (the whole codec:
what the payload freed from side bits buys against the coarser allocation) and their PSNR is reported.

Writes ``per_image.csv`` and ``summary.md`` (the printed table) to ``--out``. Encoding takes about 2 s per image
and code on one CPU thread, each decode about 7 s (20 s on a core shared with training).
"""

from __future__ import annotations

import argparse
import sys
import time
from fractions import Fraction
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrisc_sim.codec import Context  # noqa: E402
from lrisc_sim.data import load_dataset, pad_to_multiple  # noqa: E402
from lrisc_sim.lrisc.codec import DEFAULT_CHECKPOINT, make_lrisc  # noqa: E402
from lrisc_sim.metrics import psnr  # noqa: E402
from lrisc_sim.transmission import send  # noqa: E402
from lrisc_sim.lrisc.rate_index import CODES, MODES, RateIndexCoding, decode_context, encode_context  # noqa: E402


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--data", default="kodak")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--cbr", default="1/48")
    p.add_argument("--codings", default="fixed,enumerative,context,auto")
    p.add_argument("--blocks", default="1,2", help="rate grids to compare: tokens per rate index along each side")
    p.add_argument("--decode-limit", type=int, default=4,
                   help="also send the first N images over AWGN at --snr with each auto row and report PSNR")
    p.add_argument("--snr", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results/lrisc_side_info")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    codings = [c for c in a.codings.split(",") if c]
    bad = [c for c in codings if c not in MODES]
    if bad:
        p.error(f"unknown coding {bad[0]!r}: use some of {', '.join(MODES)}")
    cbr = float(Fraction(a.cbr))
    blocks = [int(b) for b in a.blocks.split(",") if b]
    codecs = {(c, b): make_lrisc(a.checkpoint, coding=c, rate_block=b) for b in blocks for c in codings
              if b == 1 or c == "auto"}
    for (c, _), codec in codecs.items():
        if c == "auto":  # choose among all three codes, whatever the checkpoint's own rule is
            codec.coding = RateIndexCoding("auto", CODES)
    k = len(next(iter(codecs.values())).model.f_e.quantizer.levels)
    rows = []
    t0 = time.time()
    items = load_dataset(a.data, a.limit)
    for n, it in enumerate(items):
        x0 = it.image[None]
        ctx = Context.of(x0)
        for (name, blk), codec in codecs.items():
            x = pad_to_multiple(x0, codec.multiple)
            enc = codec.encode(x, cbr, ctx)
            q, grid = enc.state["q"], enc.state["grid"]
            if blk > 1:
                name = f"auto, {blk}x{blk} blocks"
            budget = int(ctx.budget(cbr))
            coded, coded_grid = q, grid  # the map that was charged: q, or one index per block
            if blk > 1:
                coded = q.reshape(1, *grid)[:, ::blk, ::blk]
                coded_grid = tuple(coded.shape[-2:])
                coded = coded.reshape(1, -1)
            row = {"image": it.id, "coding": name, "chosen": codec.coding.chosen(coded, k, coded_grid)[0],
                   "tokens": q.shape[1],
                   "budget": budget, "side_bits": float(enc.side_bits[0]), "payload": int(enc.length[0]),
                   "side_share": float(enc.side_bits[0]) / budget,
                   "uses_per_token": int(enc.length[0]) / q.shape[1]}
            if name == "context":  # the real coder on the map that was charged
                value, nbits = encode_context(coded[0].tolist(), coded_grid, k)
                if decode_context(value, nbits, coded_grid, k) != coded[0].tolist():
                    raise SystemExit(f"context code of {it.id} did not decode back")
                row["coded_bits"] = nbits
            if name.startswith("auto") and n < a.decode_limit:
                t = send(codec, x0, cbr, a.snr, "awgn", [it.id])
                row["psnr"] = float(psnr(x0, t.output)[0])
            rows.append(row)
        print(f"[{n + 1}/{len(items)}] {it.id} {time.time() - t0:.0f} s", file=sys.stderr)
    df = pd.DataFrame(rows)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "per_image.csv", index=False)
    summ = df.groupby("coding", sort=False).agg(side_bits=("side_bits", "mean"), side_share=("side_share", "mean"),
                                                payload=("payload", "mean"),
                                                uses_per_token=("uses_per_token", "mean")).reset_index()
    chosen = df[df.coding == "auto"].chosen.value_counts().to_dict() if "auto" in codings else {}
    lines = [f"LRISC rate indices at CBR {a.cbr} on {a.data} ({len(items)} images; {a.checkpoint}; budget "
             f"{df.budget.mean():.0f} channel uses per image on average, side bits charged 1 per use)", "",
             "| coding | side bits | share of budget | payload uses | uses per token |", "|---|---|---|---|---|"]
    for r in summ.itertuples():
        lines.append(f"| {r.coding} | {r.side_bits:.0f} | {100 * r.side_share:.1f}% | {r.payload:.0f} | "
                     f"{r.uses_per_token:.2f} |")
    if "context" in codings:
        c = df[df.coding == "context"]
        lines += ["", f"context code: the arithmetic coder's output averages {c.coded_bits.mean():.1f} bits against "
                  f"{c.side_bits.mean():.1f} charged (max excess of the charge {(c.side_bits - c.coded_bits).max():.0f}"
                  " bits); every map decoded back exactly."]
    if "psnr" in df:
        d = df.dropna(subset=["psnr"])
        piv = d.pivot(index="image", columns="coding", values="psnr")
        lines += ["", f"PSNR over AWGN at {a.snr:g} dB, CBR {a.cbr} (first {len(piv)} images): "
                  + ", ".join(f"{c} {piv[c].mean():.3f} dB" for c in piv.columns)
                  + "; per image: " + "; ".join(f"{i} " + " / ".join(f"{v:.2f}" for v in r) for i, r in piv.iterrows())]
    if chosen:
        lines += ["", "auto chose: " + ", ".join(f"{k_} for {v} images" for k_, v in chosen.items())]
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    print(text)
    return df


if __name__ == "__main__":
    main()
