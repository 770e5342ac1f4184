"""DeepJSCC checkpoints on Kodak and the summary of a folder of them (``lrisc_sim/checkpoints/deepjscc/README.md``).

    python -m baselines.deepjscc_eval FOLDER [--kodak DIR] [--snr 10] [--force]

:func:`evaluate` measures one checkpoint on every image of a folder through the codec interface (AWGN at 10 dB,
common random numbers: seed 0, trial 0, ids = file stems, outputs rounded to uint8), as a sweep would;
:func:`add_kodak` writes that result into the checkpoint's model card (``"kodak"``); :func:`write_summary`
writes ``FOLDER/README.md`` from the model cards ``deepjscc_*.json`` there: one row per checkpoint, how each was
trained, and the validation PSNR against CPU-hours. It reads the cards of ``lrisc-sim train RECIPE.toml``
(``lrisc_sim.trainer``) and those written by the trainer it replaced (the shipped 1/16 ... 1/64 AWGN models), so
their historical numbers stay as they were.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

# Paper-scale DeepJSCC on Kodak at 10 dB AWGN (ARCHITECTURE.md section 5.2): CBR -> PSNR (dB)
REFERENCE_KODAK_10DB = {"1/48": 27.4, "1/24": 30.0}


def evaluate(checkpoint: str | Path, folder: str | Path, snr_db: float = 10.0, seed: int = 0,
             device: str = "cpu", channel: str = "awgn") -> dict:
    """PSNR of a checkpoint on every image of ``folder`` through the codec interface at ``snr_db`` over
    ``channel`` (MMSE equaliser).

    Common random numbers: seed ``seed``, trial 0, image ids = file stems. Returns mean, 95% CI half-width and
    per-image PSNR (outputs rounded to uint8 levels).
    """
    import torch

    from baselines.deepjscc import DeepJSCCCodec
    from channels import make_channel
    from lrisc_sim.data import image_paths, load_image
    from lrisc_sim.grammar import cbr_fraction
    from lrisc_sim.metrics import psnr
    from lrisc_sim.results import ci95
    from lrisc_sim.transmission import send

    codec = DeepJSCCCodec(checkpoint=str(checkpoint), dirs=[], device=device)
    cbr = cbr_fraction(codec.models[next(iter(codec.models))].cfg.cbr)
    ch = make_channel(channel)
    per, cbrs = {}, []
    with torch.no_grad():
        for p in image_paths(folder):
            x = load_image(p)[None]
            t = send(codec, x.to(device), float(cbr), snr_db, ch, [p.stem], seed=seed, trial=0)
            per[p.stem] = round(float(psnr(x, t.output.cpu())[0]), 4)
            cbrs.append(float(t.cbr["cbr_payload"][0]))
    v = np.array(list(per.values()))
    ci = ci95(v) if len(v) > 1 else float("nan")  # Student t, as every results table
    return {"dataset": str(folder), "channel": channel, "snr_db": snr_db, "seed": seed, "n_images": len(v),
            "cbr_used": sorted(set(round(c, 8) for c in cbrs)), "psnr_mean": round(float(v.mean()), 4),
            "psnr_ci95": round(float(ci), 4), "per_image": per}


def add_kodak(checkpoint: str | Path, folder: str | Path, snr_db: float = 10.0, device: str = "cpu") -> dict:
    """Evaluate ``checkpoint`` on ``folder`` (:func:`evaluate`) and store it as the ``kodak`` field of its card."""
    from lrisc_sim.train_state import read_card

    card_path = Path(checkpoint).with_suffix(".json")
    card = read_card(card_path, "write the model card again (lrisc-sim train RECIPE.toml) or restore it")
    card["kodak"] = evaluate(checkpoint, folder, snr_db, device=device)
    ref = REFERENCE_KODAK_10DB.get(str(card.get("cbr")))
    if ref is not None and snr_db == 10.0:
        card["kodak"]["paper_scale_reference_psnr"] = ref
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card["kodak"]


# ---------------------------------------------------------------- the summary

def card_view(card: dict) -> dict[str, Any]:
    """The fields the summary shows, from a card of ``lrisc_sim.trainer`` (``stage``, ``config``) or of the
    earlier DeepJSCC trainer (``architecture`` with ``downsampling``, ``optimizer``, ``training_snr_db``)."""
    from baselines.deepjscc import DeepJSCCConfig
    from lrisc_sim.train_state import card_cpu_hours

    if "stage" in card and "config" in card:  # lrisc-sim train RECIPE.toml
        st, cfg = card["stage"], DeepJSCCConfig(**card["config"])
        ws = card.get("warm_start") or {}
        hist = [{"step": h["step"], "cpu_hours": h.get("cpu_hours", 0.0) + float(ws.get("cpu_hours", 0.0)),
                 "val_psnr": h.get("val", {}).get("psnr")} for h in card.get("history", [])]
        return {"cbr": cfg.cbr, "d": cfg.factor, "c": cfg.channels, "filters": f"{cfg.first_width}/{cfg.width}",
                "parameters": card.get("parameters", 0), "snr": st["snr"], "channel": st["channel"],
                "steps": card["steps"], "crop": st["crop"], "batch": st["batch"],
                "cpu_hours": card_cpu_hours(card) + float(ws.get("cpu_hours", 0.0)),
                "val_psnr": card.get("validation", {}).get("psnr"), "status": card.get("status", "final"),
                "init": ws.get("path"), "lr": st["lr"], "lr_final": st["lr_final"] if st["lr_final"] is not None
                else st["lr"] / 10, "warmup": st["warmup"], "ema": st["ema"], "schedule": [],
                "recipe": card.get("recipe"), "history": hist, "kodak": card.get("kodak", {})}
    a, o, d = card["architecture"], card["optimizer"], card["data"]
    snr = card["training_snr_db"]
    hist = [{"step": h["step"], "cpu_hours": h.get("cpu_hours", h["seconds"] * int(card.get("threads") or 1) / 3600),
             "val_psnr": h["val_psnr"], **({"kodak_psnr": h["kodak_psnr"]} if "kodak_psnr" in h else {})}
            for h in card["validation"]["history"]]
    return {"cbr": card["cbr"], "d": a["downsampling"], "c": a["latent_channels"],
            "filters": f"{a['first_width']}/{a['width']}", "parameters": a["parameters"],
            "snr": f"{snr[0]:g}:{snr[1]:g}" if isinstance(snr, list) else f"{snr:g}", "channel": "awgn",
            "steps": card["steps"], "crop": d["crop"], "batch": d["batch_size"], "cpu_hours": card_cpu_hours(card),
            "val_psnr": card["validation"]["psnr"], "status": card.get("status", "final"),
            "init": card.get("warm_start"), "lr": o["lr"], "lr_final": o["lr_final"], "warmup": o.get("warmup", 0),
            "ema": card.get("ema_decay"), "schedule": o.get("schedule_steps") or [], "recipe": None,
            "history": hist, "kodak": card.get("kodak", {})}


def _recipe_row(v: dict, stem: str, cbr_of: dict[str, str]) -> str:
    """One row of the summary's training table; ``cbr_of``: checkpoint stem -> CBR of the summary's cards
    (names a warm start from another CBR)."""
    start = "random initialisation"
    if v["init"]:
        other = Path(v["init"]).stem
        note = (" (its earlier version)" if other == stem else
                f" (the trained {cbr_of[other]}, every tensor)" if cbr_of.get(other) == v["cbr"] else
                f" (the trained {cbr_of[other]}, c-channel layers by overlap)" if other in cbr_of else "")
        start = f"`{Path(v['init']).name}`{note}"
    sched = v["schedule"]
    steps = str(v["steps"]) + ("" if len(sched) < 2 else " (cosine over " + ", then ".join(
        f"{n} from step {s}" for s, n in sched) + ")")
    recipe = f"`{v['recipe']}`" if v["recipe"] else "-"
    return (f"| {v['cbr']} | {v['channel']} | {steps} | {v['batch']} x {v['crop']}^2 | {v['lr']:g} -> "
            f"{v['lr_final']:g} (warm-up {v['warmup']}) | {v['ema'] or 'none'} | {start} | {recipe} |")


def _order_line(finals: list[tuple[float, str, float]]) -> list[str]:
    """Whether the final Kodak PSNR at 10 dB rises strictly with the CBR (``finals``: sorted (CBR, label, PSNR))."""
    if len(finals) < 2:
        return []
    rising = all(a[2] < b[2] for a, b in zip(finals, finals[1:]))
    chain = " < ".join(f"{v:.2f} ({c})" for _, c, v in finals) if rising else \
        ", ".join(f"{c}: {v:.2f}" for _, c, v in finals)
    return [f"Kodak PSNR at 10 dB {'rises strictly' if rising else 'does NOT rise strictly'} with the CBR "
            f"over the finished AWGN models: {chain} dB."]


HEAD = """# DeepJSCC checkpoints

Trained by `lrisc-sim train recipes/NAME.toml` (the recipe of each is in `recipes/`; the commit, CPU and full
validation history are in each `.json` model card). Kodak: the 24 images at 10 dB AWGN, common random numbers
(seed 0, trial 0, ids = file stems), PSNR on outputs rounded to uint8, mean +/- 95% CI over images (Student t,
as in results/). Validation: centre 512x512 crops of the 4 held-out training images at the training SNR (EMA
weights where the card has an EMA decay > 0). The paper-scale column is DeepJSCC trained at full scale
(ARCHITECTURE.md section 5.2); CPU-hours count every warm-start checkpoint behind a model.

Architecture (`baselines/deepjscc.py`): encoder = 5x5 convolutions with PReLU, no batch norm, `levels`
of them with stride 2 (d = 2^levels), then `extra` stride-1 ones, then a 5x5 convolution to c channels
(+ PReLU), 5 layers in all as in the original (d = 4 where c = 96 CBR is an even integer >= 4, else d = 8:
`default_levels`); the c H W / d^2 reals are paired into complex symbols (complex channel), normalised to
unit power per image; decoder = the mirrored transposed convolutions ending in a sigmoid. CBR = c / (6 d^2),
exact for H, W multiples of d; other sizes are padded by the engine and the encoder sends only the first
floor(CBR 3 H W) symbols (latent positions inside the image first), so the CBR stays exact.

| CBR | d | c | filters | parameters | training channel | train SNR (dB) | steps | crop | CPU-hours | val PSNR \
| Kodak PSNR @10 dB | paper-scale | status | warm start |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"""

HOW = """## How each was trained

Adam; the learning rate warms up linearly over the steps given and then follows a cosine to its final
value; with an EMA decay, the exported and evaluated weights are the EMA of the training weights. A
warm start loads the tensors of that checkpoint that fit (with the overlap of the c-channel layers when
only c differs, the decoder's extra inputs at zero); its CPU-hours are counted in the table above. The
pilots that chose these starts and crops are in the repository's `training/README.md`.

| CBR | channel | steps | batch x crop | learning rate | EMA | starts from | recipe |
|---|---|---|---|---|---|---|---|"""


def write_summary(folder: str | Path) -> Path:
    """Write ``folder/README.md`` from the model cards (``deepjscc_*.json``) in ``folder``: one row per
    checkpoint, how each was trained, and the validation PSNR per CPU-hour of each."""
    from lrisc_sim.grammar import cbr_fraction
    from lrisc_sim.results import ci95

    folder = Path(folder)
    rows, curves, recipes, finals = [], [], [], []
    views = {p.stem: card_view(json.loads(p.read_text())) for p in sorted(folder.glob("deepjscc_*.json"))}
    cbr_of = {stem: v["cbr"] for stem, v in views.items()}
    for stem, v in views.items():
        k = v["kodak"]
        f = float(cbr_fraction(v["cbr"]))
        key = (f, v["channel"] != "awgn", stem)
        ref = REFERENCE_KODAK_10DB.get(v["cbr"]) if v["channel"] == "awgn" else None
        seen = [h for h in v["history"] if "kodak_psnr" in h]
        ci = ci95(np.array(list(k["per_image"].values()))) if k.get("per_image") else k.get("psnr_ci95", 0.0)
        kodak = (f"{k['psnr_mean']:.2f} +/- {ci:.2f}" if k else
                 f"{seen[-1]['kodak_psnr']:.2f} (step {seen[-1]['step']})" if seen else "-")
        val = f"{v['val_psnr']:.2f}" if v["val_psnr"] is not None else "-"
        rows.append((key, f"| {v['cbr']} | {v['d']} | {v['c']} | {v['filters']} | {v['parameters']:,} | "
                          f"{v['channel']} | {v['snr']} | {v['steps']} | {v['crop']} | {v['cpu_hours']:.2f} | {val} | "
                          f"{kodak} | {ref if ref else '-'} | {v['status']} | "
                          f"{'`' + Path(v['init']).name + '`' if v['init'] else '-'} |"))
        recipes.append((key, _recipe_row(v, stem, cbr_of)))
        if k and v["channel"] == "awgn" and v["snr"] == "10":
            finals.append((f, v["cbr"], k["psnr_mean"]))
        hist = v["history"]
        if hist:
            pts = hist if len(hist) <= 12 else [hist[round(i * (len(hist) - 1) / 11)] for i in range(12)]
            curves.append((key, f"| {v['cbr']} | {v['channel']} | " + ", ".join(
                f"{h['cpu_hours']:.2f} h: {h['val_psnr']:.2f}"
                + (f" (Kodak {h['kodak_psnr']:.2f})" if "kodak_psnr" in h else "")
                for h in pts if h["val_psnr"] is not None) + " |"))
    tail = [""] + _order_line(sorted(finals)) + ["", HOW] + [r for _, r in sorted(recipes)]
    tail += ["", "## Validation PSNR (dB) against CPU-hours", "",
             "| CBR | channel | CPU-hours: val PSNR |", "|---|---|---|"] + [r for _, r in sorted(curves)]
    out = folder / "README.md"
    out.write_text("\n".join([HEAD] + [r for _, r in sorted(rows)] + tail) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m baselines.deepjscc_eval", description=__doc__.splitlines()[0])
    p.add_argument("folder", help="a folder of DeepJSCC checkpoints and their cards (deepjscc_*.safetensors/.json)")
    p.add_argument("--kodak", default=None, metavar="DIR",
                   help="evaluate every checkpoint whose card has no Kodak result on this folder first")
    p.add_argument("--snr", type=float, default=10.0, help="SNR of that evaluation, dB AWGN (default 10)")
    p.add_argument("--force", action="store_true", help="with --kodak: evaluate the cards that have one too")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    folder = Path(a.folder)
    if not folder.is_dir():
        print(f"error: {folder} is not a folder of DeepJSCC checkpoints", file=sys.stderr)
        return 2
    if a.kodak:
        if not Path(a.kodak).is_dir():
            print(f"error: --kodak {a.kodak}: no such folder", file=sys.stderr)
            return 2
        for ckpt in sorted(folder.glob("deepjscc_*.safetensors")):
            card = ckpt.with_suffix(".json")
            if card.is_file() and (a.force or "kodak" not in json.loads(card.read_text())):
                k = add_kodak(ckpt, a.kodak, a.snr, a.device)
                print(f"{ckpt.name}: Kodak {k['psnr_mean']:.2f} +/- {k['psnr_ci95']:.2f} dB")
    print(write_summary(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
