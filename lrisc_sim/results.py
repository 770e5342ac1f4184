"""The per-image results table (written point by point, resumable) and its summary with 95% CIs."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable
from dataclasses import astuple, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from lrisc_sim.metrics import METRIC_NAMES

METRICS = METRIC_NAMES  # the metric columns, in table order


def point_key(codec: str, cbr: float, snr: float, channel: str, trial: int, image: str) -> tuple:
    """The identity of one row: (codec, CBR, SNR, channel, trial, image), numbers rounded for stable matching."""
    return (codec, round(float(cbr), 12), round(float(snr), 9), channel, int(trial), str(image))


@dataclass(frozen=True)
class Row:
    """One line of ``results.csv``: one image at one (codec, CBR, SNR, channel, trial) point. The fields, in this
    order, are the table's columns (a metric not computed is NaN; ``info`` holds the codec's extra columns,
    e.g. ``mcs``, written as JSON)."""

    codec: str
    cbr_target: float
    cbr_payload: float
    cbr_side: float
    cbr_total: float
    snr_db: float
    channel: str
    trial: int
    image: str
    psnr: float
    ms_ssim: float
    lpips: float
    seconds: float
    ok: bool
    seed: int
    side_charge: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        return point_key(self.codec, self.cbr_target, self.snr_db, self.channel, self.trial, self.image)

    def cells(self) -> list[str]:
        """The CSV cells of the row, in column order."""
        return [_fmt(v) for v in astuple(self)]


COLUMNS = [f.name for f in fields(Row)]
assert tuple(c for c in COLUMNS if c in METRIC_NAMES) == METRIC_NAMES, "Row must have one field per metric"


HEADER = ",".join(COLUMNS)


class ResultsTable:
    """``results.csv`` in an output folder: appends rows with a flush + fsync per point; on open, a torn last
    line (from a killed run; the header line too) is cut off or rewritten, ``done`` holds the keys of every
    finished row and ``seeds`` the seeds found in them. A file that is not such a table is left untouched and
    refused with a one-line ``ValueError``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: set[tuple] = set()
        self.seeds: set[int] = set()
        if self.path.exists() and self._repair():
            try:
                with self.path.open(newline="", encoding="utf-8") as f:
                    reader = csv.DictReader(f)
                    for r in reader:
                        self.done.add(point_key(r["codec"], float(r["cbr_target"]), float(r["snr_db"]),
                                                r["channel"], int(r["trial"]), r["image"]))
                        if r["seed"]:
                            self.seeds.add(int(r["seed"]))
            except (ValueError, TypeError, csv.Error) as e:  # bad numbers, short rows, undecodable bytes
                raise ValueError(f"{self.path}: line {reader.line_num} is not a results row ({type(e).__name__}); "
                                 "fix or delete that line, or use another --out folder") from None
        else:
            self._write_header()

    def _write_header(self) -> None:
        with self.path.open("w", newline="") as f:
            csv.writer(f).writerow(COLUMNS)
            f.flush()
            os.fsync(f.fileno())

    def _repair(self) -> bool:
        """Cut a torn last line; False when nothing but (part of) the header is there. Raises if the first line
        is not this version's header."""
        data = self.path.read_bytes()
        first, nl, _ = data.partition(b"\n")
        first = first.rstrip(b"\r")
        if not nl:  # a torn (or empty) header line: nothing was written after it
            if HEADER.encode().startswith(first):
                return False
        elif first == HEADER.encode():
            if not data.endswith(b"\n"):
                with self.path.open("r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)
            return True
        raise ValueError(f"{self.path}: not a results table of this version (its first line is not the header "
                         f"{HEADER[:24]}...); use another --out folder")

    def append(self, rows: Iterable[Row]) -> None:
        """Append rows not yet in the table (a point cut in half by a kill is completed, not duplicated)."""
        rows = [r for r in rows if r.key not in self.done]
        if not rows:
            return
        with self.path.open("a", newline="") as f:
            w = csv.writer(f)
            for r in rows:
                w.writerow(r.cells())
            f.flush()
            os.fsync(f.fileno())
        for r in rows:
            self.done.add(r.key)


    def drop(self, codecs: Iterable[str]) -> int:
        """Remove every row of ``codecs`` (atomically: a rewritten copy replaces the file); returns how many."""
        codecs = set(codecs)
        with self.path.open(newline="") as f:
            rows = list(csv.reader(f))
        keep = [rows[0]] + [r for r in rows[1:] if r[0] not in codecs]
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            csv.writer(f).writerows(keep)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.done = {k for k in self.done if k[0] not in codecs}
        return len(rows) - len(keep)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True) if v else ""
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    return str(v)


def load(path: str | os.PathLike):
    """The results table as a pandas DataFrame."""
    import pandas as pd

    df = pd.read_csv(path, keep_default_na=True)
    df["ok"] = df["ok"].astype(str) == "True"
    return df


def ci95(values: np.ndarray) -> float:
    """Half-width of the 95% confidence interval of the mean (Student t), NaN-aware; 0 for one sample."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n < 2:
        return 0.0 if n == 1 else float("nan")
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n))


def summarize(df):
    """One row per (codec, channel, cbr_target, snr_db): n, mean and 95% CI of each metric, CBRs, ok rate."""
    import pandas as pd

    rows = []
    for (codec, channel, cbr, snr), g in df.groupby(["codec", "channel", "cbr_target", "snr_db"], sort=True):
        r = {"codec": codec, "channel": channel, "cbr_target": cbr, "snr_db": snr, "n": len(g),
             "cbr_payload": g["cbr_payload"].mean(), "cbr_side": g["cbr_side"].mean(),
             "cbr_total": g["cbr_total"].mean(), "cbr_total_max": g["cbr_total"].max(),
             "ok_rate": g["ok"].mean(), "seconds": g["seconds"].mean()}
        for m in METRICS:
            vals = g[m].to_numpy(dtype=float)
            finite = vals[np.isfinite(vals)]
            r[m] = float(finite.mean()) if len(finite) else float("nan")
            r[f"{m}_ci95"] = ci95(vals)
        rows.append(r)
    return pd.DataFrame(rows)


def format_summary(summary, cbr_label=None) -> str:
    """A fixed-width text table of a summary for the terminal."""
    lab = cbr_label or (lambda v: f"{v:.4g}")
    head = f"{'codec':<18} {'channel':<16} {'CBR':>7} {'CBR used':>9} {'SNR':>6} {'PSNR (dB)':>15} " \
           f"{'MS-SSIM':>15} {'LPIPS':>15} {'ok':>5} {'n':>4}"
    lines = [head, "-" * len(head)]
    for _, r in summary.iterrows():
        def cell(m, p):
            v, c = r[m], r[f"{m}_ci95"]
            if not math.isfinite(v):
                return f"{'-':>15}"
            return f"{v:>{8}.{p}f} ±{c:<{5}.{p}f}" if math.isfinite(c) else f"{v:>15.{p}f}"
        lines.append(f"{r['codec']:<18.18} {r['channel']:<16.16} {lab(r['cbr_target']):>7} {r['cbr_total']:>9.5f} "
                     f"{r['snr_db']:>6.1f} {cell('psnr', 2)} {cell('ms_ssim', 3)} {cell('lpips', 3)} "
                     f"{r['ok_rate']:>5.0%} {int(r['n']):>4}")
    return "\n".join(lines)
