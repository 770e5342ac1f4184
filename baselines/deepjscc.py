"""DeepJSCC (Bourtsoulatze, Kurka, Gunduz, ICASSP 2019): CNN analog joint source-channel coding.

Encoder: 5 x 5 convolutions with PReLU and no batch norm; ``levels`` of them with stride 2, so the latent is
``B x c x H/d x W/d`` with d = 2^levels. Its ``c H W / d^2`` reals are paired into ``k = c H W / (2 d^2)`` complex
symbols (a complex channel: a real channel would be ~3 dB optimistic) and normalised to unit average power per
image. Decoder: the mirrored transposed convolutions, ending in a sigmoid. MSE-trained at one (CBR, SNR).

CBR = k / (3 H W) = c / (6 d^2), so the CBR is set by ``c`` and the depth: ``c = 6 d^2 CBR`` must be an even
integer. The original uses d = 4 (2 stride-2 layers, 16/32/32/32 filters). ``default_levels`` keeps d = 4 where
that gives an even c >= 4 and goes one level deeper for the small CBRs:

    CBR    1/64  1/48  1/32  1/24  1/16
    d         8     8     8     4     4
    c         6     8    12     4     6

Measured with the shipped CPU recipe (4500 steps): at 1/24, d = 4 (c = 4) reaches 25.5 dB on Kodak at 10 dB
against 23.9 dB for d = 8 (c = 16); the d = 8 models of 1/64 .. 1/32 all land near 23.8 dB, i.e. they are
limited by training time, not by bandwidth (see lrisc_sim/checkpoints/deepjscc/README.md).

Image sizes: for H, W multiples of d the CBR is exact. Other sizes are reflect-padded by the engine (to the
codec's ``multiple``, the largest d of its checkpoints); the encoder then sends only the first
``floor(CBR * 3 H W)`` symbols of the padded latent, ordered so that latent positions inside the original image
come first, and the decoder sets the dropped ones to zero. So the CBR is exact (up to the floor) for every size;
only the margin loses a little quality.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import torch
from torch import nn

from channels.base import Received, snr_to_n0
from channels.power import complex_to_real, normalize_power, real_to_complex
from lrisc_sim.codec import Codec, Context, Decoded, Encoded, Option, concat_encoded, shared
from lrisc_sim.grammar import cbr_fraction
from lrisc_sim.model_io import register_model
from lrisc_sim.plugins import codec_factory

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "lrisc_sim" / "checkpoints" / "deepjscc"
SHIPPED_CBRS = ("1/64", "1/48", "1/32", "1/24", "1/16")


class DeepJSCCError(ValueError):
    """A DeepJSCC configuration or checkpoint problem, with a one-line message saying how to fix it."""


def cbr_str(cbr: Fraction) -> str:
    return f"{cbr.numerator}/{cbr.denominator}"


def latent_channels(cbr: str | float | Fraction, levels: int) -> int:
    """Output channels c = 6 d^2 CBR (d = 2^levels); raise ``DeepJSCCError`` unless it is an even integer."""
    f = cbr_fraction(cbr)
    c = 6 * 4**levels * f
    if c.denominator != 1 or c.numerator % 2:
        ok = [lv for lv in range(1, 6) if (6 * 4**lv * f).denominator == 1 and (6 * 4**lv * f).numerator % 2 == 0]
        hint = f"use levels={ok[0]}" if ok else "choose a CBR of the form c / (6 d^2) with c even, e.g. 1/48"
        raise DeepJSCCError(f"CBR {cbr_str(f)} needs 6*d^2*CBR = {float(c):g} latent channels at downsampling "
                            f"d={2**levels}, not an even integer: {hint}")
    return int(c)


def default_levels(cbr: str | float | Fraction) -> int:
    """Stride-2 layers for a CBR: 2 (d = 4, the original) if c = 96 CBR is an even integer >= 4, else the
    smallest depth >= 3 that gives an even integer c (``DeepJSCCError`` if none up to d = 32)."""
    f = cbr_fraction(cbr)
    c = 96 * f
    if c.denominator == 1 and c.numerator % 2 == 0 and c >= 4:
        return 2
    for lv in (3, 4, 5):
        c = 6 * 4**lv * f
        if c.denominator == 1 and c.numerator % 2 == 0:
            return lv
    latent_channels(f, 3)  # raises the one-line error
    return 3


@dataclass
class DeepJSCCConfig:
    """Architecture of one DeepJSCC model.

    cbr : target CBR as a fraction string (``"1/48"``).
    levels : stride-2 layers in the encoder (and stride-2 transposed layers in the decoder); d = 2^levels.
    extra : stride-1 5 x 5 layers after the strided ones, before the c-channel output layer.
    width : filters of the hidden layers; ``first_width`` for the first (the original: 16 then 32).
    kernel : convolution size (5 in the original).
    """

    cbr: str = "1/48"
    levels: int = 3
    extra: int = 1
    first_width: int = 32
    width: int = 64
    kernel: int = 5

    @property
    def factor(self) -> int:
        return 2**self.levels

    @property
    def channels(self) -> int:
        return latent_channels(self.cbr, self.levels)

    def describe(self) -> str:
        return (f"DeepJSCC d={self.factor} ({self.levels} stride-2 + {self.extra} stride-1 5x5 conv, "
                f"{self.first_width}/{self.width} filters, PReLU), c={self.channels}, CBR {self.cbr}")


def _widths(cfg: DeepJSCCConfig) -> list[int]:
    n = cfg.levels + cfg.extra
    return [cfg.first_width] + [cfg.width] * (n - 1)


class Encoder(nn.Module):
    """``B x 3 x H x W`` in [0, 1] -> latent ``B x c x H/d x W/d`` (real, not yet normalised)."""

    def __init__(self, cfg: DeepJSCCConfig):
        super().__init__()
        layers: list[nn.Module] = []
        cin, p = 3, cfg.kernel // 2
        ws = _widths(cfg)
        for i, w in enumerate(ws):
            layers += [nn.Conv2d(cin, w, cfg.kernel, stride=2 if i < cfg.levels else 1, padding=p), nn.PReLU(w)]
            cin = w
        layers += [nn.Conv2d(cin, cfg.channels, cfg.kernel, padding=p), nn.PReLU(cfg.channels)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """Latent ``B x c x H/d x W/d`` -> ``B x 3 x H x W`` in [0, 1]: mirrored transposed convolutions, sigmoid."""

    def __init__(self, cfg: DeepJSCCConfig):
        super().__init__()
        ws = _widths(cfg)[::-1]
        n, p, k = len(ws), cfg.kernel // 2, cfg.kernel
        layers: list[nn.Module] = []
        cin = cfg.channels
        for i, w in enumerate(ws):
            layers += [_tconv(cin, w, k, p, stride=2 if i >= n - cfg.levels + 1 else 1), nn.PReLU(w)]
            cin = w
        layers += [_tconv(cin, 3, k, p, stride=2), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def _tconv(cin: int, cout: int, k: int, p: int, stride: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=p, output_padding=stride - 1)


@register_model("deepjscc")
class DeepJSCC(nn.Module):
    """Encoder + decoder of one (CBR) model; the channel sits between ``encode`` and ``decode``.

    ``encode``: ``B x 3 x H x W`` (H, W multiples of d) -> ``B x k`` complex64, unit power per image,
    k = c H W / (2 d^2), position-major (the c/2 symbols of one latent position are adjacent).
    ``decode``: ``B x k`` complex (received, unbiased) and the latent size (h, w) -> ``B x 3 x H x W``.
    ``forward(x, snr_db)``: the training path through an AWGN channel at SNR ``snr_db`` (B or scalar, dB).
    """

    def __init__(self, cfg: DeepJSCCConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this (the downsampling factor d)."""
        return self.cfg.factor

    def config_dict(self) -> dict:
        """The architecture as a JSON-able dict (``lrisc_sim.model_io``)."""
        return asdict(self.cfg)

    @classmethod
    def from_config(cls, d: dict) -> DeepJSCC:
        """A fresh model of the architecture ``d`` (``config_dict``'s output)."""
        cfg = DeepJSCCConfig(**d)
        check_config(cfg)  # bounded before anything is allocated (a forged header is read before the weights)
        return cls(cfg)

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        d = self.cfg.factor
        if x.shape[-1] % d or x.shape[-2] % d:
            raise DeepJSCCError(f"image size {tuple(x.shape[-2:])} is not a multiple of {d}: pad it first")
        z = self.encoder(x)  # B x c x h x w
        return z.permute(0, 2, 3, 1).reshape(z.shape[0], -1)  # B x (h w c), position-major

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_power(real_to_complex(self.latent(x)))

    def decode(self, s: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        h, w = hw
        z = complex_to_real(s).reshape(s.shape[0], h, w, self.cfg.channels).permute(0, 3, 1, 2)
        return self.decoder(z.contiguous())

    def forward(self, x: torch.Tensor, snr_db: torch.Tensor | float,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        """Training path: ``noise`` (``B x k`` complex, CN(0, 1); drawn here if None) scaled by sqrt(N0)."""
        s = self.encode(x)
        n0 = snr_to_n0(snr_db).to(x.device).expand(x.shape[0])[:, None]
        noise = torch.randn_like(s) if noise is None else noise.to(s.device)  # complex randn: CN(0, 1)
        d = self.cfg.factor
        return self.decode(s + noise * torch.sqrt(n0), (x.shape[-2] // d, x.shape[-1] // d))


# ---------------------------------------------------------------- checkpoints

def snr_tag(snr: str | float) -> str:
    """File-name tag of a training SNR: ``10`` -> ``snr10``, ``0:20`` -> ``snr0-20``."""
    s = str(snr).strip()
    try:
        v = [float(t) for t in s.split(":")]
    except ValueError:
        v = []
    if len(v) == 1:
        return f"snr{v[0]:g}"
    if len(v) == 2:
        return f"snr{v[0]:g}-{v[1]:g}"
    raise DeepJSCCError(f"bad training SNR '{s}': use a number in dB (10) or a range LO:HI (0:20)")


def checkpoint_name(cbr: str | Fraction, snr: str | float) -> str:
    f = cbr_fraction(cbr)
    return f"deepjscc_cbr{f.numerator}-{f.denominator}_{snr_tag(snr)}"


def save_model(model: DeepJSCC, path: str | Path, card: dict | None = None) -> None:
    """Write ``path`` in the one model format (``lrisc_sim.model_io``) and, if given, the JSON model card beside
    it."""
    from lrisc_sim.model_io import save_model as save

    save(model, path, card)


def read_config(path: str | Path) -> DeepJSCCConfig:
    """The architecture stored in a checkpoint's header (``lrisc_sim.model_io.header``; header only, bounds
    checked); one-line ``DeepJSCCError`` naming the file otherwise."""
    from lrisc_sim.model_io import NAMES, header
    from lrisc_sim.safeio import CheckpointError

    path = Path(path)
    if not path.is_file():
        raise DeepJSCCError(f"DeepJSCC checkpoint {path} not found")
    fix = "give a DeepJSCC .safetensors checkpoint written by `lrisc-sim train RECIPE.toml`"
    try:
        tag, d = header(path, "deepjscc")
    except CheckpointError as e:
        raise DeepJSCCError(str(e)) from None
    if tag != "deepjscc":
        name = NAMES.get(tag, tag)
        raise DeepJSCCError(f"{path} is an {name} checkpoint, not a DeepJSCC one: use it with --checkpoint "
                            f"{tag}=PATH; {fix}")
    try:
        cfg = DeepJSCCConfig(**d)
    except TypeError as e:
        raise DeepJSCCError(f"{path}: not a DeepJSCC checkpoint (its config does not fit: {e}); {fix}") from None
    check_config(cfg, path)
    return cfg


#: bounds on an architecture read from a checkpoint (a model is built from it before its weights are read, so a
#: forged header must not be able to ask for an unbounded allocation): field -> (low, high)
CONFIG_BOUNDS = {"levels": (1, 5), "extra": (0, 16), "first_width": (1, 512), "width": (1, 512), "kernel": (1, 15)}


def check_config(cfg: DeepJSCCConfig, path: str | Path | None = None) -> None:
    """One-line ``DeepJSCCError`` (naming ``path`` when given) unless every field of ``cfg`` is an integer within
    ``CONFIG_BOUNDS`` (kernel odd) and its CBR gives a valid latent."""
    head = f"{path}: its" if path is not None else "its"
    for name, (lo, hi) in CONFIG_BOUNDS.items():
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi or (name == "kernel" and v % 2 == 0):
            rule = f"an {'odd ' if name == 'kernel' else ''}integer in [{lo}, {hi}]"
            raise DeepJSCCError(f"{head} DeepJSCC config declares {name} = {v!r}, outside the supported "
                                f"architectures ({name} must be {rule}); retrain or re-export the checkpoint")
    try:
        cfg.channels
    except (ValueError, TypeError, ZeroDivisionError) as e:  # DeepJSCCError is a ValueError
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DeepJSCCError(f"{head} DeepJSCC config is inconsistent ({why}); retrain or re-export the "
                            "checkpoint") from None


def load_model(path: str | Path, device: str | torch.device = "cpu") -> DeepJSCC:
    """Read a DeepJSCC model file (``lrisc_sim.model_io.load_model``, config checked before anything is built)."""
    from lrisc_sim.model_io import load_model as load
    from lrisc_sim.safeio import CheckpointError

    read_config(path)  # the DeepJSCC wording for a missing file, another model or a bad config
    try:
        return load(path, expect="deepjscc", device=device)
    except CheckpointError as e:
        raise DeepJSCCError(str(e)) from None


def find_checkpoints(snr: str | float = 10, dirs: list[Path] | None = None) -> dict[Fraction, Path]:
    """CBR -> checkpoint path for training SNR ``snr`` in ``dirs`` (default: the shipped folder)."""
    found: dict[Fraction, Path] = {}
    tag = snr_tag(snr)
    for d in dirs if dirs is not None else [CHECKPOINT_DIR]:
        for p in sorted(Path(d).glob(f"deepjscc_cbr*_{tag}.safetensors")):
            num, _, den = p.name[len("deepjscc_cbr"):].split("_")[0].partition("-")
            found.setdefault(Fraction(int(num), int(den)), p)
    return found


def missing_message(cbr: Fraction, snr: str | float, have: dict[Fraction, Path]) -> str:
    """One line: which CBRs have checkpoints and how to train the missing one (or why it cannot exist)."""
    listed = ", ".join(cbr_str(c) for c in sorted(have)) or "none"
    s = str(snr)
    head = f"no DeepJSCC checkpoint for CBR {cbr_str(cbr)} at training SNR {s} dB (have {listed})"
    try:
        default_levels(cbr)
    except DeepJSCCError:
        return (f"{head}; DeepJSCC cannot give CBR {cbr_str(cbr)} exactly (c = 6 d^2 CBR must be an even integer "
                f"for d = 4, 8, 16 or 32): pick another CBR, e.g. 1/48")
    return (f"{head}: train one with `lrisc-sim train RECIPE.toml` (a copy of "
            f"recipes/deepjscc_cbr1-48_snr10.toml with cbr = \"{cbr_str(cbr)}\" and snr = \"{s}\") and pass it with "
            f"`--checkpoint deepjscc=PATH`")


# ---------------------------------------------------------------- codec

class DeepJSCCCodec(Codec):
    """DeepJSCC as a ``Codec``: one model per CBR, found among the checkpoints by itself.

    Parameters
    ----------
    snr : training SNR of the checkpoints to use (``10``, or a range ``0:20``); default 10 dB (the shipped set).
    checkpoint : a ``.safetensors`` file; its CBR is then the only one served (plus any found in ``dirs``).
    dirs : folders searched for ``deepjscc_cbrN-D_snrS.safetensors`` (default: the shipped folder).
    device : torch device of the models.

    encode: ``B x 3 x H x W`` (H, W padded to multiples of d by the engine), cbr, ctx -> ``Encoded`` with
    ``B x k`` complex64 symbols of unit mean power, k = floor(CBR * 3 H0 W0) for the original size ``ctx.hw``.
    decode: the equalised symbols, made unbiased (s_hat / gain), -> ``B x 3 x H x W`` in [0, 1].
    """

    name = "deepjscc"
    snr_aware_encoder = False
    options = (Option("snr", "str", "10", "training SNR of the checkpoints to use: a number in dB or a range LO:HI"),
               Option("checkpoint", "path", None, "a .safetensors model: its CBR must be the sweep's only CBR"),
               Option("checkpoint_dir", "path", None, "a folder of deepjscc_cbrN-D_snrS.safetensors searched "
                      "before the shipped one"))
    spec_arg = "the training SNR (deepjscc:10, deepjscc:0:20 = snr=...)"

    def __init__(self, snr: str | float = 10, checkpoint: str | Path | None = None,
                 dirs: list[Path] | None = None, device: str | torch.device = "cpu"):
        self.snr = snr
        self.device = torch.device(device)
        self.paths = find_checkpoints(snr, dirs)
        self.models: dict[Fraction, DeepJSCC] = {}
        self.checkpoint: Path | None = None  # the user's model: then the only CBR served
        if checkpoint is not None:
            model = load_model(checkpoint, self.device)
            f = cbr_fraction(model.cfg.cbr)
            self.paths[f] = Path(checkpoint)
            self.models[f] = model
            self.checkpoint = Path(checkpoint)
        self.multiple = max([read_config(p).factor for p in self.paths.values()] or [8])

    def _model(self, cbr: Fraction) -> DeepJSCC:
        if self.checkpoint is not None and self.paths.get(cbr) != self.checkpoint:
            mine = next(c for c, p in self.paths.items() if p == self.checkpoint)
            raise DeepJSCCError(f"deepjscc checkpoint {self.checkpoint} is for CBR {cbr_str(mine)}, not CBR "
                                f"{cbr_str(cbr)}: use it at CBR {cbr_str(mine)} only, or leave it out to use the "
                                "shipped models")
        if cbr not in self.models:
            if cbr not in self.paths:
                raise DeepJSCCError(missing_message(cbr, self.snr, self.paths))
            self.models[cbr] = load_model(self.paths[cbr], self.device)
        return self.models[cbr]

    def model_for(self, cbr: float | str | Fraction) -> DeepJSCC:
        """The model serving ``cbr`` (loaded on first use); ``DeepJSCCError`` if there is no checkpoint."""
        return self._model(cbr_fraction(cbr))

    def to(self, device: torch.device | str) -> DeepJSCCCodec:
        self.device = torch.device(device)
        for m in self.models.values():
            m.to(self.device)
        return self

    def weight_files(self) -> list[Path]:
        return [self.paths[c] for c in sorted(self.paths)]

    def describe(self) -> str:
        if self.checkpoint is not None:
            mine = next(c for c, p in self.paths.items() if p == self.checkpoint)
            return f"deepjscc (checkpoint {self.checkpoint}, CBR {cbr_str(mine)})"
        cbrs = ", ".join(cbr_str(c) for c in sorted(self.paths, reverse=True)) or "none"
        return f"deepjscc (training SNR {self.snr} dB; checkpoints for CBR {cbrs})"

    @torch.no_grad()
    def encode(self, x: torch.Tensor, cbr: float, ctx: Context | None = None) -> Encoded:
        ctx = ctx or Context.of(x)
        f = cbr_fraction(cbr)
        model = self._model(f)
        d = model.cfg.factor
        b, _, hp, wp = x.shape
        if hp % d or wp % d:
            raise DeepJSCCError(f"image size {hp}x{wp} is not a multiple of {d}: the engine pads to codec.multiple")
        h0, w0 = ctx.hw
        k = int(math.floor(f * 3 * h0 * w0 + Fraction(1, 10**9)))
        z = model.latent(x.to(self.device))  # B x (h w c), position-major
        c = model.cfg.channels
        order = _position_order(hp // d, wp // d, h0 // d, w0 // d).to(z.device)
        z = z.reshape(b, -1, c)[:, order].reshape(b, -1)[:, : 2 * k]
        s = normalize_power(real_to_complex(z))
        state = {"cbr": f, "latent_hw": (hp // d, wp // d), "order": order, "k": k}
        return Encoded(symbols=s, length=torch.full((b,), k, dtype=torch.int64), side_bits=torch.zeros(b),
                       state=state)

    batched_decode = True  # convolutions only, no normalisation across the batch

    def concat_encoded(self, encs: list[Encoded]) -> Encoded:
        """Rows of ``encs`` one after the other (same CBR, size and latent order)."""
        sts = [e.state for e in encs]
        return concat_encoded(encs, {key: shared(sts, key) for key in ("cbr", "latent_hw", "order", "k")})

    @torch.no_grad()
    def decode(self, rx: Received, enc: Encoded, ctx: Context | None = None) -> Decoded:
        st = enc.state
        model = self._model(st["cbr"])
        h, w = st["latent_hw"]
        c = model.cfg.channels
        k = st["k"]
        s = (rx.s_hat[:, :k] / rx.gain[:, :k]).to(self.device)
        b = s.shape[0]
        r = torch.zeros(b, h * w * c, device=self.device)
        r[:, : 2 * k] = complex_to_real(s)
        z = torch.zeros_like(r).reshape(b, h * w, c)
        z[:, st["order"]] = r.reshape(b, h * w, c)
        out = model.decode(real_to_complex(z.reshape(b, -1)), (h, w))
        return Decoded(images=out.clamp(0, 1), ok=torch.ones(b, dtype=torch.bool))


def _position_order(h: int, w: int, h_in: int, w_in: int) -> torch.Tensor:
    """Latent positions (row-major index into h x w) with those of the top-left h_in x w_in block first."""
    i = torch.arange(h)[:, None].expand(h, w)
    j = torch.arange(w)[None, :].expand(h, w)
    outside = ((i >= h_in) | (j >= w_in)).reshape(-1)
    return torch.cat([torch.nonzero(~outside).flatten(), torch.nonzero(outside).flatten()])


def check_plan(options: dict, cbrs: list) -> None:
    """A ``checkpoint`` serves its own CBR only: one-line ``DeepJSCCError`` (naming the checkpoint's CBR and the
    sweep's) unless the sweep's CBRs are exactly that one (else the rows at other CBRs would come from other
    models while the user asked for this one)."""
    ck = options.get("checkpoint")
    if not ck:
        return
    mine = cbr_fraction(read_config(ck).cbr)
    sweep = sorted({cbr_fraction(c) for c in cbrs}, reverse=True)
    if sweep != [mine]:
        raise DeepJSCCError(f"deepjscc checkpoint {ck} is for CBR {cbr_str(mine)}, but the sweep runs CBR "
                            f"{', '.join(cbr_str(c) for c in sweep)}: sweep --cbr {cbr_str(mine)} with it (one "
                            "checkpoint serves one CBR), or leave the checkpoint out to use the shipped models")


@codec_factory(DeepJSCCCodec.options, arg=DeepJSCCCodec.spec_arg, check=check_plan)
def make_deepjscc(arg: str | None = None, **options) -> DeepJSCCCodec:
    """Registry factory. ``arg``: training SNR of the checkpoints (``deepjscc:10``, ``deepjscc:0:20``) or None
    (10 dB, the shipped set). Options: ``device``, ``checkpoint`` (a .safetensors file), ``checkpoint_dir``."""
    snr = arg if arg else options.pop("snr", 10)
    dirs = None
    if options.get("checkpoint_dir"):
        dirs = [Path(options["checkpoint_dir"]), CHECKPOINT_DIR]
    return DeepJSCCCodec(snr=snr, checkpoint=options.get("checkpoint"), dirs=dirs,
                         device=options.get("device") or "cpu")


def availability(name: str) -> str:
    """'ok' when shipped checkpoints exist, else how to get them."""
    have = find_checkpoints(10)
    if have:
        return "ok"
    return "no shipped checkpoints: train one with `lrisc-sim train recipes/deepjscc_cbr1-48_snr10.toml`"
