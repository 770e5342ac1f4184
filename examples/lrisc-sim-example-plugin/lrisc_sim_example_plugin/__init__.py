"""An example lrisc-sim plugin: the ``pixel-repeat`` codec and the ``phase-noise`` channel.

Both follow the contracts of lrisc-sim (``lrisc_sim.Codec``, ``lrisc_sim.Channel``) and are registered in this
package's ``pyproject.toml`` under the entry point groups ``lrisc_sim.codecs`` and ``lrisc_sim.channels``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lrisc_sim import Channel, Codec, Context, Decoded, Encoded, Realization, Received
from lrisc_sim.codec import Option
from lrisc_sim.plugins import codec_factory

__all__ = ["PhaseNoise", "PixelRepeat", "make_pixel_repeat"]


class PixelRepeat(Codec):
    """Analog pixels at a reduced size: ``B x 3 x H x W`` -> area-downsampled to the largest ``h x w`` (aspect kept,
    sides multiples of ``step``) whose 3 h w centred pixels fit in 2 k reals, k = ``ctx.budget(cbr)`` minus the
    side uses of the 3 means (16 bits each) -> unit-power complex symbols; the receiver scales them back
    (LLSE with the image's pixel variance) and upsamples bilinearly. No side information but the means."""

    name = "pixel-repeat"
    SIDE_BITS = 48
    # the options, declared once: lrisc-sim checks them before building the codec and lists them with
    # `lrisc-sim codecs --options pixel-repeat`
    options = (Option("step", "int", 2, "the downsampled sides are multiples of this", low=1, high=64),)
    spec_arg = "the step (pixel-repeat:4 = pixel-repeat:step=4)"

    def __init__(self, step: int = 2):
        self.step = int(step)

    def describe(self) -> str:
        return f"pixel-repeat (example plugin): area-downsampled pixels, sides multiples of {self.step}, LLSE"

    def _size(self, h: int, w: int, reals: int) -> tuple[int, int]:
        s = math.sqrt(reals / (3 * h * w))
        hh = max(1, min(h, math.floor(h * s / self.step) * self.step or 1))
        ww = max(1, min(w, reals // (3 * hh)))
        return hh, ww

    def encode(self, x: torch.Tensor, cbr: float, ctx: Context | None = None) -> Encoded:
        ctx = ctx or Context.of(x)
        b = x.shape[0]
        side = ctx.side_uses(torch.full((b,), float(self.SIDE_BITS)))
        k = int(ctx.budget(cbr) - int(side.max()))
        if k < 2:
            raise ValueError(f"CBR {cbr:.4g} leaves {k} channel uses for pixel-repeat; use a larger CBR")
        hh, ww = self._size(*ctx.hw, 2 * k)
        xs = F.interpolate(x[..., : ctx.hw[0], : ctx.hw[1]].float(), size=(hh, ww), mode="area")
        mean = xs.mean(dim=(2, 3), keepdim=True)
        v = (xs - mean).flatten(1)
        v = torch.cat([v, v.new_zeros(b, v.shape[1] % 2)], 1)
        scale = torch.sqrt(v.shape[1] / 2 / v.pow(2).sum(1).clamp(min=1e-12))  # unit mean power per symbol
        s = torch.complex(*(v * scale[:, None]).reshape(b, -1, 2).unbind(-1))
        n = s.shape[1]
        return Encoded(symbols=s.to(torch.complex64), length=torch.full((b,), n), side_bits=torch.full((b,), 48.0),
                       state={"mean": mean, "scale": scale, "var": v.pow(2).mean(1), "size": (hh, ww)},
                       info={"sent_size": [f"{hh}x{ww}"] * b})

    def decode(self, rx: Received, enc: Encoded, ctx: Context | None = None) -> Decoded:
        st = enc.state
        b, n = enc.symbols.shape
        g = rx.gain[:, :n].clamp(min=1e-12)
        r = rx.s_hat[:, :n] / g  # unbiased: symbol + noise of variance noise_var / g^2
        nv = rx.noise_var[:, :n] / g**2
        reals = torch.stack([r.real, r.imag], -1).reshape(b, -1)
        nvr = torch.stack([nv, nv], -1).reshape(b, -1) / 2
        a = st["scale"][:, None]
        lam = st["var"][:, None]
        v_hat = a * lam * reals / (a**2 * lam + nvr)  # LLSE of the centred pixel
        hh, ww = st["size"]
        img = v_hat[:, : 3 * hh * ww].reshape(b, 3, hh, ww) + st["mean"]
        h, w = ctx.hw if ctx is not None else (hh, ww)
        out = F.interpolate(img, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)
        return Decoded(images=out, ok=torch.ones(b, dtype=torch.bool))


@codec_factory(PixelRepeat.options, arg=PixelRepeat.spec_arg)  # marks it as a factory a spec may name
def make_pixel_repeat(arg: str | None = None, device: str | None = None, step: int = 2) -> PixelRepeat:
    """Example plugin codec: analog pixels at a reduced size, LLSE receiver (``pixel-repeat[:STEP]`` or
    ``pixel-repeat:step=STEP``).

    The factory of the spec: ``arg`` is the text after ``pixel-repeat:`` (checked here, by the declared option),
    ``device`` is the run's (unused: no model), ``step`` arrives checked and typed by lrisc-sim."""
    if arg:
        step = PixelRepeat.options[0].parse(arg, f"pixel-repeat:{arg}", in_spec=True)
    return PixelRepeat(step)


class PhaseNoise(Channel):
    """Example plugin channel: AWGN with Wiener phase noise of ``sigma`` radians per symbol.

    h_i = exp(j phi_i), phi_i = phi_{i-1} + sigma w_i, w_i ~ N(0, 1) from the realization's ``aux`` stream (per
    image, so every codec sees the same trajectory); |h| = 1."""

    def __init__(self, sigma: float = 0.05):
        if not 0 <= float(sigma) < math.inf:
            raise ValueError(f"phase-noise: sigma must be a non-negative number of radians, got {sigma}")
        self.sigma = float(sigma)
        self.name = f"phase-noise:sigma={self.sigma:g}"

    def describe(self) -> str:
        return f"AWGN with Wiener phase noise, sigma {self.sigma:g} rad per symbol (example plugin), perfect CSI"

    def gains(self, realization: Realization, k: int) -> torch.Tensor:
        w = realization.cn("aux", k).real.float() * math.sqrt(2)  # N(0, 1): the real part of CN(0, 1) x sqrt 2
        phi = torch.cumsum(self.sigma * w, dim=1)
        return torch.polar(torch.ones_like(phi), phi).to(torch.complex64).to(realization.device)
