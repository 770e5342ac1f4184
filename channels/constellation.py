"""Finite constellations for any codec: each transmitted complex symbol mapped to the nearest constellation point.

A radio that only sends M-QAM or M-PSK symbols cannot carry an analog codec's arbitrary complex values; this
module models that constraint (issue 27, item 3). ``Constellation("qam16")`` holds the unit-average-power points
(QAM from Sionna's ``sionna.phy.mapping.Constellation``; PSK points e^{j(2 pi m / M + pi / M)} for M > 2, BPSK
+-1); ``quantize(s, length)`` maps the first ``length[b]`` symbols of each image to their nearest points and
rescales the image's mapped symbols to unit average power (P = 1, the link's rule), and reports the symbol-level
signal-to-quantisation-noise ratio of each image,

    SQNR_b = 10 log10( sum_i |s_bi|^2 / sum_i |s_bi - c * q_bi|^2 ),

with ``c`` the rescaling. The mapping is deterministic, so every choice of constellation sees the same channel
realizations (the channel draws do not depend on the symbols).
"""

from __future__ import annotations

import math
import re

import torch

KINDS = ("qam", "psk")


def constellation_points(kind: str, m: int) -> torch.Tensor:
    """``M`` complex64 points with unit average power: square M-QAM (M = 4, 16, 64, 256, 1024) or M-PSK."""
    if kind == "qam":
        bits = int(round(math.log2(m)))
        if 2**bits != m or bits % 2 or not 2 <= bits <= 10:
            raise ValueError(f"qam{m}: M-QAM needs M = 4, 16, 64, 256 or 1024")
        from sionna.phy.mapping import Constellation as SionnaConstellation

        return SionnaConstellation("qam", bits).points.to(torch.complex64).detach().cpu()
    if kind == "psk":
        if m < 2 or m > 1024 or m & (m - 1):
            raise ValueError(f"psk{m}: M-PSK needs M a power of two in 2..1024")
        if m == 2:
            return torch.tensor([1.0 + 0j, -1.0 + 0j], dtype=torch.complex64)
        k = torch.arange(m, dtype=torch.float64)
        return torch.polar(torch.ones(m, dtype=torch.float64), 2 * math.pi * k / m + math.pi / m).to(torch.complex64)
    raise ValueError(f"unknown constellation kind {kind!r}: use qam or psk")


def parse_constellation(spec: str) -> tuple[str, int] | None:
    """``none`` -> None; ``qam16``, ``qam64``, ``psk8``, ``bpsk``, ``qpsk`` -> (kind, M). One-line ``ValueError``."""
    s = str(spec).strip().lower()
    if s in ("", "none"):
        return None
    alias = {"bpsk": ("psk", 2), "qpsk": ("qam", 4)}
    if s in alias:
        return alias[s]
    m = re.fullmatch(r"(qam|psk)(\d+)", s)
    if not m:
        raise ValueError(f"bad constellation {spec!r}: use none, bpsk, qpsk, qamM (M = 4, 16, 64, 256, 1024) or "
                         "pskM (M a power of two)")
    kind, n = m[1], int(m[2])
    constellation_points(kind, n)  # checks M
    return kind, n


class Constellation:
    """Nearest-point mapping of ``B x k`` complex symbols onto a unit-power constellation.

    :input: ``s`` ``B x k`` complex64 (unit average power over the first ``length[b]`` symbols of row b, zeros
        after), ``length`` ``B`` int (None: all k).
    :output: ``(q, sqnr_db)``: ``q`` ``B x k`` complex64 constellation points rescaled per image to unit average
        power (zeros after ``length[b]``), ``sqnr_db`` ``B`` float32 (inf for an image already on the points).

    >>> c = Constellation("qam16")
    >>> q, sqnr = c.quantize(torch.tensor([[0.3 + 0.3j, -0.9 + 0.95j]]))
    >>> q.shape, bool(sqnr[0] > 10)
    (torch.Size([1, 2]), True)
    """

    def __init__(self, spec: str):
        parsed = parse_constellation(spec)
        if parsed is None:
            raise ValueError("Constellation('none') maps nothing: leave the constellation out instead")
        self.kind, self.m = parsed
        self.name = f"{self.kind}{self.m}" if (self.kind, self.m) != ("psk", 2) else "bpsk"
        self.points = constellation_points(self.kind, self.m)

    def nearest(self, s: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
        """The nearest point of every entry of ``s`` (any shape, complex), computed in chunks (bounded memory)."""
        pts = self.points.to(s.device)
        flat = s.reshape(-1)
        out = torch.empty_like(flat, dtype=torch.complex64)
        for i in range(0, flat.numel(), chunk):
            part = flat[i: i + chunk]
            idx = (part[:, None] - pts[None, :]).abs().argmin(dim=1)
            out[i: i + chunk] = pts[idx]
        return out.reshape(s.shape)

    def quantize(self, s: torch.Tensor, length: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, k = s.shape
        n = torch.full((b,), k, device=s.device) if length is None else length.to(s.device)
        mask = torch.arange(k, device=s.device)[None, :] < n[:, None]
        q = torch.where(mask, self.nearest(s), torch.zeros((), dtype=torch.complex64, device=s.device))
        p = (q.abs() ** 2).sum(1) / n.clamp(min=1)
        q = q / p.clamp(min=1e-30).sqrt()[:, None]  # unit average power per image (P = 1)
        err = ((s - q).abs() ** 2).sum(1)
        sig = (s.abs() ** 2).sum(1)
        sqnr = 10 * torch.log10(sig / err.clamp(min=1e-30))
        sqnr = torch.where(err > 0, sqnr, torch.full_like(sqnr, float("inf")))
        return q.to(torch.complex64), sqnr.float()

    def describe(self) -> str:
        return f"{self.name.upper()} constellation (nearest point, unit power per image)"
