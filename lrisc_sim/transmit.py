"""Send one image through a codec at one SNR and save what the receiver shows (Fig. 6 material)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def save_image(x: torch.Tensor, path: str | Path) -> Path:
    """Save ``3 x H x W`` (or ``1 x H x W``) in [0, 1] as an 8-bit PNG."""
    from PIL import Image

    a = (x.detach().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    Image.fromarray(a).save(path)
    return Path(path)


def transmit(image: str, codec: str = "lrisc", snr_db: float = 10.0, cbr: float = 1 / 48, channel: str = "awgn",
             equalizer: str = "mmse", seed: int = 0, checkpoint: str | None = None, out: str | Path = "runs/transmit",
             device: str = "auto", trial: int = 0) -> list[Path]:
    """Encode, transmit, decode one image; write ``output.png`` and, when the codec offers them through
    ``visualize(x, enc, rx) -> {name: 1|3 x h x w in [0,1]}``, its internal maps (e.g. ``latent.png``,
    ``received_latent.png``). Returns the written paths; prints nothing."""
    from channels import make_channel
    from channels.base import equalize
    from channels.realization import Realization
    from lrisc_sim.data import load_image, pad_to_multiple
    from lrisc_sim.engine import resolve_device
    from lrisc_sim.metrics import compute_metrics
    from lrisc_sim.registry import make_codec

    dev = resolve_device(device)
    opts = {"checkpoint": checkpoint} if checkpoint else {}
    c = make_codec(codec, device=str(dev), **opts).to(dev)
    ch = make_channel(channel)
    x0 = load_image(image)[None].to(dev)
    hw = tuple(x0.shape[-2:])
    c.original_hw = hw
    x = pad_to_multiple(x0, c.multiple)
    snr = torch.full((1,), float(snr_db), device=dev)
    name = Path(image).stem
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        enc = c.encode(x, cbr, snr if c.snr_aware_encoder else None)
        rx = equalize(ch(enc.symbols, float(snr_db), Realization(seed, [name], trial, dev)), equalizer)
        dec = c.decode(rx, enc)
        y = dec.images[..., : hw[0], : hw[1]].clamp(0, 1)
        paths = [save_image(y[0], out / "output.png"), save_image(x0[0], out / "source.png")]
        vis = getattr(c, "visualize", None)
        if callable(vis):
            for k, v in vis(x, enc, rx).items():
                paths.append(save_image(v, out / f"{k}.png"))
        m = compute_metrics(x0, y, ("psnr", "ms_ssim", "lpips"))
    lines = [f"codec {c.describe()}", f"channel {ch.describe()} at {snr_db:g} dB", f"cbr_target {cbr:.6g}",
             f"cbr_payload {float(enc.length[0]) / (3 * hw[0] * hw[1]):.6g}", f"ok {bool(dec.ok[0])}"]
    lines += [f"{k} {float(v[0]):.4f}" for k, v in m.items()]
    (out / "metrics.txt").write_text("\n".join(lines) + "\n")
    return paths + [out / "metrics.txt"]
