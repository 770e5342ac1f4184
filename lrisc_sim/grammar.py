"""Parsing of SNR and CBR grids (ARCHITECTURE.md section 3.7).

SNR: ``0:15:5`` is start:stop:step, inclusive (0, 5, 10, 15); ``start:stop`` uses step 1; lists ``0,3,7``;
single values ``10``. CBR: fractions ``1/48`` (kept exact) or decimals ``0.02`` (floats), lists ``1/64,1/48``;
``parse_one_cbr`` reads one value by the same rules and ``cbr_fraction`` snaps it to an exact fraction.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction


class GridError(ValueError):
    """A bad SNR or CBR string; the message names the accepted forms."""


#: Most points of an SNR grid (one range of 0.02 dB steps over -100..100 dB) and most CBRs in a list; the sweep
#: plan as a whole is bounded too (``engine.MAX_IMAGE_POINTS``).
MAX_SNR_POINTS = 10001
MAX_CBR_VALUES = 1000
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
        if len(out) > MAX_SNR_POINTS:
            raise GridError(f"SNR grid '{text[:40]}{'...' if len(text) > 40 else ''}' has more than "
                            f"{MAX_SNR_POINTS} points; use a larger step or fewer values")
    if any(abs(v) > 100 for v in out):
        raise GridError(f"SNR values must lie within -100..100 dB, got {text}")
    return _unique(out)


def parse_cbr(text: str) -> list[Fraction | float]:
    """CBR list, fractions kept exact: ``'1/64,1/48'`` -> [Fraction(1, 64), Fraction(1, 48)]."""
    text = str(text).strip()
    if not text:
        raise GridError(f"empty CBR: {CBR_FORMS}")
    parts = text.split(",")
    if len(parts) > MAX_CBR_VALUES:
        raise GridError(f"CBR list has {len(parts)} values, more than {MAX_CBR_VALUES}; give fewer CBRs")
    return _unique([_one_cbr(part.strip()) for part in parts])


def _one_cbr(part: str) -> Fraction | float:
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
    return v


def parse_one_cbr(value: str | float | Fraction) -> Fraction | float:
    """One CBR by the rules of ``parse_cbr``: ``'1/48'`` -> Fraction(1, 48) (exact), ``'0.02'`` -> 0.02 (float).

    A Fraction is kept (range-checked), any other real number becomes a float; lists, NaN, inf and values outside
    (0, 1] raise a one-line ``GridError``.
    """
    if isinstance(value, Fraction):
        if not 0 < value <= 1:
            raise GridError(f"bad CBR '{value}': must lie in (0, 1]; {CBR_FORMS}")
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):  # int, float, numpy scalars
        value = repr(float(value))
    text = str(value).strip()
    if not text:
        raise GridError(f"empty CBR: {CBR_FORMS}")
    if "," in text:
        raise GridError(f"bad CBR '{text}': one value is needed here, not a list; {CBR_FORMS}")
    return _one_cbr(text)


def cbr_fraction(value: str | float | Fraction, max_denominator: int = 10000) -> Fraction:
    """One CBR (``parse_one_cbr``) as an exact Fraction: the nearest one with a denominator <= ``max_denominator``
    (``0.0208333`` -> 1/48; fractions with smaller denominators are unchanged). For codecs whose rate is a ratio
    of integers (DeepJSCC: c = 6 d^2 CBR channels). One-line ``GridError`` on bad input or a CBR that snaps to 0."""
    f = Fraction(parse_one_cbr(value)).limit_denominator(max_denominator)
    if not 0 < f <= 1:
        raise GridError(f"bad CBR '{value}': below 1/{max_denominator}, the smallest CBR this codec resolves; "
                        f"{CBR_FORMS}")
    return f


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
