"""SNR-adaptive DeepJSCC in the style of ADJSCC (Xu, Ai, Chen, Wu, Gao 2021): one model for every SNR.

The trunk is DeepJSCC's (:mod:`baselines.deepjscc`: 5 x 5 convolutions with PReLU, ``levels`` stride-2 layers,
the mirrored transposed convolutions and a sigmoid in the decoder; the same parameter names, so a single-SNR
DeepJSCC model warm-starts it). After every hidden conv block of the encoder and of the decoder (not after the
c-channel latent layer nor the output layer) sits an attention feature (AF) module conditioned on the SNR:

    f : B x C x h x w,  snr : B (dB)
    u = [GAP(f), snr / 10]                         B x (C + 1)   (global average pool over h x w)
    a = 2 sigmoid(W2 ReLU(W1 u + b1) + b2)          B x C
    AF(f, snr) = a[:, :, None, None] * f

ADJSCC's module is ``sigmoid(...)``; this one is twice that with W2, b2 initialised to zero, so a fresh AF module
is the identity (a = 1) and a warm-started model reproduces its DeepJSCC trunk exactly before training.

Which SNR each side sees:

* encoder: the link SNR of each image (``ctx.snr_db`` in a sweep, ``batch.snr_db`` in training): the average
  SNR the transmitter is told, not the fading it cannot know;
* decoder: the *effective* SNR of the symbols it decodes, :func:`effective_snr_db`: with ``s_hat / gain`` the
  unbiased equalised symbols (unit signal power) and ``noise_var / gain^2`` their per-symbol noise variance
  (``N0 / |h|^2`` for ZF and MMSE alike), the image's SNR is ``-10 log10(mean_i noise_var_i / gain_i^2)``: the
  SNR of the AWGN channel with the same noise power. Over AWGN it is the link SNR; over block fading the
  instantaneous SNR of the image's fade (so the decoder adapts to the fade with perfect CSI); over fast fading
  or TDL the noise-power average, dominated by the deepest fades (pessimistic). It is clamped to -50..60 dB.

CBR: as DeepJSCC, ``c = 6 d^2 CBR`` latent channels; the codec sends exactly ``floor(CBR * 3 H W)`` symbols of
unit mean power per image (latent positions inside the original image first, as
:class:`baselines.deepjscc.DeepJSCCCodec`). One model serves one CBR (its own) and every SNR.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch import nn

from baselines.deepjscc import (CHECKPOINT_DIR, CONFIG_BOUNDS, DeepJSCCConfig, DeepJSCCError, Decoder, Encoder,
                                _position_order, cbr_str)
from channels.base import Received
from channels.power import complex_to_real, normalize_power, real_to_complex
from lrisc_sim.codec import Codec, Context, Decoded, Encoded, Option
from lrisc_sim.grammar import cbr_fraction
from lrisc_sim.model_io import register_model
from lrisc_sim.plugins import codec_factory

TAG = "deepjscc-adaptive"
RECIPE = "recipes/deepjscc_adaptive_cbr1-48.toml"
DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "deepjscc-adaptive_cbr1-48_snr0-20.safetensors"
SNR_SCALE = 10.0  #: the AF modules see the SNR in dB divided by this (inputs of order 1)
SNR_RANGE = (-50.0, 60.0)  #: effective SNRs are clamped to this range (dB), the project's SNR range
#: bounds of the fields this model adds to DeepJSCC's (``baselines.deepjscc.CONFIG_BOUNDS``)
AF_BOUNDS = {"af_hidden": (1, 1024)}


class AdaptiveJSCCError(DeepJSCCError):
    """A deepjscc-adaptive configuration, checkpoint or call problem; one line saying how to fix it."""


@dataclass
class AdaptiveConfig(DeepJSCCConfig):
    """Architecture of one SNR-adaptive model: DeepJSCC's fields (``cbr``, ``levels``, ``extra``,
    ``first_width``, ``width``, ``kernel``) and ``af_hidden``, the hidden units of every AF module's first FC
    layer."""

    af_hidden: int = 32

    def describe(self) -> str:
        return (f"SNR-adaptive DeepJSCC (ADJSCC-style AF modules, {self.af_hidden} hidden units) d={self.factor} "
                f"({self.levels} stride-2 + {self.extra} stride-1 {self.kernel}x{self.kernel} conv, "
                f"{self.first_width}/{self.width} filters, PReLU), c={self.channels}, CBR {self.cbr}")


def check_config(d: Any, path: str | Path | None = None, head: str | None = None,
                 fix: str = "retrain or re-export the model") -> AdaptiveConfig:
    """The :class:`AdaptiveConfig` of dict ``d`` (``config_dict``'s output, or a file header's); one-line
    :class:`AdaptiveJSCCError` naming the field (and ``path`` when given) for an unknown field, a value outside
    its bounds (an integer field out of ``CONFIG_BOUNDS`` / ``AF_BOUNDS``, an even kernel, a non-text CBR) or a
    CBR the architecture cannot give exactly. Checked before anything is allocated (a forged header is read
    before the weights). ``head`` names the config in messages (default: "[PATH: ]its deepjscc-adaptive
    config"), ``fix`` ends them."""
    head = head or (f"{path}: its {TAG} config" if path is not None else f"its {TAG} config")
    if not isinstance(d, dict):
        raise AdaptiveJSCCError(f"{head} is a {type(d).__name__}, not a table of fields; {fix}")
    known = [f.name for f in fields(AdaptiveConfig)]
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise AdaptiveJSCCError(f"{head} has unknown field {unknown[0]!r} (fields: "
                                f"{', '.join(known)}); {fix}")
    cfg = AdaptiveConfig(**d)
    if not isinstance(cfg.cbr, str):
        raise AdaptiveJSCCError(f"{head} declares cbr = {cfg.cbr!r}: the CBR must be a fraction "
                                f"string such as \"1/48\"; {fix}")
    for name, (lo, hi) in {**CONFIG_BOUNDS, **AF_BOUNDS}.items():
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi or (name == "kernel" and v % 2 == 0):
            rule = f"an {'odd ' if name == 'kernel' else ''}integer in [{lo}, {hi}]"
            raise AdaptiveJSCCError(f"{head} declares {name} = {v!r}, outside the supported "
                                    f"architectures ({name} must be {rule}); {fix}")
    try:
        cfg.channels
    except (ValueError, TypeError, ZeroDivisionError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise AdaptiveJSCCError(f"{head} declares cbr = {cfg.cbr!r}, which the architecture cannot "
                                f"give ({why}); {fix}") from None
    return cfg


def snr_vector(snr_db: torch.Tensor | float, b: int, device: torch.device) -> torch.Tensor:
    """``snr_db`` (a number, a 0-d tensor or ``B`` values, dB) as a ``B`` float32 tensor on ``device``."""
    s = torch.as_tensor(snr_db, dtype=torch.float32, device=device).reshape(-1)
    if s.numel() not in (1, b):
        raise AdaptiveJSCCError(f"snr_db has {s.numel()} values for a batch of {b} images: give one per image "
                                "or one for all")
    return s.expand(b)


def effective_snr_db(rx: Received, k: int | None = None) -> torch.Tensor:
    """``B`` float32: the SNR (dB) of the unbiased equalised symbols ``s_hat / gain`` of each image,
    ``-10 log10(mean_i noise_var_i / gain_i^2)`` over its first ``k`` symbols (all when None), clamped to
    :data:`SNR_RANGE`. Over AWGN it is the link SNR; see the module docstring for fading."""
    nv = rx.noise_var[:, :k].double() / rx.gain[:, :k].double().pow(2).clamp(min=1e-300)
    snr = -10.0 * torch.log10(nv.mean(dim=1))
    return torch.nan_to_num(snr, nan=SNR_RANGE[0]).clamp(*SNR_RANGE).float().detach()


class AFModule(nn.Module):
    """SNR-conditioned channel attention: ``B x C x h x w`` features and ``B`` SNRs (dB) -> the features scaled
    per channel by ``2 sigmoid(FC2(ReLU(FC1([GAP(f), snr / 10]))))``; the identity when fresh (FC2 zero)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(channels + 1, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def scale(self, f: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        """``B x C``: the channel-wise factors in (0, 2)."""
        u = torch.cat([f.mean(dim=(2, 3)), (snr_db / SNR_SCALE).to(f.dtype)[:, None]], dim=1)
        return 2.0 * torch.sigmoid(self.fc2(torch.relu(self.fc1(u))))

    def forward(self, f: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        return f * self.scale(f, snr_db)[:, :, None, None].to(f.dtype)


def _blocks(net: nn.Sequential) -> list[tuple[nn.Module, nn.Module]]:
    """The (convolution, activation) pairs of a DeepJSCC trunk."""
    layers = list(net)
    return [(layers[i], layers[i + 1]) for i in range(0, len(layers), 2)]


class AdaptiveEncoder(nn.Module):
    """``B x 3 x H x W`` in [0, 1] and ``B`` SNRs (dB) -> latent ``B x c x H/d x W/d``: DeepJSCC's encoder
    (``net``, the same layers and names) with an AF module after each hidden block (``af``)."""

    def __init__(self, cfg: AdaptiveConfig):
        super().__init__()
        self.net = Encoder(cfg).net
        widths = [conv.out_channels for conv, _ in _blocks(self.net)[:-1]]
        self.af = nn.ModuleList(AFModule(w, cfg.af_hidden) for w in widths)

    def forward(self, x: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        blocks = _blocks(self.net)
        for (conv, act), af in zip(blocks, self.af):
            x = af(act(conv(x)), snr_db)
        conv, act = blocks[-1]
        return act(conv(x))


class AdaptiveDecoder(nn.Module):
    """Latent ``B x c x H/d x W/d`` and ``B`` SNRs (dB) -> ``B x 3 x H x W`` in [0, 1]: DeepJSCC's decoder
    (``net``) with an AF module after each hidden block (``af``)."""

    def __init__(self, cfg: AdaptiveConfig):
        super().__init__()
        self.net = Decoder(cfg).net
        widths = [conv.out_channels for conv, _ in _blocks(self.net)[:-1]]
        self.af = nn.ModuleList(AFModule(w, cfg.af_hidden) for w in widths)

    def forward(self, z: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        blocks = _blocks(self.net)
        for (conv, act), af in zip(blocks, self.af):
            z = af(act(conv(z)), snr_db)
        conv, act = blocks[-1]
        return act(conv(z))


@register_model(TAG)
class AdaptiveDeepJSCC(nn.Module):
    """Encoder + decoder of one CBR for every SNR; the channel sits between ``encode`` and ``decode``.

    ``encode(x, snr_db)``: ``B x 3 x H x W`` (H, W multiples of d), ``B`` dB -> ``B x k`` complex64 of unit
    power per image, k = c H W / (2 d^2), position-major (as DeepJSCC).
    ``decode(s, hw, snr_db)``: ``B x k`` complex (received, unbiased), the latent size (h, w) and the decoder's
    ``B`` SNRs (dB) -> ``B x 3 x H x W`` in [0, 1].
    """

    def __init__(self, cfg: AdaptiveConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = AdaptiveEncoder(cfg)
        self.decoder = AdaptiveDecoder(cfg)

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this (the downsampling factor d)."""
        return self.cfg.factor

    def config_dict(self) -> dict:
        """The architecture as a JSON-able dict (``lrisc_sim.model_io``)."""
        return asdict(self.cfg)

    @classmethod
    def from_config(cls, d: dict) -> AdaptiveDeepJSCC:
        """A fresh model of the architecture ``d``, checked first (:func:`check_config`)."""
        return cls(check_config(d))

    def latent(self, x: torch.Tensor, snr_db: torch.Tensor | float) -> torch.Tensor:
        """``B x (h w c)`` reals, position-major (not normalised)."""
        d = self.cfg.factor
        if x.shape[-1] % d or x.shape[-2] % d:
            raise AdaptiveJSCCError(f"image size {tuple(x.shape[-2:])} is not a multiple of {d}: pad it first")
        z = self.encoder(x, snr_vector(snr_db, x.shape[0], x.device))
        return z.permute(0, 2, 3, 1).reshape(z.shape[0], -1)

    def encode(self, x: torch.Tensor, snr_db: torch.Tensor | float) -> torch.Tensor:
        return normalize_power(real_to_complex(self.latent(x, snr_db)))

    def decode(self, s: torch.Tensor, hw: tuple[int, int], snr_db: torch.Tensor | float) -> torch.Tensor:
        h, w = hw
        z = complex_to_real(s).reshape(s.shape[0], h, w, self.cfg.channels).permute(0, 3, 1, 2)
        return self.decoder(z.contiguous(), snr_vector(snr_db, s.shape[0], s.device))


def read_config(path: str | Path) -> AdaptiveConfig:
    """The architecture in a deepjscc-adaptive model file (header only); one-line error for a missing file,
    a pickle, another model's file or a config out of bounds."""
    from lrisc_sim.model_io import header

    path = Path(path)
    if not path.is_file():
        raise AdaptiveJSCCError(f"{TAG} checkpoint {path} not found")
    tag, cfg = header(path, TAG)
    if tag != TAG:
        raise AdaptiveJSCCError(f"{path} is a {tag} checkpoint, not a {TAG} one: use it with --checkpoint "
                                f"{tag}=PATH, or give a {TAG} model written by `lrisc-sim train {RECIPE}`")
    return check_config(cfg, path)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> AdaptiveDeepJSCC:
    """The model in ``path`` (eval mode), through the one model format (``lrisc_sim.model_io``)."""
    from lrisc_sim.model_io import load_model as load

    read_config(path)  # the one-line errors of this model first
    return load(path, expect=TAG, device=device)


# ---------------------------------------------------------------- codec

class AdaptiveDeepJSCCCodec(Codec):
    """The SNR-adaptive DeepJSCC as a ``Codec``: one model (one CBR) for every SNR.

    encode: ``B x 3 x H x W`` (padded to multiples of d by the engine), the model's CBR, ``ctx.snr_db`` (``B``,
    dB; required) -> ``B x k`` complex64 of unit mean power, k = floor(CBR * 3 H0 W0) for the original size.
    decode: the equalised symbols made unbiased (``s_hat / gain``) and their effective SNR
    (:func:`effective_snr_db`) -> ``B x 3 x H x W`` in [0, 1].
    """

    name = TAG
    snr_aware_encoder = True
    batched_decode = False  # its FC layers are not claimed bit-identical across batch sizes
    options = (Option("checkpoint", "path", None, f"a .safetensors {TAG} model (default: the shipped CBR 1/48 "
                      "model); it serves its own CBR only"),)

    def __init__(self, checkpoint: str | Path | None = None, device: str | torch.device = "cpu"):
        self.path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
        if checkpoint is None and not self.path.is_file():
            raise AdaptiveJSCCError(missing_message())
        self.device = torch.device(device)
        self.model = load_model(self.path, self.device)
        self.cbr = cbr_fraction(self.model.cfg.cbr)
        self.multiple = self.model.cfg.factor

    def to(self, device: torch.device | str) -> AdaptiveDeepJSCCCodec:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def weight_files(self) -> list[Path]:
        return [self.path]

    def describe(self) -> str:
        ck = f"shipped {self.path.name}" if self.path == DEFAULT_CHECKPOINT else f"checkpoint {self.path}"
        return f"{TAG} ({ck}, CBR {cbr_str(self.cbr)}; decoder told the effective SNR)"

    def _check_cbr(self, cbr: float | str | Fraction) -> Fraction:
        f = cbr_fraction(cbr)
        if f != self.cbr:
            raise AdaptiveJSCCError(f"{TAG} model {self.path} is for CBR {cbr_str(self.cbr)}, not CBR {cbr_str(f)}: "
                                    f"use it at CBR {cbr_str(self.cbr)} only, or train one for CBR {cbr_str(f)} "
                                    f"(a copy of {RECIPE} with another cbr)")
        return f

    @torch.no_grad()
    def encode(self, x: torch.Tensor, cbr: float, ctx: Context | None = None) -> Encoded:
        ctx = ctx or Context.of(x)
        f = self._check_cbr(cbr)
        if ctx.snr_db is None:
            raise AdaptiveJSCCError(f"{TAG} encodes for the link SNR: give it in the context "
                                    "(Context(hw, snr_db=B values in dB)); the engine does so for every sweep")
        model = self.model
        d = model.cfg.factor
        b, _, hp, wp = x.shape
        if hp % d or wp % d:
            raise AdaptiveJSCCError(f"image size {hp}x{wp} is not a multiple of {d}: the engine pads to "
                                    "codec.multiple")
        h0, w0 = ctx.hw
        k = int(math.floor(f * 3 * h0 * w0 + Fraction(1, 10**9)))
        z = model.latent(x.to(self.device), snr_vector(ctx.snr_db, b, self.device))
        c = model.cfg.channels
        order = _position_order(hp // d, wp // d, h0 // d, w0 // d).to(z.device)
        z = z.reshape(b, -1, c)[:, order].reshape(b, -1)[:, : 2 * k]
        s = normalize_power(real_to_complex(z))
        state = {"latent_hw": (hp // d, wp // d), "order": order, "k": k}
        return Encoded(symbols=s, length=torch.full((b,), k, dtype=torch.int64), side_bits=torch.zeros(b),
                       state=state)

    @torch.no_grad()
    def decode(self, rx: Received, enc: Encoded, ctx: Context | None = None) -> Decoded:
        st = enc.state
        h, w = st["latent_hw"]
        c = self.model.cfg.channels
        k = st["k"]
        s = (rx.s_hat[:, :k] / rx.gain[:, :k]).to(self.device)
        snr = effective_snr_db(rx, k).to(self.device)
        b = s.shape[0]
        r = torch.zeros(b, h * w * c, device=self.device)
        r[:, : 2 * k] = complex_to_real(s)
        z = torch.zeros_like(r).reshape(b, h * w, c)
        z[:, st["order"]] = r.reshape(b, h * w, c)
        out = self.model.decode(real_to_complex(z.reshape(b, -1)), (h, w), snr)
        return Decoded(images=out.clamp(0, 1), ok=torch.ones(b, dtype=torch.bool))


def missing_message() -> str:
    return (f"no shipped {TAG} model ({DEFAULT_CHECKPOINT}): train it with `lrisc-sim train {RECIPE}`, or pass "
            f"checkpoint=PATH (--checkpoint {TAG}=PATH)")


def check_plan(options: dict, cbrs: list) -> None:
    """One model serves its own CBR only: one-line :class:`AdaptiveJSCCError` (naming the model's CBR and the
    sweep's) unless the sweep's CBRs are exactly that one, or when there is no model to use."""
    ck = options.get("checkpoint")
    if not ck and not DEFAULT_CHECKPOINT.is_file():
        raise AdaptiveJSCCError(missing_message())
    path = Path(ck) if ck else DEFAULT_CHECKPOINT
    mine = cbr_fraction(read_config(path).cbr)
    sweep = sorted({cbr_fraction(c) for c in cbrs}, reverse=True)
    if sweep != [mine]:
        raise AdaptiveJSCCError(f"{TAG} model {path} is for CBR {cbr_str(mine)}, but the sweep runs CBR "
                                f"{', '.join(cbr_str(c) for c in sweep)}: sweep --cbr {cbr_str(mine)} with it (one "
                                "model serves one CBR and every SNR)")


@codec_factory(AdaptiveDeepJSCCCodec.options, check=check_plan)
def make_deepjscc_adaptive(arg: str | None = None, **options) -> AdaptiveDeepJSCCCodec:
    """Registry factory. Options: ``device``, ``checkpoint`` (a .safetensors model; default the shipped one)."""
    return AdaptiveDeepJSCCCodec(checkpoint=options.get("checkpoint"), device=options.get("device") or "cpu")


def availability(name: str) -> str:
    """'ok' when the shipped model exists, else how to get it."""
    return "ok" if DEFAULT_CHECKPOINT.is_file() else f"no shipped model yet: `lrisc-sim train {RECIPE}`, " \
                                                      "or checkpoint=PATH"
