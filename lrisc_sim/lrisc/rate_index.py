"""How LRISC's rate indices q (the side information of eq. 3) are sent: code lengths and a real coder.

q is one index in [0, K) per token (K = 2^n allowed lengths), ``B x L`` in raster order over the latent grid
``h x w`` (L = h w). Three codes, all lossless and sent error-free:

* ``fixed``: n bits per token.
* ``enumerative``: the K - 1 level counts (ceil(log2(L + 1)) bits each), then the rank of the arrangement among
  all with those counts, ceil(log2(L! / prod_j c_j!)) bits.
* ``context``: adaptive arithmetic coding with a spatial context. Token i's context is the mean of its left
  and upper neighbours' indices (rounded up; the one present at a border, ``K`` for the first token), and its
  index is coded with the Krichevsky-Trofimov estimate of that context's counts so far,
  p(s | ctx) = (c_{ctx,s} + 1/2) / (n_ctx + K/2). The product of these probabilities depends only on the final
  counts, so the code length has the closed form

      bits = ceil( sum_ctx [ log2 G(n_ctx + K/2) - log2 G(K/2) - sum_s (log2 G(c_{ctx,s} + 1/2) - log2 G(1/2)) ] ) + 1

  (G: the gamma function; +1 for terminating an exact arithmetic code), which rate control evaluates
  vectorised. ``encode_context`` / ``decode_context`` are that coder in exact integer arithmetic; its output is
  never longer than ``bits`` (tests check both).

``auto`` (default) uses the cheapest of a set of these codes for each image and spends ceil(log2 |set|) flag
bits to say which. The set is the model's (``JSCCConfig.side_codes``): all three for models trained since the
context code exists, (fixed, enumerative) for the first shipped checkpoints, so their numbers do not move.

    >>> q = torch.tensor([[0, 0, 1, 1, 0, 0, 1, 1]])
    >>> value, nbits = encode_context(q[0].tolist(), (2, 4), 2)
    >>> decode_context(value, nbits, (2, 4), 2) == q[0].tolist()
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

CODES = ("fixed", "enumerative", "context")
MODES = ("auto",) + CODES
_LOG2 = math.log(2)


def _grid(grid: tuple[int, int] | None, length: int) -> tuple[int, int]:
    h, w = grid if grid is not None else (1, length)
    if h * w != length:
        raise ValueError(f"rate-index grid {h} x {w} does not hold {length} tokens")
    return int(h), int(w)


def contexts(q: torch.Tensor, grid: tuple[int, int] | None = None, n_levels: int | None = None) -> torch.Tensor:
    """Context of each token (``B x L`` long in [0, K]): ceil((left + up) / 2), the one present at a border,
    K for the first token of the raster."""
    b, length = q.shape
    h, w = _grid(grid, length)
    k = int(n_levels if n_levels is not None else int(q.max()) + 1)
    m = q.reshape(b, h, w)
    none = torch.full_like(m, -1)
    left = torch.cat([none[:, :, :1], m[:, :, :-1]], 2)
    up = torch.cat([none[:, :1, :], m[:, :-1, :]], 1)
    both = torch.div(left + up + 1, 2, rounding_mode="floor")
    ctx = torch.where(left < 0, up, torch.where(up < 0, left, both))
    return torch.where(ctx < 0, torch.full_like(ctx, k), ctx).reshape(b, length)


def context_bits(q: torch.Tensor, n_levels: int, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """B code lengths (float64, bits) of the ``context`` code of ``q`` ``B x L`` (closed form above)."""
    b, length = q.shape
    k = int(n_levels)
    ctx = contexts(q, grid, k)
    counts = torch.zeros(b, (k + 1) * k, dtype=torch.float64, device=q.device)
    counts.scatter_add_(1, ctx * k + q, torch.ones_like(q, dtype=torch.float64))
    counts = counts.reshape(b, k + 1, k)
    n = counts.sum(2)
    half = torch.tensor(0.5, dtype=torch.float64)
    kh = torch.tensor(k / 2, dtype=torch.float64)
    nats = ((torch.lgamma(n + kh) - torch.lgamma(kh)).sum(1)
            - (torch.lgamma(counts + half) - torch.lgamma(half)).sum((1, 2)))
    return torch.ceil(nats / _LOG2 + 1e-6) + 1


def _fixed_bits(n_levels: int) -> int:
    return max(int(math.ceil(math.log2(n_levels))), 0) if n_levels > 1 else 0


@dataclass(frozen=True)
class RateIndexCoding:
    """How the rate indices are charged: ``mode`` in ``auto``, ``fixed``, ``enumerative``, ``context``;
    ``codes``: the set ``auto`` chooses from."""

    mode: str = "auto"
    codes: tuple[str, ...] = CODES

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown rate-index coding '{self.mode}': use one of {', '.join(MODES)}")
        bad = [c for c in self.codes if c not in CODES]
        if bad or not self.codes:
            raise ValueError(f"unknown rate-index code {bad[0] if bad else '(none)'!r} for auto: use some of "
                             f"{', '.join(CODES)}")

    @property
    def flag_bits(self) -> int:
        """Bits that name the chosen code under ``auto``: ceil(log2 |codes|)."""
        return (len(self.codes) - 1).bit_length()

    def all_bits(self, q: torch.Tensor, n_levels: int, grid: tuple[int, int] | None = None
                 ) -> dict[str, torch.Tensor]:
        """Code length (B, float64) of ``q`` ``B x L`` under each of the three codes (the context code only when
        ``auto`` may choose it or it is the mode: it is the costly one)."""
        b, length = q.shape
        fixed = torch.full((b,), float(length * _fixed_bits(n_levels)), dtype=torch.float64, device=q.device)
        counts = F.one_hot(q, n_levels).sum(1).to(torch.float64)  # B x K
        log2_mult = (math.lgamma(length + 1) - torch.lgamma(counts + 1).sum(1)) / _LOG2
        header = (n_levels - 1) * math.ceil(math.log2(length + 1))
        enum = header + torch.ceil(log2_mult - 1e-9).clamp(min=0)
        out = {"fixed": fixed, "enumerative": enum}
        if self.mode == "context" or (self.mode == "auto" and "context" in self.codes):
            out["context"] = context_bits(q, n_levels, grid)
        return out

    def bits(self, q: torch.Tensor, n_levels: int, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """B side bits (float64) for rate indices ``q`` ``B x L`` on the latent ``grid`` (default one row)."""
        codes = self.all_bits(q, n_levels, grid)
        if self.mode == "auto":
            return self.flag_bits + torch.stack([codes[c] for c in self.codes], 1).amin(1)
        return codes[self.mode]

    def chosen(self, q: torch.Tensor, n_levels: int, grid: tuple[int, int] | None = None) -> list[str]:
        """The code each image uses (``auto``: the cheapest; ties go to the simpler code)."""
        if self.mode != "auto":
            return [self.mode] * q.shape[0]
        codes = self.all_bits(q, n_levels, grid)
        stack = torch.stack([codes[n] for n in self.codes], 1)
        return [self.codes[int(i)] for i in stack.argmin(1)]


def _kt_step(counts: list[int], total: int, s: int, k: int) -> tuple[int, int, int]:
    """(cumulative, frequency, total) of symbol s under the KT estimate, in units of 1/2 (integers)."""
    cum = sum(2 * counts[j] + 1 for j in range(s))
    return cum, 2 * counts[s] + 1, 2 * total + k


def encode_context(q: list[int], grid: tuple[int, int], n_levels: int) -> tuple[int, int]:
    """Exact arithmetic code of one image's indices (raster order): (value, nbits); the code word is the
    ``nbits``-bit binary fraction value / 2^nbits."""
    k = int(n_levels)
    ctx = contexts(torch.tensor([q]), grid, k)[0].tolist()
    counts = [[0] * k for _ in range(k + 1)]
    totals = [0] * (k + 1)
    low, rng, den = 0, 1, 1  # the interval [low / den, (low + rng) / den)
    for s, c in zip(q, ctx):
        cum, f, tot = _kt_step(counts[c], totals[c], s, k)
        low, rng, den = low * tot + rng * cum, rng * f, den * tot
        counts[c][s] += 1
        totals[c] += 1
    t = -(-den // rng)  # ceil(den / rng): 2^k0 >= den / rng
    nbits = (t - 1).bit_length() + 1
    value = -(-(low << nbits) // den)  # ceil(low 2^nbits / den): inside the interval since 2^-nbits <= rng / 2den
    return value, nbits


def decode_context(value: int, nbits: int, grid: tuple[int, int], n_levels: int) -> list[int]:
    """Inverse of ``encode_context``."""
    k = int(n_levels)
    h, w = grid
    out: list[int] = []
    counts = [[0] * k for _ in range(k + 1)]
    totals = [0] * (k + 1)
    low, rng, den = 0, 1, 1
    for i in range(h * w):
        r, col = divmod(i, w)
        left = out[i - 1] if col > 0 else -1
        up = out[i - w] if r > 0 else -1
        c = (left + up + 1) // 2 if left >= 0 and up >= 0 else max(left, up)
        c = k if c < 0 else c
        tot = 2 * totals[c] + k
        # position of the code word inside the current interval, in units of 1/tot
        pos = ((value * den - (low << nbits)) * tot) // (rng << nbits)
        s, cum = 0, 0
        while s < k - 1 and cum + 2 * counts[c][s] + 1 <= pos:
            cum += 2 * counts[c][s] + 1
            s += 1
        f = 2 * counts[c][s] + 1
        low, rng, den = low * tot + rng * cum, rng * f, den * tot
        counts[c][s] += 1
        totals[c] += 1
        out.append(s)
    return out
