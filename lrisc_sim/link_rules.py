"""The link's rules, checked by the engine (and ``lrisc_sim.send``) for every codec and channel, built-in or plugin.

Rules (ARCHITECTURE.md sections 2.3, 2.4, 3.2, 3.4); the checks only read tensors, they never rescale them:

* **Power.** Each image's transmitted symbols (the first ``length[b]`` of row b) have mean power at most P = 1
  plus ``power_tolerance(n) = max(POWER_RTOL, POWER_SPREAD / sqrt(n))`` (relative) for n symbols (the paper's
  constraint (1/k) sum |s_i|^2 <= P), and the symbols after ``length[b]`` are exactly 0 (they are sent too).
  Less power is allowed: it only harms the codec, and a flat image legitimately sends zeros (uncoded, softcast
  send the deviations from the mean, which the side information carries). ``POWER_RTOL = 1e-3`` covers the float32 rounding of
  normalised analog symbols (measured: at most 2.4e-7 for uncoded, softcast, DeepJSCC, LRISC and the capacity
  codecs); ``POWER_SPREAD / sqrt(n)`` the sample power of n QAM symbols, whose constellation has unit *mean*
  power: the standard deviation of |s|^2 is at most 0.64 for square QAM, so 4 / sqrt(n) is over 6 sigma (measured
  on 64 x 64 crops: 0.04 for 256-QAM at n = 768, a limit of 0.14 there). A codec sending power 1e6 (+60 dB of free
  SNR) or 2 (+3 dB) over hundreds of symbols is refused; an image that sends nothing (``length`` 0, e.g. a lost
  digital image) has no power to check.
* **Budget.** ``length + side uses <= floor(CBR x 3 H W)`` (``Context.budget``), side bits charged by the sweep's
  rule.
* **Channel outputs.** Gains ``B x k`` and finite (checked in ``channels.base``), noise variance and received
  symbols finite, no zero gain under ZF: a fault there is the channel's, and the message says so.
* **Attribution.** With symbols and channel outputs checked, non-finite decoded pixels are the codec's; the
  message mentions a checkpoint only when the codec has weight files.

A codec whose points use less than ``UNDERFILL`` of the budget is noted once per (codec, CBR) by the engine
(``underfilled``): its rows stand at the CBR it used (``cbr_total``), not at the target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from channels.base import ChannelError, ChannelOutput, Received
from lrisc_sim.codec import Context, Encoded, ImageTooSmall
# UNDERFILL: a codec whose images use less than this share of the target CBR is noted as not filling it (the
# summary's ``underfilled`` mark uses the same share)
from lrisc_sim.stats import UNDERFILL

#: Relative tolerance of the mean power of an image's symbols around P = 1 (float rounding of normalised symbols).
POWER_RTOL = 1e-3
#: The tolerance is ``POWER_SPREAD / sqrt(n)`` when larger (sample power of n symbols of a unit-power constellation).
POWER_SPREAD = 4.0


class LinkError(ValueError):
    """A codec that broke the link's rules or failed; the message names the codec, the point and the images."""


class CodecRuleError(LinkError):
    """A codec's ``Encoded`` breaks the power or budget rule (or is malformed)."""


class CodecFailed(LinkError):
    """A codec raised inside ``encode`` or ``run``/``decode``; ``__cause__`` is the original exception."""


def which(ids: Sequence[str], index: Sequence[int] | None = None) -> str:
    """'image a' or 'images a, b and 3 more' (of ``ids``, or of ``ids[i]`` for ``i`` in ``index``)."""
    names = [ids[i] for i in index] if index is not None else list(ids)
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"image{'s' if len(names) != 1 else ''} {shown}"


def point(cbr: float, snr_db: float | None = None, trial: int | None = None) -> str:
    """'CBR 1/16, SNR 10 dB, trial 0' for messages (CBR shown as 1/N when it is one)."""
    from lrisc_sim.grammar import cbr_label

    text = f"CBR {cbr_label(cbr)}"
    if snr_db is not None:
        text += f", SNR {float(snr_db):g} dB"
    if trial is not None:
        text += f", trial {trial}"
    return text


def power_tolerance(n: torch.Tensor) -> torch.Tensor:
    """Allowed relative deviation of the mean power of ``n`` (``B``) symbols from P = 1 (see the module text)."""
    return torch.clamp(POWER_SPREAD / torch.sqrt(n.to(torch.float64).clamp(min=1)), min=POWER_RTOL)


def check_encoded(codec: str, enc: object, ctx: Context, cbr: float, ids: Sequence[str], b: int | None = None,
                  snr_db: float | None = None) -> None:
    """Check an ``Encoded`` of ``len(ids)`` images against the link's rules; one-line :class:`CodecRuleError`
    naming the codec, the image, the measured value and the rule otherwise.

    :input enc: ``symbols`` ``B x k`` complex, ``length`` ``B`` ints in 0..k, ``side_bits`` ``B``.
    :input ctx: the call's ``Context`` (size, side charge and SNR for the budget).
    """
    b = len(ids) if b is None else b
    at = point(cbr, snr_db)
    if not isinstance(enc, Encoded):
        raise CodecRuleError(f"codec '{codec}' returned {type(enc).__name__} at {at}, not a lrisc_sim.codec.Encoded")
    s, length, side = enc.symbols, enc.length, enc.side_bits
    if not isinstance(s, torch.Tensor) or not torch.is_complex(s) or s.dim() != 2 or s.shape[0] != b:
        got = f"{' x '.join(map(str, s.shape))} {s.dtype}" if isinstance(s, torch.Tensor) else type(s).__name__
        raise CodecRuleError(f"codec '{codec}' sent symbols of {got} at {at}, expected a {b} x k complex tensor "
                             "(B images x k channel uses)")
    for name, t in (("length", length), ("side_bits", side)):
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (b,):
            got = " x ".join(map(str, t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__
            raise CodecRuleError(f"codec '{codec}' returned {name} of shape {got} at {at}, expected {b} (one per "
                                 "image)")
    k = s.shape[1]
    n = length.detach().to("cpu", torch.float64)
    bad = ((n < 0) | (n > k) | (n != n.round())).nonzero().flatten().tolist()
    if bad:
        i = bad[0]
        raise CodecRuleError(f"codec '{codec}' gives {which(ids, [i])} a length of {float(n[i]):g} at {at}, outside "
                             f"0..{k} (the symbols' width); length counts the payload channel uses of each image")
    sd = s.detach()
    if not bool(torch.isfinite(sd).all()):
        rows = (~torch.isfinite(sd)).any(dim=1).nonzero().flatten().tolist()
        raise CodecRuleError(f"codec '{codec}' sent non-finite (NaN/inf) symbols for {which(ids, rows)} at {at}; "
                             "the codec, not the channel, is at fault")
    p2 = sd.abs().to(torch.float64) ** 2
    mask = torch.arange(k, device=sd.device)[None, :] < length.to(sd.device)[:, None]
    tail = (p2 * ~mask).sum(dim=1).cpu()
    if bool((tail > 0).any()):
        i = int((tail > 0).nonzero()[0])
        raise CodecRuleError(f"codec '{codec}' sends power {float(tail[i]):.3g} after the {int(n[i])} symbols of "
                             f"{which(ids, [i])} at {at}; the symbols after length[b] must be 0 (they are sent too)")
    power = ((p2 * mask).sum(dim=1).cpu() / n.clamp(min=1))
    tol = power_tolerance(n)
    off = ((n > 0) & (power - 1 > tol)).nonzero().flatten().tolist()
    if off:
        i = off[0]
        raise CodecRuleError(
            f"codec '{codec}' sends {which(ids, [i])} at mean power {float(power[i]):.4g} over its {int(n[i])} "
            f"symbols at {at}, above P = 1 (rule: at most 1 + {float(tol[i]):.3g}, the tolerance max({POWER_RTOL:g}, "
            f"{POWER_SPREAD:g}/sqrt(n))); scale each image's symbols to unit mean power "
            "(channels.power.normalize_power)")
    sd_bits = side.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(sd_bits).all()) or bool((sd_bits < 0).any()):
        i = int((~torch.isfinite(sd_bits) | (sd_bits < 0)).nonzero()[0])
        raise CodecRuleError(f"codec '{codec}' reports {float(sd_bits[i]):g} side bits for {which(ids, [i])} at "
                             f"{at}; side bits must be finite and >= 0")
    uses = n + ctx.side_uses(sd_bits).to(torch.float64).cpu()
    budget = ctx.budget(cbr)
    over = (uses > budget).nonzero().flatten().tolist()
    if over:
        i = over[0]
        h, w = ctx.hw
        raise CodecRuleError(
            f"codec '{codec}' sends {which(ids, [i])} in {int(n[i])} payload + {float(uses[i] - n[i]):.0f} side "
            f"channel uses = {float(uses[i]):.0f} at {at}, over the budget floor(CBR x 3HW) = {budget} for "
            f"{w}x{h} px (rule: payload + side uses <= budget; CBR used {float(uses[i]) / (3 * h * w):.4g})")


def wrap_codec_error(codec: str, stage: str, e: Exception, cbr: float, ids: Sequence[str],
                     snr_db: float | None = None, trial: int | None = None) -> Exception:
    """The exception to raise for ``e`` raised inside a codec's ``stage`` ('encode' or 'decode'): errors of this
    package that already name their input (``ImageTooSmall``, :class:`LinkError`, ``ChannelError``, the project's
    own exception classes) unchanged, anything else a one-line :class:`CodecFailed` naming the codec, the point
    and the images, with the original message."""
    mod = type(e).__module__.split(".")[0]
    if isinstance(e, (ImageTooSmall, LinkError, ChannelError)) or mod in ("lrisc_sim", "baselines", "channels"):
        return e
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return CodecFailed(f"codec '{codec}' failed in {stage} at {point(cbr, snr_db, trial)} ({which(ids)}): "
                       f"{type(e).__name__}{': ' + msg if msg else ''}")


def wrap_channel_error(channel: str, e: Exception, ids: Sequence[str], snr_db: float, trial: int | None = None
                       ) -> Exception:
    """``e`` raised by a channel: a ``ChannelError`` unchanged, anything else a one-line ``ChannelError`` naming
    the channel spec, the point and the images, with the original message."""
    if isinstance(e, ChannelError):
        return e
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    at = f"SNR {float(snr_db):g} dB" + (f", trial {trial}" if trial is not None else "")
    return ChannelError(f"channel '{channel}' failed at {at} ({which(ids)}): {type(e).__name__}"
                        f"{': ' + msg if msg else ''}; the channel, not the codec, is at fault")


def check_channel(channel: str, out: object, rx: Received, symbols: torch.Tensor, equalizer: str,
                  ids: Sequence[str], snr_db: float) -> None:
    """Check what a channel returned for ``symbols`` (``B x k``) and its equalised version: ``h`` and ``y``
    ``B x k`` and finite, ``n0`` ``B`` finite and >= 0, no zero gain under ZF, finite ``s_hat`` and noise
    variance. One-line ``ChannelError`` naming the channel otherwise (only reads the tensors)."""
    b, k = symbols.shape
    at = f"SNR {float(snr_db):g} dB"
    if not isinstance(out, ChannelOutput):
        raise ChannelError(f"channel '{channel}' returned {type(out).__name__}, not a channels.base.ChannelOutput")
    for name, t, shape in (("received symbols y", out.y, (b, k)), ("gains h", out.h, (b, k)),
                           ("noise variance n0", out.n0, (b,))):
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
            got = " x ".join(map(str, t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ChannelError(f"channel '{channel}' returned {name} of shape {got}, expected "
                               f"{' x '.join(map(str, shape))}")
        fin = torch.isfinite(t)
        if not bool(fin.all()):
            rows = (~fin).reshape(b, -1).any(dim=1).nonzero().flatten().tolist()
            raise ChannelError(f"channel '{channel}' produced non-finite (NaN/inf) {name} for {which(ids, rows)} at "
                               f"{at}; the channel, not the codec, is at fault: check its options")
    if bool((out.n0 < 0).any()):
        raise ChannelError(f"channel '{channel}' returned a negative noise variance at {at}")
    if equalizer == "zf" and bool((out.h == 0).any()):
        rows = (out.h == 0).any(dim=1).nonzero().flatten().tolist()
        raise ChannelError(f"channel '{channel}' gave zero gains (h = 0) to {which(ids, rows)} at {at}, which ZF "
                           "cannot invert (s_hat = y / h); use --equalizer mmse, or fix the channel")
    for name, t in (("equalised symbols", rx.s_hat), ("effective noise variance", rx.noise_var)):
        fin = torch.isfinite(t)
        if not bool(fin.all()):
            rows = (~fin).any(dim=1).nonzero().flatten().tolist()
            raise ChannelError(f"channel '{channel}' with {equalizer.upper()} gives non-finite {name} for "
                               f"{which(ids, rows)} at {at} (gains too small to invert?); the channel, not the "
                               "codec, is at fault")


def nonfinite_pixels(codec: str, images: torch.Tensor, ids: Sequence[str], cbr: float, snr_db: float,
                     weight_files: Sequence[object] = ()) -> FloatingPointError | None:
    """The error for NaN/inf in decoded ``images`` (``B x 3 x H x W``), or None when all are finite: the codec's
    fault (symbols and channel outputs were checked finite), naming its checkpoint only when it has one."""
    fin = torch.isfinite(images).reshape(images.shape[0], -1).all(dim=1)
    if bool(fin.all()):
        return None
    rows = (~fin).nonzero().flatten().tolist()
    hint = (f"; check its checkpoint ({', '.join(str(getattr(p, 'name', p)) for p in weight_files)})" if weight_files
            else "; the codec (its options or code) is at fault")
    return FloatingPointError(f"codec '{codec}' produced NaN/inf pixels for {which(ids, rows)} at "
                              f"{point(cbr, snr_db)} from finite channel outputs{hint}")


def used_cbr(enc: Encoded, ctx: Context) -> tuple[float, int]:
    """(mean total CBR over the images that send anything, how many send anything) of an ``Encoded``."""
    n = enc.length.detach().to("cpu", torch.float64)
    sent = n > 0
    if not bool(sent.any()):
        return 0.0, 0
    uses = n + ctx.side_uses(enc.side_bits.detach().to("cpu", torch.float64)).to(torch.float64).cpu()
    h, w = ctx.hw
    return float(uses[sent].mean()) / (3 * h * w), int(sent.sum())


def underfilled(used: float, target: float) -> bool:
    """True when a codec uses less than ``UNDERFILL`` of its target CBR (its rows stand at ``used``)."""
    return math.isfinite(used) and 0 < used < UNDERFILL * float(target)
