"""Flat fading channels: Rayleigh and Rician, block (per image or per coherence block) and fast (per symbol).

All draws come from the per-image streams of a :class:`~channels.realization.Realization` (stream "fading" for
the diffuse part, stream "phase" for the line-of-sight phase), so that the gains of an image depend only on
(seed, image id, trial) and a codec sending fewer symbols sees the same first gains (ARCHITECTURE.md section 3.5).
"""

from __future__ import annotations

import math

import torch

from channels.base import Channel, PilotStructure
from channels.realization import Realization


#: Largest coherence block length L accepted. Any L >= k (the symbols of one image) already means one gain per
#: image, so the bound loses nothing; gains are never expanded L-fold (``_expand_blocks``), so memory is B x k.
MAX_COHERENCE = 10**9


def _check_coherence(coherence: int | None) -> int | None:
    if coherence is None:
        return None
    try:
        v = float(coherence)
    except (TypeError, ValueError, OverflowError):
        v = math.nan
    if isinstance(coherence, bool) or not math.isfinite(v) or not v.is_integer() or not 1 <= v <= MAX_COHERENCE:
        raise ValueError(f"coherence block length L must be an integer in 1..{MAX_COHERENCE:.0e} (L >= the symbols "
                         f"of an image is one gain per image), got {coherence!r}")
    return int(v)


def _num_blocks(k: int, coherence: int | None) -> int:
    """Number of independent gains needed for ``k`` symbols (1 per image when ``coherence`` is None)."""
    if coherence is None:
        return 1
    return max(1, -(-k // coherence))


def _expand_blocks(g: torch.Tensor, k: int, coherence: int | None) -> torch.Tensor:
    """``B x n_blocks`` -> ``B x k``: symbol i takes block i // L (or the single block of its image)."""
    if coherence is None or coherence >= k:  # one block covers the image: no L-fold copy (L may be huge)
        return g[:, :1].expand(-1, k).contiguous()
    return g.repeat_interleave(coherence, dim=1)[:, :k].contiguous()


class RayleighFading(Channel):
    r"""Rayleigh flat fading, block or fast, with gains drawn from the realization.

    The channel is :math:`y_i = h_i s_i + n_i` with :math:`n_i \sim \mathcal{CN}(0, N_0)` (added by
    :class:`~channels.base.Channel`) and

    .. math::
        h_i = g_{b(i)}, \qquad g_j \sim \mathcal{CN}(0, 1)\ \text{i.i.d.}, \qquad \mathbb{E}|h_i|^2 = 1

    where :math:`b(i) = 0` for every symbol (block fading, one gain per image, ``coherence=None``),
    :math:`b(i) = \lfloor i / L \rfloor` (block fading with coherence blocks of :math:`L` symbols) or
    :math:`b(i) = i` (fast fading, :math:`L = 1`). :math:`g_j` is the :math:`j`-th draw of stream "fading" of
    the image, so the first gains do not depend on :math:`k` nor on the batch.

    :param coherence: Coherence block length :math:`L` in symbols. `None` (default): one gain per image.
        ``1``: fast (per-symbol) fading.

    :input s: [B, k], `torch.complex64`. Unit-power symbols of each image.
    :input snr_db: [B] or scalar, `torch.float32`. Es/N0 in dB per complex symbol.
    :input realization: :class:`~channels.realization.Realization` of the B images.

    :output out: :class:`~channels.base.ChannelOutput` with ``y`` [B, k] `torch.complex64`, ``h`` [B, k]
        `torch.complex64`, ``n0`` [B] `torch.float32`, ``snr_db`` [B] `torch.float32`.

    .. rubric:: Examples

    >>> from channels.realization import Realization
    >>> ch = RayleighFading(coherence=64)
    >>> out = ch(torch.ones(2, 100, dtype=torch.complex64), 10.0, Realization(0, ["a", "b"], 0))
    >>> out.h.shape, bool(out.h[0, 0] == out.h[0, 63]), bool(out.h[0, 0] == out.h[0, 64])
    (torch.Size([2, 100]), True, False)
    """

    def __init__(self, coherence: int | None = None):
        self.coherence = _check_coherence(coherence)
        if self.coherence is None:
            self.name = "rayleigh"
        elif self.coherence == 1:
            self.name = "rayleigh-fast"
        else:
            self.name = f"rayleigh-block:L={self.coherence}"

    def gains(self, realization: Realization, k: int) -> torch.Tensor:
        """[B, k] `torch.complex64` gains, :math:`\\mathbb{E}|h|^2 = 1`."""
        g = realization.cn("fading", _num_blocks(k, self.coherence))
        return _expand_blocks(g, k, self.coherence)

    def describe(self) -> str:
        if self.coherence is None:
            return "Rayleigh block fading, one gain h ~ CN(0,1) per image, perfect CSI"
        if self.coherence == 1:
            return "Rayleigh fast fading, i.i.d. h ~ CN(0,1) per symbol, perfect CSI"
        return f"Rayleigh block fading, h ~ CN(0,1) per coherence block of L={self.coherence} symbols, perfect CSI"

    def pilot_structure(self) -> PilotStructure:
        """Blocks of L uses (one per image without L); per-symbol gains (L = 1) are interpolated."""
        return PilotStructure("interpolate") if self.coherence == 1 else PilotStructure("block", self.coherence)


class RicianFading(Channel):
    r"""Rician flat fading with factor :math:`K`, block or fast, with gains drawn from the realization.

    The gain of symbol :math:`i` is

    .. math::
        h_i = \sqrt{\frac{K}{K+1}}\, e^{j\phi_{c(i)}} + \sqrt{\frac{1}{K+1}}\, g_{b(i)},
        \qquad g_j \sim \mathcal{CN}(0, 1),\ \phi_j \sim \mathcal{U}[0, 2\pi),
        \qquad \mathbb{E}|h_i|^2 = 1

    with :math:`g_j` the :math:`j`-th draw of stream "fading" and :math:`\phi_j` the :math:`j`-th draw of stream
    "phase" of the image.

    * Block fading (``fast=False``): line-of-sight phase and diffuse part are drawn together per coherence block,
      :math:`b(i) = c(i) = \lfloor i / L \rfloor`, or once per image when ``coherence`` is `None` (default).
      Each block is an independent Rician draw.
    * Fast fading (``fast=True``): the diffuse part changes every symbol, :math:`b(i) = i`, while the
      line-of-sight phase is drawn once per image, :math:`c(i) = 0` (a static specular path plus i.i.d.
      scattering, the usual ergodic Rician model). ``coherence`` must then be `None`.

    :math:`K = 0` is Rayleigh fading; :math:`K = \infty` (``float("inf")``) gives :math:`|h_i| = 1` with a
    random phase.

    :param k_factor: Rician factor :math:`K \ge 0` (linear, LOS power / diffuse power).
    :param coherence: Coherence block length :math:`L` in symbols for block fading; `None` (default): one draw
        per image.
    :param fast: `True` for fast fading (see above).

    :input s: [B, k], `torch.complex64`. Unit-power symbols of each image.
    :input snr_db: [B] or scalar, `torch.float32`. Es/N0 in dB per complex symbol.
    :input realization: :class:`~channels.realization.Realization` of the B images.

    :output out: :class:`~channels.base.ChannelOutput` with ``y``, ``h`` [B, k] `torch.complex64` and
        ``n0``, ``snr_db`` [B] `torch.float32`.

    .. rubric:: Examples

    >>> from channels.realization import Realization
    >>> ch = RicianFading(k_factor=float("inf"))
    >>> h = ch.gains(Realization(0, ["a"], 0), 4)
    >>> torch.allclose(h.abs(), torch.ones(1, 4))
    True
    """

    def __init__(self, k_factor: float, coherence: int | None = None, fast: bool = False):
        k_factor = float(k_factor)
        if not k_factor >= 0:  # also rejects NaN
            raise ValueError(f"Rician factor K must be >= 0 (linear), got {k_factor!r}")
        self.k_factor = k_factor
        self.coherence = _check_coherence(coherence)
        self.fast = bool(fast)
        if self.fast and self.coherence is not None:
            raise ValueError("fast Rician fading changes every symbol: do not give a coherence length L")
        if math.isinf(k_factor):
            self._los, self._nlos = 1.0, 0.0
        else:
            self._los = math.sqrt(k_factor / (k_factor + 1.0))
            self._nlos = math.sqrt(1.0 / (k_factor + 1.0))
        k_txt = f"K={k_factor:g}"
        if self.fast:
            self.name = f"rician-fast:{k_txt}"
        elif self.coherence is None:
            self.name = f"rician:{k_txt}"
        else:
            self.name = f"rician-block:{k_txt},L={self.coherence}"

    def gains(self, realization: Realization, k: int) -> torch.Tensor:
        """[B, k] `torch.complex64` gains, :math:`\\mathbb{E}|h|^2 = 1`."""
        if self.fast:
            g = realization.cn("fading", k)
            phi = realization.uniform("phase", 1).expand(-1, k)
        else:
            n = _num_blocks(k, self.coherence)
            g = _expand_blocks(realization.cn("fading", n), k, self.coherence)
            phi = _expand_blocks(realization.uniform("phase", n), k, self.coherence)
        # double precision, rounded once: the result of an image does not depend on vectorisation (batch, k)
        phi = phi.to(torch.float64) * (2.0 * math.pi)
        los = torch.polar(torch.full_like(phi, self._los), phi)
        return (los + self._nlos * g.to(torch.complex128)).to(torch.complex64)

    def describe(self) -> str:
        k_db = "inf" if math.isinf(self.k_factor) else (
            "-inf" if self.k_factor == 0 else f"{10 * math.log10(self.k_factor):.2f}")
        k_txt = f"K={self.k_factor:g} ({k_db} dB)"
        if self.fast:
            return f"Rician fast fading {k_txt}, diffuse part per symbol, LOS phase per image, perfect CSI"
        if self.coherence is None:
            return f"Rician block fading {k_txt}, one gain per image, perfect CSI"
        return f"Rician block fading {k_txt}, one gain per coherence block of L={self.coherence} symbols, perfect CSI"

    def pilot_structure(self) -> PilotStructure:
        """Blocks of L uses (one per image without L); fast Rician changes every use and is interpolated."""
        if self.fast or self.coherence == 1:
            return PilotStructure("interpolate")
        return PilotStructure("block", self.coherence)
