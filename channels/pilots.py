r"""Pilot-based channel estimation: the receiver learns ``h`` from known pilot symbols instead of being told it.

By default the simulator's receiver has perfect CSI (ARCHITECTURE.md section 3). With a CSI spec other than
``perfect`` the transmitter inserts pilot symbols :math:`p = 1 + 0j` (unit power) at known positions of the frame,
the channel acts once on the whole frame (``channel(frame, snr_db, realization)``), and the receiver estimates the
gains at the data positions from the received pilots. The estimate replaces ``h`` in the
:class:`~channels.base.ChannelOutput` of the data symbols, so :func:`~channels.base.equalize` and every decoder
use it unchanged.

CSI specs (:func:`parse_csi`)
=============================

=============  ===========================================================================================
``perfect``    the receiver knows h (default; the channel's output unchanged, no pilots)
``ls:P``       least-squares estimate from P pilot symbols per coherence block (``ls`` = ``ls:1``)
``lmmse:P``    linear MMSE estimate from the same pilots, with the channel's second-order statistics
=============  ===========================================================================================

P is an integer in 1..64: the pilots per coherence block (block fading), per period of :math:`D` uses (fast
fading) or per pilot OFDM symbol (TDL). The frame layout follows what the channel declares
(:meth:`~channels.base.Channel.pilot_structure`, :func:`pilot_scheme`):

* **Block fading** (:class:`~channels.fading.RayleighFading` / :class:`~channels.fading.RicianFading` with a
  coherence length :math:`L \ge 2`, or one block per image; :class:`~channels.awgn.AWGN` counts as one block per
  image): :class:`BlockPilots`, the first P uses of every coherence block are pilots, the other :math:`L - P`
  carry data. LS averages the block's pilots, :math:`\hat h_\mathrm{LS} = \frac1P \sum_i y_{p,i} / p`, with error
  variance :math:`N_0 / P`; LMMSE shrinks it, :math:`\hat h = \hat h_\mathrm{LS} / (1 + N_0/P)`, error variance
  :math:`N_0 / (P + N_0)`.
* **Fast fading** (Rayleigh with :math:`L = 1`, fast Rician, and any channel this module does not know, e.g. a
  plugin): :class:`InterpolatedPilots`, P pilots then :math:`D - P` data uses, repeating with period
  :math:`D` = :data:`FAST_PERIOD`; per-pilot estimates, linearly interpolated between pilot positions.
* **TDL over OFDM** (:class:`~channels.tdl.TDLChannel`): :class:`OFDMPilots`, a comb of P pilot subcarriers in
  the first OFDM symbol of every slot of :data:`OFDM_SLOT` OFDM symbols, frequency interpolation (linear, or LMMSE
  with the profile's frequency covariance), then linear interpolation across OFDM symbols.

:meth:`PilotLink.pilots` gives the pilot uses of a frame of ``k`` data symbols (the sweep reports them in their own
CBR column, ``cbr_pilot``, the same rule for every codec) and :meth:`PilotLink.max_data` the most data symbols
whose frame would fit a budget if pilots were charged to it.

The receiver's equaliser treats the estimate as the truth (mismatched decoding, what a real receiver does):
``equalize(out)`` reports the noise variance with :math:`N_0` only. :attr:`Estimated.err_var` is the error variance
the receiver's model expects, for a decoder that wants to account for it (e.g. LLRs with :math:`N_0 +
\sigma_e^2`).

**Identical realizations.** Every position of the frame has a fixed role (pilot or data) that does not depend on
``k``, and a frame of ``k`` data symbols is the shortest prefix of that role sequence that holds them (plus, for
OFDM, the rest of the pilot comb of its last OFDM symbol). So two codecs sending :math:`k_1 \le k_2` data symbols
send the same first pilots and see the same first gains and noise samples (the channel's prefix rule); the j-th
data symbol always occupies the same channel use. All randomness is the channel's own (its realization's streams):
the pilots' noise is the channel's noise at the pilot positions.
"""

from __future__ import annotations

import bisect
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from channels.base import Channel, ChannelOutput, channel_label
from channels.realization import Realization
from channels.tdl import frequency_covariance as tdl_frequency_covariance  # noqa: F401 (re-exported)

#: Largest number of pilot symbols P per coherence block a CSI spec accepts.
MAX_PILOTS = 64
#: The pilot symbol (unit power, known to the receiver).
PILOT_SYMBOL = complex(1.0, 0.0)
#: Pilot period D (channel uses) for fast fading and unknown channels: P pilots then D - P data, repeating.
FAST_PERIOD = 16
#: OFDM symbols per slot for TDL over OFDM (5G NR, normal cyclic prefix): the first OFDM symbol of every slot
#: carries the pilot comb.
OFDM_SLOT = 14
#: CSI estimation methods.
CSI_METHODS = ("perfect", "ls", "lmmse")


def csi_spec_help() -> str:
    """One line naming the accepted CSI specs."""
    return (f"accepted CSI specs: perfect (default), ls[:P] or lmmse[:P] with P pilot symbols per coherence block, "
            f"an integer in 1..{MAX_PILOTS} (default 1)")


@dataclass(frozen=True)
class CSI:
    """What the receiver knows about the channel: ``perfect``, or an estimate (``ls`` / ``lmmse``) from
    ``pilots`` pilot symbols per coherence block.

    :param method: ``"perfect"``, ``"ls"`` or ``"lmmse"``.
    :param pilots: P, pilot symbols per coherence block (0 for ``perfect``, 1..:data:`MAX_PILOTS` otherwise).

    >>> parse_csi("lmmse:4").label
    'lmmse:4'
    """

    method: str = "perfect"
    pilots: int = 0

    def __post_init__(self) -> None:
        if self.method not in CSI_METHODS:
            raise ValueError(f"unknown CSI method {self.method!r}; {csi_spec_help()}")
        ok = isinstance(self.pilots, int) and not isinstance(self.pilots, bool) and (
            self.pilots == 0 if self.method == "perfect" else 1 <= self.pilots <= MAX_PILOTS)
        if not ok:
            raise ValueError(f"CSI {self.method!r} with {self.pilots!r} pilots; {csi_spec_help()}")

    @property
    def perfect(self) -> bool:
        """True when the receiver is given the true gains (no pilots)."""
        return self.method == "perfect"

    @property
    def label(self) -> str:
        """Canonical spec (``perfect``, ``ls:2``, ``lmmse:4``): ``parse_csi(csi.label) == csi``."""
        return "perfect" if self.perfect else f"{self.method}:{self.pilots}"


def parse_csi(spec: str) -> CSI:
    """Parse a CSI spec: ``perfect``, ``ls``, ``ls:P``, ``lmmse``, ``lmmse:P`` (P in 1..64, default 1).

    :input spec: `str`, case-insensitive, surrounding spaces ignored.
    :output csi: :class:`CSI`.

    Anything else raises a one-line `ValueError` naming the accepted forms.

    >>> parse_csi("ls"), parse_csi(" LMMSE:8 ").label
    (CSI(method='ls', pilots=1), 'lmmse:8')
    """
    if not isinstance(spec, str):
        raise ValueError(f"CSI spec must be a string, got {type(spec).__name__}; {csi_spec_help()}")
    text = spec.strip().lower()
    method, sep, rest = text.partition(":")
    method = method.strip()
    if method == "perfect" and not sep:
        return CSI()
    if method not in ("ls", "lmmse"):
        raise ValueError(f"unknown CSI spec {spec!r}; {csi_spec_help()}")
    if not sep:
        return CSI(method, 1)
    rest = rest.strip()
    if not (rest.isascii() and rest.isdigit()) or not 1 <= int(rest) <= MAX_PILOTS:
        raise ValueError(f"bad CSI spec {spec!r}: P must be an integer in 1..{MAX_PILOTS}; {csi_spec_help()}")
    return CSI(method, int(rest))


def linear_weights(x: torch.Tensor, xp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Linear interpolation from sorted sample positions ``xp`` to positions ``x``, holding the end values.

    The value at :math:`x` is :math:`(1 - w)\, v_{i_0} + w\, v_{i_1}` with :math:`x_{p,i_0} \le x \le x_{p,i_1}`
    neighbouring samples; before the first sample :math:`i_0 = i_1 = 0`, after the last :math:`i_0 = i_1 = m - 1`
    (hold), and :math:`w = 0` there.

    :input x: [n], `torch.int64` or float. Target positions.
    :input xp: [m], same kind, strictly increasing, :math:`m \ge 1`. Sample positions.
    :output i0, i1: [n], `torch.int64`. Indices into ``xp``.
    :output w: [n], `torch.float64`. Weight of sample ``i1``.
    """
    m = xp.numel()
    i1 = torch.searchsorted(xp, x).clamp(max=m - 1)
    i0 = torch.where(x > xp[-1], i1, (i1 - 1).clamp(min=0))
    x0 = xp[i0].to(torch.float64)
    d = xp[i1].to(torch.float64) - x0
    w = torch.where(d > 0, (x.to(torch.float64) - x0) / torch.where(d > 0, d, torch.ones_like(d)),
                    torch.zeros_like(d))
    return i0, i1, w


class PilotScheme(ABC):
    """Where pilots go in a frame and how the receiver turns them into gain estimates.

    A scheme defines a role (pilot or data) for every channel use of a frame, independent of the number ``k`` of
    data symbols; the frame of ``k`` data symbols is a prefix of that role sequence of length
    :meth:`frame_length`.

    :param pilots: P (see each scheme).
    :param method: ``"ls"`` or ``"lmmse"``.
    """

    def __init__(self, pilots: int, method: str):
        if method not in ("ls", "lmmse"):
            raise ValueError(f"pilot schemes estimate with 'ls' or 'lmmse', got {method!r}")
        self.p = int(pilots)
        self.method = method
        self._cache: dict[tuple, torch.Tensor] = {}

    @abstractmethod
    def frame_length(self, k: int) -> int:
        """Channel uses of the frame that carries ``k`` data symbols, pilots included (0 for ``k = 0``)."""

    @abstractmethod
    def max_data(self, budget: int) -> int:
        """The most data symbols ``k`` with ``frame_length(k) <= budget`` (0 when none fits)."""

    @abstractmethod
    def _data_positions(self, k: int) -> torch.Tensor:
        """[k] `torch.int64`: the frame position of each data symbol (increasing)."""

    @abstractmethod
    def _pilot_positions(self, k: int) -> torch.Tensor:
        """[frame_length(k) - k] `torch.int64`: the frame positions of the pilots (increasing)."""

    @abstractmethod
    def estimate(self, y: torch.Tensor, n0: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The receiver's gain estimate at the data positions.

        :input y: [B, frame_length(k)], `torch.complex64`. Received frame.
        :input n0: [B], `torch.float32`. Noise variance per channel use (known to the receiver).
        :input k: number of data symbols.
        :output h_hat: [B, k], `torch.complex64`. Estimated gains at the data positions.
        :output err_var: [B, k], `torch.float32`. The error variance :math:`\\mathbb{E}|\\hat h - h|^2` the
            receiver expects from its model (see each scheme for what it covers).
        """

    @abstractmethod
    def describe(self) -> str:
        """One line: the pilot layout and the estimator."""

    def pilots(self, k: int) -> int:
        """Channel uses of the frame of ``k`` data symbols that carry no data: the pilots (for
        :class:`OFDMPilots` also the empty resource elements that complete the last pilot comb)."""
        k = _count(k, "k")
        return self.frame_length(k) - k

    def data_positions(self, k: int) -> torch.Tensor:
        """[k] `torch.int64` (CPU): the frame position of each of ``k`` data symbols (cached per ``k``)."""
        return self._cached(("data", k), lambda: self._data_positions(_count(k, "k")))

    def pilot_positions(self, k: int) -> torch.Tensor:
        """[pilots(k)] `torch.int64` (CPU): the frame positions of the pilots of a ``k``-symbol frame."""
        return self._cached(("pilot", k), lambda: self._pilot_positions(_count(k, "k")))

    def ls_at_pilots(self, y: torch.Tensor, k: int) -> torch.Tensor:
        r"""[B, pilots(k)] `torch.complex64`: the LS estimate :math:`y_p / p` at every pilot position (in
        :meth:`pilot_positions` order); its error is the channel's noise there, variance :math:`N_0`."""
        return y[:, self.pilot_positions(k).to(y.device)] / PILOT_SYMBOL

    def _cached(self, key: tuple, compute) -> torch.Tensor:
        if key not in self._cache:
            if len(self._cache) > 64:  # a sweep uses a handful of k; keep the cache bounded
                self._cache.clear()
            self._cache[key] = compute()
        return self._cache[key]


def _count(v: int, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{what} must be a non-negative integer (channel uses), got {v!r}")
    return v


class _GroupLayout(PilotScheme):
    """P pilots at the start of every group of G channel uses (G = None: one group, the whole frame)."""

    def __init__(self, pilots: int, method: str, group: int | None):
        super().__init__(pilots, method)
        self.group = group
        self.d = None if group is None else group - self.p  # data uses per group

    def frame_length(self, k: int) -> int:
        k = _count(k, "k")
        if k == 0:
            return 0
        if self.group is None:
            return k + self.p
        return k + self.p * -(-k // self.d)

    def max_data(self, budget: int) -> int:
        b = _count(budget, "budget")
        if self.group is None:
            return max(0, b - self.p)
        return (b // self.group) * self.d + max(0, b % self.group - self.p)

    def _data_positions(self, k: int) -> torch.Tensor:
        j = torch.arange(k, dtype=torch.int64)
        if self.group is None:
            return j + self.p
        return (j // self.d) * self.group + self.p + j % self.d

    def _num_groups(self, k: int) -> int:
        if k == 0:
            return 0
        return 1 if self.group is None else -(-k // self.d)

    def _pilot_positions(self, k: int) -> torch.Tensor:
        g = torch.arange(self._num_groups(k), dtype=torch.int64)
        step = 0 if self.group is None else self.group
        return (g[:, None] * step + torch.arange(self.p, dtype=torch.int64)[None, :]).reshape(-1)

    def _group_text(self, what: str) -> str:
        if self.group is None:
            return f"{self.p} pilot(s) (1+0j) at the start of each image's frame"
        return (f"{self.p} pilot(s) (1+0j) at the start of every {what} of {self.group} channel uses "
                f"(overhead {self.p / self.group:.1%})")


class BlockPilots(_GroupLayout):
    r"""Pilots for block fading: the first P uses of every coherence block of L uses, one estimate per block.

    With coherence length :math:`L` (``coherence``; `None`: one block per image, as for AWGN), the frame is
    P pilots then :math:`L - P` data symbols, repeating; the last block may be shorter (its P pilots then the
    remaining data). A frame of :math:`k` data symbols has :math:`P \lceil k / (L - P) \rceil` pilots
    (P with one block per image). Block :math:`j`'s gain :math:`h_j` is estimated from its pilots
    :math:`y_{j,i} = h_j p + n_{j,i}`:

    .. math::
        \hat h_{j,\mathrm{LS}} = \frac{1}{P} \sum_{i=1}^{P} \frac{y_{j,i}}{p},
        \qquad \mathbb{E}|\hat h_{j,\mathrm{LS}} - h_j|^2 = \frac{N_0}{P |p|^2} = \frac{N_0}{P}

    .. math::
        \hat h_{j,\mathrm{LMMSE}} = \frac{\hat h_{j,\mathrm{LS}}}{1 + N_0 / P},
        \qquad \mathbb{E}|\hat h_{j,\mathrm{LMMSE}} - h_j|^2 = \frac{N_0}{P + N_0}

    The LMMSE prior is mean 0, variance 1. That is exact (the *linear* MMSE) for Rayleigh and also for the
    Rician channels here: their line-of-sight phase is uniform, so :math:`\mathbb{E} h = 0` and
    :math:`\mathbb{E}|h|^2 = 1` (the estimator is linear, not the nonlinear MMSE of a Rician gain). On AWGN the
    receiver uses the same prior (it does not assume it knows :math:`h = 1`; that receiver is ``perfect``), so the
    LMMSE estimate is biased towards 0 by :math:`1 / (1 + N_0/P)`, with the same mean square error.

    :param pilots: P, pilots per coherence block, :math:`1 \le P < L`.
    :param method: ``"ls"`` or ``"lmmse"``.
    :param coherence: L, channel uses per coherence block, or `None` (one block per image).

    ``estimate`` returns ``err_var`` = :math:`N_0/P` (LS) or :math:`N_0/(P + N_0)` (LMMSE), exact.

    >>> s = BlockPilots(2, "ls", coherence=8)
    >>> s.frame_length(6), s.pilots(7), s.max_data(16), s.data_positions(7).tolist()
    (8, 4, 12, [2, 3, 4, 5, 6, 7, 10])
    """

    def __init__(self, pilots: int, method: str, coherence: int | None):
        super().__init__(pilots, method, coherence)
        if coherence is not None and coherence <= self.p:
            raise ValueError(f"coherence block of L={coherence} channel uses cannot hold {self.p} pilot(s) and data: "
                             f"use fewer pilots (P < {coherence}) or a longer coherence block")

    def estimate(self, y: torch.Tensor, n0: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = y.shape[0]
        nb = self._num_groups(k)
        h_ls = self.ls_at_pilots(y, k).reshape(b, nb, self.p).mean(dim=2)  # B x blocks
        var = (n0 / self.p).to(torch.float32)[:, None]  # N0 / (P |p|^2), |p| = 1
        if self.method == "lmmse":
            h_blk = h_ls / (1.0 + var)
            var = var / (1.0 + var)
        else:
            h_blk = h_ls
        grp = torch.zeros(k, dtype=torch.int64) if self.group is None else torch.arange(k) // self.d
        h_hat = h_blk[:, grp.to(y.device)]
        return h_hat.to(torch.complex64), var.expand(b, k).contiguous()

    def describe(self) -> str:
        return f"{self.method.upper()} channel estimation, " + self._group_text("coherence block")


class InterpolatedPilots(_GroupLayout):
    r"""Pilots for fast (per-symbol) fading: P pilots then :math:`D - P` data uses, repeating with period
    :math:`D` (default :data:`FAST_PERIOD` = 16), and linear interpolation between pilot positions.

    Each pilot :math:`y_i = h_i p + n_i` gives :math:`\hat h_i = y_i / p` (LS, error variance :math:`N_0`) or
    :math:`\hat h_i = (y_i / p) / (1 + N_0)` (LMMSE with the unit prior, error variance :math:`N_0 / (1 + N_0)`).
    A data symbol at position :math:`t` between pilot positions :math:`t_0 < t < t_1` gets
    :math:`\hat h_t = (1 - w) \hat h_{t_0} + w \hat h_{t_1}`, :math:`w = (t - t_0) / (t_1 - t_0)`; data after the
    last pilot of the frame hold its estimate.

    **Physics a user should see.** For i.i.d. per-symbol gains (``rayleigh-fast``, the diffuse part of
    ``rician-fast``) the gain at a data position is independent of every pilot, so no interpolation can track it:
    the NMSE stays near 1 (worse than 1 for LS: :math:`\mathbb{E}|\hat h_t - h_t|^2 = 1 + \mathbb{E}|\hat h_t|^2`),
    whatever P. Only a channel that varies slowly over :math:`D` uses (or the fixed line-of-sight part of a fast
    Rician channel) can be estimated this way. The same scheme serves channels this module does not know
    (plugins), as it assumes nothing but one gain per channel use.

    ``err_var`` is the estimation noise carried through the interpolation, :math:`((1-w)^2 + w^2)\,\sigma^2` with
    :math:`\sigma^2` the per-pilot error variance; it does not include how far the channel moved between pilots.

    :param pilots: P, pilots per period, :math:`1 \le P < D`.
    :param method: ``"ls"`` or ``"lmmse"``.
    :param period: D, channel uses per period.
    """

    def __init__(self, pilots: int, method: str, period: int = FAST_PERIOD):
        if isinstance(period, bool) or not isinstance(period, int) or period < 2:
            raise ValueError(f"pilot period D must be an integer >= 2 channel uses, got {period!r}")
        if pilots >= period:
            raise ValueError(f"pilot period of D={period} channel uses cannot hold {pilots} pilot(s) and data: use "
                             f"fewer pilots (P < {period}) or a longer period")
        super().__init__(pilots, method, period)

    def estimate(self, y: torch.Tensor, n0: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = y.shape[0]
        if k == 0:
            return y.new_zeros(b, 0), torch.zeros(b, 0, dtype=torch.float32, device=y.device)
        h_p = self.ls_at_pilots(y, k)  # B x pilots
        var = n0.to(torch.float32)[:, None]
        if self.method == "lmmse":
            h_p = h_p / (1.0 + var)
            var = var / (1.0 + var)
        i0, i1, w = self._cached(("weights", k), lambda: linear_weights(self.data_positions(k),
                                                                          self.pilot_positions(k)))
        dev = y.device
        i0, i1 = i0.to(dev), i1.to(dev)
        w = w.to(device=dev, dtype=torch.float32)[None, :]
        h_hat = (1.0 - w) * h_p[:, i0] + w * h_p[:, i1]
        err = ((1.0 - w) ** 2 + w ** 2) * var
        return h_hat.to(torch.complex64), err.to(torch.float32)

    def describe(self) -> str:
        return (f"{self.method.upper()} channel estimation, " + self._group_text("period")
                + ", linear interpolation between pilots")


class OFDMPilots(PilotScheme):
    r"""Pilots on the OFDM resource grid of a TDL channel: a comb of P pilot subcarriers in the first OFDM
    symbol of every slot of :math:`S` OFDM symbols (default :data:`OFDM_SLOT` = 14).

    The channel maps frame position :math:`i` to resource element :math:`(m, q) = (\lfloor i / F \rfloor,
    i \bmod F)` (:class:`~channels.tdl.TDLChannel`, :math:`F` = ``fft_size``). Pilots sit at OFDM symbols
    :math:`m \equiv 0 \pmod S` on subcarriers :math:`q_j = \lfloor (2j + 1) F / (2P) \rfloor`,
    :math:`j = 0..P-1` (evenly spread, :math:`P \le F`); all other resource elements carry data, in frame order.
    A frame of :math:`k` data symbols ends at its last data symbol, or at the last pilot of that OFDM symbol when
    it is a pilot symbol (so every pilot OFDM symbol carries its whole comb); the data resource elements of that
    symbol after the last data symbol are then sent empty (zeros) and counted with the pilots as overhead:
    :meth:`pilots` is ``frame_length(k) - k``, at most :math:`F - P` more than the pilot resource elements.

    Estimation: :math:`\hat H^{LS}_{m,q_j} = y_{m,q_j} / p` at the pilots (error variance :math:`N_0`), then

    * frequency, in each pilot OFDM symbol: LS, linear interpolation between pilot subcarriers (hold outside the
      comb), :math:`\hat H_m = W \hat H^{LS}_m` with the :math:`F \times P` interpolation matrix :math:`W`;
      LMMSE, :math:`W = R_{fp} (R_{pp} + N_0 I)^{-1}` with the channel's frequency covariance
      :math:`R_{u,v} = \sum_\ell P_\ell e^{-j 2\pi (f_u - f_v) \tau_\ell}` (the profile's tap powers, LOS
      included, and delays: what Sionna's ``tdl_freq_cov_mat`` computes for the scalable profiles);
    * time: linear interpolation between pilot OFDM symbols (hold after the last one).

    ``err_var`` is exact for a channel that is static over the frame (speed 0):
    :math:`[R - 2\,\mathrm{Re}(W R_{pf}) + W R_{pp} W^H]_{qq} + ((1 - w)^2 + w^2) N_0 [W W^H]_{qq}`, the
    frequency-interpolation error plus the noise carried through both interpolations (:math:`w` the time weight);
    the change of the channel between pilot OFDM symbols (Doppler) is not included.

    **Why not Sionna's OFDM estimators.** ``sionna.phy.ofdm.LSChannelEstimator`` with its ``LinearInterpolator``
    does the same LS and frequency-then-time linear interpolation (the tests check that the two agree inside the
    comb), but (1) it works on a ``ResourceGrid`` of a fixed number of OFDM symbols whose index tables are built
    with Python loops over the whole grid, while here the number of OFDM symbols (and a partial last one) changes
    with every ``k``; (2) it extrapolates linearly beyond the outermost pilots, which amplifies the noise up to
    several times at the band edges and after the last pilot symbol, where this scheme holds the nearest estimate
    (as :class:`InterpolatedPilots` does); (3) its ``LMMSEChannelEstimator`` filters in time with one
    :math:`N \times N` matrix per subcarrier over the whole frame (gigabytes for a Kodak image at high CBR) and
    covers only the scalable profiles. The interpolation here is a few batched torch operations.

    :param pilots: P, pilot subcarriers per pilot OFDM symbol, :math:`1 \le P \le F`.
    :param method: ``"ls"`` or ``"lmmse"``.
    :param fft_size: F, subcarriers per OFDM symbol.
    :param freq_cov: [F, F], `torch.complex128`. The channel's frequency covariance :math:`R` (for LMMSE and
        ``err_var``).
    :param slot: S, OFDM symbols per slot.
    """

    def __init__(self, pilots: int, method: str, fft_size: int, freq_cov: torch.Tensor, slot: int = OFDM_SLOT):
        super().__init__(pilots, method)
        f = int(fft_size)
        if isinstance(slot, bool) or not isinstance(slot, int) or slot < 1:
            raise ValueError(f"OFDM slot must be an integer >= 1 OFDM symbols, got {slot!r}")
        if self.p > f:
            raise ValueError(f"{self.p} pilot subcarriers do not fit an OFDM symbol of fft={f} subcarriers: use "
                             f"P <= {f}")
        if slot * f - self.p < 1:
            raise ValueError(f"a slot of {slot} OFDM symbol(s) x {f} subcarriers with {self.p} pilots has no room for "
                             "data: use fewer pilots or a longer slot")
        if tuple(freq_cov.shape) != (f, f):
            raise ValueError(f"frequency covariance must be {f} x {f}, got {tuple(freq_cov.shape)}")
        self.fft = f
        self.slot = slot
        self.q = [((2 * j + 1) * f) // (2 * self.p) for j in range(self.p)]
        pilot_set = set(self.q)
        self.nonpilot = [q for q in range(f) if q not in pilot_set]
        self.per_slot = slot * f - self.p  # data resource elements per slot
        self.cov = freq_cov.to(torch.complex128).cpu()
        qt = torch.tensor(self.q, dtype=torch.int64)
        i0, i1, w = linear_weights(torch.arange(f), qt)
        w_lin = torch.zeros(f, self.p, dtype=torch.float64)
        w_lin[torch.arange(f), i0] += 1.0 - w
        w_lin[torch.arange(f), i1] += w
        self.w_lin = w_lin.to(torch.complex128)  # F x P

    # -- layout ------------------------------------------------------------------------------------------------

    def _position(self, j: int) -> int:
        """Frame position of data symbol ``j`` (0-based)."""
        s, o = divmod(j, self.per_slot)
        base = s * self.slot * self.fft
        first = self.fft - self.p  # data REs in the pilot OFDM symbol
        return base + (self.nonpilot[o] if o < first else self.fft + (o - first))

    def _count_data(self, n: int) -> int:
        """Data resource elements among the first ``n`` frame positions."""
        m, r = divmod(n, self.fft)
        pilots = ((m + self.slot - 1) // self.slot) * self.p
        if m % self.slot == 0:
            pilots += bisect.bisect_left(self.q, r)
        return n - pilots

    def frame_length(self, k: int) -> int:
        k = _count(k, "k")
        if k == 0:
            return 0
        pos = self._position(k - 1)
        m = pos // self.fft
        n = pos + 1
        if m % self.slot == 0:
            n = max(n, m * self.fft + self.q[-1] + 1)
        return n

    def max_data(self, budget: int) -> int:
        b = _count(budget, "budget")
        d = self._count_data(b)
        if d == 0 or self.frame_length(d) <= b:
            return d
        # b cuts a pilot OFDM symbol before the end of its comb: none of that symbol's data fit
        return self._count_data((b // self.fft) * self.fft)

    def _data_positions(self, k: int) -> torch.Tensor:
        j = torch.arange(k, dtype=torch.int64)
        s, o = j // self.per_slot, j % self.per_slot
        first = self.fft - self.p
        off = self.fft + (o - first)
        if first > 0:
            nonpilot = torch.tensor(self.nonpilot, dtype=torch.int64)
            off = torch.where(o < first, nonpilot[o.clamp(max=first - 1)], off)
        return s * (self.slot * self.fft) + off

    def _num_symbols(self, k: int) -> tuple[int, int]:
        """(OFDM symbols of the frame, pilot OFDM symbols among them)."""
        n_sym = -(-self.frame_length(k) // self.fft)
        return n_sym, (0 if n_sym == 0 else (n_sym - 1) // self.slot + 1)

    def _pilot_positions(self, k: int) -> torch.Tensor:
        _, n_ps = self._num_symbols(k)
        m = torch.arange(n_ps, dtype=torch.int64) * self.slot
        return (m[:, None] * self.fft + torch.tensor(self.q, dtype=torch.int64)[None, :]).reshape(-1)

    # -- estimation --------------------------------------------------------------------------------------------

    def _freq_filter(self, n0: torch.Tensor) -> torch.Tensor:
        """[B or 1, F, P] `torch.complex128`: the frequency interpolation / LMMSE filter."""
        if self.method == "ls":
            return self.w_lin.to(n0.device)[None]
        cov = self.cov.to(n0.device)
        q = torch.tensor(self.q, device=n0.device)
        r_pp = cov[q][:, q]
        r_pf = cov[q]  # P x F
        eye = torch.eye(self.p, dtype=torch.complex128, device=n0.device)
        a = r_pp[None] + n0.to(torch.float64)[:, None, None] * eye[None]
        x = torch.linalg.solve(a, r_pf[None].expand(a.shape[0], -1, -1))  # B x P x F = (R_pp + N0 I)^-1 R_pf
        return x.mH  # B x F x P = R_fp (R_pp + N0 I)^-1

    def estimate(self, y: torch.Tensor, n0: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        b, dev = y.shape[0], y.device
        if k == 0:
            return y.new_zeros(b, 0), torch.zeros(b, 0, dtype=torch.float32, device=dev)
        n_sym, n_ps = self._num_symbols(k)
        h_ls = self.ls_at_pilots(y, k).reshape(b, n_ps, self.p).to(torch.complex128)
        w = self._freq_filter(n0)  # (B|1) x F x P
        h_f = torch.einsum("bfp,bsp->bsf", w.expand(b, -1, -1), h_ls)  # B x n_ps x F
        # error of one interpolated pilot symbol: interpolation (channel) part and noise part, per subcarrier
        cov = self.cov.to(dev)
        q = torch.tensor(self.q, device=dev)
        r_pp, r_pf = cov[q][:, q], cov[q]
        w_rpf = torch.einsum("bfp,pf->bf", w, r_pf).real
        w_rpp_wh = torch.einsum("bfp,pr,bfr->bf", w, r_pp, w.conj()).real
        bias = (cov.diagonal().real[None] - 2.0 * w_rpf + w_rpp_wh).clamp(min=0.0)  # (B|1) x F
        noise = n0.to(torch.float64)[:, None] * (w.abs() ** 2).sum(dim=-1)  # B x F
        # time: linear between pilot OFDM symbols, hold after the last
        i0, i1, wt = self._cached(("time", k), lambda: linear_weights(
            torch.arange(n_sym), torch.arange(n_ps, dtype=torch.int64) * self.slot))
        i0, i1 = i0.to(dev), i1.to(dev)
        wt = wt.to(dev)[None, :, None]
        h = (1.0 - wt) * h_f[:, i0] + wt * h_f[:, i1]  # B x n_sym x F
        err = bias[:, None, :] + ((1.0 - wt) ** 2 + wt ** 2) * noise[:, None, :]
        pos = self.data_positions(k).to(dev)
        h_hat = h.reshape(b, -1)[:, pos].to(torch.complex64)
        err_var = err.expand(b, -1, -1).reshape(b, -1)[:, pos].to(torch.float32)
        return h_hat, err_var

    def describe(self) -> str:
        est = ("linear interpolation across subcarriers" if self.method == "ls"
               else "LMMSE across subcarriers (the profile's frequency covariance)")
        return (f"{self.method.upper()} channel estimation, {self.p} pilot subcarrier(s) (1+0j) in the first OFDM "
                f"symbol of every slot of {self.slot} OFDM symbols x {self.fft} subcarriers (overhead "
                f"{self.p / (self.slot * self.fft):.2%}), {est}, linear interpolation across OFDM symbols")


def pilot_scheme(csi: CSI, channel: Channel, period: int = FAST_PERIOD, slot: int = OFDM_SLOT) -> PilotScheme | None:
    """The pilot layout and estimator for ``channel`` (None for perfect CSI); see the module docstring.

    :input csi: :class:`CSI`.
    :input channel: :class:`~channels.base.Channel`.
    :input period: D of :class:`InterpolatedPilots` (fast fading, unknown channels).
    :input slot: OFDM symbols per slot of :class:`OFDMPilots` (TDL).
    :output scheme: :class:`BlockPilots`, :class:`InterpolatedPilots`, :class:`OFDMPilots` or `None`.

    Raises a one-line `ValueError` naming the CSI spec and the channel when the pilots do not fit (P >= L,
    P >= D, P > fft).
    """
    if csi.perfect:
        return None
    try:
        st = channel.pilot_structure()
        if st.kind == "block" and st.coherence != 1:
            return BlockPilots(csi.pilots, csi.method, st.coherence)
        if st.kind == "ofdm":
            return OFDMPilots(csi.pilots, csi.method, int(st.fft_size), st.freq_cov(), slot)
        return InterpolatedPilots(csi.pilots, csi.method, period)
    except ValueError as e:
        raise ValueError(f"CSI '{csi.label}' on channel '{channel_label(channel)}': {e}") from None


@dataclass
class Estimated:
    """What :meth:`PilotLink.transmit` returns: the data symbols' channel output with the receiver's estimate.

    out : :class:`~channels.base.ChannelOutput` of the k DATA positions: ``y`` B x k complex64, ``h`` B x k
        complex64 the receiver's ESTIMATE (the true gains for perfect CSI), ``n0`` B float32, ``snr_db`` B float32.
        ``equalize(out, mode)`` therefore equalises with the estimate.
    h_true : B x k complex64, the true gains at the data positions.
    n_pilots : B int64, channel uses per image that carry no data, i.e. ``PilotLink.pilots(k)`` (0 for perfect
        CSI).
    nmse : B float32, mean |h_est - h|^2 / mean |h|^2 over the image's data symbols (0 for perfect CSI).
    err_var : B x k float32, the error variance the receiver's model expects at each data symbol (0 for perfect
        CSI; what it covers: :class:`BlockPilots`, :class:`InterpolatedPilots`, :class:`OFDMPilots`).
    frame : the channel's :class:`~channels.base.ChannelOutput` of the whole frame (B x (k + n_pilots), pilots
        included, true gains), or `None` for perfect CSI.
    """

    out: ChannelOutput
    h_true: torch.Tensor
    n_pilots: torch.Tensor
    nmse: torch.Tensor
    err_var: torch.Tensor
    frame: ChannelOutput | None = None


class PilotLink:
    r"""A channel with pilot-based channel estimation at the receiver.

    :param csi: :class:`CSI` or a CSI spec (``"perfect"``, ``"ls:2"``, ``"lmmse:4"``).
    :param channel: the :class:`~channels.base.Channel`.
    :param period: D for fast fading and unknown channels (:class:`InterpolatedPilots`).
    :param slot: OFDM symbols per slot for TDL (:class:`OFDMPilots`).

    :input s: [B, k], `torch.complex64`. Data symbols (unit power per image; rows padded with zeros allowed, the
        batch's ``k`` is used for every row).
    :input snr_db: [B] or scalar, `torch.float32`. Es/N0 in dB per complex symbol (pilots and data alike).
    :input realization: :class:`~channels.realization.Realization` of the B images.

    :output est: :class:`Estimated`. With perfect CSI ``est.out`` is exactly ``channel(s, snr_db, realization)``.

    Otherwise the frame (data plus pilots :math:`p = 1`, :meth:`pilots` of them) goes through
    ``channel(frame, snr_db, realization)`` once; ``est.out`` holds the data positions' ``y`` with ``h``
    replaced by the estimate. The sweep engine reports :meth:`pilots` in their own CBR column (``cbr_pilot``,
    ``lrisc_sim.link``) rather than taking them from the codec's budget; :meth:`max_data` is the data a budget
    would carry if they were charged.

    .. rubric:: Examples

    >>> from channels.fading import RayleighFading
    >>> link = PilotLink("ls:2", RayleighFading(coherence=16))
    >>> est = link.transmit(torch.ones(3, 40, dtype=torch.complex64), 10.0, Realization(0, ["a", "b", "c"], 0))
    >>> est.out.y.shape, est.n_pilots.tolist(), link.max_data(48)
    (torch.Size([3, 40]), [6, 6, 6], 42)
    """

    def __init__(self, csi: CSI | str, channel: Channel, period: int = FAST_PERIOD, slot: int = OFDM_SLOT):
        self.csi = parse_csi(csi) if isinstance(csi, str) else csi
        if not isinstance(self.csi, CSI):
            raise ValueError(f"csi must be a CSI or a CSI spec string, got {type(csi).__name__}; {csi_spec_help()}")
        self.channel = channel
        self.scheme = pilot_scheme(self.csi, channel, period=period, slot=slot)

    @property
    def label(self) -> str:
        """The CSI label (``perfect``, ``ls:2``, ...) for the results' channel column."""
        return self.csi.label

    def pilots(self, k: int) -> int:
        """Channel uses of a frame of ``k`` data symbols that carry no data: its pilots (for TDL also the empty
        resource elements completing the last pilot comb, :class:`OFDMPilots`); 0 for perfect CSI."""
        if self.scheme is None:
            _count(k, "k")
            return 0
        return self.scheme.pilots(k)

    def max_data(self, budget: int) -> int:
        """The most data symbols whose frame, pilots included, fits ``budget`` channel uses (monotone in
        ``budget``; ``max_data(b) + pilots(max_data(b)) <= b``, and one more data symbol would not fit)."""
        return _count(budget, "budget") if self.scheme is None else self.scheme.max_data(budget)

    def describe(self) -> str:
        """One line: the channel and how the receiver learns it."""
        text = self.channel.describe()
        if self.scheme is None:
            return text if "perfect CSI" in text else f"{text}; perfect CSI"
        # the built-in channels describe themselves with the default receiver ("..., perfect CSI")
        return f"{text.removesuffix(', perfect CSI')}; {self.scheme.describe()}"

    def transmit(self, s: torch.Tensor, snr_db: torch.Tensor | float, realization: Realization) -> Estimated:
        """Send ``s`` (B x k complex64) with its pilots through the channel and estimate the gains (class
        docstring)."""
        if not torch.is_complex(s) or s.dim() != 2:
            raise ValueError(f"PilotLink input must be a B x k complex tensor, got {tuple(s.shape)} {s.dtype}")
        b, k = s.shape
        dev = s.device
        if self.scheme is None:
            out = self.channel(s, snr_db, realization)
            zeros = torch.zeros(b, dtype=torch.float32, device=dev)
            return Estimated(out=out, h_true=out.h, n_pilots=torch.zeros(b, dtype=torch.int64, device=dev),
                             nmse=zeros, err_var=torch.zeros(b, k, dtype=torch.float32, device=dev))
        n = self.scheme.frame_length(k)
        dpos = self.scheme.data_positions(k).to(dev)
        frame = torch.zeros(b, n, dtype=torch.complex64, device=dev)
        frame[:, self.scheme.pilot_positions(k).to(dev)] = PILOT_SYMBOL
        frame[:, dpos] = s.to(torch.complex64)
        full = self.channel(frame, snr_db, realization)
        h_hat, err_var = self.scheme.estimate(full.y, full.n0, k)
        h_true = full.h[:, dpos]
        if k:
            num = (h_hat - h_true).abs().pow(2).mean(dim=1)
            den = h_true.abs().pow(2).mean(dim=1)
            nmse = torch.where(den > 0, num / den.clamp(min=1e-30), num).to(torch.float32)
        else:
            nmse = torch.zeros(b, dtype=torch.float32, device=dev)
        out = ChannelOutput(y=full.y[:, dpos].contiguous(), h=h_hat, n0=full.n0, snr_db=full.snr_db)
        return Estimated(out=out, h_true=h_true.contiguous(), n_pilots=torch.full((b,), n - k, dtype=torch.int64,
                                                                                  device=dev),
                         nmse=nmse, err_var=err_var, frame=full)
