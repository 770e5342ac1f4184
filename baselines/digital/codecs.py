"""Engine-facing codecs of the separation baseline: source coder + 5G LDPC + QAM, and the capacity bound.

Codecs (registry names; ``bpg`` stands for BPG or, when ``bpgenc`` is absent, HEVC-intra through pillow-heif,
and the coder actually used is recorded per row in ``info['source_coder']``):

* ``bpg-ldpc:MCS`` / ``jpeg2000-ldpc:MCS`` (:class:`LDPCCodec`): one fixed MCS, e.g. ``qpsk-1/2``. For a
  budget of :math:`k` channel uses the source gets the highest quality whose bytes fit the
  :math:`k \\log_2(M) R` information bits (minus CRCs and a length header, see
  :class:`~baselines.digital.link.BlockLayout`). A failed code block, or bytes the source decoder rejects, lose
  the image: it is replaced by the fallback image (below) and ``ok = False``. Shows the cliff effect.
* ``bpg-ldpc`` / ``jpeg2000-ldpc`` (:class:`EnvelopeCodec`): the best-MCS envelope (genie). Every MCS of the set
  is sent over the *same* channel realization and, per image and SNR, the one with the highest PSNR against the
  source wins (a genie-aided link adaptation: the choice knows the realization, which no transmitter does); the
  winner is recorded in ``info['mcs']`` (``none`` if every MCS lost the image).
* ``bpg-ldpc:adaptive`` / ``jpeg2000-ldpc:adaptive`` (:class:`AdaptiveCodec`): realistic link adaptation. The
  transmitter is told an SNR (``ctx.snr_db``, its belief; an SNR-aware encoder) and picks, per image, the most
  efficient MCS whose measured threshold (code block BLER 0.1 over AWGN, ``mcs_thresholds.json``, see
  :mod:`baselines.digital.adaptation`) is at most the told SNR minus ``margin`` dB, else the most robust MCS.
  The image is then sent exactly as the fixed-MCS codec of that MCS sends it (same bytes, symbols, decoder and
  failure semantics): when the channel is worse than the transmitter believes, it falls off the cliff.
* ``bpg-capacity`` / ``jpeg2000-capacity`` (:class:`CapacityCodec`): the capacity curves. Budget
  :math:`\\lfloor k \\log_2(1 + \\mathrm{SNR}) \\rfloor` bits, delivered error-free when the channel supports
  it: over fading, the image is lost when its instantaneous capacity
  :math:`\\frac1k \\sum_i \\log_2(1 + |h_i|^2 / N_0)` (averaged over the image's :math:`k` symbols: one
  outage event per image, per-block outage) is below the rate used :math:`8 \\cdot \\mathrm{bytes} / k`.
  Its rate follows the average SNR (no channel knowledge at the transmitter), so over AWGN it bounds the
  envelope image by image, whereas over fading the genie envelope, which in effect picks the MCS knowing the
  realization, can beat it (over block Rayleigh fading the capacity codec is in outage whenever
  :math:`|h|^2 \\lesssim 1`). ``bpg-capacity:csit`` codes at :math:`k \\bar C` bits (the
  transmitter knows the realization) and bounds the envelope on every channel: it is the curve to label a bound
  next to the genie envelope; over fading ``bpg-capacity`` is an outage curve (experiments/fading.toml).

When even the lowest quality of the source coder (QP 51 for BPG/HEVC) does not fit a budget, nothing is sent
and the image is lost at every SNR (``source_bytes`` 0): e.g. at CBR 1/48 a detailed 768 x 512 Kodak image
needs more than QPSK 1/2 carries.

**Fallback image** for lost images: every pixel equal to the per-channel mean of the 40 photos the shipped
checkpoints were trained on (the development training set, not shipped; mean over all pixels of all photos, RGB
in [0, 1]): :data:`FALLBACK_RGB`. It is hard-coded so that the product does not read the training data at run
time.

**The envelope** follows the codec contract (``lrisc_sim.codec``): ``encode`` encodes every fixed-MCS variant
(once per batch and CBR: the variants are not SNR-aware) and ``run(enc, send, ctx)`` sends each over the *same*
realization (``send``), decodes (skipping, with ``prune``, the LDPC decoding of an MCS for images that an already
decoded MCS delivered at a PSNR the skipped one cannot beat, which leaves the envelope unchanged) and returns
the winners with the ``Encoded`` of the winning MCS per image, whose channel uses are reported.

Side information: none is sent outside the payload (the byte count travels in-band, protected by the code),
so ``side_bits = 0`` and the payload CBR is the channel uses actually sent over :math:`3HW`
(:math:`C N / m \\le k`).
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from baselines.digital import encode_cache
from baselines.digital.adaptation import Choice, ThresholdTable, choose_mcs
from baselines.digital.link import BlockLayout, LDPCLink, plan_blocks, unbiased
from baselines.digital.mcs import MCS, STANDARD_MCS, parse_mcs
from baselines.digital.source import SourceCoder, make_source_coder, rate_match
from channels.base import ChannelOutput, Received, equalize  # noqa: F401 (equalize: used by the doctests)
from channels.realization import Realization  # noqa: F401 (used by the doctests)
from lrisc_sim.codec import Codec, Context, Decoded, Encoded, Option
from lrisc_sim.metrics import psnr
from lrisc_sim.plugins import codec_factory

#: Per-channel (R, G, B) mean of the 40 training photos (wiki001-040.png of the development data), computed once
#: as sum of all pixel values / number of pixels over all photos, in [0, 1]:
#: np.concatenate([np.asarray(Image.open(f).convert("RGB")).reshape(-1, 3) for f in files]).mean(0) / 255
FALLBACK_RGB: tuple[float, float, float] = (0.41808925, 0.40288047, 0.39074346)


def fallback_images(b: int, h: int, w: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``b x 3 x h x w`` float32 images filled with :data:`FALLBACK_RGB`."""
    rgb = torch.tensor(FALLBACK_RGB, dtype=torch.float32, device=device)
    return rgb[None, :, None, None].expand(b, 3, h, w).clone()


def to_uint8(x: torch.Tensor) -> list[np.ndarray]:
    """``B x 3 x H x W`` in [0, 1] -> B arrays ``H x W x 3`` uint8 (rounded)."""
    a = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [np.ascontiguousarray(v) for v in a]


def from_uint8(images: Sequence[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """B arrays ``H x W x 3`` uint8 -> ``B x 3 x H x W`` float32 in [0, 1]."""
    a = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return a.to(device)


def psnr_uint8(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB, float64, B, on the CPU) of uint8-rounded images: ``lrisc_sim.metrics.psnr``."""
    return psnr(x.detach(), y.detach()).double().cpu()


_LINKS: dict[tuple, LDPCLink] = {}
_MAX_LINKS = 32


@dataclass
class SourceState:
    """What the transmitter keeps for the receiver's bookkeeping (per image).

    payloads : the source bytes sent (None: nothing fitted the budget, the image is lost at any SNR).
    recon : ``B x 3 x H x W`` error-free reconstructions (the fallback where nothing fitted); the receiver
        uses one only when its decoded bytes equal the bytes sent, otherwise it runs the source decoder.
    """

    payloads: list[bytes | None]
    recon: torch.Tensor
    layout: BlockLayout | None = None


class SeparationCodec(Codec):
    """Common part of the digital codecs: a source coder, the fallback image and per-image rate matching."""

    multiple = 1

    def __init__(self, source: SourceCoder, prefix: str, device: str | torch.device = "cpu"):
        self.source = source
        self.prefix = prefix
        self.device = torch.device(device)

    def to(self, device: torch.device | str) -> SeparationCodec:
        self.device = torch.device(device)
        return self

    def _source_encode(self, x: torch.Tensor, max_bytes: Sequence[int], hw: tuple[int, int],
                       also: Sequence[int] = ()) -> tuple[SourceState, dict[str, list]]:
        """Rate-match every image to its budget (``hw``: the original size, for the bpp column); the encodings (and
        those of the budgets ``also``, which other codecs will ask for) are computed in parallel over the images
        (:func:`encode_cache.prefetch`)."""
        b, _, h, w = x.shape
        images = to_uint8(x)
        encode_cache.prefetch(self.source, images, [[int(mb), *also] for mb in max_bytes])
        payloads: list[bytes | None] = []
        recon = fallback_images(b, h, w, x.device)
        quality, nbytes = [], []
        for i, (img, mb) in enumerate(zip(images, max_bytes)):
            fit = rate_match(self.source, img, int(mb))
            if fit is None:
                payloads.append(None)
                quality.append(-1)
                nbytes.append(0)
                continue
            out = self.source.decode(fit.data, img.shape[:2])
            if out is None:
                raise RuntimeError(f"{self.source.name} cannot decode its own output (quality {fit.quality})")
            recon[i] = from_uint8([out], x.device)[0]
            payloads.append(fit.data)
            quality.append(fit.quality)
            nbytes.append(len(fit.data))
        info = {
            "source_coder": [self.source.name] * b,
            "source_quality": quality,
            "source_bytes": nbytes,
            "source_bpp": [8.0 * n / (hw[0] * hw[1]) for n in nbytes],
        }
        return SourceState(payloads, recon), info

    def _source_decode(self, state: SourceState, received: Sequence[bytes | None], hw: tuple[int, int]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and ok flags from the received payloads (None: lost)."""
        b = len(received)
        images = state.recon.clone()
        ok = torch.zeros(b, dtype=torch.bool)
        fb = fallback_images(1, *images.shape[-2:], images.device)[0]
        for i, data in enumerate(received):
            if data is None or state.payloads[i] is None:
                images[i] = fb
                continue
            if data == state.payloads[i]:
                ok[i] = True  # identical bytes: the decoder's output is the error-free reconstruction
                continue
            out = self.source.decode(data, tuple(images.shape[-2:]))  # undetected block error: decode anyway
            if out is None:
                images[i] = fb
            else:
                images[i] = from_uint8([out], images.device)[0]
                ok[i] = True
        return images, ok


class LDPCCodec(SeparationCodec):
    """Source coder + 5G LDPC + QAM at one fixed MCS (``bpg-ldpc:qpsk-1/2``).

    :param mcs: the :class:`~baselines.digital.mcs.MCS`.
    :param source: the :class:`~baselines.digital.source.SourceCoder`.
    :param prefix: ``"bpg"`` or ``"jpeg2000"`` (names the codec).
    :param num_iter, decode_batch, early_stop, stop_on_failure, demapping: passed to
        :class:`~baselines.digital.link.LDPCLink`.

    :input x (encode): [B, 3, H, W] `torch.float32` in [0, 1]; ``cbr`` the target total CBR.
    :output (encode): :class:`~lrisc_sim.codec.Encoded` with ``symbols`` [B, C N / m] `torch.complex64`,
        ``length`` = C N / m (0 where no source quality fits), ``side_bits`` 0, ``info`` columns ``mcs``,
        ``source_coder``, ``source_quality``, ``source_bytes``, ``source_bpp``.
    :input rx (decode): :class:`~channels.base.Received`; ``active`` [B] bool or None (rows set False are not
        decoded and come back lost).
    :output (decode): :class:`~lrisc_sim.codec.Decoded`, ``info['blocks_failed']`` per image: decoded blocks
        whose CRC failed (>= 1: lost; with ``stop_on_failure`` the blocks after a failed one are not decoded,
        so this is a lower bound; -1: not decoded).

    .. rubric:: Examples

    >>> from channels.awgn import AWGN
    >>> codec = make_j2k_ldpc("qpsk-1/2")
    >>> x = torch.linspace(0, 1, 64 * 64).reshape(1, 1, 64, 64).expand(1, 3, 64, 64)
    >>> enc = codec.encode(x, 1 / 4)  # k = 3072 channel uses: one code block, at most 379 bytes
    >>> enc.length.tolist(), enc.info["source_bytes"][0] <= enc.state.layout.max_bytes
    ([3072], True)
    >>> rx = equalize(AWGN()(enc.symbols, 10.0, Realization(0, ["a"], 0)))
    >>> bool(codec.decode(rx, enc).ok[0])
    True
    """

    def __init__(self, mcs: MCS, source: SourceCoder, prefix: str = "bpg", num_iter: int = 20,
                 decode_batch: int | None = None, early_stop: bool = True, stop_on_failure: bool = True,
                 demapping: str = "app", device: str | torch.device = "cpu"):
        super().__init__(source, prefix, device)
        self.mcs = mcs
        self.name = f"{prefix}-ldpc:{mcs.name}"
        #: MCSs whose source budgets are prepared along with this one's (set by :class:`EnvelopeCodec`)
        self.sibling_mcs: tuple[MCS, ...] = ()
        self.link_options = dict(num_iter=num_iter, decode_batch=decode_batch, early_stop=early_stop,
                                 stop_on_failure=stop_on_failure, demapping=demapping)

    def describe(self) -> str:
        return f"{self.name}: {self.chain(self.mcs.modulation.upper())}"

    def chain(self, modulation: str) -> str:
        """Source coder + LDPC + ``modulation`` + demapping, in words."""
        o = self.link_options
        return (f"{self.source.describe()} + 5G LDPC (Sionna, {o['num_iter']} BP iterations max, CRC24B per block) "
                f"+ {modulation}, {o['demapping']} demapping")

    def link(self, layout: BlockLayout) -> LDPCLink:
        """The (cached, shared by all codecs of the process) link of a layout; building one costs 0.1-1 s."""
        key = (layout, str(self.device), tuple(sorted(self.link_options.items())))
        link = _LINKS.pop(key, None) or LDPCLink(layout, device=self.device, **self.link_options)
        _LINKS[key] = link  # most recently used last
        while len(_LINKS) > _MAX_LINKS:
            _LINKS.pop(next(iter(_LINKS)))
        return link

    def encode(self, x: torch.Tensor, cbr: float, ctx: Context | None = None) -> Encoded:
        ctx = ctx or Context.of(x)
        b = x.shape[0]
        k = ctx.budget(cbr)
        layout = plan_blocks(self.mcs, k)
        max_bytes = layout.max_bytes if layout is not None else 0
        also = [lay.max_bytes for lay in (plan_blocks(m, k) for m in self.sibling_mcs) if lay is not None]
        state, info = self._source_encode(x, [max_bytes] * b, ctx.hw, also)
        state.layout = layout
        info["mcs"] = [self.mcs.name] * b
        width = layout.uses if layout is not None else 0
        symbols = torch.zeros(b, width, dtype=torch.complex64, device=x.device)
        length = torch.zeros(b, dtype=torch.int64, device=x.device)
        sent = [i for i, p in enumerate(state.payloads) if p is not None]
        if sent:
            s = self.link(layout).transmit([state.payloads[i] for i in sent])
            symbols[sent] = s.to(x.device)
            length[sent] = layout.uses
        return Encoded(symbols=symbols, length=length, side_bits=torch.zeros(b, device=x.device), state=state,
                       info=info)

    def decode(self, rx: Received, enc: Encoded, ctx: Context | None = None, active: torch.Tensor | None = None
               ) -> Decoded:
        state: SourceState = enc.state
        b = enc.symbols.shape[0]
        hw = tuple(state.recon.shape[-2:])
        act = torch.tensor([p is not None for p in state.payloads], dtype=torch.bool)
        if active is not None:
            act &= active.detach().cpu().bool()
        received: list[bytes | None] = [None] * b
        failed = [0] * b
        if state.layout is not None and bool(act.any()):
            s, nv = unbiased(rx.s_hat, rx.noise_var, rx.gain)
            res = self.link(state.layout).receive(s, nv, act)
            received = res.payloads
            nf = res.blocks_failed
            failed = [int(nf[i]) if act[i] else -1 for i in range(b)]
        images, ok = self._source_decode(state, received, hw)
        return Decoded(images=images, ok=ok.to(images.device), info={"blocks_failed": failed})


class EnvelopeCodec(Codec):
    """Best-MCS envelope over fixed-MCS :class:`LDPCCodec` variants (genie-aided MCS choice).

    ``encode`` encodes every variant; ``run`` sends each over the same realization and keeps, per image, the best
    (:meth:`decode_all`, :meth:`combine`). It has no ``decode`` of its own: it is not one transmission.

    :param variants: the fixed-MCS codecs, most robust first (ties in PSNR go to the more robust MCS).
    :param prune: :meth:`decode_all` skips decoding an MCS for images already delivered at a PSNR that the
        MCS cannot exceed (its error-free PSNR); the envelope is unchanged.
    """

    multiple = 1

    def __init__(self, variants: Sequence[LDPCCodec], name: str, prune: bool = True):
        if not variants:
            raise ValueError("the envelope needs at least one MCS")
        self._variants = sorted(variants, key=lambda v: (v.mcs.efficiency, v.mcs.bits_per_symbol))
        self.name = name
        self.prune = prune
        for v in self._variants:  # the first variant to encode a batch has the source encodings of all made at once
            v.sibling_mcs = tuple(s.mcs for s in self._variants)

    def variants(self) -> list[LDPCCodec]:
        """The fixed-MCS codecs, most robust (lowest spectral efficiency) first."""
        return list(self._variants)

    def describe(self) -> str:
        return (f"{self.name}: best-MCS envelope (genie) over {', '.join(s.mcs.name for s in self._variants)}: "
                f"the best MCS per image and SNR, chosen knowing the realization; "
                f"{self._variants[0].chain('QAM of the chosen MCS')}")

    def to(self, device: torch.device | str) -> EnvelopeCodec:
        for v in self._variants:
            v.to(device)
        return self

    def encode(self, x: torch.Tensor, cbr: float, ctx: Context | None = None) -> Encoded:
        """Every variant's encoding: ``state`` = {"x": the sources (for the PSNR choice), "variants": one
        :class:`Encoded` per variant, order of :meth:`variants`}; no symbols of its own (``B x 0``)."""
        ctx = ctx or Context.of(x)
        b = x.shape[0]
        encs = [v.encode(x, cbr, ctx) for v in self._variants]
        return Encoded(symbols=torch.zeros(b, 0, dtype=torch.complex64, device=x.device),
                       length=torch.zeros(b, dtype=torch.int64), side_bits=torch.zeros(b),
                       state={"x": x, "variants": encs})

    def run(self, enc: Encoded, send: Callable[[Encoded], Received], ctx: Context) -> tuple[Decoded, Encoded]:
        """Every variant over the same realization (``send``), the best per image: :meth:`decode_all`."""
        return self.decode_all(enc.state["x"], enc.state["variants"], send)

    def combine(self, x: torch.Tensor, decs: Sequence[Decoded], encs: Sequence[Encoded]) -> tuple[Decoded, Encoded]:
        """Per image, the variant with the highest PSNR among those that delivered it (``ok``).

        :input x: [B, 3, H, W], the source images (as given to ``encode``).
        :input decs: one :class:`Decoded` per variant (order of :meth:`variants`).
        :input encs: one :class:`Encoded` per variant.
        :output: (:class:`Decoded`, :class:`Encoded`) of the winners: images, ``ok``, ``length`` and info
            columns of the winning MCS per image; ``info['mcs']`` is ``none`` where every MCS lost the image
            (the fallback image is shown and the most robust MCS's channel uses are reported).
        """
        if len(decs) != len(self._variants) or len(encs) != len(self._variants):
            raise ValueError("combine needs one Decoded and one Encoded per variant, in the order of variants()")
        b = x.shape[0]
        score = torch.full((len(decs), b), -math.inf, dtype=torch.float64)
        for j, d in enumerate(decs):
            p = psnr_uint8(x, d.images[..., : x.shape[-2], : x.shape[-1]])
            score[j] = torch.where(d.ok.cpu(), p, torch.full_like(p, -math.inf))
        win = []
        for i in range(b):
            best, j_best = -math.inf, -1
            for j in range(len(decs)):
                if score[j, i] > best:  # strict: ties go to the more robust MCS (earlier in the list)
                    best, j_best = float(score[j, i]), j
            win.append(j_best)
        return self._assemble(win, decs, encs)

    def _assemble(self, win: Sequence[int], decs: Sequence[Decoded], encs: Sequence[Encoded]
                  ) -> tuple[Decoded, Encoded]:
        b = len(win)
        src = [j if j >= 0 else 0 for j in win]
        images = torch.stack([decs[j].images[i] for i, j in enumerate(src)])
        ok = torch.tensor([j >= 0 for j in win], dtype=torch.bool, device=images.device)
        width = max(e.symbols.shape[1] for e in encs)
        symbols = torch.zeros(b, width, dtype=torch.complex64, device=encs[0].symbols.device)
        for i, j in enumerate(src):
            symbols[i, : encs[j].symbols.shape[1]] = encs[j].symbols[i]
        length = torch.stack([encs[j].length[i] for i, j in enumerate(src)])
        side = torch.stack([encs[j].side_bits[i] for i, j in enumerate(src)])
        enc_info = {key: [encs[j].info[key][i] for i, j in enumerate(src)] for key in encs[0].info}
        enc_info["mcs"] = [self._variants[j].mcs.name if j >= 0 else "none" for j in win]
        dec_info = {key: [decs[j].info[key][i] for i, j in enumerate(src)] for key in decs[0].info}
        dec_info["mcs"] = enc_info["mcs"]
        enc = Encoded(symbols=symbols, length=length, side_bits=side, state=None, info=enc_info)
        return Decoded(images=images, ok=ok, info=dec_info), enc

    def decode_all(self, x: torch.Tensor, encs: Sequence[Encoded], transmit: Callable[[Encoded], Received]
                   ) -> tuple[Decoded, Encoded]:
        """Transmit and decode every variant, most efficient first, then :meth:`combine`.

        With ``prune``, an image is not LDPC-decoded by a variant whose error-free PSNR is below the PSNR
        already delivered by a more efficient variant (it cannot win); ties are still decoded so that the
        recorded MCS is the one :meth:`combine` would pick. The channel is still applied to every variant.

        :input x: [B, 3, H, W] source images; ``encs``: the variants' encodings (order of :meth:`variants`).
        :input transmit: callable ``Encoded -> Received`` (channel with the batch's realization + equaliser).
        """
        b = x.shape[0]
        clean = [psnr_uint8(x, e.state.recon[..., : x.shape[-2], : x.shape[-1]]) for e in encs]
        decs: list[Decoded | None] = [None] * len(encs)
        best = torch.full((b,), -math.inf, dtype=torch.float64)
        for j in reversed(range(len(encs))):
            rx = transmit(encs[j])
            active = (clean[j] >= best) if self.prune else torch.ones(b, dtype=torch.bool)
            d = self._variants[j].decode(rx, encs[j], active=active)
            decs[j] = d
            p = psnr_uint8(x, d.images[..., : x.shape[-2], : x.shape[-1]])
            best = torch.maximum(best, torch.where(d.ok.cpu(), p, torch.full_like(p, -math.inf)))
        return self.combine(x, decs, encs)


def rows_of(rx: Received, rows: Sequence[int]) -> Received:
    """The :class:`~channels.base.Received` of the images ``rows`` of ``rx`` (every tensor sliced along dim 0)."""
    idx = torch.as_tensor(list(rows), dtype=torch.long)

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t[idx.to(t.device)]

    raw = rx.raw
    out = ChannelOutput(y=pick(raw.y), h=pick(raw.h), n0=pick(raw.n0), snr_db=pick(raw.snr_db))
    return Received(s_hat=pick(rx.s_hat), noise_var=pick(rx.noise_var), gain=pick(rx.gain), raw=out)


class AdaptiveCodec(Codec):
    r"""Link adaptation from the told SNR over fixed-MCS :class:`LDPCCodec` variants (``bpg-ldpc:adaptive``).

    Per image, the MCS is :func:`~baselines.digital.adaptation.choose_mcs` of the told SNR ``ctx.snr_db[b]``
    (the transmitter's belief, not the realization) for the image's budget :math:`k` = ``ctx.budget(cbr)``: the
    most efficient MCS whose threshold :math:`\gamma_\mathrm{MCS}(K)` (code block BLER target over AWGN, at the
    block length of its layout) is at most the told SNR minus ``margin`` dB, else the most robust MCS. The images
    of each chosen MCS are then encoded and decoded by that MCS's :class:`LDPCCodec`, so an image is, bit for
    bit, what the fixed-MCS codec of its MCS gives on the same realization (the same lost-image semantics).

    :param variants: the fixed-MCS codecs (the candidate set, any order).
    :param name: the codec name (``bpg-ldpc:adaptive``).
    :param table: the :class:`~baselines.digital.adaptation.ThresholdTable` (must hold every variant's MCS).
    :param margin: dB subtracted from the told SNR before the comparison (default 0).

    :input x, cbr, ctx (encode): [B, 3, H, W] `torch.float32` in [0, 1], the target CBR; ``ctx.snr_db`` [B] is
        required (SNR-aware encoder: the engine encodes once per SNR).
    :output (encode): :class:`~lrisc_sim.codec.Encoded`: ``symbols`` [B, max length] `torch.complex64`, row b
        the chosen MCS's symbols then zeros; ``length``, ``side_bits`` (0) and ``info`` of the chosen MCS's codec
        per image, plus ``mcs`` (the chosen MCS), ``told_snr_db``, ``mcs_threshold_db`` (its threshold at its
        block length) and ``mcs_qualified`` (False: no MCS qualified, the most robust one was sent).
    :input rx (decode): :class:`~channels.base.Received` of those symbols.
    :output (decode): :class:`~lrisc_sim.codec.Decoded` with ``info['blocks_failed']`` and ``info['mcs']``.

    .. rubric:: Examples

    >>> from channels.awgn import AWGN
    >>> codec = make_j2k_ldpc("adaptive")
    >>> x = torch.linspace(0, 1, 64 * 64).reshape(1, 1, 64, 64).expand(1, 3, 64, 64)
    >>> enc = codec.encode(x, 1 / 4, Context.of(x, snr_db=torch.tensor([4.0])))  # told 4 dB
    >>> enc.info["mcs"], enc.info["mcs_qualified"]
    (['qpsk-2/3'], [True])
    >>> [bool(codec.decode(equalize(AWGN()(enc.symbols, snr, Realization(0, ["a"], 0))), enc).ok[0])
    ...  for snr in (4.0, 1.0)]  # the channel as told, then 3 dB worse: the cliff
    [True, False]
    """

    multiple = 1
    snr_aware_encoder = True

    def __init__(self, variants: Sequence[LDPCCodec], name: str, table: ThresholdTable, margin: float = 0.0):
        if not variants:
            raise ValueError("link adaptation needs at least one MCS")
        if not math.isfinite(float(margin)):
            raise ValueError(f"margin must be a finite number of dB, got {margin}")
        self._variants = sorted(variants, key=lambda v: (v.mcs.efficiency, v.mcs.bits_per_symbol))
        for v in self._variants:
            table.lengths(v.mcs)  # every MCS must be in the table: a one-line ValueError with the fix if not
            v.sibling_mcs = ()  # one MCS per image: no other budgets to prepare
        self.name = name
        self.table = table
        self.margin = float(margin)
        link = self._variants[0].link_options
        measured = {k: table.link.get(k) for k in ("num_iter", "demapping")}
        if any(v is not None and v != link[k] for k, v in measured.items()):
            warnings.warn(f"{name}: the MCS thresholds were measured with {measured}, the link runs with "
                          f"num_iter={link['num_iter']}, demapping={link['demapping']}; the thresholds do not "
                          f"apply exactly (measure them again with 'python -m baselines.digital.adaptation --write')",
                          stacklevel=2)

    def variants(self) -> list[LDPCCodec]:
        """The fixed-MCS codecs, most robust (lowest spectral efficiency) first."""
        return list(self._variants)

    def describe(self) -> str:
        m = f", margin {self.margin:g} dB" if self.margin else ""
        return (f"{self.name}: link adaptation from the told SNR over {', '.join(v.mcs.name for v in self._variants)}"
                f" ({self.table.describe()}{m}; the most robust MCS when none qualifies); "
                f"{self._variants[0].chain('QAM of the chosen MCS')}")

    def to(self, device: torch.device | str) -> AdaptiveCodec:
        for v in self._variants:
            v.to(device)
        return self

    def choose(self, snr_db: torch.Tensor, uses: int) -> list[Choice]:
        """Per image, the :class:`~baselines.digital.adaptation.Choice` for told SNRs ``snr_db`` [B] (dB) and a
        budget of ``uses`` channel uses."""
        cands = [v.mcs for v in self._variants]
        memo: dict[float, Choice] = {}
        out = []
        for s in snr_db.detach().double().cpu().tolist():
            if s not in memo:
                memo[s] = choose_mcs(self.table, cands, uses, s, self.margin)
            out.append(memo[s])
        return out

    def encode(self, x: torch.Tensor, cbr: float, ctx: Context | None = None) -> Encoded:
        ctx = ctx or Context.of(x)
        b = x.shape[0]
        if ctx.snr_db is None:
            raise ValueError(f"{self.name} chooses its MCS from the SNR it is told: give Context(snr_db=...) "
                             "(the engine does for SNR-aware encoders)")
        told = torch.as_tensor(ctx.snr_db).flatten()
        told = told.expand(b) if told.numel() == 1 else told
        if told.numel() != b:
            raise ValueError(f"ctx.snr_db has {told.numel()} values for a batch of {b} images: give one per image")
        snr = told.detach().double().cpu()
        choices = self.choose(snr, ctx.budget(cbr))
        index = {v.mcs: j for j, v in enumerate(self._variants)}
        groups: list[tuple[int, list[int], Encoded]] = []
        for j, v in enumerate(self._variants):
            rows = [i for i, c in enumerate(choices) if index[c.mcs] == j]
            if not rows:
                continue
            sub = Context(hw=ctx.hw, side_charge=ctx.side_charge, snr_db=told[torch.as_tensor(rows).to(told.device)])
            groups.append((j, rows, v.encode(x[rows], cbr, sub)))
        width = max(e.symbols.shape[1] for _, _, e in groups)
        symbols = torch.zeros(b, width, dtype=torch.complex64, device=x.device)
        length = torch.zeros(b, dtype=torch.int64, device=x.device)
        side = torch.zeros(b, device=x.device)
        info: dict[str, list] = {key: [None] * b for key in groups[0][2].info}
        for _, rows, e in groups:
            r = torch.as_tensor(rows, dtype=torch.long, device=x.device)
            symbols[r, : e.symbols.shape[1]] = e.symbols
            length[r] = e.length.to(x.device)
            side[r] = e.side_bits.to(x.device)
            for key, vals in e.info.items():
                for i, val in zip(rows, vals):
                    info[key][i] = val
        info["told_snr_db"] = [round(float(s), 4) for s in snr.tolist()]
        info["mcs_threshold_db"] = [round(c.threshold_db, 4) if math.isfinite(c.threshold_db) else None
                                    for c in choices]
        info["mcs_qualified"] = [bool(c.qualified) for c in choices]
        return Encoded(symbols=symbols, length=length, side_bits=side, state={"groups": groups}, info=info)

    def decode(self, rx: Received, enc: Encoded, ctx: Context | None = None) -> Decoded:
        groups = enc.state["groups"]
        b = enc.symbols.shape[0]
        images: torch.Tensor | None = None
        ok = torch.zeros(b, dtype=torch.bool)
        info: dict[str, list] = {"mcs": list(enc.info["mcs"])}
        for j, rows, e in groups:
            d = self._variants[j].decode(rows_of(rx, rows), e)
            if images is None:
                images = torch.empty((b, *d.images.shape[1:]), dtype=d.images.dtype, device=d.images.device)
            r = torch.as_tensor(rows, dtype=torch.long)
            images[r.to(images.device)] = d.images
            ok[r] = d.ok.cpu()
            for key, vals in d.info.items():
                col = info.setdefault(key, [None] * b)
                for i, val in zip(rows, vals):
                    col[i] = val
        return Decoded(images=images, ok=ok.to(images.device), info=info)


class CapacityCodec(SeparationCodec):
    r"""Source coder at the capacity budget, delivered error-free unless the channel is in outage.

    Default (``bpg-capacity``, no channel knowledge at the transmitter): budget per image
    :math:`\lfloor k \log_2(1 + \mathrm{SNR}) \rfloor` bits, :math:`k` = the total budget of channel uses.
    The codec sends :math:`k` placeholder symbols (all 1, unit power) so that the channel draws the image's
    gains; the decoder declares an outage (image lost, fallback, ``ok = False``) when the instantaneous
    capacity :math:`\bar C = \frac1k\sum_{i<k}\log_2(1 + |h_i|^2/N_0)` is below the rate used
    :math:`8 \cdot \text{bytes} / k` (:math:`10^{-6}` tolerance for float rounding). Over AWGN it never is;
    over Rayleigh block fading it is whenever :math:`|h|^2 \lesssim 1` (probability about :math:`1 - e^{-1}`).

    ``csit=True`` (``bpg-capacity:csit``): the transmitter knows the realization and codes at
    :math:`\lfloor k \bar C \rfloor` bits, never in outage: an upper bound of the genie-aided best-MCS
    envelope on every channel (source coding then happens at decode time, per SNR and trial).

    :input x, cbr, ctx (encode): ``ctx.snr_db`` [B] is required (SNR-aware encoder).
    :output: ``info`` columns ``source_*``, ``capacity`` (:math:`\bar C` at decode), ``rate`` (bits per use).
    """

    snr_aware_encoder = True

    def __init__(self, source: SourceCoder, prefix: str = "bpg", csit: bool = False,
                 device: str | torch.device = "cpu"):
        super().__init__(source, prefix, device)
        self.csit = bool(csit)
        self.name = f"{prefix}-capacity" + (":csit" if self.csit else "")

    def describe(self) -> str:
        if self.csit:
            return f"{self.name}: {self.source.describe()} at k x instantaneous capacity (transmitter knows h)"
        return f"{self.name}: {self.source.describe()} at k log2(1+SNR) bits, error-free unless in outage"

    def encode(self, x: torch.Tensor, cbr: float, ctx: Context | None = None) -> Encoded:
        ctx = ctx or Context.of(x)
        b = x.shape[0]
        k = ctx.budget(cbr)
        symbols = torch.ones(b, k, dtype=torch.complex64, device=x.device)
        length = torch.full((b,), k, dtype=torch.int64, device=x.device)
        side = torch.zeros(b, device=x.device)
        if self.csit:
            return Encoded(symbols=symbols, length=length, side_bits=side, state=(x.detach().clone(), ctx.hw),
                           info={"mcs": ["capacity-csit"] * b})
        if ctx.snr_db is None:
            raise ValueError(f"{self.name} needs the SNR at encode time: give Context(snr_db=...)")
        snr = torch.as_tensor(ctx.snr_db, dtype=torch.float64).expand(b).cpu()
        bits = torch.floor(k * torch.log2(1 + torch.pow(10.0, snr / 10)))
        state, info = self._source_encode(x, [int(v) // 8 for v in bits.tolist()], ctx.hw)
        info["mcs"] = ["capacity"] * b
        info["rate"] = [8.0 * n / k if k else 0.0 for n in info["source_bytes"]]
        return Encoded(symbols=symbols, length=length, side_bits=side, state=state, info=info)

    def decode(self, rx: Received, enc: Encoded, ctx: Context | None = None) -> Decoded:
        k = int(enc.length.max()) if enc.length.numel() else 0
        h2 = (rx.raw.h[:, :k].abs() ** 2).double().cpu()
        n0 = rx.raw.n0.double().cpu()[:, None]
        cap = torch.log2(1 + h2 / n0).mean(1) if k else torch.zeros(h2.shape[0], dtype=torch.float64)
        if self.csit:
            x, hw = enc.state
            state, info = self._source_encode(x, [int(math.floor(k * float(c) + 1e-9)) // 8 for c in cap], hw)
            info["rate"] = [8.0 * n / k if k else 0.0 for n in info["source_bytes"]]
            received = state.payloads
        else:
            state, info = enc.state, {}
            rate = torch.tensor(enc.info["rate"], dtype=torch.float64)
            deliver = cap >= rate - 1e-6
            received = [p if bool(deliver[i]) else None for i, p in enumerate(state.payloads)]
        images, ok = self._source_decode(state, received, tuple(state.recon.shape[-2:]))
        return Decoded(images=images, ok=ok.to(images.device), info={**info, "capacity": cap.tolist()})


# ---------------------------------------------------------------------------------------------------- factories
_SOURCE_OPTIONS = ("source", "bpgenc", "bpgdec", "bpg_level", "hevc_preset")
_LINK_OPTIONS = ("num_iter", "decode_batch", "early_stop", "stop_on_failure", "demapping")
_X265_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                 "placebo")
#: the declared options (``lrisc_sim.codec.Option``) of the capacity codecs (the source coder's) ...
SOURCE_OPTIONS = (
    Option("source", "str", "auto", "source coder: auto (bpgenc if configured or on PATH, else HEVC-intra), bpg, "
           "hevc (x265 via pillow-heif) or jpeg2000", choices=("auto", "bpg", "hevc", "jpeg2000", "j2k")),
    Option("bpgenc", "program", None, "the bpgenc executable (default $LRISC_BPGENC, else bpgenc on PATH); "
           "not from experiment files"),
    Option("bpgdec", "program", None, "the bpgdec executable (default $LRISC_BPGDEC, else bpgdec on PATH); "
           "not from experiment files"),
    Option("bpg_level", "int", 8, "bpgenc -m compression effort", low=1, high=9),
    Option("hevc_preset", "str", "slow", "x265 preset of the HEVC-intra coder", choices=_X265_PRESETS))
#: ... and of the LDPC codecs (source coder, link, envelope)
LDPC_OPTIONS = SOURCE_OPTIONS + (
    Option("num_iter", "int", 20, "maximum LDPC belief-propagation iterations", low=1, high=1000),
    Option("decode_batch", "int", None, "code words per decoder call (default about 64 k coded bits)", low=1,
           high=1 << 20),
    Option("early_stop", "bool", True, "stop a code word once its CRC passes"),
    Option("stop_on_failure", "bool", True, "stop an image's blocks at its first failed block"),
    Option("demapping", "str", "app", "QAM demapper: exact APP or max-log", choices=("app", "maxlog")),
    Option("prune", "bool", True, "envelope: skip MCSs that cannot beat a cheaper one"),
    Option("mcs", "str", None, "envelope and adaptive: comma list of MCSs (default the standard six), e.g. "
           "qpsk-1/2,16qam-1/2"),
    Option("margin", "float", 0.0, "adaptive: dB subtracted from the told SNR before comparing it with the MCS "
           "thresholds", low=-30, high=30),
    Option("thresholds", "path", None, "adaptive: MCS threshold table (default the shipped mcs_thresholds.json, "
           "written by python -m baselines.digital.adaptation --write)"))
#: options that only the adaptive codec (ARG ``adaptive``) takes
_ADAPTIVE_OPTIONS = ("margin", "thresholds")


def _check_options(options: dict, allowed: Sequence[str], what: str) -> None:
    bad = sorted(set(options) - set(allowed) - {"device"})
    if bad:
        raise TypeError(f"unknown option(s) {', '.join(bad)} for {what}: accepted {', '.join(sorted(allowed))}")


def _source(kind: str, options: dict) -> SourceCoder:
    opts = {k: options[k] for k in _SOURCE_OPTIONS[1:] if k in options}
    return make_source_coder(options.get("source", kind), **opts)


def _parse_mcs_list(text: str | Sequence[str] | None) -> list[MCS]:
    if text is None:
        return list(STANDARD_MCS)
    items = text.split(",") if isinstance(text, str) else list(text)
    return [parse_mcs(t) for t in items if str(t).strip()]


def _ldpc_factory(prefix: str, default_source: str, arg: str | None, options: dict) -> Codec:
    _check_options(options, _SOURCE_OPTIONS + _LINK_OPTIONS + ("prune", "mcs") + _ADAPTIVE_OPTIONS, f"{prefix}-ldpc")
    adaptive = bool(arg) and arg.strip().lower() == "adaptive"
    extra = sorted(k for k in _ADAPTIVE_OPTIONS if k in options)
    if extra and not adaptive:
        raise TypeError(f"option(s) {', '.join(extra)} apply only to link adaptation: use {prefix}-ldpc:adaptive")
    source = _source(default_source, options)
    link = {k: options[k] for k in _LINK_OPTIONS if k in options}
    device = options.get("device", "cpu")
    if adaptive:
        variants = [LDPCCodec(m, source, prefix, device=device, **link) for m in _parse_mcs_list(options.get("mcs"))]
        return AdaptiveCodec(variants, f"{prefix}-ldpc:adaptive", ThresholdTable.load(options.get("thresholds")),
                             margin=float(options.get("margin", 0.0)))
    if arg:
        try:
            mcs = parse_mcs(arg)
        except ValueError as e:
            raise ValueError(f"{e}; or write {prefix}-ldpc:adaptive for link adaptation") from None
        return LDPCCodec(mcs, source, prefix, device=device, **link)
    variants = [LDPCCodec(m, source, prefix, device=device, **link) for m in _parse_mcs_list(options.get("mcs"))]
    return EnvelopeCodec(variants, f"{prefix}-ldpc", prune=bool(options.get("prune", True)))


def _capacity_factory(prefix: str, default_source: str, arg: str | None, options: dict) -> Codec:
    if arg not in (None, "", "csit"):
        raise ValueError(f"bad codec '{prefix}-capacity:{arg}': use {prefix}-capacity or {prefix}-capacity:csit")
    _check_options(options, _SOURCE_OPTIONS, f"{prefix}-capacity")
    return CapacityCodec(_source(default_source, options), prefix, csit=arg == "csit",
                         device=options.get("device", "cpu"))


@codec_factory(LDPC_OPTIONS, arg="one MCS, e.g. 16qam-1/2, or adaptive (MCS from the told SNR); default: the "
                                "genie best-MCS envelope")
def make_bpg_ldpc(arg: str | None = None, **options) -> Codec:
    """``bpg-ldpc`` (genie best-MCS envelope), ``bpg-ldpc:MCS`` (one MCS, e.g. ``16qam-1/2``) or
    ``bpg-ldpc:adaptive`` (link adaptation from the told SNR, :class:`AdaptiveCodec`).

    Options: ``source`` (``auto``: bpgenc if found, else HEVC-intra via pillow-heif; ``bpg``; ``hevc``),
    ``bpgenc``/``bpgdec`` paths, ``bpg_level`` (bpgenc ``-m``), ``hevc_preset`` (x265 preset, default slow),
    ``num_iter`` (20), ``decode_batch`` (None: about 64 k coded bits per call), ``early_stop`` (True),
    ``stop_on_failure`` (True), ``demapping`` (``app``), ``prune`` (True), ``mcs`` (comma list for the
    envelope and the adaptive codec; default the standard six), ``margin`` (adaptive: dB, default 0),
    ``thresholds`` (adaptive: the threshold table, default the shipped one), ``device``.
    """
    return _ldpc_factory("bpg", "auto", arg, options)


@codec_factory(SOURCE_OPTIONS, arg="csit: the transmitter knows the channel (k times the instantaneous capacity)")
def make_bpg_capacity(arg: str | None = None, **options) -> Codec:
    """``bpg-capacity``: BPG (or HEVC-intra) at k log2(1+SNR) bits, error-free unless in outage;
    ``bpg-capacity:csit``: at k times the instantaneous capacity (transmitter knows the channel)."""
    return _capacity_factory("bpg", "auto", arg, options)


@codec_factory(LDPC_OPTIONS, arg="one MCS, e.g. 16qam-1/2, or adaptive (MCS from the told SNR); default: the "
                                "genie best-MCS envelope")
def make_j2k_ldpc(arg: str | None = None, **options) -> Codec:
    """``jpeg2000-ldpc`` (genie envelope), ``jpeg2000-ldpc:MCS`` or ``jpeg2000-ldpc:adaptive``; options as
    :func:`make_bpg_ldpc`."""
    return _ldpc_factory("jpeg2000", "jpeg2000", arg, options)


@codec_factory(SOURCE_OPTIONS, arg="csit: the transmitter knows the channel (k times the instantaneous capacity)")
def make_j2k_capacity(arg: str | None = None, **options) -> Codec:
    """``jpeg2000-capacity`` / ``jpeg2000-capacity:csit``: JPEG2000 at the capacity budget."""
    return _capacity_factory("jpeg2000", "jpeg2000", arg, options)


def availability(name: str) -> str:
    """'ok' or why codec ``name`` cannot run here (cheap: imports nothing heavy)."""
    need_ldpc = name.endswith("-ldpc")
    if need_ldpc and importlib.util.find_spec("sionna") is None:
        return "needs sionna-no-rt (pip install sionna-no-rt)"
    if name.startswith("jpeg2000"):
        from PIL import features

        return "ok" if features.check("jpg_2000") else "Pillow was built without OpenJPEG (JPEG2000)"
    if name.startswith("bpg"):
        import shutil

        if shutil.which("bpgenc") or importlib.util.find_spec("pillow_heif") is not None:
            return "ok"
        return "needs bpgenc/bpgdec on PATH or pillow-heif (pip install pillow-heif) for HEVC-intra"
    return "ok"
