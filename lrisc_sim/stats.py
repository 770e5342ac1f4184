"""The statistics of a sweep, one definition of each interval (ARCHITECTURE.md section 6.5).

The unit of replication is the *image*: the trials of one image share its content, so they are nested in it and
are not independent draws. Every mean here is the mean over images of each image's mean over its trials, and
every interval on a metric (or a paired difference) is a Student t interval over those per-image means. The one
interval over transmissions (images x trials) is the exact Clopper-Pearson interval of the success rate ``ok``.

* ``nested_interval``: mean and 95% t interval of a metric at one point, bounds clipped to ``METRIC_RANGE``;
* ``clopper_pearson``: exact binomial 95% interval of a proportion (outage-type points: ``ok_rate``);
* ``paired_tests``: t test and Wilcoxon signed-rank test of per-image mean differences;
* ``average_gap``: the trapezoid average of a piecewise-linear curve over its range (Bjontegaard-style gap);
* ``interval_text``: how an interval is printed (``n/a`` when there is none, never ``±0.00``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95  # every interval is a 95% interval
WILCOXON_MIN_N = 6  # with fewer images the signed-rank test cannot reach p < 0.05 (2 / 2^5 = 0.0625): not reported

# the range each metric can take: images are in [0, 1], so MSE <= 1 and PSNR >= 0 (capped at 100 dB,
# ARCHITECTURE.md 3.1); MS-SSIM in [0, 1]; LPIPS >= 0. Interval bounds are clipped to it.
METRIC_RANGE: dict[str, tuple[float, float]] = {"psnr": (0.0, 100.0), "ms_ssim": (0.0, 1.0),
                                                "lpips": (0.0, math.inf)}


def _finite(values) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    return v[np.isfinite(v)]


def t_halfwidth(values, level: float = LEVEL) -> float:
    """Half-width of the Student t interval of the mean of ``values`` (``n``, NaN dropped): t_{n-1} s / sqrt(n);
    NaN with fewer than 2 values (no interval, printed "n/a")."""
    v = _finite(values)
    n = len(v)
    if n < 2:
        return float("nan")
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))


def image_means(values, images) -> np.ndarray:
    """Per-image means over trials: ``values`` and ``images`` are ``N`` (one per row, image ids); returns one
    mean per image (sorted by id) over its finite values; images without a finite value are left out."""
    v = np.asarray(values, dtype=float).ravel()
    ids = np.asarray(images).ravel()
    if len(v) != len(ids):
        raise ValueError(f"image_means: {len(v)} values but {len(ids)} image ids")
    ok = np.isfinite(v)
    uniq, inv = np.unique(ids[ok], return_inverse=True)
    sums = np.bincount(inv, weights=v[ok], minlength=len(uniq))
    counts = np.bincount(inv, minlength=len(uniq))
    return sums / counts


def clip_bounds(mean: float, half: float, metric: str | None = None) -> tuple[float, float]:
    """(lo, hi) = mean -/+ half clipped to ``METRIC_RANGE[metric]`` (unclipped for another name); (NaN, NaN)
    when there is no interval."""
    if not (math.isfinite(mean) and math.isfinite(half)):
        return float("nan"), float("nan")
    lo, hi = METRIC_RANGE.get(metric or "", (-math.inf, math.inf))
    return max(mean - half, lo), min(mean + half, hi)


@dataclass(frozen=True)
class Interval:
    """Mean over images of the per-image means, the t half-width over images and its clipped bounds."""

    mean: float
    half: float  # NaN with fewer than 2 images
    lo: float
    hi: float
    n_images: int


def nested_interval(values, images, metric: str | None = None, level: float = LEVEL) -> Interval:
    """The interval of one point: ``values`` (``N`` rows = images x trials) and their image ids ``images``
    (``N``). mean = (1/I) sum_i ybar_i with ybar_i the mean of image i over its trials; half = t_{I-1} s_I /
    sqrt(I) with s_I the standard deviation of the I per-image means; bounds clipped to the metric's range."""
    m = image_means(values, images)
    n = len(m)
    mean = float(m.mean()) if n else float("nan")
    half = t_halfwidth(m, level)
    lo, hi = clip_bounds(mean, half, metric)
    return Interval(mean, half, lo, hi, n)


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a proportion k / n (``scipy.stats.binomtest``); (NaN, NaN) for n = 0."""
    if n <= 0:
        return float("nan"), float("nan")
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def paired_tests(diffs) -> tuple[float, float]:
    """p-values (two-sided) that the mean of the per-image mean differences ``diffs`` (``I``) is 0: one-sample t
    test (NaN with fewer than 2 images; 1.0 when every difference is 0) and Wilcoxon signed-rank test (NaN with
    fewer than ``WILCOXON_MIN_N`` images)."""
    d = _finite(diffs)
    n = len(d)
    if n < 2:
        return float("nan"), float("nan")
    if np.all(d == 0):
        return 1.0, (1.0 if n >= WILCOXON_MIN_N else float("nan"))
    from scipy.stats import ttest_1samp, wilcoxon

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero variance (equal non-zero differences): scipy warns, gives p = 0
        p_t = float(ttest_1samp(d, 0.0).pvalue)
        p_w = float(wilcoxon(d).pvalue) if n >= WILCOXON_MIN_N else float("nan")
    return p_t, p_w


def average_gap(x: Sequence[float], d: Sequence[float]) -> float:
    """Average of the piecewise-linear curve through (x_j, d_j) over [min x, max x]: the trapezoid integral
    divided by the width. ``x`` (``J``, distinct, at least 2) need not be sorted; ``d`` is ``J``."""
    x = np.asarray(x, dtype=float)
    d = np.asarray(d, dtype=float)
    if x.shape != d.shape or len(x) < 2:
        raise ValueError("average_gap needs at least two (x, d) points of equal count")
    o = np.argsort(x)
    x, d = x[o], d[o]
    width = x[-1] - x[0]
    if width <= 0:
        raise ValueError("average_gap needs distinct x values")
    return float(np.sum((x[1:] - x[:-1]) * (d[1:] + d[:-1]) / 2) / width)


def interval_text(mean: float, half: float, lo: float, hi: float, p: int) -> str:
    """``mean ±half``, or ``mean -a/+b`` when a bound was clipped, or ``mean ±n/a`` without an interval;
    ``-`` without a mean. ``p`` decimals."""
    if mean is None or not math.isfinite(mean):
        return "-"
    if half is None or not math.isfinite(half):
        return f"{mean:.{p}f} ±n/a"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = mean - half, mean + half
    a, b = mean - lo, hi - mean
    tol = 0.5 * 10 ** -(p + 2)
    if abs(a - half) <= tol and abs(b - half) <= tol:
        return f"{mean:.{p}f} ±{half:.{p}f}"
    return f"{mean:.{p}f} -{a:.{p}f}/+{b:.{p}f}"


UNDERFILL = 0.9  # a point whose mean cbr_total is below UNDERFILL x cbr_target is marked `underfilled`
