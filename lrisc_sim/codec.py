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
from typing import Any

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


class Codec(ABC):
    """A transmission scheme: images -> complex symbols -> images.

    Attributes
    ----------
    name : registry name (``lrisc-sim codecs`` lists them).
    multiple : H and W must be multiples of this; the engine pads (reflect) and crops back.
    snr_aware_encoder : True if ``encode`` uses the SNR (SNR-adaptive or rate-adaptive digital codecs); the
        engine then encodes once per SNR, else once per (batch, CBR) and reuses the symbols at every SNR.
    Envelope codecs (best of several variants per row, e.g. ``bpg-ldpc``) also define ``variants() -> list[Codec]``
    and ``decode_all(x, encodeds, transmit) -> (Decoded, Encoded used)``, where ``transmit(enc) -> Received`` sends
    one variant over the row's realization; the engine encodes every variant and calls ``decode_all``.
    side_charge : how side bits are charged in channel uses (set by the engine from ``--side-charge``); the
        encoder must keep payload + ``side_charge.uses(side_bits, snr)`` within ``budget()``. Under the
        ``capacity`` rule the engine passes the SNR to every encoder.
    batched_decode : True if the codec implements ``concat_encoded`` and ``decode`` treats every row on its own
        (nothing shared across rows, no per-batch statistics): the engine then stacks the rows of several
        (SNR, trial) points into one ``decode`` call (``--decode-batch``). Set it only where a row's output is
        the same to the bit whatever the batch (LRISC's U-Net is not, so LRISC stays per point by default).
    """

    name: str = "codec"
    multiple: int = 1
    snr_aware_encoder: bool = False
    batched_decode: bool = False
    side_charge: SideInfoCharge = SideInfoCharge()

    @abstractmethod
    def encode(self, x: torch.Tensor, cbr: float, snr_db: torch.Tensor | None = None) -> Encoded:
        """x: B x 3 x H x W in [0, 1] (padded to ``multiple``); cbr: target total CBR of the *original* size,
        side information included (``self.original_hw`` is set by the engine); snr_db: B or None."""

    @abstractmethod
    def decode(self, rx: Received, enc: Encoded) -> Decoded:
        """rx: equalised received symbols and channel state; enc: the encoder's output of the same batch."""

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

    # set by the engine before encode: the unpadded size, for CBR accounting
    original_hw: tuple[int, int] | None = None

    def budget(self, x: torch.Tensor, cbr: float) -> int:
        """Total complex channel uses allowed by ``cbr`` for the original image size: floor(cbr * 3 H W)."""
        h, w = self.original_hw or x.shape[-2:]
        return int(math.floor(cbr * 3 * h * w + 1e-9))


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
