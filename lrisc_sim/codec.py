"""The codec interface every transmission scheme implements, and its CBR accounting.

CBR = k / (3 H W) with H x W the original image size (ARCHITECTURE.md section 3.4). A codec reports, per image, the
complex channel uses of its payload and the bits of side information (rate indices, chunk metadata, headers);
side bits are charged in channel uses by a ``SideInfoCharge`` rule, printed with every result.
"""

from __future__ import annotations

import math
from pathlib import Path
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch

from channels.base import Received


class ImageTooSmall(ValueError):
    """An image too small for a codec at a CBR (too few channel uses for its side information) or for a metric;
    the message says what size or CBR would do. The engine adds which images it was."""


def too_few_uses(codec: str, cbr: float, budget: int, need: float, hw: tuple[int, int], what: str
                 ) -> ImageTooSmall:
    """The :class:`ImageTooSmall` of a codec whose ``what`` (e.g. 'side information') needs ``need`` channel
    uses where CBR ``cbr`` gives ``budget`` for images of ``hw`` = (H, W)."""
    need = int(math.ceil(need))
    h, w = hw
    return ImageTooSmall(f"CBR {cbr:.4g} gives only {budget} channel uses, too few for {codec}'s {what} ({need} "
                         f"uses); use a CBR of at least {need / (3 * h * w):.4g} for this size, or larger images")


@dataclass(frozen=True)
class SideInfoCharge:
    """How side-information bits are charged in complex channel uses.

    ``fixed``: ``bits_per_use`` bits per complex channel use (default 1: rate-1/2 LDPC + QPSK), error-free.
    ``capacity``: log2(1 + SNR) bits per channel use at the link SNR (the ideal bound), error-free.
    """

    mode: str = "fixed"
    bits_per_use: float = 1.0

    def uses(self, bits: torch.Tensor, snr_db: torch.Tensor | float | None = None) -> torch.Tensor:
        """Channel uses (float, B) needed for ``bits`` (B) of side information."""
        bits = bits.to(torch.float64)
        if self.mode == "fixed":
            return torch.ceil(bits / self.bits_per_use)
        if self.mode == "capacity":
            if snr_db is None:
                raise ValueError("side-information charge 'capacity' needs the SNR")
            c = torch.log2(1 + torch.pow(10.0, torch.as_tensor(snr_db, dtype=torch.float64) / 10))
            return torch.ceil(bits / c)
        raise ValueError(f"unknown side-information charge '{self.mode}': use 'fixed' or 'capacity'")

    def describe(self) -> str:
        if self.mode == "fixed":
            return f"side info: {self.bits_per_use:g} bit per complex channel use, error-free"
        return "side info: log2(1+SNR) bits per complex channel use, error-free"

    @staticmethod
    def parse(text: str) -> SideInfoCharge:
        """``fixed``, ``fixed:2`` (bits per use) or ``capacity``."""
        name, _, arg = text.partition(":")
        if name == "capacity" and not arg:
            return SideInfoCharge("capacity")
        if name == "fixed":
            try:
                bpu = float(arg) if arg else 1.0
            except ValueError:
                bpu = -1.0
            if bpu > 0 and math.isfinite(bpu):
                return SideInfoCharge("fixed", bpu)
        raise ValueError(f"bad side-information charge '{text}': use 'fixed', 'fixed:BITS_PER_USE' or 'capacity'")


@dataclass
class Encoded:
    """A batch as the encoder leaves it.

    symbols : B x k_max complex64; row b carries ``length[b]`` symbols of unit mean power, zeros after.
    length : B int64, payload channel uses per image.
    side_bits : B float, side-information bits per image (sent error-free, charged by ``SideInfoCharge``).
    state : codec-specific data the decoder needs (e.g. rate indices, chunk metadata, bit streams).
    info : per-image extra columns for the results table (e.g. ``mcs``, ``source_coder``): str -> list.
    """

    symbols: torch.Tensor
    length: torch.Tensor
    side_bits: torch.Tensor
    state: Any = None
    info: dict[str, list] = field(default_factory=dict)


@dataclass
class Decoded:
    """Decoder output: ``images`` B x 3 x H x W in [0, 1]; ``ok`` B bool (False: image lost, fallback shown);
    ``info`` per-image extra columns set at decode time."""

    images: torch.Tensor
    ok: torch.Tensor
    info: dict[str, list] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """What a codec call is told besides its tensors; built by the engine (or :func:`lrisc_sim.send`) per batch.

    hw : the original (unpadded) H x W of the batch's images, for the CBR accounting.
    side_charge : how side-information bits are charged in channel uses (the sweep's ``--side-charge``).
    snr_db : B float32, the link SNR given to the encoder, or None: the encoding is then reused at every SNR.
        It is given when :func:`encoder_needs_snr` holds.
    """

    hw: tuple[int, int]
    side_charge: SideInfoCharge = SideInfoCharge()
    snr_db: torch.Tensor | None = None

    @staticmethod
    def of(x: torch.Tensor, **kw: Any) -> Context:
        """The context of an unpadded batch ``x`` (``B x 3 x H x W``): ``hw`` from its shape."""
        return Context(hw=(int(x.shape[-2]), int(x.shape[-1])), **kw)

    def budget(self, cbr: float) -> int:
        """Total complex channel uses allowed by ``cbr`` for the original size: floor(cbr * 3 H W)."""
        h, w = self.hw
        return int(math.floor(cbr * 3 * h * w + 1e-9))

    def side_uses(self, bits: torch.Tensor) -> torch.Tensor:
        """Channel uses (float64, B or B x N) of ``bits`` of side information under ``side_charge`` at ``snr_db``
        (``snr_db`` broadcast over trailing dimensions)."""
        snr = self.snr_db
        if snr is not None and bits.dim() > 1:
            snr = snr.reshape(-1, *([1] * (bits.dim() - 1)))
        return self.side_charge.uses(bits, None if snr is None else snr.to(bits.device))


Send = Callable[[Encoded], Received]

OPTION_TYPES = ("int", "float", "str", "bool", "path", "program")


class OptionError(ValueError):
    """A codec option that is unknown or whose value is of the wrong type or out of range: ``codec`` (the spec),
    ``option`` (its name), ``value`` and the ``problem`` (which names the valid options or range); ``in_spec``:
    the option was written in the spec (``lrisc:steps=8``) rather than given as a key (TOML, API)."""

    def __init__(self, codec: str, option: str, value: Any, problem: str, in_spec: bool = False):
        self.codec, self.option, self.value, self.problem, self.in_spec = codec, option, value, problem, in_spec
        super().__init__(f"codec {codec}: {problem}")


@dataclass(frozen=True)
class Option:
    """One option a codec takes (declared once, in ``Codec.options`` or ``codec_factory(options=...)``).

    name : the key (``steps`` in ``lrisc:steps=8`` or ``steps = 8`` in a ``[[codecs]]`` table).
    type : ``int``, ``float``, ``str``, ``bool``, ``path`` (a file) or ``program`` (an executable: never taken
        from an experiment file).
    default : the value used when the option is not given (None: see ``meaning``).
    meaning : one line for ``lrisc-sim codecs --options``.
    low, high : inclusive bounds of numbers (``low_open``: ``low`` itself excluded); None: unbounded.
    choices : the accepted values of a ``str`` option (empty: any text).
    """

    name: str
    type: str
    default: Any
    meaning: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()

    def __post_init__(self):
        if self.type not in OPTION_TYPES:
            raise ValueError(f"option {self.name}: type {self.type!r} is not one of {', '.join(OPTION_TYPES)}")

    def rule(self) -> str:
        """The accepted values in words, e.g. ``an integer >= 1`` or ``one of llse, zf``."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        kind = {"int": "an integer", "float": "a finite number", "bool": "true or false", "path": "an existing path",
                "program": "an executable's path", "str": "text"}[self.type]
        def num(v: float) -> str:
            return str(int(v)) if self.type == "int" else f"{v:g}"

        if self.low is not None and self.high is not None:
            return f"{kind} in {'(' if self.low_open else '['}{num(self.low)}, {num(self.high)}]"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {num(self.low)}"
        if self.high is not None:
            return f"{kind} <= {num(self.high)}"
        return kind

    def parse(self, value: Any, codec: str, in_spec: bool = False) -> Any:
        """The typed value of ``value`` (a string from a spec, or a TOML/Python value); ``OptionError`` naming
        the option, the value and the rule when it does not fit."""

        def bad() -> OptionError:
            return OptionError(codec, self.name, value, f"{self.name} must be {self.rule()}, got {value!r}", in_spec)

        t = self.type
        if t == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower() if isinstance(value, str) else None
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise bad()
        if t in ("int", "float"):
            if isinstance(value, bool):
                raise bad()
            try:
                v = float(value.strip()) if isinstance(value, str) else float(value)
            except (TypeError, ValueError, OverflowError):
                raise bad() from None
            if not math.isfinite(v):
                raise bad()
            if t == "int":
                if not v.is_integer():
                    raise bad()
                v = int(value.strip()) if isinstance(value, str) and value.strip().lstrip("+-").isdigit() \
                    else int(v)
            if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
                raise bad()
            if self.high is not None and v > self.high:
                raise bad()
            return v
        if not isinstance(value, str) and not (t in ("path", "program") and isinstance(value, Path)):
            raise bad()
        text = str(value).strip()
        if not text or (self.choices and text not in self.choices):
            raise bad()
        if t == "path" and not Path(text).exists():
            raise OptionError(codec, self.name, value, f"{self.name} file {text} of {codec} not found", in_spec)
        return text

    def describe(self) -> str:
        """One listing line: ``name  type  default  rule: meaning``."""
        d = "-" if self.default is None else str(self.default).lower() if isinstance(self.default, bool) \
            else f"{self.default:g}" if isinstance(self.default, float) else str(self.default)
        return f"{self.name:<16} {self.type:<7} default {d:<10} {self.rule()}: {self.meaning}"


def parse_options(codec: str, declared: Sequence[Option], given: dict[str, Any], in_spec: bool = False
                  ) -> dict[str, Any]:
    """``given`` (name -> raw value) checked against the ``declared`` options of ``codec`` and typed; a name that
    is not declared is an ``OptionError`` listing the valid ones. Options not given are left out (the codec's
    defaults apply)."""
    by_name = {o.name: o for o in declared}
    out: dict[str, Any] = {}
    for key, value in given.items():
        opt = by_name.get(key)
        if opt is None:
            valid = ", ".join(by_name) or "none"
            raise OptionError(codec, key, value, f"'{key}' is not an option of {codec.partition(':')[0]} (its "
                                                 f"options: {valid}; see lrisc-sim codecs --options)", in_spec)
        out[key] = opt.parse(value, codec, in_spec)
    return out


class Codec(ABC):
    """A transmission scheme: images -> complex symbols -> images. The contract (ARCHITECTURE.md section 4.1):

    * ``encode(x, cbr, ctx) -> Encoded`` (required): ``x`` ``B x 3 x H x W`` in [0, 1], padded to ``multiple``;
      payload uses + ``ctx.side_uses(side_bits)`` must stay within ``ctx.budget(cbr)``.
    * ``decode(rx, enc, ctx) -> Decoded``: the receiver, given the equalised symbols of ``enc``.
    * ``run(enc, send, ctx) -> (Decoded, Encoded)``: the one call the engine makes after ``encode``; ``send(enc)``
      applies the point's channel realization and equaliser. The default is ``decode(send(enc), enc, ctx)``; a
      codec that sends several things (e.g. the best-MCS envelope ``bpg-ldpc``, one transmission per MCS on the
      same realization) overrides ``run`` instead of ``decode`` and returns the ``Encoded`` it reports.

    Attributes
    ----------
    name : registry name (``lrisc-sim codecs`` lists them).
    multiple : H and W must be multiples of this; the engine pads (reflect) and crops back.
    snr_aware_encoder : True if ``encode`` uses ``ctx.snr_db`` (SNR-adaptive codecs): the engine then encodes
        once per SNR, else once per (batch, CBR) and reuses the symbols at every SNR (:func:`encoder_needs_snr`).
    batched_decode : True if the codec implements ``concat_encoded`` and ``decode`` treats every row on its own
        (nothing shared across rows, no per-batch statistics): the engine then stacks the rows of several
        (SNR, trial) points into one ``run`` call (``--decode-batch``). Set it only where a row's output is
        the same to the bit whatever the batch (LRISC's U-Net is not, so LRISC stays per point by default).
    options : the options the codec takes (:class:`Option`: name, type, default, range, meaning), checked by the
        registry before the codec is built (``lrisc-sim codecs --options`` lists them). A ``Codec`` subclass
        named by a spec is built as ``cls(**options)`` (``cls(ARG, **options)`` when the spec has an ARG); a
        factory declares its options with ``lrisc_sim.plugins.codec_factory`` instead.
    spec_arg : what the ARG of ``NAME:ARG`` means for this codec ("" when it takes none).
    """

    name: str = "codec"
    multiple: int = 1
    snr_aware_encoder: bool = False
    batched_decode: bool = False
    options: ClassVar[tuple[Option, ...]] = ()
    spec_arg: ClassVar[str] = ""

    @abstractmethod
    def encode(self, x: torch.Tensor, cbr: float, ctx: Context | None = None) -> Encoded:
        """x: B x 3 x H x W in [0, 1] (padded to ``multiple``); cbr: target total CBR of the *original* size
        ``ctx.hw``, side information included; ``ctx`` None: ``Context.of(x)`` (unpadded, default charge)."""

    def decode(self, rx: Received, enc: Encoded, ctx: Context | None = None) -> Decoded:
        """rx: equalised received symbols and channel state; enc: the encoder's output of the same batch."""
        raise NotImplementedError(f"{self.name} implements neither decode() nor run(): a codec implements "
                                  "decode(rx, enc, ctx), or run(enc, send, ctx) when it sends more than enc")

    def run(self, enc: Encoded, send: Send, ctx: Context) -> tuple[Decoded, Encoded]:
        """Send ``enc`` (``send(enc) -> Received``) and decode it; returns the decoded batch and the ``Encoded``
        whose channel uses are reported."""
        return self.decode(send(enc), enc, ctx), enc

    def concat_encoded(self, encs: list[Encoded]) -> Encoded:
        """One ``Encoded`` holding the rows of ``encs[0]``, then ``encs[1]``, ... (the same batch of images, possibly
        encoded at different SNRs), for ``batched_decode`` codecs; see :func:`concat_encoded`."""
        raise NotImplementedError(f"{self.name} cannot decode a concatenated batch (batched_decode is False)")

    def to(self, device: torch.device | str) -> Codec:
        """Move models to ``device``; codecs without models return self."""
        return self

    def describe(self) -> str:
        """One line naming the codec, its checkpoint or external tools."""
        return self.name

    def weight_files(self) -> list[Path]:
        """Checkpoint files whose contents determine the codec's output (fingerprinted to detect stale results)."""
        return []


def encoder_needs_snr(codec: Codec, charge: SideInfoCharge) -> bool:
    """Whether ``codec.encode`` is given the SNR: an SNR-aware encoder, or any encoder under the ``capacity``
    side-information charge (its side uses, hence its payload length, depend on the SNR)."""
    return bool(codec.snr_aware_encoder) or charge.mode == "capacity"


def pad_cat(ts: list[torch.Tensor], value: float = 0.0) -> torch.Tensor:
    """Concatenate ``B_j x k_j`` (or ``B_j``) tensors along dim 0, padding dim 1 to the widest with ``value``."""
    if ts[0].dim() < 2 or all(t.shape[1] == ts[0].shape[1] for t in ts):
        return torch.cat(ts, 0)
    k = max(t.shape[1] for t in ts)
    return torch.cat([torch.nn.functional.pad(t, (0, k - t.shape[1]), value=value) if t.shape[1] < k else t
                      for t in ts], 0)


def concat_encoded(encs: list[Encoded], state: Any) -> Encoded:
    """The rows of ``encs`` one after the other: symbols (zero-padded to the widest), lengths, side bits and
    ``info`` lists concatenated; ``state`` is the codec's own concatenation of the states."""
    info = {key: [v for e in encs for v in e.info[key]] for key in encs[0].info}
    return Encoded(symbols=pad_cat([e.symbols for e in encs]), length=torch.cat([e.length for e in encs]),
                   side_bits=torch.cat([e.side_bits for e in encs]), state=state, info=info)


def shared(states: list[dict], key: str):
    """``states[0][key]`` after checking that every state holds the same value (tensors compared exactly)."""
    v = states[0][key]
    for s in states[1:]:
        w = s[key]
        same = (torch.equal(v, w) if isinstance(v, torch.Tensor) else v == w)
        if not same:
            raise ValueError(f"cannot concatenate encodings whose '{key}' differs")
    return v


def cbr_report(enc: Encoded, hw: tuple[int, int], charge: SideInfoCharge,
               snr_db: torch.Tensor | float | None = None) -> dict[str, torch.Tensor]:
    """Per-image CBR split: payload, side (side bits charged in channel uses) and total, for size ``hw``."""
    n = 3 * hw[0] * hw[1]
    side_uses = charge.uses(enc.side_bits, snr_db)
    payload = enc.length.to(torch.float64) / n
    side = side_uses / n
    return {"cbr_payload": payload, "cbr_side": side, "cbr_total": payload + side}


def codec_note(spec: str, codec: Codec) -> str:
    """One line naming a codec spec and what produced its results (source coder, checkpoints, tools)."""
    d = codec.describe()
    return d if d.startswith(spec) else f"{spec}: {d}"
