"""Fig. 6: a visual grid of one image at several SNRs: source, latent feature, received latent, outputs."""

from __future__ import annotations

import csv
from pathlib import Path

import torch


def _gray(m: torch.Tensor) -> torch.Tensor:
    return m.expand(3, -1, -1) if m.shape[0] == 1 else m


def visual_grid(exp, dest: Path) -> Path:
    """Run every codec of a ``kind = "visual"`` experiment on its image at each SNR; write ``grid.png`` (rows:
    source, each codec's internal maps, each codec's output; columns: SNR) and ``metrics.csv``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lrisc_sim.codec import codec_note
    from channels import make_channel
    from lrisc_sim.data import load_dataset
    from lrisc_sim.engine import resolve_device
    from lrisc_sim.metrics import compute_metrics
    from lrisc_sim.registry import make_codec
    from lrisc_sim.transmission import save_image, send

    cfg = exp.sweep
    dev = resolve_device(cfg.device)
    items = {it.id: it for it in load_dataset(cfg.dataset)}
    image_id = exp.visual["image"]
    if image_id not in items:
        raise ValueError(f"{exp.path}: visual.image '{image_id}' is not in dataset {cfg.dataset} "
                         f"(ids like {', '.join(list(items)[:3])})")
    x0 = items[image_id].image[None].to(dev)
    ch = make_channel(cfg.channel)
    cbr = float(cfg.cbr[0])
    rows: dict[str, dict[float, torch.Tensor]] = {"source": {}}
    table = []
    notes = []
    for spec in cfg.codecs:
        codec = make_codec(spec, device=str(dev), **cfg.codec_options.get(spec, {})).to(dev)
        notes.append(codec_note(spec, codec))
        label = exp.labels.get(spec, spec)
        for snr in cfg.snr_db:
            t = send(codec, x0, cbr, snr, ch, [image_id], cfg.seed, 0, cfg.equalizer, cfg.side_charge)
            y, maps = t.output, t.maps
            m = compute_metrics(x0, y, cfg.metrics)
            table.append({"codec": spec, "snr_db": snr, "ok": bool(t.ok[0]),
                          **{k: float(v[0]) for k, v in m.items()}})
            rows["source"][snr] = x0[0]
            for k, v in maps.items():
                rows.setdefault(f"{label}: {k.replace('_', ' ')}", {})[snr] = _gray(v)
            rows.setdefault(f"{label}: output", {})[snr] = y[0]
            save_image(y[0], dest / f"{spec.replace(':', '_').replace('/', '-')}_snr{snr:g}.png")
    with (dest / "metrics.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    snrs = cfg.snr_db
    fig, axes = plt.subplots(len(rows), len(snrs), figsize=(2.6 * len(snrs), 2.0 * len(rows)), squeeze=False)
    for r, (name, cols) in enumerate(rows.items()):
        for c, snr in enumerate(snrs):
            ax = axes[r][c]
            ax.axis("off")
            if snr in cols:
                ax.imshow(cols[snr].detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
            if r == 0:
                ax.set_title(f"SNR {snr:g} dB", fontsize=9)
            if c == 0:
                ax.text(-0.05, 0.5, name, transform=ax.transAxes, ha="right", va="center", fontsize=8)
    (dest / "codecs.txt").write_text("\n".join(notes) + "\n")
    fig.suptitle(f"{exp.title}: {image_id}, CBR {cfg.cbr[0]}, {ch.describe()} (codecs: see codecs.txt)", fontsize=8)
    fig.tight_layout()
    path = dest / "grid.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
