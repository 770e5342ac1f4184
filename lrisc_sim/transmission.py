"""Sending images through a codec at one (SNR, trial) point: the one path outside a sweep.

``send`` takes tensors and returns everything the receiver and the codec show (``Transmission``); ``transmit``
reads one image (a file or a tensor), adds the metrics and, with ``out``, writes the PNGs of ``lrisc-sim
transmit`` and of the Fig. 6 grid. Both run the codec as the engine does (``encode`` then ``run``, on the
realization of (seed, image id, trial)), so a row of a sweep and a ``send`` of the same image agree to the bit.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from channels.base import Channel, Received
from lrisc_sim.codec import Codec, Context, Decoded, Encoded, SideInfoCharge, cbr_report, encoder_needs_snr
from lrisc_sim.sweep_config import ConfigError


@dataclass
class Transmission:
    """One batch through a codec at one point.

    source, output : ``B x 3 x H x W`` in [0, 1] at the original size (output cropped and clamped).
    ok : ``B`` bool (False: the image was lost and the codec's fallback is shown).
    cbr : ``cbr_payload``, ``cbr_side``, ``cbr_total`` per image (``B`` float64), side information charged.
    maps : the codec's internal maps of the first image (``visualize``, e.g. LRISC's ``latent``,
        ``received_latent`` and ``rate_map``, each ``3 x H x W``); empty for codecs without them.
    metrics : ``B`` per metric (``transmit`` fills them; ``send`` leaves them empty).
    paths : the files ``transmit(..., out=...)`` wrote.
    decoded, encoded, received, context : what the codec returned (``encoded``: the one reported, e.g. the
        winning MCS of an envelope), the last ``Received`` it was given, and the call's ``Context``.
    """

    source: torch.Tensor
    output: torch.Tensor
    ok: torch.Tensor
    cbr: dict[str, torch.Tensor]
    decoded: Decoded
    encoded: Encoded
    received: Received | None
    context: Context
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    paths: list[Path] = field(default_factory=list)


def _codec(codec: Codec | str, device: torch.device, checkpoint: str | None = None) -> Codec:
    if isinstance(codec, Codec):
        if checkpoint:
            raise ValueError("checkpoint is for a codec given by name; load the codec with it instead")
        return codec.to(device)
    if not isinstance(codec, str):
        raise ConfigError("codec", type(codec).__name__, "must be a codec spec string (e.g. 'uncoded', see "
                                                         "'lrisc-sim codecs') or a lrisc_sim.Codec, got "
                                                         f"{type(codec).__name__}")
    from lrisc_sim.registry import make_codec

    return make_codec(codec, device=str(device), **({"checkpoint": checkpoint} if checkpoint else {})).to(device)


def _channel(channel: Channel | str) -> Channel:
    if isinstance(channel, Channel):
        return channel
    if not isinstance(channel, str):
        raise ConfigError("channel", type(channel).__name__, "must be a channel spec string (e.g. 'awgn', see "
                                                             "'lrisc-sim channels') or a lrisc_sim.Channel, got "
                                                             f"{type(channel).__name__}")
    from channels.registry import make_channel

    return make_channel(channel)


def check_images(x, name: str = "x") -> torch.Tensor:
    """``x`` as a ``B x 3 x H x W`` batch (a ``3 x H x W`` image gets B = 1), checked: a torch float tensor with at
    least one pixel and every value in [0, 1]. Anything else is a one-line ``ConfigError`` naming ``name`` and
    the fix (a numpy array or list, a uint8 or 0..255 image, NaN values, an empty batch)."""
    rule = "must be a torch tensor B x 3 x H x W in [0, 1]"
    if not isinstance(x, torch.Tensor):
        hint = ("; convert it with torch.from_numpy(a) (an H x W x 3 array: .permute(2, 0, 1))"
                if type(x).__name__ == "ndarray" else "")
        raise ConfigError(name, type(x).__name__, f"{rule}, got {type(x).__name__}{hint}")
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[1] != 3:
        raise ConfigError(name, tuple(x.shape), f"images must be B x 3 x H x W (or 3 x H x W) in [0, 1], got "
                                                f"shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ConfigError(name, tuple(x.shape), f"holds no pixels (shape {tuple(x.shape)}); give at least one "
                                                "image B x 3 x H x W")
    if not x.is_floating_point():
        raise ConfigError(name, x.dtype, f"is a {x.dtype} tensor; {rule} (for 0..255 images: x.float() / 255)")
    if not torch.isfinite(x).all():
        raise ConfigError(name, x.dtype, f"has NaN or infinite values; {rule}")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        fix = "divide 0..255 images by 255" if lo >= 0 and hi <= 255 else "scale the images to [0, 1]"
        raise ConfigError(name, (lo, hi), f"has values in [{lo:.4g}, {hi:.4g}], outside [0, 1]; {fix}")
    return x


def _cbr(cbr) -> float:
    """One CBR: a number or a one-value string of the CLI grammar (``"1/16"``), in (0, 1] as the sweep requires."""
    from lrisc_sim.grammar import GridError, parse_cbr

    if isinstance(cbr, str):
        try:
            vals = parse_cbr(cbr)
        except GridError as e:
            raise ConfigError("cbr", cbr, str(e)) from None
        if len(vals) != 1:
            raise ConfigError("cbr", cbr, f"give one CBR, got {len(vals)}", show_value=True)
        return float(vals[0])
    if isinstance(cbr, bool) or not isinstance(cbr, numbers.Real) or not math.isfinite(float(cbr)) \
            or not 0 < float(cbr) <= 1:
        raise ConfigError("cbr", cbr, f"bad value {cbr!r}; CBR values must lie in (0, 1], e.g. 1/48")
    return float(cbr)


def _snr(snr_db) -> float:
    """One SNR in dB: a finite number within -100..100 (as the sweep requires)."""
    if isinstance(snr_db, bool) or not isinstance(snr_db, numbers.Real) or not math.isfinite(float(snr_db)) \
            or abs(float(snr_db)) > 100:
        raise ConfigError("snr_db", snr_db, f"bad value {snr_db!r}; SNR values must be finite, within -100..100 dB")
    return float(snr_db)


def _ids(ids, b: int) -> list[str]:
    """One id per image, strings, no repeats (an id seeds its image's channel realization)."""
    ids = list(ids) if ids is not None else [f"image{i}" for i in range(b)]
    if len(ids) != b:
        raise ValueError(f"{len(ids)} image ids for a batch of {b} images; give one id per image")
    if not all(isinstance(i, str) and i for i in ids):
        raise ConfigError("ids", ids, "must be non-empty strings, one per image")
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError("ids", dup, "repeat: give each image its own id (an id seeds the image's channel "
                                      "realization, so equal ids get identical noise)", show_value=True)
    return ids


def send(codec: Codec | str, x: torch.Tensor, cbr: float, snr_db: float, channel: Channel | str = "awgn",
         ids: list[str] | None = None, seed: int = 0, trial: int = 0, equalizer: str = "mmse",
         side_charge: SideInfoCharge | str = "fixed", csi: str = "perfect", design_snr: float | str | None = None,
         constellation: str = "none") -> Transmission:
    """Send a batch ``x`` (``B x 3 x H x W`` or ``3 x H x W`` in [0, 1], any size: padded to the codec's
    ``multiple`` and cropped back) at ``snr_db`` over ``channel`` with the realization of (``seed``, ``ids``,
    ``trial``) (``ids`` default ``image0``, ``image1``, ...: give the sweep's image ids to reproduce its rows).
    ``csi``, ``design_snr``, ``constellation``: one link variant (``lrisc_sim.link``; ``design_snr`` is what the
    encoder is told, None or ``"channel"``: ``snr_db``).

    >>> t = send("uncoded", torch.full((1, 3, 16, 16), 0.5), cbr=1 / 2, snr_db=20.0)
    >>> tuple(t.output.shape), bool(t.ok[0])
    ((1, 3, 16, 16), True)
    """
    from channels.base import channel_label
    from channels.realization import Realization
    from lrisc_sim.data import pad_to_multiple
    from lrisc_sim.engine import codec_errors, encode_batch, send_checked
    from lrisc_sim.link import LinkPath
    from lrisc_sim.link_rules import check_encoded

    x = check_images(x)
    cbr, snr_db = _cbr(cbr), _snr(snr_db)
    ids = _ids(ids, x.shape[0])
    if equalizer not in ("mmse", "zf"):
        raise ConfigError("equalizer", equalizer, f"unknown equaliser {equalizer!r}: use mmse or zf")
    real = Realization(seed, ids, trial, x.device)  # checks the seed (0..2^32-1) before any codec is built
    c = _codec(codec, x.device)
    ch = _channel(channel)
    variant = _variant(csi, design_snr, constellation, ch)
    told = variant.told(float(snr_db))
    path = LinkPath(variant, ch)
    charge = side_charge if isinstance(side_charge, SideInfoCharge) else SideInfoCharge.parse(side_charge)
    hw = (int(x.shape[-2]), int(x.shape[-1]))
    b = x.shape[0]
    xp = pad_to_multiple(x, c.multiple)
    snr = torch.full((b,), told, device=x.device)
    ctx = Context(hw, charge, snr if encoder_needs_snr(c, charge) else None)
    last: list[Received] = []

    def transmit(enc: Encoded) -> Received:  # the engine's checks of the channel (link_rules)
        last[:] = [send_checked(ch, channel_label(ch), enc, float(snr_db), real, equalizer, ids, trial, path)[0]]
        return last[0]

    name = codec if isinstance(codec, str) else c.name
    snr_named = told if ctx.snr_db is not None else None
    with torch.no_grad():
        enc = encode_batch(c, xp, float(cbr), ctx, ids, name, snr_named)  # power and budget checked there
        with codec_errors(name, "decode", float(cbr), ids, float(snr_db), trial):
            dec, used = c.run(enc, transmit, ctx)
            if used is not enc:
                check_encoded(name, used, ctx, float(cbr), ids, snr_db=told)
        vis = getattr(c, "visualize", None)
        maps = vis(xp, used, last[0], ctx) if callable(vis) and last else {}
    y = dec.images[..., : hw[0], : hw[1]].clamp(0, 1)
    return Transmission(source=x, output=y, ok=dec.ok, cbr=cbr_report(used, hw, charge, snr), decoded=dec,
                        encoded=used, received=last[0] if last else None, context=ctx, maps=maps)


def _variant(csi: str, design_snr, constellation: str, channel: Channel):
    """The ``LinkVariant`` of ``send``'s link arguments, each checked (``sweep_config.link_value``: a one-line
    ``ConfigError`` naming it)."""
    from lrisc_sim.link import LinkVariant
    from lrisc_sim.sweep_config import link_value

    return LinkVariant(link_value("csi", csi, channel), link_value("design_snr", design_snr, channel),
                       link_value("constellation", constellation, channel))


def save_image(x: torch.Tensor, path: str | Path) -> Path:
    """Save ``3 x H x W`` (or ``1 x H x W``) in [0, 1] as an 8-bit PNG."""
    from PIL import Image

    a = (x.detach().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    Image.fromarray(a).save(path)
    return Path(path)


def transmit(image: str | Path | torch.Tensor, codec: Codec | str = "lrisc", snr_db: float = 10.0,
             cbr: float = 1 / 48, channel: Channel | str = "awgn", equalizer: str = "mmse", seed: int = 0,
             checkpoint: str | None = None, out: str | Path | None = None, device: str = "auto", trial: int = 0,
             image_id: str | None = None, metrics: tuple[str, ...] = ("psnr", "ms_ssim", "lpips"),
             side_charge: SideInfoCharge | str = "fixed", csi: str = "perfect",
             design_snr: float | str | None = None, constellation: str = "none") -> Transmission:
    """Send one image (a file, or ``3 x H x W`` in [0, 1]) and measure it; the realization is that of the
    image id (the file's stem, or ``image_id``) as in a sweep. With ``out``, write ``output.png``,
    ``source.png``, the codec's maps (``latent.png``, ... for LRISC) and ``metrics.txt`` there (listed in
    ``Transmission.paths``). ``csi``, ``design_snr``, ``constellation``: the link variant, as in ``send``."""
    from lrisc_sim.codec import ImageTooSmall
    from lrisc_sim.data import load_image
    from lrisc_sim.engine import output_dir, resolve_device
    from channels.realization import check_seed
    from lrisc_sim.metrics import compute_metrics

    check_seed(seed)  # before any image or codec is loaded
    dev = resolve_device(device)
    if isinstance(image, torch.Tensor):
        x0, name = check_images(image, "image"), image_id or "image0"
        if x0.shape[0] != 1:
            raise ConfigError("image", tuple(image.shape), "transmit sends one image (3 x H x W); use send for a "
                                                           "batch")
    elif isinstance(image, (str, os.PathLike)):
        x0, name = load_image(image)[None], image_id or Path(image).stem
    else:
        raise ConfigError("image", type(image).__name__, "must be an image file path or a torch tensor 3 x H x W in "
                                                         f"[0, 1], got {type(image).__name__}"
                                                         + ("; convert it with torch.from_numpy(a)"
                                                            if type(image).__name__ == "ndarray" else ""))
    x0 = x0.to(dev)
    c = _codec(codec, dev, checkpoint)
    ch = _channel(channel)
    t = send(c, x0, cbr, snr_db, ch, [name], seed, trial, equalizer, side_charge, csi, design_snr, constellation)
    try:
        t.metrics = {k: v.detach().cpu() for k, v in compute_metrics(x0, t.output, metrics).items()}
    except ImageTooSmall as e:
        raise ImageTooSmall(f"{image if not isinstance(image, torch.Tensor) else name} "
                            f"({x0.shape[-1]}x{x0.shape[-2]} px): {e}") from None
    if out is not None:
        d = output_dir(out)
        paths = [save_image(t.output[0], d / "output.png"), save_image(x0[0], d / "source.png")]
        paths += [save_image(v, d / f"{k}.png") for k, v in t.maps.items()]
        lines = [f"codec {c.describe()}", f"channel {ch.describe()} at {snr_db:g} dB", f"cbr_target {cbr:.6g}",
                 f"cbr_total {float(t.cbr['cbr_total'][0]):.6g}", f"ok {bool(t.ok[0])}"]
        lines += [f"{k} {float(v[0]):.4f}" for k, v in t.metrics.items()]
        (d / "metrics.txt").write_text("\n".join(lines) + "\n")
        t.paths = paths + [d / "metrics.txt"]
    return t
