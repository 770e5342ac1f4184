"""Evaluation of an LRISC checkpoint on Kodak against DeepJSCC, written into its model card.

``python -m lrisc_sim.lrisc.evaluate --checkpoint PATH --data KODAK_DIR`` runs the engine (identical channel
realizations for both codecs, resumable results in ``--out``) at CBR 1/48 over AWGN at 0, 5, 10, 15 dB,
and stores per-SNR means and 95% confidence intervals of PSNR, MS-SSIM and LPIPS for LRISC and DeepJSCC, plus
the LPIPS reduction of LRISC relative to DeepJSCC (the paper reports 43.3% on average), in the checkpoint's
JSON model card under ``"kodak"``, and as a table into the block of the folder's README.md between the
``kodak`` markers (where it has one).
"""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction
from pathlib import Path

PAPER_LPIPS_REDUCTION = 43.3  # % vs DeepJSCC, averaged over SNR (paper, Section IV-B)


README_BEGIN, README_END = "<!-- kodak:begin (written by lrisc_sim.lrisc.evaluate) -->", "<!-- kodak:end -->"


def kodak_markdown(res: dict) -> list[str]:
    """The card's ``kodak`` section as Markdown: per-SNR PSNR / MS-SSIM / LPIPS of LRISC beside DeepJSCC, the
    LPIPS change, the channel-use split and the decode time."""
    lr, dj = res["codecs"]["lrisc"], res["codecs"].get("deepjscc", {})
    first = next(iter(lr))  # the lowest SNR
    f = lambda d, k, n: f"{d[k]:.{n}f}" if d and k in d else "-"  # noqa: E731
    lines = [f"Kodak ({lr[first]['n']} images), CBR {res['cbr_target']} (total, side information "
             f"included), {res['channel'].upper()}, seed {res['seed']}; 95% CI in the card.", "",
             "| SNR (dB) | LRISC PSNR | DeepJSCC PSNR | LRISC MS-SSIM | DeepJSCC MS-SSIM | LRISC LPIPS "
             "| DeepJSCC LPIPS | LPIPS change |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s, v in lr.items():
        d = dj.get(s)
        change = f"{100 * (v['lpips'] / d['lpips'] - 1):+.1f}%" if d and d.get("lpips") else "-"
        lines.append(f"| {s} | {f(v, 'psnr', 2)} | {f(d, 'psnr', 2)} | {f(v, 'ms_ssim', 3)} | {f(d, 'ms_ssim', 3)} "
                     f"| {f(v, 'lpips', 3)} | {f(d, 'lpips', 3)} | {change} |")
    v = lr[first]
    lines += ["", f"LRISC total CBR {v['cbr_total']:.5f} = payload {v['cbr_payload']:.5f} + side (rate indices) "
                  f"{v['cbr_side']:.5f} ({100 * v['cbr_side'] / v['cbr_total']:.1f}% of the channel uses) at "
                  f"{first} dB; DeepJSCC has no side information. LRISC takes "
                  f"{sum(x['seconds'] for x in lr.values()) / len(lr):.1f} s per image and SNR point (encode, channel, "
                  f"decode; {res.get('threads', 1)} CPU thread(s))."]
    red = res.get("lpips_reduction_vs_deepjscc_pct", {})
    if dj and red.get("mean") is not None:
        gaps = [lr[s]["psnr"] - dj[s]["psnr"] for s in lr if s in dj]
        above = sum(g > 0 for g in gaps)
        lines += ["", f"LPIPS is {red['mean']:.1f}% below DeepJSCC's on average over the SNRs (paper: "
                      f"{red['paper']}%). PSNR minus DeepJSCC's: {', '.join(f'{g:+.2f}' for g in gaps)} dB, so "
                      f"LRISC's PSNR is above DeepJSCC's at {above} of {len(gaps)} SNRs (paper: at every SNR)."]
    return lines


def markers(name: str | None = None) -> tuple[str, str]:
    """The README markers of a checkpoint's Kodak block: ``<!-- kodak:begin NAME ... -->`` /
    ``<!-- kodak:end NAME -->`` for a shipped operating point other than the default (``lrisc.codec.POINTS``,
    e.g. ``lrisc_small_perceptual``), the plain ones for any other checkpoint."""
    from lrisc_sim.lrisc.codec import DEFAULT_POINT, POINTS

    others = {path.stem for point, (path, _) in POINTS.items() if point != DEFAULT_POINT}
    if name not in others:
        return README_BEGIN, README_END
    return f"<!-- kodak:begin {name} (written by lrisc_sim.lrisc.evaluate) -->", f"<!-- kodak:end {name} -->"


def update_readme(readme: Path, lines: list[str], name: str | None = None) -> bool:
    """Replace the block between the kodak markers of checkpoint ``name`` in ``readme`` with ``lines``; False when
    it has no such block."""
    if not readme.is_file():
        return False
    text = readme.read_text()
    begin, end = markers(name)
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        return False
    readme.write_text(text[:i + len(begin)] + "\n" + "\n".join(lines) + "\n" + text[j:])
    return True


def evaluate(checkpoint: str | Path, data: str, snrs: list[float] | None = None, cbr: Fraction = Fraction(1, 48),
             steps: int | None = None, out: str | Path = "runs/lrisc/eval", compare: tuple[str, ...] = ("deepjscc",),
             device: str = "cpu", threads: int | None = 1, limit: int | None = None, seed: int = 0,
             update_card: bool = True, redo: tuple[str, ...] = ()) -> dict:
    """Sweep LRISC (and ``compare`` codecs) on ``data``; return the ``kodak`` card section (and write it).
    ``redo``: codecs whose rows in ``out`` are recomputed (after retraining one of them)."""
    from lrisc_sim.engine import SweepConfig
    from lrisc_sim.registry import make_codec
    from lrisc_sim.sweep_run import run_sweep, set_threads

    set_threads(threads)
    snrs = snrs if snrs is not None else [0.0, 5.0, 10.0, 15.0]
    codecs = ["lrisc"]
    notes = {}
    for c in compare:
        try:
            make_codec(c).model_for(cbr) if c == "deepjscc" else make_codec(c)
            codecs.append(c)
        except Exception as e:  # noqa: BLE001 (no checkpoint for the baseline: evaluate LRISC alone, say why)
            notes[c] = f"not evaluated: {e}"
    lopts = {"checkpoint": str(checkpoint)}
    if steps:
        lopts["steps"] = steps
    cfg = SweepConfig(codecs=codecs, snr_db=snrs, cbr=[cbr], dataset=data, limit=limit, seed=seed, device=device,
                      batch_size=1, codec_options={"lrisc": lopts})
    unknown = sorted(set(redo) - {"lrisc", *compare})
    if unknown:
        raise ValueError(f"--redo {','.join(unknown)}: not a codec of this evaluation (lrisc, "
                         f"{', '.join(compare) or 'no comparison'})")
    summary = run_sweep(cfg, out, quiet=True, redo=[c for c in redo if c in codecs])  # compared codecs may be absent
    res: dict = {"dataset": data, "channel": "awgn", "cbr_target": f"{cbr.numerator}/{cbr.denominator}",
                 "snr_db": snrs, "seed": seed, "results_dir": str(out), "threads": threads, "codecs": {},
                 "notes": notes}
    for codec, g in summary.groupby("codec"):
        rows = {}
        for _, r in g.sort_values("snr_db").iterrows():
            rows[f"{r['snr_db']:g}"] = {k: round(float(r[k]), 5) for k in
                                        ("psnr", "psnr_ci95", "ms_ssim", "ms_ssim_ci95", "lpips", "lpips_ci95",
                                         "cbr_payload", "cbr_side", "cbr_total", "seconds") if k in r}
            rows[f"{r['snr_db']:g}"]["n"] = int(r["n"])
        res["codecs"][codec] = rows
    if "deepjscc" in res["codecs"]:
        red = []
        for s, v in res["codecs"]["lrisc"].items():
            d = res["codecs"]["deepjscc"].get(s)
            if d and d["lpips"] > 0:
                red.append(100 * (1 - v["lpips"] / d["lpips"]))
        res["lpips_reduction_vs_deepjscc_pct"] = {"per_snr": [round(r, 2) for r in red],
                                                  "mean": round(sum(red) / len(red), 2) if red else None,
                                                  "paper": PAPER_LPIPS_REDUCTION}
    if update_card:
        card_path = Path(checkpoint).with_suffix(".json")
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        card["kodak"] = res
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        update_readme(card_path.parent / "README.md", kodak_markdown(res), card_path.stem)  # the folder's summary
    return res


def main(argv: list[str] | None = None) -> int:
    from lrisc_sim.lrisc.codec import DEFAULT_CHECKPOINT

    p = argparse.ArgumentParser(prog="python -m lrisc_sim.lrisc.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--data", required=True, help="Kodak folder (or 'kodak' to download)")
    p.add_argument("--snr", default="0,5,10,15", help="comma-separated SNRs in dB")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    p.add_argument("--out", default="runs/lrisc/eval")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-compare", action="store_true", help="LRISC only (no DeepJSCC)")
    p.add_argument("--no-card", action="store_true", help="do not write the result into the model card")
    p.add_argument("--redo", default="", metavar="CODECS",
                   help="comma-separated codecs (lrisc, deepjscc) whose rows in --out are recomputed")
    a = p.parse_args(argv)
    try:
        res = evaluate(a.checkpoint, a.data, [float(s) for s in a.snr.split(",")], steps=a.steps, out=a.out,
                       compare=() if a.no_compare else ("deepjscc",), device=a.device, threads=a.threads,
                       limit=a.limit, update_card=not a.no_card,
                       redo=tuple(c for c in a.redo.split(",") if c))
    except (ValueError, OSError) as e:  # ConfigError (e.g. rows of other weights: --redo), DataError, a bad path
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
