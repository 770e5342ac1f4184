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
    line (from a killed run; the header line too) is cut off or rewritten, a UTF-8 byte-order mark (a spreadsheet's
    re-save) is dropped, ``done`` holds the keys of every finished row and ``seeds`` the seeds found in them.
    Every row is checked (:func:`check_row`): a row that is not a results row (a non-finite SNR or CBR, ``ok``
    other than True/False, ...) or repeats another row's point is refused with a one-line ``ValueError`` naming
    the file and line, and the file is left untouched, as is a file that is not such a table."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: set[tuple] = set()
        self.seeds: set[int] = set()
        if self.path.exists() and self._repair():
            lines: dict[tuple, int] = {}
            try:
                with self.path.open(newline="", encoding="utf-8") as f:
                    reader = csv.DictReader(f)
                    for r in reader:
                        key, seed = check_row(r)
                        if key in lines:
                            raise ValueError(f"repeats the point of line {lines[key]} ({_key_words(key)}); delete "
                                             "one of the two lines")
                        lines[key] = reader.line_num
                        if seed is not None:
                            self.seeds.add(seed)
            except (TypeError, csv.Error, UnicodeDecodeError) as e:  # short rows, undecodable bytes
                raise ValueError(f"{self.path}: line {reader.line_num} is not a results row ({type(e).__name__}); "
                                 "fix or delete that line, or use another --out folder") from None
            except ValueError as e:
                raise ValueError(f"{self.path}: line {reader.line_num} {e}, or use another --out folder") from None
            self.done = set(lines)
        else:
            self._write_header()

    def _write_header(self) -> None:
        with self.path.open("w", newline="") as f:
            csv.writer(f).writerow(COLUMNS)
            f.flush()
            os.fsync(f.fileno())

    def _repair(self) -> bool:
        """Cut a torn last line and a leading UTF-8 BOM; False when nothing but (part of) the header is there.
        Raises if the first line is not this version's header."""
        data = self.path.read_bytes()
        if data.startswith(BOM):
            _replace_bytes(self.path, data[len(BOM):])
            data = data[len(BOM):]
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
        """Remove every row of ``codecs`` (atomically: a rewritten copy replaces the file; blank lines go too);
        returns how many rows were removed."""
        codecs = set(codecs)
        with self.path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        body = [r for r in rows[1:] if r]
        keep = [rows[0]] + [r for r in body if r[0] not in codecs]
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            csv.writer(f).writerows(keep)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.done = {k for k in self.done if k[0] not in codecs}
        return len(body) + 1 - len(keep)


BOM = b"\xef\xbb\xbf"  # UTF-8 byte-order mark, which spreadsheet programs put before a CSV they save


def _replace_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _key_words(key: tuple) -> str:
    from fractions import Fraction

    codec, cbr, snr, channel, trial, image = key
    frac = Fraction(cbr).limit_denominator(10000)
    cbr_s = f"{frac.numerator}/{frac.denominator}" if abs(float(frac) - cbr) < 1e-12 else f"{cbr:g}"
    return f"codec {codec}, CBR {cbr_s}, SNR {snr:g} dB, channel {channel}, trial {trial}, image {image}"


def _finite(r: dict, col: str) -> float:
    try:
        v = float(r[col])
    except (TypeError, ValueError):
        raise ValueError(f"has {col} {r[col]!r}, not a number; fix or delete that line") from None
    if not math.isfinite(v):
        raise ValueError(f"has {col} {r[col]!r}, not a finite number; fix or delete that line")
    return v


def check_row(r: dict) -> tuple[tuple, int | None]:
    """The point key and seed (None if blank) of a ``results.csv`` row read as a dict of strings; a ``ValueError``
    saying which cell is wrong (a missing codec, channel or image; a non-finite SNR or CBR, or a CBR outside
    (0, 1]; a trial that is not an integer >= 0; ``ok`` other than ``True``/``False``)."""
    for col in ("codec", "channel", "image"):
        if not r.get(col):
            raise ValueError(f"has no {col}; fix or delete that line")
    cbr, snr = _finite(r, "cbr_target"), _finite(r, "snr_db")
    if not 0 < cbr <= 1:
        raise ValueError(f"has cbr_target {r['cbr_target']!r}, outside (0, 1]; fix or delete that line")
    trial = r["trial"]
    if trial is None or not trial.isdigit():
        raise ValueError(f"has trial {trial!r}, not an integer >= 0; fix or delete that line")
    if r["ok"] not in ("True", "False"):
        raise ValueError(f"has ok {r['ok']!r}; ok must be True or False: fix or delete that line")
    seed = r["seed"]
    if seed is None or (seed and not seed.lstrip("-").isdigit()):
        raise ValueError(f"has seed {seed!r}, not an integer; fix or delete that line")
    return point_key(r["codec"], cbr, snr, r["channel"], int(trial), r["image"]), (int(seed) if seed else None)


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
    """The results table as a pandas DataFrame (a UTF-8 BOM is accepted; an ``ok`` cell other than True/False is a
    one-line ``ValueError`` naming the file and line)."""
    import pandas as pd

    df = pd.read_csv(path, keep_default_na=True, encoding="utf-8-sig", dtype={"ok": str})
    bad = ~df["ok"].isin(["True", "False"])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{path}: row {i + 1} has ok {df['ok'].iloc[i]!r}; ok must be True or False: fix or delete "
                         "that row")
    df["ok"] = df["ok"] == "True"
    return df


def load_folder(out: str | os.PathLike, error: type[Exception] = ValueError):
    """The results table of the sweep folder ``out`` (``load``); a one-line ``error`` when the folder has no
    ``results.csv`` or no rows yet (``compare`` and ``plot`` read folders this way)."""
    out = Path(out)
    path = out / "results.csv"
    if not path.is_file():
        raise error(f"{out} has no results.csv; give a folder written by lrisc-sim sweep or run")
    df = load(path)
    if df.empty:
        raise error(f"{path} has no rows yet; run the sweep first")
    return df


def ci95(values: np.ndarray) -> float:
    """Half-width of the 95% Student t interval of the mean of ``values`` (NaN dropped), NaN (no interval, "n/a")
    for fewer than 2 values; ``stats.t_halfwidth``. The values must be independent units (per-image means)."""
    from lrisc_sim.stats import t_halfwidth

    return t_halfwidth(values)


def summarize(df):
    """One row per (codec, channel, cbr_target, snr_db) of a results table (``load``), statistics of
    ``lrisc_sim.stats`` with the image as the unit (trials are nested in images): ``n`` rows = ``n_images`` x
    ``n_trials``; per metric M the mean over images of each image's mean over trials, ``M_ci95`` the t
    half-width over the per-image means (NaN with one image) and ``M_lo``/``M_hi`` the interval clipped to the
    metric's range; CBR columns and ``seconds`` averaged over rows; ``underfilled`` when the mean ``cbr_total`` of
    the images that sent anything is below 0.9 x the target (as the engine's note; a lost image shows in ``ok``); ``ok_rate`` with its exact (Clopper-Pearson) 95% interval ``ok_lo``/``ok_hi`` over
    the transmissions (images x trials)."""
    import pandas as pd

    from lrisc_sim.stats import UNDERFILL, clopper_pearson, nested_interval

    rows = []
    for (codec, channel, cbr, snr), g in df.groupby(["codec", "channel", "cbr_target", "snr_db"], sort=True):
        images = g["image"].astype(str).to_numpy()
        ok = g["ok"].astype(bool)
        ok_lo, ok_hi = clopper_pearson(int(ok.sum()), len(g))
        total = float(g["cbr_total"].mean())
        sent = g["cbr_total"][g["cbr_total"] > 0]  # images that sent nothing (lost: no MCS fits) are not underfill
        r = {"codec": codec, "channel": channel, "cbr_target": cbr, "snr_db": snr, "n": len(g),
             "n_images": int(g["image"].nunique()), "n_trials": int(g["trial"].nunique()),
             "cbr_payload": g["cbr_payload"].mean(), "cbr_side": g["cbr_side"].mean(),
             "cbr_total": total, "cbr_total_max": g["cbr_total"].max(),
             "underfilled": bool(len(sent) and float(sent.mean()) < UNDERFILL * float(cbr)),
             "ok_rate": float(ok.mean()), "ok_lo": ok_lo, "ok_hi": ok_hi, "seconds": g["seconds"].mean()}
        for m in METRICS:
            iv = nested_interval(g[m].to_numpy(dtype=float), images, m)
            r[m], r[f"{m}_ci95"], r[f"{m}_lo"], r[f"{m}_hi"] = iv.mean, iv.half, iv.lo, iv.hi
        r.update(_state_means(g))
        rows.append(r)
    return pd.DataFrame(rows)


def _state_means(g) -> dict[str, float]:
    """The link's channel state (``lrisc_sim.link.STATE_KEYS`` in the rows' ``info``) averaged over a point's rows:
    ``h2``, ``snr_inst_db``, ``csi_nmse``, ``cbr_pilot``, ``sqnr_db``, ``design_snr_db`` and ``outage`` (the
    share of rows in outage); keys no row of the point has are left out (the column is then empty)."""
    from lrisc_sim.link import STATE_KEYS

    if "info" not in g:
        return {}
    vals: dict[str, list[float]] = {}
    for cell in g["info"]:
        if not isinstance(cell, str) or not cell.startswith("{"):
            continue
        d = json.loads(cell)
        for k in STATE_KEYS:
            if k in d:
                try:
                    vals.setdefault(k, []).append(float(d[k]))
                except (TypeError, ValueError):
                    pass
    return {k: float(np.mean(v)) for k, v in vals.items() if v}


def format_summary(summary, cbr_label=None) -> str:
    """A fixed-width text table of a summary (``summarize``) for the terminal, with footnotes: metric cells are
    mean ±CI half-width (``-a/+b`` where a bound is clipped to the metric's range, ``±n/a`` with one image)."""
    from lrisc_sim.stats import UNDERFILL, interval_text

    lab = cbr_label or (lambda v: f"{v:.4g}")
    w = 19
    head = f"{'codec':<18} {'channel':<16} {'CBR':>7} {'CBR used':>10} {'SNR':>6} {'PSNR (dB)':>{w}} " \
           f"{'MS-SSIM':>{w}} {'LPIPS':>{w}} {'ok [95% CI]':>14} {'images x trials':>15}"
    lines = [head, "-" * len(head)]
    marks = set()
    for _, r in summary.iterrows():
        def cell(m, p):
            half = r.get(f"{m}_ci95", float("nan"))
            text = interval_text(r[m], half, r.get(f"{m}_lo", float("nan")), r.get(f"{m}_hi", float("nan")), p)
            if "n/a" in text:
                marks.add("n/a")
            return f"{text:>{w}}"
        under = bool(r.get("underfilled", False))
        marks |= {"*"} if under else set()
        used = f"{r['cbr_total']:.5f}" + ("*" if under else " ")
        ok = f"{r['ok_rate']:.0%}"
        if "ok_lo" in r and math.isfinite(r["ok_lo"]):
            ok += f" [{100 * r['ok_lo']:.0f}-{100 * r['ok_hi']:.0f}]"
        n = f"{int(r['n_images'])} x {int(r['n_trials'])}" if "n_images" in r else f"{int(r['n'])}"
        lines.append(f"{r['codec']:<18.18} {r['channel']:<16.16} {lab(r['cbr_target']):>7} {used:>10} "
                     f"{r['snr_db']:>6.1f} {cell('psnr', 2)} {cell('ms_ssim', 3)} {cell('lpips', 3)} {ok:>14} "
                     f"{n:>15}")
    lines.append("mean over images of each image's mean over trials, 95% Student t CI over images; ok: share of "
                 "transmissions decoded, exact (Clopper-Pearson) 95% CI over images x trials")
    if "n/a" in marks:
        lines.append("n/a: fewer than two images, no interval")
    if "*" in marks:
        lines.append(f"* CBR used below {UNDERFILL:.0%} of the target: the codec left part of the budget unused")
    return "\n".join(lines)
