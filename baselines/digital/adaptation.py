r"""Link adaptation of the digital baseline: the MCS chosen from the SNR the transmitter is told.

**Thresholds.** For each MCS of the standard set and code block length :math:`K`, the threshold
:math:`\gamma_\mathrm{MCS}(K)` is the AWGN SNR (Es/N0, dB) at which the code block error rate of the project's
own link (:mod:`baselines.digital.bler`: CRC24B + 5G LDPC + QAM, APP demapping, 20 BP iterations) falls to the
target (BLER 0.1). They are measured by ``python -m baselines.digital.adaptation --write`` (a few minutes on one
core) into ``mcs_thresholds.json`` beside this module, which records the command, the date, the grid, the blocks
per point, every measured point and the thresholds. The search, per (MCS, :math:`K`):

1. coarse: from the Shannon limit :math:`10 \log_{10}(2^{mR} - 1)` rounded up to 0.1 dB, steps of 0.5 dB with
   32 blocks per point, until the estimated BLER is at most the target;
2. fine: on the 0.1 dB grid, with 200 blocks per point, from the last coarse point above the target upwards (or
   from the first one at or below it downwards) until two neighbouring points straddle the target;
3. the threshold is where :math:`\log_{10}` BLER, linear in the SNR between those two fine points, crosses the
   target (a BLER of 0 counts as :math:`0.5 / n`): :func:`threshold_from_points`.

Blocks are measured at :math:`K \approx` 512, 2048 and 8192 information bits (the lengths of 5G LDPC blocks in
small and Kodak-size images; :func:`~baselines.digital.link.plan_blocks` never makes blocks above 8448 bits). For
the block length :math:`K` of an image's layout the threshold is interpolated linearly in :math:`\log_2 K`
between the measured lengths and held constant outside them (:meth:`ThresholdTable.threshold`).

**The rule** (:func:`choose_mcs`): with the told SNR :math:`\hat\gamma` and a margin :math:`\Delta` (dB), the
MCS of highest spectral efficiency whose threshold, at the block length its layout gives for the image's budget,
satisfies :math:`\gamma_\mathrm{MCS}(K) \le \hat\gamma - \Delta`; if none does, the most robust MCS (and the
choice says it did not qualify). The target is per code block: an image of :math:`C` blocks sent exactly at the
threshold is lost with probability about :math:`1 - 0.9^C`; the waterfall is steep (about a decade of BLER per
0.2-0.5 dB), and ``margin`` buys safety.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from baselines.digital.link import plan_blocks
from baselines.digital.mcs import MCS, STANDARD_MCS, parse_mcs

#: the generated threshold table shipped with the package
THRESHOLDS_FILE = Path(__file__).with_name("mcs_thresholds.json")
#: the command that writes it
COMMAND = "python -m baselines.digital.adaptation --write"

#: measurement settings (the defaults of the command)
TARGET_BLER = 0.1
BLOCK_LENGTHS = (512, 2048, 8192)
COARSE_STEP_DB, COARSE_BLOCKS = 0.5, 32
FINE_STEP_DB, FINE_BLOCKS = 0.1, 200
SEED = 0


# ---------------------------------------------------------------------------------------------------- the rule
@dataclass(frozen=True)
class Choice:
    """One link-adaptation decision.

    mcs : the chosen MCS.
    threshold_db : its threshold at the block length of its layout (nan when no layout fits the budget).
    qualified : False when no MCS's threshold was at most the told SNR minus the margin (the most robust MCS
        is then used).
    """

    mcs: MCS
    threshold_db: float
    qualified: bool


class ThresholdTable:
    r"""Measured SNR thresholds per MCS and code block length (read from ``mcs_thresholds.json``).

    :param data: the parsed JSON (:meth:`load` reads a file).

    :input mcs (``threshold``): an :class:`~baselines.digital.mcs.MCS` of the table.
    :input k_cb (``threshold``): int, information bits per code block (CRC included) of the layout.
    :output: float, the SNR threshold in dB, linear in :math:`\log_2 K` between measured lengths, constant
        outside them.

    .. rubric:: Examples

    >>> t = ThresholdTable.load()
    >>> m = parse_mcs("qpsk-1/2")
    >>> t.threshold(m, 1 << 20) == t.threshold(m, t.lengths(m)[-1])  # held constant beyond the longest block
    True
    """

    def __init__(self, data: dict, source: str = "<dict>"):
        self.source = source
        try:
            self.target_bler = float(data["target_bler"])
            self.link = dict(data.get("link", {}))
            self._curves: dict[str, list[tuple[int, float]]] = {}
            for name, entry in data["mcs"].items():
                pts = sorted((int(c["k_cb"]), float(c["threshold_db"])) for c in entry["curves"])
                if not pts or any(not math.isfinite(t) for _, t in pts):
                    raise ValueError(f"no finite thresholds for {name}")
                self._curves[parse_mcs(name).name] = pts
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"bad MCS threshold table {source} ({type(e).__name__}: {e}); regenerate it with "
                             f"'{COMMAND}'") from None
        self.data = data

    @staticmethod
    def load(path: str | Path | None = None) -> ThresholdTable:
        """The table of ``path`` (default :data:`THRESHOLDS_FILE`), parsed once per path."""
        return _load(str(Path(path).resolve()) if path is not None else str(THRESHOLDS_FILE))

    def names(self) -> list[str]:
        """The MCS names the table holds."""
        return list(self._curves)

    def lengths(self, mcs: MCS) -> list[int]:
        """The measured block lengths :math:`K` of ``mcs``, increasing."""
        return [k for k, _ in self._curve(mcs)]

    def _curve(self, mcs: MCS) -> list[tuple[int, float]]:
        try:
            return self._curves[mcs.name]
        except KeyError:
            raise ValueError(f"MCS {mcs.name} has no measured threshold in {self.source} (it holds "
                             f"{', '.join(self._curves)}); choose among those or measure it with '{COMMAND} "
                             f"--mcs {mcs.name}'") from None

    def threshold(self, mcs: MCS, k_cb: int) -> float:
        pts = self._curve(mcs)
        if k_cb <= pts[0][0]:
            return pts[0][1]
        if k_cb >= pts[-1][0]:
            return pts[-1][1]
        for (k0, t0), (k1, t1) in zip(pts, pts[1:]):
            if k0 <= k_cb <= k1:
                w = (math.log2(k_cb) - math.log2(k0)) / (math.log2(k1) - math.log2(k0))
                return t0 + w * (t1 - t0)
        raise AssertionError("unreachable")

    def describe(self) -> str:
        link = self.link
        return (f"MCS thresholds at code block BLER {self.target_bler:g} over AWGN ({link.get('num_iter', '?')} BP "
                f"iterations, {link.get('demapping', '?')} demapping; {Path(self.source).name}, "
                f"{self.data.get('date', 'undated')})")


@lru_cache(maxsize=8)
def _load(path: str) -> ThresholdTable:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"MCS threshold table {p} not found: write it with '{COMMAND}'")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"MCS threshold table {p} is not valid JSON ({e}); regenerate it with '{COMMAND}'") from None
    return ThresholdTable(data, str(p))


def choose_mcs(table: ThresholdTable, candidates: Sequence[MCS], uses: int, snr_db: float, margin_db: float = 0.0
               ) -> Choice:
    r"""The MCS of highest efficiency among ``candidates`` whose threshold (at the block length of its layout for
    ``uses`` channel uses) is at most ``snr_db - margin_db``; else the most robust candidate, ``qualified`` False.

    MCSs for which no layout fits ``uses`` (:func:`~baselines.digital.link.plan_blocks` is None) never qualify.

    :input table: :class:`ThresholdTable`; ``candidates``: the MCS set (any order, at least one).
    :input uses: int, the image's budget of complex channel uses; ``snr_db``: float, the told SNR (dB);
        ``margin_db``: float, subtracted from the told SNR.
    :output: :class:`Choice`.

    .. rubric:: Examples

    >>> t = ThresholdTable.load()
    >>> qpsk, q16 = parse_mcs("qpsk-1/2"), parse_mcs("16qam-1/2")
    >>> g = t.threshold(q16, plan_blocks(q16, 24576).k_cb)
    >>> choose_mcs(t, [qpsk, q16], 24576, g + 0.01).mcs.name, choose_mcs(t, [qpsk, q16], 24576, g - 0.01).mcs.name
    ('16qam-1/2', 'qpsk-1/2')
    >>> choose_mcs(t, [qpsk, q16], 24576, -10.0).qualified
    False
    """
    if not candidates:
        raise ValueError("choose_mcs needs at least one candidate MCS")
    if not math.isfinite(float(snr_db)) or not math.isfinite(float(margin_db)):
        raise ValueError(f"the told SNR and the margin must be finite, got {snr_db} and {margin_db} dB")
    order = sorted(set(candidates), key=lambda m: (m.efficiency, m.bits_per_symbol))
    best: Choice | None = None
    robust: Choice | None = None
    for m in order:
        lay = plan_blocks(m, int(uses))
        if lay is None:
            continue
        thr = table.threshold(m, lay.k_cb)
        if robust is None:
            robust = Choice(m, thr, False)
        if thr <= float(snr_db) - float(margin_db):
            best = Choice(m, thr, True)
    return best or robust or Choice(order[0], math.nan, False)


# ---------------------------------------------------------------------------------------------------- measurement
def _interp_crossing(s0: float, p0: float, s1: float, p1: float, target: float, n0: int, n1: int) -> float:
    """SNR where log10 BLER, linear between (s0, p0) above the target and (s1, p1) at or below it, equals it."""
    if p1 == target:
        return s1
    l0, l1 = math.log10(max(p0, 0.5 / n0)), math.log10(max(p1, 0.5 / n1))
    lt = math.log10(target)
    if l0 == l1:
        return s1
    return s0 + (lt - l0) / (l1 - l0) * (s1 - s0)


def threshold_from_points(points: Sequence[dict], target: float) -> float:
    """The threshold of one measured curve: the lowest-SNR ``fine`` point with BLER at most ``target`` and its
    lower neighbour on the fine grid (BLER above it), interpolated in log10 BLER (:mod:`this module's docstring
    <baselines.digital.adaptation>`, step 3).

    :input points: dicts with ``snr_db``, ``blocks``, ``errors`` and ``stage`` (``coarse`` or ``fine``).
    :output: float, dB.
    """
    fine = sorted((p for p in points if p.get("stage") == "fine"), key=lambda p: p["snr_db"])
    for a, b in zip(fine, fine[1:]):
        pa, pb = a["errors"] / a["blocks"], b["errors"] / b["blocks"]
        if pb <= target < pa:
            return _interp_crossing(a["snr_db"], pa, b["snr_db"], pb, target, a["blocks"], b["blocks"])
    raise ValueError("the fine points do not straddle the target BLER: measure the curve again "
                     f"('{COMMAND}')")


def measure_curve(mcs: MCS, k_target: int, target: float = TARGET_BLER, seed: int = SEED,
                  coarse_blocks: int = COARSE_BLOCKS, fine_blocks: int = FINE_BLOCKS, num_iter: int = 20,
                  demapping: str = "app", log=None) -> dict:
    """Measure one curve by the search of the module docstring: ``{"k_cb", "n_cb", "uses", "threshold_db",
    "points"}`` (points in the order measured)."""
    from baselines.digital.bler import BlerMeter, shannon_limit_db, single_block_layout

    lay = single_block_layout(mcs, k_target)
    meter = BlerMeter(lay, max(coarse_blocks, fine_blocks), seed=seed, num_iter=num_iter, demapping=demapping)
    points: list[dict] = []
    cache: dict[tuple[int, int], float] = {}

    def at(tenths: int, blocks: int, stage: str) -> float:
        if (tenths, blocks) not in cache:
            p = meter.at(tenths / 10, blocks)
            points.append({"snr_db": tenths / 10, "blocks": p.blocks, "errors": p.errors,
                           "undetected": p.undetected, "stage": stage})
            cache[(tenths, blocks)] = p.bler
            if log:
                log(f"{mcs.name} K={lay.k_cb} {stage:6s} {tenths / 10:6.1f} dB  BLER {p.errors}/{p.blocks}")
        return cache[(tenths, blocks)]

    step_c = round(COARSE_STEP_DB * 10)
    start = math.ceil(shannon_limit_db(mcs) * 10 - 1e-9)
    limit = start + 150  # 15 dB above the Shannon limit: something is wrong
    s = start
    while at(s, coarse_blocks, "coarse") > target:
        s += step_c
        if s > limit:
            raise RuntimeError(f"{mcs.name} K={lay.k_cb}: BLER above {target} up to {s / 10} dB")
    s = s - step_c if s > start else s
    if at(s, fine_blocks, "fine") > target:
        while at(s + 1, fine_blocks, "fine") > target:
            s += 1
            if s > limit:
                raise RuntimeError(f"{mcs.name} K={lay.k_cb}: BLER above {target} up to {s / 10} dB")
    else:
        while at(s - 1, fine_blocks, "fine") <= target:
            s -= 1
            if s < start - 10:
                raise RuntimeError(f"{mcs.name} K={lay.k_cb}: BLER at most {target} 1 dB below the Shannon limit")
    return {"k_cb": lay.k_cb, "n_cb": lay.n_cb, "uses": lay.uses,
            "threshold_db": round(threshold_from_points(points, target), 4), "points": points}


def measure_table(mcs_set: Sequence[MCS] = STANDARD_MCS, lengths: Sequence[int] = BLOCK_LENGTHS,
                  target: float = TARGET_BLER, seed: int = SEED, coarse_blocks: int = COARSE_BLOCKS,
                  fine_blocks: int = FINE_BLOCKS, num_iter: int = 20, demapping: str = "app", log=None) -> dict:
    """Measure every (MCS, block length) curve: the content of ``mcs_thresholds.json``."""
    import sionna
    import torch

    from baselines.digital.bler import shannon_limit_db

    t0 = time.time()
    out: dict = {
        "what": "AWGN SNR (Es/N0, dB) at which the code block error rate of the digital link falls to target_bler, "
                "per MCS and code block length K (information bits, CRC included); generated, do not edit",
        "command": COMMAND, "date": datetime.date.today().isoformat(), "target_bler": target,
        "link": {"num_iter": num_iter, "demapping": demapping, "equalizer": "mmse",
                 "decoder": "FloodingBP (bit-exact with Sionna LDPC5GDecoder), CRC early stop",
                 "chain": "length header + CRC24B + 5G LDPC + TB5GScrambler + Gray QAM, one code block per "
                          "measured unit; a block is in error when its CRC fails"},
        "grid": {"start": "Shannon limit 10 log10(2^(mR) - 1) rounded up to 0.1 dB",
                 "coarse_step_db": COARSE_STEP_DB, "coarse_blocks": coarse_blocks,
                 "fine_step_db": FINE_STEP_DB, "fine_blocks": fine_blocks,
                 "threshold": "log10 BLER linear in SNR between the two fine points straddling the target "
                              "(BLER 0 counted as 0.5/n)"},
        "block_lengths": list(lengths), "seed": seed,
        "versions": {"torch": torch.__version__, "sionna": getattr(sionna, "__version__", "?")},
        "threads": torch.get_num_threads(),
        "mcs": {},
    }
    for m in sorted(mcs_set, key=lambda m: (m.efficiency, m.bits_per_symbol)):
        curves = [measure_curve(m, k, target, seed, coarse_blocks, fine_blocks, num_iter, demapping, log)
                  for k in lengths]
        out["mcs"][m.name] = {"efficiency": float(m.efficiency), "shannon_limit_db": round(shannon_limit_db(m), 4),
                              "curves": curves}
    out["seconds"] = round(time.time() - t0, 1)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m baselines.digital.adaptation",
                                 description="Measure (--write) or show the MCS SNR thresholds of the digital "
                                             "baseline's link adaptation.")
    ap.add_argument("--write", action="store_true", help=f"measure and write the table (default {THRESHOLDS_FILE})")
    ap.add_argument("--out", type=Path, default=THRESHOLDS_FILE, help="where --write writes the table")
    ap.add_argument("--mcs", default=",".join(m.name for m in STANDARD_MCS), help="comma list of MCSs")
    ap.add_argument("--lengths", default=",".join(map(str, BLOCK_LENGTHS)), help="code block lengths K (bits)")
    ap.add_argument("--target", type=float, default=TARGET_BLER, help="target code block error rate")
    ap.add_argument("--coarse-blocks", type=int, default=COARSE_BLOCKS)
    ap.add_argument("--fine-blocks", type=int, default=FINE_BLOCKS)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    a = ap.parse_args(argv)
    if not a.write:
        try:
            t = ThresholdTable.load(a.out)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(t.describe())
        for name in t.names():
            m = parse_mcs(name)
            print(f"  {name:<10} " + "  ".join(f"K={k}: {t.threshold(m, k):6.2f} dB" for k in t.lengths(m)))
        return 0
    if not 0 < a.target < 1 or a.coarse_blocks < 1 or a.fine_blocks < 1 or a.threads < 1:
        ap.error("--target must lie in (0, 1); block counts and --threads must be >= 1")
    import torch

    torch.set_num_threads(a.threads)
    try:
        mcs_set = [parse_mcs(t) for t in a.mcs.split(",") if t.strip()]
        lengths = [int(t) for t in a.lengths.split(",") if t.strip()]
    except ValueError as e:
        ap.error(str(e))
    data = measure_table(mcs_set, lengths, a.target, a.seed, a.coarse_blocks, a.fine_blocks,
                         log=lambda s: print(s, file=sys.stderr, flush=True))
    a.out.write_text(json.dumps(data, indent=1) + "\n")
    _load.cache_clear()
    print(f"wrote {a.out} ({data['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
