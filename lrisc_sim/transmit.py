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


def send_one(codec, channel, x0: torch.Tensor, image_id: str, snr_db: float, cbr: float, seed: int = 0,
             equalizer: str = "mmse", trial: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor], object]:
    """Encode, transmit and decode one image ``1 x 3 x H x W`` on the realization (seed, image_id, trial).

    Returns the output ``1 x 3 x H x W``, the codec's internal maps (``visualize(x, enc, rx)`` when it has one,
    e.g. the latent and the received latent of LRISC) and the ``Decoded``.
    """
    from channels.base import equalize
    from channels.realization import Realization
    from lrisc_sim.data import pad_to_multiple
    from lrisc_sim.engine import encode_all, decode_all

    dev = x0.device
    hw = tuple(x0.shape[-2:])
    codec.original_hw = hw
    x = pad_to_multiple(x0, codec.multiple)
    snr = torch.full((1,), float(snr_db), device=dev)
    real = Realization(seed, [image_id], trial, dev)
    last: dict = {}

    def transmit(enc):
        last["rx"] = equalize(channel(enc.symbols, float(snr_db), real), equalizer)
        return last["rx"]

    with torch.no_grad():
        encs = encode_all(codec, x, cbr, snr if codec.snr_aware_encoder else None, [image_id])
        dec, enc = decode_all(codec, x, encs, transmit)
        vis = getattr(codec, "visualize", None)
        maps = vis(x, enc, last["rx"]) if callable(vis) else {}
    return dec.images[..., : hw[0], : hw[1]].clamp(0, 1), maps, dec


def transmit(image: str, codec: str = "lrisc", snr_db: float = 10.0, cbr: float = 1 / 48, channel: str = "awgn",
             equalizer: str = "mmse", seed: int = 0, checkpoint: str | None = None, out: str | Path = "runs/transmit",
             device: str = "auto", trial: int = 0) -> list[Path]:
    """Send one image file and write ``output.png``, ``source.png``, the codec's internal maps (e.g.
    ``latent.png``, ``received_latent.png`` for LRISC) and ``metrics.txt``; return the written paths."""
    from channels import make_channel
    from lrisc_sim.codec import ImageTooSmall
    from lrisc_sim.data import load_image
    from lrisc_sim.engine import output_dir, resolve_device
    from lrisc_sim.metrics import compute_metrics
    from lrisc_sim.registry import make_codec

    dev = resolve_device(device)
    opts = {"checkpoint": checkpoint} if checkpoint else {}
    c = make_codec(codec, device=str(dev), **opts).to(dev)
    ch = make_channel(channel)
    x0 = load_image(image)[None].to(dev)
    y, maps, dec = send_one(c, ch, x0, Path(image).stem, snr_db, cbr, seed, equalizer, trial)
    out = output_dir(out)
    paths = [save_image(y[0], out / "output.png"), save_image(x0[0], out / "source.png")]
    paths += [save_image(v, out / f"{k}.png") for k, v in maps.items()]
    try:
        m = compute_metrics(x0, y, ("psnr", "ms_ssim", "lpips"))
    except ImageTooSmall as e:
        raise ImageTooSmall(f"{image} ({x0.shape[-1]}x{x0.shape[-2]} px): {e}") from None
    lines = [f"codec {c.describe()}", f"channel {ch.describe()} at {snr_db:g} dB", f"cbr_target {cbr:.6g}",
             f"ok {bool(dec.ok[0])}"] + [f"{k} {float(v[0]):.4f}" for k, v in m.items()]
    (out / "metrics.txt").write_text("\n".join(lines) + "\n")
    return paths + [out / "metrics.txt"]
