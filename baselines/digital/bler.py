r"""Monte Carlo code block error rate (BLER) of the digital link over AWGN, measured end to end.

The measurement runs the codecs' own path, block for block: random payload bytes -> :class:`~baselines.digital.
link.LDPCLink` transmitter (length header, CRC24B, 5G LDPC, scrambling, Gray QAM) -> the project's
:class:`~channels.awgn.AWGN` channel at :math:`E_s/N_0` = SNR with common random numbers
(:class:`~channels.realization.Realization`) -> MMSE equaliser and :func:`~baselines.digital.link.unbiased` ->
APP demapper and LDPC decoder (:class:`~baselines.digital.bp.FloodingBP`, CRC early stop) -> CRC check. A block
is in error when its CRC fails, which is what loses an image in the codecs (a CRC that passes on wrong bits, an
undetected error of probability about :math:`2^{-24}`, is counted apart).

Each block is one "image" of the layout (one code block per layout), identified by ``bler/MCS/kK/i``: block
:math:`i`'s payload and noise do not depend on how many blocks are measured or at which SNR, so the points of a
curve share their noise (common random numbers: the estimated curve is smooth in the SNR) and a measurement of
:math:`n` blocks is the first :math:`n` blocks of one of more.

With :math:`e` errors in :math:`n` blocks the estimate :math:`\hat p = e / n` has standard deviation
:math:`\sqrt{p (1 - p) / n}` (binomial): :func:`binomial_sigma`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from baselines.digital.link import BlockLayout, LDPCLink, plan_blocks, unbiased
from baselines.digital.mcs import MCS
from channels.awgn import AWGN
from channels.base import equalize
from channels.realization import Realization, generator


@dataclass(frozen=True)
class BlerPoint:
    """One measured point: ``errors`` failed CRCs in ``blocks`` code blocks at ``snr_db`` (Es/N0, dB);
    ``undetected``: blocks whose CRC passed on wrong bits (not counted in ``errors``)."""

    snr_db: float
    blocks: int
    errors: int
    undetected: int = 0

    @property
    def bler(self) -> float:
        """:math:`\\hat p = e / n`."""
        return self.errors / self.blocks if self.blocks else float("nan")


def binomial_sigma(p: float, n: int) -> float:
    """Standard deviation :math:`\\sqrt{p (1 - p) / n}` of a BLER estimate from ``n`` blocks at true BLER ``p``."""
    return math.sqrt(max(p * (1 - p), 0.0) / n)


def single_block_layout(mcs: MCS, k_target: int) -> BlockLayout:
    r"""The layout of one code block of about ``k_target`` information bits (CRC included) for ``mcs``: the one
    :func:`~baselines.digital.link.plan_blocks` gives for :math:`\lceil k_\mathrm{target} / (m R) \rceil`
    channel uses, as an image budget of that size would get it.

    >>> from baselines.digital.mcs import parse_mcs
    >>> lay = single_block_layout(parse_mcs("qpsk-1/2"), 2048)
    >>> lay.num_blocks, lay.k_cb, lay.n_cb
    (1, 2048, 4096)
    """
    uses = math.ceil(k_target / mcs.efficiency)
    lay = plan_blocks(mcs, uses)
    if lay is None or lay.num_blocks != 1:
        raise ValueError(f"no single code block of about {k_target} bits for {mcs.name}: use 40 <= K <= 8448 "
                         "(3824 below rate 1/3)")
    return lay


class BlerMeter:
    r"""BLER of one :class:`~baselines.digital.link.BlockLayout` (of one code block) over AWGN at any SNR.

    :param layout: a layout with ``num_blocks == 1`` (e.g. :func:`single_block_layout`).
    :param max_blocks: the most blocks any call measures (payloads and symbols are made once, for all of them).
    :param seed: seed of the payloads and the noise (``0 .. 2^32 - 1``).
    :param num_iter, demapping: of the :class:`~baselines.digital.link.LDPCLink` (as the codecs use it).

    :input snr_db (``at``): float, Es/N0 in dB.
    :input blocks (``at``): int <= ``max_blocks``, the first ``blocks`` blocks are sent (default all).
    :output: :class:`BlerPoint`.

    .. rubric:: Examples

    >>> from baselines.digital.mcs import parse_mcs
    >>> meter = BlerMeter(single_block_layout(parse_mcs("qpsk-1/2"), 256), max_blocks=8, seed=1)
    >>> meter.at(10.0).errors, meter.at(-5.0).errors
    (0, 8)
    """

    def __init__(self, layout: BlockLayout, max_blocks: int, seed: int = 0, num_iter: int = 20,
                 demapping: str = "app"):
        if layout.num_blocks != 1:
            raise ValueError(f"BlerMeter measures single-block layouts, got {layout.num_blocks} blocks: "
                             "use single_block_layout(mcs, K)")
        if max_blocks < 1:
            raise ValueError(f"max_blocks must be >= 1, got {max_blocks}")
        self.layout = layout
        self.seed = int(seed)
        self.link = LDPCLink(layout, num_iter=num_iter, demapping=demapping, early_stop=True, stop_on_failure=False)
        self.ids = [f"bler/{layout.mcs.name}/k{layout.k_cb}/{i}" for i in range(int(max_blocks))]
        self.payloads = [generator(self.seed, i, 0, "aux").bytes(layout.max_bytes) for i in self.ids]
        self.symbols = self.link.transmit(self.payloads)  # [n, N / m] complex64
        self.channel = AWGN()

    def at(self, snr_db: float, blocks: int | None = None) -> BlerPoint:
        n = len(self.ids) if blocks is None else int(blocks)
        if not 1 <= n <= len(self.ids):
            raise ValueError(f"blocks must be in 1..{len(self.ids)} (the meter's max_blocks), got {blocks}")
        real = Realization(self.seed, self.ids[:n], 0)
        rx = equalize(self.channel(self.symbols[:n], float(snr_db), real))
        s, nv = unbiased(rx.s_hat, rx.noise_var, rx.gain)
        res = self.link.receive(s, nv)
        errors = int((~res.block_ok[:, 0]).sum())
        undetected = sum(1 for p, q in zip(res.payloads, self.payloads) if p is not None and p != q)
        return BlerPoint(float(snr_db), n, errors, undetected)


def shannon_limit_db(mcs: MCS) -> float:
    """The AWGN SNR (dB) at which the capacity :math:`\\log_2(1 + \\mathrm{SNR})` equals the MCS's efficiency
    :math:`m R`: no code of that rate works below it."""
    return 10 * math.log10(2.0 ** float(mcs.efficiency) - 1)


