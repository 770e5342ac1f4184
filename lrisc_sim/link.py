"""The link between a codec and the channel: what the radio can send, what the receiver knows, what the codec is told.

Three sweep axes (issue 27) make a *link variant* each; their values are part of a row's identity through its
``channel`` column (``rayleigh-block [CSI ls:2, QAM16, design 10 dB]``), so one folder holds every variant of an
experiment, each on the same channel realizations (the variants change what is sent and known, never the draws):

* **CSI** (``--csi``, ``channel.csi``, ``csi=``): ``perfect`` (the receiver knows h), or ``ls:P`` / ``lmmse:P``:
  P known pilot symbols per coherence block are sent through the same channel and the receiver equalises with
  their least-squares or LMMSE estimate of h (:mod:`channels.pilots`). Pilots are **not** charged to the codec's
  budget: every codec sends its payload as with perfect CSI and the pilots' channel uses are reported in their own
  column, ``info['cbr_pilot']`` of every row and ``cbr_pilot`` of the summary (the same rule for every codec).
* **Design SNR** (``--design-snr``, ``channel.design_snr``, ``design_snr=``): ``channel`` (the codec is told the
  channel's SNR, the default) or a value in dB. The told SNR is the transmitter's belief (no CSIT): what the
  encoder gets (``Context.snr_db``: LRISC's SNR modules and rate control in f_e, SNR-adaptive encoders, the digital
  chain's MCS choice, a capacity side charge). The receiver knows its channel (CSIR: the true N0, and h or its
  pilot estimate), so equalisation, LLRs and decoders that read the SNR from the received symbols' noise variance
  work as without a design SNR; the genie envelope, which needs no belief, is unchanged. The row's ``snr_db``
  stays the channel's SNR, the x axis of the curves.
* **Constellation** (``--constellation``, ``channel.constellation``, ``constellation=``): ``none``, or ``qamM`` /
  ``pskM`` / ``bpsk`` / ``qpsk``: every transmitted symbol of any codec is mapped to the nearest point of that
  unit-power constellation and the image's symbols rescaled to unit average power (P = 1 is kept), before the
  channel (:mod:`channels.constellation`); the decoder receives the noisy constellation points. The symbol-level
  signal-to-quantisation-noise ratio is ``info['sqnr_db']``.

Rows of a fading channel, or with estimated CSI, also carry the channel state (:func:`row_state`): ``h2`` (mean
|h|^2 over the image's transmitted symbols), ``snr_inst_db`` (10 log10 of SNR x ``h2``), ``outage`` (the codec
decoded nothing: ``ok`` false), and with estimated CSI ``csi_nmse`` (mean |h_est - h|^2 / mean |h|^2) and
``cbr_pilot``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

#: the value of the design-SNR axis meaning "told the channel's SNR"
CHANNEL_SNR = "channel"
#: the info keys of the channel state (also averaged into summary.csv, in this order)
STATE_KEYS = ("h2", "snr_inst_db", "csi_nmse", "cbr_pilot", "sqnr_db", "design_snr_db", "outage")


@dataclass(frozen=True)
class LinkVariant:
    """One point of the link axes: ``csi`` (canonical spec, ``perfect`` | ``ls:P`` | ``lmmse:P``),
    ``design_snr`` (dB told to the codec; None: the channel's SNR), ``constellation`` (``none`` or a name such as
    ``qam16``)."""

    csi: str = "perfect"
    design_snr: float | None = None
    constellation: str = "none"

    @property
    def is_default(self) -> bool:
        return self == LinkVariant()

    def suffix(self) -> str:
        """What the ``channel`` column adds for this variant: ``""`` for the default (so rows made before these
        axes existed keep their identity), else e.g. `` [CSI ls:2, QAM16, design 10 dB]``."""
        parts = []
        if self.csi != "perfect":
            parts.append(f"CSI {self.csi}")
        if self.constellation != "none":
            parts.append(self.constellation.upper())
        if self.design_snr is not None:
            parts.append(f"design {self.design_snr:g} dB")
        return f" [{', '.join(parts)}]" if parts else ""

    def told(self, snr_db: float) -> float:
        """The SNR (dB) the codec is told when the channel's SNR is ``snr_db``."""
        return float(snr_db) if self.design_snr is None else float(self.design_snr)


def channel_column(channel: str, equalizer: str, variant: LinkVariant = LinkVariant()) -> str:
    """A row's ``channel`` column: the channel spec, `` (ZF)`` when the equaliser is not the default MMSE, and the
    link variant's suffix (:meth:`LinkVariant.suffix`)."""
    return channel + ("" if equalizer == "mmse" else f" ({equalizer.upper()})") + variant.suffix()


def link_description(channel, variants: list[LinkVariant]) -> str:
    """The channel's ``describe()`` with the sweep's link axes: its ``perfect CSI`` claim dropped when a variant
    estimates the channel, and the values of every axis that is not at its default, e.g. ``Rayleigh block fading,
    ...; CSI perfect / ls:2 (pilots reported as cbr_pilot)``."""
    text = channel.describe()
    csis = list(dict.fromkeys(v.csi for v in variants))
    if csis != ["perfect"]:
        text = text.removesuffix(", perfect CSI") + f"; CSI {' / '.join(csis)} (pilots reported as cbr_pilot)"
    designs = list(dict.fromkeys(v.design_snr for v in variants))
    if designs != [None]:
        text += "; transmitter told " + " / ".join("the channel SNR" if d is None else f"{d:g} dB" for d in designs)
    consts = list(dict.fromkeys(v.constellation for v in variants))
    if consts != ["none"]:
        text += "; symbols " + " / ".join("unconstrained" if c == "none" else c.upper() for c in consts)
    return text


def channel_of(column: str) -> str:
    """The channel spec of a ``channel`` column (:func:`channel_column`): without the equaliser and the link
    variant, e.g. ``awgn`` of ``awgn (ZF) [design 10 dB]``."""
    return str(column).split(" (")[0].split(" [")[0].strip()


def canonical_csi(spec: str) -> str:
    """``perfect``, ``ls:2``, ``lmmse:1`` ... (``channels.pilots.parse_csi``; one-line ``ValueError``)."""
    if str(spec).strip().lower() == "perfect":
        return "perfect"
    from channels.pilots import parse_csi

    return parse_csi(str(spec)).label


def check_csi(csi: str, channel) -> None:
    """A one-line ``ValueError`` when the CSI spec's pilots do not fit the channel's blocks (P >= L, P >= D,
    P > fft: ``channels.pilots.pilot_scheme``); nothing for ``perfect``. ``channel``: a spec or a ``Channel``."""
    if canonical_csi(csi) == "perfect":
        return
    from channels import make_channel
    from channels.pilots import parse_csi, pilot_scheme

    pilot_scheme(parse_csi(csi), make_channel(channel) if isinstance(channel, str) else channel)


def canonical_constellation(spec: str) -> str:
    """``none`` or the constellation's name (``qam16``, ``psk8``, ``bpsk``); one-line ``ValueError``."""
    from channels.constellation import Constellation, parse_constellation

    return "none" if parse_constellation(spec) is None else Constellation(spec).name


def canonical_design_snr(value) -> float | None:
    """``channel`` / None -> None; a number (or numeric string) within -50..60 dB -> float; else ``ValueError``."""
    if value is None or (isinstance(value, str) and value.strip().lower() == CHANNEL_SNR):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not math.isfinite(v) or not -50 <= v <= 60:
        raise ValueError(f"bad design SNR {value!r}: give 'channel' (told the channel's SNR) or a value in dB "
                         "within -50..60")
    return v


def variants(csi: Sequence[str], design_snr: Sequence[float | None], constellation: Sequence[str]
             ) -> list[LinkVariant]:
    """Every combination of the three axes (CSI-major), each value in canonical form."""
    return [LinkVariant(c, d, q) for c, q, d in itertools.product(
        [canonical_csi(c) for c in csi], [canonical_constellation(q) for q in constellation],
        [canonical_design_snr(d) for d in design_snr])]


@dataclass
class LinkState:
    """What one transmission of a batch saw, for the rows' channel state.

    h_true : ``B x k`` complex64, the true gains at the data symbols.
    h_est : ``B x k`` complex64 or None, the receiver's estimate of them (None: perfect CSI).
    n_pilots : ``B`` int64, the channel uses of each image's frame that carry no data (its own length's pilots,
        ``channels.pilots.PilotLink.pilots``; zeros with perfect CSI).
    sqnr_db : ``B`` float32 or None, the constellation mapping's SQNR (None: no constellation).
    """

    h_true: torch.Tensor
    h_est: torch.Tensor | None
    n_pilots: torch.Tensor
    sqnr_db: torch.Tensor | None


class LinkPath:
    """The prepared link of one variant over one channel: ``send`` maps the symbols onto the constellation, sends
    them (with pilots when the CSI is estimated) and builds what the receiver has.

    :input (send): ``symbols`` ``B x k`` complex64 (an ``Encoded``'s), ``length`` ``B`` (symbols sent per image),
        ``snr_db`` the channel's SNR, ``realization`` the batch's draws.
    :output (send): ``(sent, out, state)``: the ``B x k`` symbols that entered the channel (the constellation
        points, or ``symbols``), the channel's ``ChannelOutput`` at them, which the receiver equalises (``h`` its
        estimate under estimated CSI; the true N0: the design SNR is the transmitter's belief only), and the
        :class:`LinkState`.
    """

    def __init__(self, variant: LinkVariant, channel):
        from channels.constellation import Constellation

        self.variant = variant
        self.channel = channel
        self.constellation = None if variant.constellation == "none" else Constellation(variant.constellation)
        self.pilots = None
        if variant.csi != "perfect":
            from channels.pilots import PilotLink, parse_csi

            self.pilots = PilotLink(parse_csi(variant.csi), channel)
        self._mapped: tuple | None = None  # (symbols, length, points, SQNR) of the last mapping

    def map(self, symbols: torch.Tensor, length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The constellation points of ``symbols`` and their SQNR (``symbols`` and None without a constellation).
        The mapping does not depend on the SNR or the trial: an encoding sent at several points (an SNR-unaware
        encoder) is mapped once, the last one kept by identity."""
        if self.constellation is None:
            return symbols, None
        last = self._mapped
        if last is None or last[0] is not symbols or last[1] is not length:
            last = self._mapped = (symbols, length, *self.constellation.quantize(symbols, length))
        return last[2], last[3]

    def send(self, symbols: torch.Tensor, length: torch.Tensor, snr_db: float, realization):
        s, sqnr = self.map(symbols, length)
        b = s.shape[0]
        if self.pilots is None:
            out = self.channel(s, snr_db, realization)
            h_true, h_est, n_pil = out.h, None, torch.zeros(b, dtype=torch.int64)
        else:
            est = self.pilots.transmit(s, snr_db, realization)
            out, h_true, h_est = est.out, est.h_true, est.out.h
            n_pil = torch.tensor([self.pilots.pilots(int(n)) for n in length.detach().cpu()], dtype=torch.int64)
        return s, out, LinkState(h_true=h_true, h_est=h_est, n_pilots=n_pil, sqnr_db=sqnr)


def row_state(variant: LinkVariant, state: LinkState | None, length: torch.Tensor, snr_db: float, fading: bool,
              ok: torch.Tensor, n_uses: int) -> dict[str, list]:
    """Per-image info columns of the channel state (module docstring): ``{key: [value per image]}`` for the keys
    that apply (none for the default link over AWGN, so those rows are unchanged). ``length`` ``B``: the symbols
    each image sent (the state's means run over them); ``n_uses``: 3 H W (the CBR's denominator)."""
    out: dict[str, list] = {}
    b = int(length.shape[0])
    estimated = variant.csi != "perfect"
    if state is not None and (fading or estimated):
        h = state.h_true.detach().cpu()
        n = length.detach().cpu().clamp(max=h.shape[1])
        mask = torch.arange(h.shape[1])[None, :] < n[:, None]
        h2 = torch.where(mask, h.abs() ** 2, torch.zeros(())).sum(1) / n.clamp(min=1)
        err = None
        if state.h_est is not None:
            e2 = (state.h_est.detach().cpu() - h).abs() ** 2
            err = torch.where(mask, e2, torch.zeros(())).sum(1) / n.clamp(min=1) / h2.clamp(min=1e-30)
        snr_lin = 10 ** (float(snr_db) / 10)
        out["h2"] = [round(float(v), 6) for v in h2]
        out["snr_inst_db"] = [round(10 * math.log10(max(snr_lin * float(v), 1e-30)), 4) for v in h2]
        if estimated:
            out["csi_nmse"] = [round(float(v), 6) for v in err] if err is not None else [0.0] * b
            out["cbr_pilot"] = [float(v) / n_uses for v in state.n_pilots]
        out["outage"] = [not bool(v) for v in ok.detach().cpu()]
    if state is not None and state.sqnr_db is not None:
        out["sqnr_db"] = [round(float(v), 4) if math.isfinite(float(v)) else "inf" for v in state.sqnr_db.cpu()]
    if variant.design_snr is not None:
        out["design_snr_db"] = [float(variant.design_snr)] * b
    return out
