"""Modulation and coding schemes (MCS) of the digital baseline: QAM order and 5G LDPC code rate.

The standard set (ARCHITECTURE.md section 5.3) is {1/3, 1/2, 2/3} with QPSK, {1/2, 2/3} with 16QAM and 1/2 with
64QAM. Names are written ``MODULATION-RATE``: ``qpsk-1/2``, ``16qam-2/3``, ``64qam-1/2``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

#: bits per complex symbol of each QAM order accepted in MCS names
MODULATIONS: dict[str, int] = {"qpsk": 2, "16qam": 4, "64qam": 6, "256qam": 8}

#: code rates accepted: 5G LDPC supports 1/5 <= R <= 0.95 (TS 38.212); 9/10 leaves room for the rounding
#: of block lengths (the highest rate of the 5G MCS tables is about 0.93)
MIN_RATE, MAX_RATE = Fraction(1, 5), Fraction(9, 10)


@dataclass(frozen=True, order=True)
class MCS:
    r"""One modulation and coding scheme.

    :param bits_per_symbol: :math:`m = \log_2 M`, bits per complex QAM symbol (2, 4, 6 or 8).
    :param rate: LDPC code rate :math:`R` (a fraction).

    The spectral efficiency is :math:`\eta = m R` information bits per complex channel use, so a budget of
    :math:`k` channel uses carries at most :math:`k m R` information bits (CRC and length header included).

    .. rubric:: Examples

    >>> m = parse_mcs("16qam-2/3")
    >>> m.name, m.bits_per_symbol, m.rate, float(m.efficiency)
    ('16qam-2/3', 4, Fraction(2, 3), 2.6666666666666665)
    """

    bits_per_symbol: int
    rate: Fraction

    @property
    def modulation(self) -> str:
        return {v: k for k, v in MODULATIONS.items()}[self.bits_per_symbol]

    @property
    def name(self) -> str:
        return f"{self.modulation}-{self.rate.numerator}/{self.rate.denominator}"

    @property
    def efficiency(self) -> Fraction:
        """Information bits per complex channel use, :math:`m R`."""
        return self.bits_per_symbol * self.rate

    def __str__(self) -> str:
        return self.name


#: the standard MCS set, most robust first (increasing spectral efficiency)
STANDARD_MCS: tuple[MCS, ...] = (
    MCS(2, Fraction(1, 3)),
    MCS(2, Fraction(1, 2)),
    MCS(2, Fraction(2, 3)),
    MCS(4, Fraction(1, 2)),
    MCS(4, Fraction(2, 3)),
    MCS(6, Fraction(1, 2)),
)

_NAME = re.compile(r"^\s*(qpsk|4qam|16qam|64qam|256qam)\s*[-_:@ ]\s*(\d+)\s*/\s*(\d+)\s*$", re.IGNORECASE)


def parse_mcs(text: str) -> MCS:
    """Parse ``qpsk-1/2``, ``16QAM-2/3``, ``64qam_1/2`` (case-insensitive; ``4qam`` is QPSK).

    Any of QPSK/16QAM/64QAM/256QAM with a rate in [1/5, 9/10] is accepted; a bad string raises
    ``ValueError`` naming the accepted forms and the standard set.
    """
    m = _NAME.match(text)
    if m is None:
        raise ValueError(f"bad MCS '{text}': write MODULATION-RATE with MODULATION in qpsk, 16qam, 64qam, 256qam, "
                         f"e.g. {', '.join(x.name for x in STANDARD_MCS)}")
    mod = "qpsk" if m.group(1).lower() == "4qam" else m.group(1).lower()
    num, den = int(m.group(2)), int(m.group(3))
    if den == 0 or not (MIN_RATE <= Fraction(num, den) <= MAX_RATE):
        raise ValueError(f"bad MCS '{text}': the code rate must lie in [1/5, 9/10]")
    return MCS(MODULATIONS[mod], Fraction(num, den))
