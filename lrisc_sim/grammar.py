"""Parsing of SNR and CBR grids (ARCHITECTURE.md section 3.7).

SNR: ``0:15:5`` is start:stop:step, inclusive (0, 5, 10, 15); ``start:stop`` uses step 1; lists ``0,3,7``;
single values ``10``. CBR: fractions ``1/48`` or decimals ``0.02``, lists ``1/64,1/48``.
"""

from __future__ import annotations

import math
from fractions import Fraction


class GridError(ValueError):
    """A bad SNR or CBR string; the message names the accepted forms."""


SNR_FORMS = "accepted forms: '10', '0,3,7' or start:stop:step like '0:15:5' (inclusive)"
CBR_FORMS = "accepted forms: '1/48', '0.02' or lists like '1/64,1/48,1/16' (each in (0, 1])"


def _number(tok: str, what: str, forms: str) -> float:
    try:
        v = float(tok)
    except ValueError:
        raise GridError(f"bad {what} '{tok}': {forms}") from None
    if not math.isfinite(v):
        raise GridError(f"bad {what} '{tok}': must be finite; {forms}")
    return v


def parse_snr(text: str) -> list[float]:
    """SNR grid in dB, e.g. ``'0:15:5'`` -> [0, 5, 10, 15]."""
    text = str(text).strip()
    if not text:
        raise GridError(f"empty SNR: {SNR_FORMS}")
    out: list[float] = []
    for part in text.split(","):
        part = part.strip()
        if ":" in part:
            toks = part.split(":")
            if len(toks) not in (2, 3) or any(not t.strip() for t in toks):
                raise GridError(f"bad SNR range '{part}': {SNR_FORMS}")
            start, stop = (_number(t, "SNR", SNR_FORMS) for t in toks[:2])
            step = _number(toks[2], "SNR step", SNR_FORMS) if len(toks) == 3 else 1.0
            if step <= 0:
                raise GridError(f"bad SNR range '{part}': step must be > 0; {SNR_FORMS}")
            if stop < start:
                raise GridError(f"bad SNR range '{part}': stop < start; {SNR_FORMS}")
            n = int(math.floor((stop - start) / step + 1e-9))
            if n > 10000:
                raise GridError(f"SNR range '{part}' has {n + 1} points; use a larger step")
            out += [round(start + i * step, 10) for i in range(n + 1)]
        else:
            out.append(_number(part, "SNR", SNR_FORMS))
    if any(abs(v) > 100 for v in out):
        raise GridError(f"SNR values must lie within -100..100 dB, got {text}")
    return _unique(out)


def parse_cbr(text: str) -> list[Fraction | float]:
    """CBR list, fractions kept exact: ``'1/64,1/48'`` -> [Fraction(1, 64), Fraction(1, 48)]."""
    text = str(text).strip()
    if not text:
        raise GridError(f"empty CBR: {CBR_FORMS}")
    out: list[Fraction | float] = []
    for part in text.split(","):
        part = part.strip()
        if "/" in part:
            num, _, den = part.partition("/")
            try:
                v: Fraction | float = Fraction(int(num), int(den))
            except (ValueError, ZeroDivisionError):
                raise GridError(f"bad CBR '{part}': {CBR_FORMS}") from None
        else:
            v = _number(part, "CBR", CBR_FORMS)
        if not 0 < v <= 1:
            raise GridError(f"bad CBR '{part}': must lie in (0, 1]; {CBR_FORMS}")
        out.append(v)
    return _unique(out)


def cbr_label(v: Fraction | float) -> str:
    """``1/48`` for fractions with numerator 1, else a short decimal."""
    if isinstance(v, Fraction):
        return f"{v.numerator}/{v.denominator}"
    f = Fraction(v).limit_denominator(1000)
    if f.numerator == 1 and abs(float(f) - v) < 1e-12:
        return f"1/{f.denominator}"
    return f"{v:.6g}"


def _unique(vals: list) -> list:
    seen, out = set(), []
    for v in vals:
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out
