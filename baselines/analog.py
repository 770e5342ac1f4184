"""Uncoded analog transmission, and the linear (LLSE) receiver shared with SoftCast.

Linear analog model. The encoder sends reals u_t = g_t x_{p(t)}: coefficient p(t) (a pixel, or a DCT
coefficient) times a known gain g_t, two reals per complex channel use (``real_to_complex``), so that each image's
symbols have unit mean power. After equalisation (``channels.base.equalize``) every real component reads

    r_t = gamma_t g_t x_p + e_t,    e_t ~ N(0, nu_t / 2)

with gamma_t = ``Received.gain`` and nu_t = ``Received.noise_var`` of its complex symbol (per-symbol: fading is
handled). With prior variance lambda_p of x_p (zero mean) and all the observations t of p (repetition), the
linear MMSE (LLSE) estimate and its error are

    x_hat_p = lambda_p N_p / (1 + lambda_p J_p),   N_p = sum_t gamma_t g_t r_t / (nu_t/2),
    E(x_hat_p - x_p)^2 = lambda_p / (1 + lambda_p J_p),   J_p = sum_t gamma_t^2 g_t^2 / (nu_t/2);

with one observation, x_hat = lambda g gamma r / (g^2 gamma^2 lambda + nu/2), i.e. (g lambda)/(g^2 lambda + sigma^2)
times the unbiased y = r / gamma, sigma^2 = nu / (2 gamma^2). The ``zf`` estimator is the unbiased N_p / J_p.
Unobserved coefficients are estimated as their prior mean, 0.

Side information is sent error-free and charged by the sweep's rule (``Context.side_charge``, ``lrisc_sim.codec``).
Quantised side values are computed here exactly as the receiver would reconstruct them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from channels.base import Received
from channels.power import complex_to_real, real_to_complex
from lrisc_sim.codec import Codec, Context, Decoded, Encoded, Option, concat_encoded, shared, too_few_uses
from lrisc_sim.plugins import codec_factory

ESTIMATORS = ("llse", "zf")
# options the engine may pass to every codec; these codecs have no model, so they ignore them
GENERIC_OPTIONS = {"device", "checkpoint", "threads", "seed"}


# ---------------------------------------------------------------------------------------------------- side info

def quantize_uniform(v: torch.Tensor, lo: float, hi: float, bits: int) -> torch.Tensor:
    """Value reconstructed from a ``bits``-bit uniform quantiser on [lo, hi] (clamped)."""
    levels = 2**bits - 1
    q = torch.round((v.clamp(lo, hi) - lo) / (hi - lo) * levels)
    return lo + q * (hi - lo) / levels


def quantize_log2(v: torch.Tensor, lo_exp: float, hi_exp: float, bits: int) -> torch.Tensor:
    """Positive value reconstructed from a ``bits``-bit uniform quantiser of log2(v) on [lo_exp, hi_exp]."""
    e = torch.log2(v.clamp(min=2.0**lo_exp))
    return torch.pow(2.0, quantize_uniform(e, lo_exp, hi_exp, bits))


# ------------------------------------------------------------------------------------------------ LLSE receiver

def llse_combine(s_hat: torch.Tensor, gain: torch.Tensor, noise_var: torch.Tensor, index: torch.Tensor,
                 g: torch.Tensor, prior_var: torch.Tensor, estimator: str = "llse"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear estimate of n coefficients from their (possibly repeated) scaled observations.

    s_hat, gain, noise_var : B x k (from ``Received``); index : B x 2k long, the coefficient each real carries
    (n = not used); g : B x 2k, its gain; prior_var : B x n, lambda_p. Returns (x_hat, J), both B x n: the
    estimate (module docstring) and the Fisher information J_p (0 where p was not sent).
    """
    b, k = s_hat.shape
    n = prior_var.shape[1]
    if index.shape != (b, 2 * k):
        raise ValueError(f"received {k} symbols per image, the encoder index expects {index.shape[1] // 2}")
    r = complex_to_real(s_hat).to(torch.float32)
    gam = gain.to(torch.float32).repeat_interleave(2, dim=1)
    inv = 2.0 / noise_var.to(torch.float32).clamp(min=1e-12).repeat_interleave(2, dim=1)  # 1 / (nu/2)
    num = torch.zeros(b, n + 1, device=r.device).scatter_add_(1, index, gam * g * r * inv)[:, :n]
    info = torch.zeros(b, n + 1, device=r.device).scatter_add_(1, index, (gam * g) ** 2 * inv)[:, :n]
    if estimator == "llse":
        return prior_var * num / (1 + prior_var * info), info
    if estimator == "zf":
        return torch.where(info > 0, num / info.clamp(min=1e-30), torch.zeros_like(num)), info
    raise ValueError(f"unknown estimator '{estimator}': use {' or '.join(ESTIMATORS)}")


def check_options(codec: str, opts: dict, known: set[str]) -> None:
    """One-line ``ValueError`` for options ``codec`` does not take (the side-information charge is the sweep's)."""
    if "side_charge" in opts:
        raise ValueError(f"{codec}: side_charge is a setting of the sweep, not of one codec (every codec is charged "
                         "alike); use --side-charge (or the experiment key side_charge)")
    bad = set(opts) - known
    if bad:
        raise ValueError(f"{codec}: unknown option(s) {', '.join(sorted(bad))}; accepted: {', '.join(sorted(known))}")


def parse_arg(arg: str | None) -> dict[str, str]:
    """Codec spec argument ``key=value,key=value`` (a bare value is returned under key '')."""
    out: dict[str, str] = {}
    for part in (arg or "").split(","):
        if part.strip():
            key, sep, val = part.partition("=")
            out[key.strip() if sep else ""] = (val if sep else key).strip()
    return out


def typed_option(codec: str, arg: str | None, key: str, value, typ: type, example: str):
    """``typ(value)`` for option ``key`` of a codec spec, or a one-line ``ValueError`` naming the spec."""
    try:
        return typ(value)
    except (TypeError, ValueError):
        spec = f"{codec}:{arg}" if arg else codec
        kind = "an integer" if typ is int else "a number"
        raise ValueError(f"bad codec spec '{spec}': {key} must be {kind}, got {value!r}; e.g. {example}") from None


# ----------------------------------------------------------------------------------------------------- uncoded

class Uncoded(Codec):
    """Uncoded analog transmission: each pixel is a real channel input (two per complex use).

    Encoder (x : B x 3 x H x W in [0, 1]): per-image per-channel means m_c are removed and sent as side
    information; the centred pixels v = x - m_c are scaled by one per-image factor a so that the symbols have
    unit mean power, a = sqrt(k / sum_t v_t^2), and sent in raster order (channel, row, column). The native
    rate is CBR 1/2. With k = budget - side uses complex uses (2k reals, 3HW pixels):

    * 2k >= 3HW: all pixels; the spare uses repeat the pixel sequence cyclically (the receiver combines the
      copies, maximum-ratio, in the LLSE);
    * 3HW - 2k <= ``skip_fraction`` 3HW: the 3HW - 2k missing pixels are evenly spaced in raster order and
      interpolated at the receiver from their left and right neighbours;
    * else the image is area-downsampled to the largest h' x w' with 3 h' w' <= 2k (aspect kept) and the
      receiver upsamples the estimate (``upsample``: bicubic or bilinear).

    Receiver: LLSE per pixel with prior variance lambda_c (per-image per-channel variance of v, sent), see the
    module docstring: v_hat = a lambda_c gamma r / (a^2 gamma^2 lambda_c + nu/2); x_hat = clamp(v_hat + m_c).

    Side information: 3 means (16-bit uniform on [0, 1]), 3 variances (16-bit log2 on [2^-40, 2^2]) and a
    (16-bit log2 on [2^-8, 2^24]): 112 bits per image.
    """

    name = "uncoded"
    multiple = 1
    SIDE_BITS = 3 * 16 + 3 * 16 + 16
    options = (Option("estimator", "str", "llse", "receiver: LLSE (linear MMSE) or ZF (unbiased)",
                      choices=ESTIMATORS),
               Option("skip_fraction", "float", 1 / 16, "largest share of pixels skipped (and interpolated) before "
                      "the image is downsampled instead", low=0.0, high=0.5),
               Option("upsample", "str", "bicubic", "receiver upsampling of a downsampled image",
                      choices=("bicubic", "bilinear")))
    spec_arg = "the estimator (uncoded:zf = uncoded:estimator=zf)"

    def __init__(self, estimator: str = "llse", skip_fraction: float = 1 / 16, upsample: str = "bicubic"):
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator '{estimator}': use {' or '.join(ESTIMATORS)}")
        if upsample not in ("bicubic", "bilinear"):
            raise ValueError(f"unknown upsampling '{upsample}': use bicubic or bilinear")
        self.estimator = estimator
        if not 0 <= skip_fraction <= 0.5:
            raise ValueError(f"skip_fraction must be in [0, 1/2] (skipped pixels need sent neighbours): {skip_fraction}")
        self.skip_fraction = float(skip_fraction)
        self.upsample = upsample

    def describe(self) -> str:
        return f"uncoded analog, {self.estimator.upper()} receiver"

    def plan(self, h: int, w: int, k: int) -> dict:
        """Transmission plan for an h x w image and k payload uses: mode, sent size, index (2k,) of the pixel
        each real carries (n = 3 h' w' for unused), skipped pixel indices."""
        full, reals = 3 * h * w, 2 * k
        t = torch.arange(reals)
        if reals >= full:
            return {"mode": "repeat" if reals > full else "full", "size": (h, w), "index": t % full,
                    "skip": None}
        missing = full - reals
        if missing <= self.skip_fraction * full:
            skip = torch.floor((torch.arange(missing) + 0.5) * full / missing).long()
            keep = torch.ones(full, dtype=torch.bool)
            keep[skip] = False
            return {"mode": "skip", "size": (h, w), "index": keep.nonzero().squeeze(1), "skip": skip}
        s = math.sqrt(reals / full)
        hh = max(1, min(h, math.floor(h * s)))
        ww = max(1, min(w, reals // (3 * hh)))
        if 3 * hh * ww > reals:
            raise ValueError(f"{k} channel uses cannot carry even a 1 x 1 image")
        n = 3 * hh * ww
        return {"mode": "downsample", "size": (hh, ww), "index": torch.where(t < n, t, n), "skip": None}

    def encode(self, x: torch.Tensor, cbr: float, ctx: Context | None = None) -> Encoded:
        ctx = ctx or Context.of(x)
        b, _, h, w = x.shape
        budget = ctx.budget(cbr)
        side_bits = torch.full((b,), float(self.SIDE_BITS), dtype=torch.float64)
        k_img = budget - ctx.side_uses(side_bits).long().expand(b)
        if (k_img < 2).any():  # 3 reals (one RGB pixel) need 2 complex uses
            need = budget - int(k_img.min()) + 2  # side uses + the two uses of a 1 x 1 image
            raise too_few_uses("uncoded", cbr, budget, need, ctx.hw,
                               f"side information ({self.SIDE_BITS} bits, {ctx.side_charge.describe()}) and pixels")
        groups, cols = [], []
        for k in torch.unique(k_img).tolist():
            rows = (k_img == k).nonzero().squeeze(1)
            p = self.plan(h, w, k)
            xs = x[rows.to(x.device)].float()
            if p["mode"] == "downsample":
                xs = F.interpolate(xs, size=p["size"], mode="area")
            m = quantize_uniform(xs.mean(dim=(2, 3)), 0.0, 1.0, 16)
            v = (xs - m[:, :, None, None]).flatten(1)
            lam = quantize_log2(v.view(len(rows), 3, -1).pow(2).mean(2), -40.0, 2.0, 16)
            idx = p["index"].to(x.device)
            ku = (int((idx < v.shape[1]).sum()) + 1) // 2  # complex uses actually sent
            u = torch.cat([v, v.new_zeros(len(rows), 1)], 1)[:, idx[: 2 * ku]]
            a = torch.sqrt(ku / u.pow(2).sum(1).clamp(min=1e-20))
            cols.append((rows, real_to_complex(a[:, None] * u), ku))
            groups.append({"rows": rows, "plan": p, "k": ku, "mean": m, "var": lam,
                           "scale": quantize_log2(a, -8.0, 24.0, 16)})
        kmax = max(c[2] for c in cols)
        sym = torch.zeros(b, kmax, dtype=torch.complex64, device=x.device)
        length = torch.zeros(b, dtype=torch.int64)
        tx = [""] * b
        for (rows, s, ku), gr in zip(cols, groups):
            sym[rows.to(x.device), :ku] = s
            length[rows] = ku
            for r in rows.tolist():
                tx[r] = f"{gr['plan']['mode']} {gr['plan']['size'][0]}x{gr['plan']['size'][1]}"
        return Encoded(symbols=sym, length=length, side_bits=side_bits,
                       state={"groups": groups, "hw": (h, w)}, info={"tx": tx})

    batched_decode = True  # every decode step is per row (LLSE per pixel, per-image interpolation)

    def concat_encoded(self, encs: list[Encoded]) -> Encoded:
        """Rows of ``encs`` one after the other; groups of equal payload length (hence equal plan) merged."""
        h, w = shared([e.state for e in encs], "hw")
        merged: dict[int, dict] = {}
        offset = 0
        for e in encs:
            for gr in e.state["groups"]:
                m = merged.setdefault(gr["k"], {"rows": [], "plan": gr["plan"], "k": gr["k"], "mean": [], "var": [],
                                                "scale": []})
                m["rows"].append(gr["rows"] + offset)
                for key in ("mean", "var", "scale"):
                    m[key].append(gr[key])
            offset += e.symbols.shape[0]
        groups = [{**m, **{key: torch.cat(m[key]) for key in ("rows", "mean", "var", "scale")}}
                  for m in merged.values()]
        return concat_encoded(encs, {"groups": groups, "hw": (h, w)})

    def estimate(self, rx: Received, enc: Encoded) -> torch.Tensor:
        """Unclamped LLSE (or ZF) estimate, B x 3 x H x W."""
        h, w = enc.state["hw"]
        dev = rx.s_hat.device
        out = torch.zeros(rx.s_hat.shape[0], 3, h, w, device=dev)
        for gr in enc.state["groups"]:
            rows, p, ku = gr["rows"].to(dev), gr["plan"], gr["k"]
            hh, ww = p["size"]
            n = 3 * hh * ww
            idx = p["index"].to(dev)[: 2 * ku]
            idx = F.pad(idx, (0, 2 * ku - idx.shape[0]), value=n)[None].expand(len(rows), -1)
            g = torch.where(idx < n, gr["scale"].to(dev)[:, None], torch.zeros((), device=dev))
            lam = gr["var"].to(dev).repeat_interleave(hh * ww, dim=1)
            v, _ = llse_combine(rx.s_hat[rows, :ku], rx.gain[rows, :ku], rx.noise_var[rows, :ku], idx, g, lam,
                                self.estimator)
            if p["skip"] is not None:
                v = fill_skipped(v, p["skip"].to(dev), ww)
            img = v.view(-1, 3, hh, ww) + gr["mean"].to(dev)[:, :, None, None]
            if (hh, ww) != (h, w):
                img = F.interpolate(img, size=(h, w), mode=self.upsample, align_corners=False)
            out[rows] = img
        return out

    def decode(self, rx: Received, enc: Encoded, ctx: Context | None = None) -> Decoded:
        img = self.estimate(rx, enc).clamp(0, 1)
        return Decoded(images=img, ok=torch.ones(img.shape[0], dtype=torch.bool, device=img.device))


def fill_skipped(v: torch.Tensor, skip: torch.Tensor, w: int) -> torch.Tensor:
    """Replace the raster positions ``skip`` of v (B x 3HW) by the mean of their row neighbours (left, right;
    one of them at an image edge). Skipped positions are at least 2 apart (skip_fraction <= 1/2), so their
    neighbours were sent."""
    col = skip % w
    left = torch.where(col > 0, skip - 1, skip + 1)
    right = torch.where(col < w - 1, skip + 1, skip - 1)
    v = v.clone()
    v[:, skip] = 0.5 * (v[:, left] + v[:, right])
    return v


@codec_factory(Uncoded.options, arg=Uncoded.spec_arg)
def make_uncoded(arg: str | None = None, **options) -> Uncoded:
    """Factory: ``uncoded`` or ``uncoded:estimator=zf,upsample=bilinear``."""
    opts = {**parse_arg(arg), **{k: v for k, v in options.items() if k not in GENERIC_OPTIONS}}
    if "" in opts:
        opts["estimator"] = opts.pop("")
    check_options("uncoded", opts, {"estimator", "skip_fraction", "upsample"})
    if "skip_fraction" in opts:
        opts["skip_fraction"] = typed_option("uncoded", arg, "skip_fraction", opts["skip_fraction"], float,
                                             "uncoded:skip_fraction=0.1")
    return Uncoded(**opts)
