"""Time the paper's figures from scratch and check that they reproduce the committed rows.

    python benchmarks/figure_times.py fig4_snr [fig5_cbr ...] [--threads 2] [--out benchmarks/results/figure_times.json]

Each experiment ``experiments/NAME.toml`` is run with ``lrisc-sim run`` into a new temporary folder (nothing cached
in the output folder; the HEVC encode cache under ``~/.cache/lrisc-sim/encodings`` is kept, as a user's would
be), its wall time is measured, and its rows are compared with the committed ``results/NAME/results.csv`` key by
key (PSNR / MS-SSIM / LPIPS; the ``seconds`` column is a timing). The figures are written to a JSON file that
README.md and ARCHITECTURE.md quote through ``python -m lrisc_sim.docfacts`` (so the run times in the docs are
always this file's). Kodak comes from ``$LRISC_SIM_KODAK`` or the download cache, as for ``lrisc-sim run``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = ["codec", "cbr_target", "snr_db", "channel", "trial", "image"]
METRICS = ["psnr", "ms_ssim", "lpips"]


def compare_rows(new_csv: Path, old_csv: Path) -> dict:
    """Rows of ``new_csv`` against ``old_csv`` by key: counts and the largest metric difference."""
    import numpy as np
    import pandas as pd

    new, old = pd.read_csv(new_csv), pd.read_csv(old_csv)
    m = new.merge(old, on=KEY, suffixes=("", "_old"), how="outer", indicator=True)
    both = m[m["_merge"] == "both"]
    diff = {k: float(np.nanmax(np.abs(both[k].to_numpy(float) - both[f"{k}_old"].to_numpy(float)), initial=0.0))
            for k in METRICS if k in new and k in old}
    return {"rows": int(len(new)), "rows_committed": int(len(old)), "rows_matched": int(len(both)),
            "max_abs_diff": diff}


def time_experiment(name: str, threads: int, lrisc_sim: str) -> dict:
    exp = ROOT / "experiments" / f"{name}.toml"
    if not exp.is_file():
        raise SystemExit(f"figure_times: {exp} not found; name an experiment of experiments/")
    with tempfile.TemporaryDirectory(prefix=f"figtime-{name}-") as tmp:
        out = Path(tmp) / name
        t0 = time.perf_counter()
        subprocess.run([*lrisc_sim.split(), "run", str(exp), "--out", str(out), "--threads", str(threads),
                        "--no-progress"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        rec = {"wall_s": round(wall, 1), "threads": threads}
        committed = ROOT / "results" / name / "results.csv"
        if committed.is_file():
            rec.update(compare_rows(out / "results.csv", committed))
    return rec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("experiments", nargs="+", help="experiment names (experiments/NAME.toml)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the runs (default 2)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "figure_times.json"),
                   help="JSON file to update (one entry per experiment)")
    p.add_argument("--lrisc-sim", default=os.environ.get("LRISC_SIM", f"{sys.executable} -m lrisc_sim.cli"),
                   help="command that runs lrisc-sim")
    a = p.parse_args(argv)
    out = Path(a.out)
    data = json.loads(out.read_text()) if out.is_file() else {}
    for name in a.experiments:
        rec = time_experiment(name, a.threads, a.lrisc_sim)
        rec.update(date=datetime.now(timezone.utc).strftime("%Y-%m-%d"), cpus=os.cpu_count(),
                   cpu=platform.processor() or platform.machine())
        data[name] = rec
        print(f"{name}: {rec['wall_s'] / 60:.1f} min on {a.threads} thread(s); rows {rec.get('rows')} "
              f"(matched {rec.get('rows_matched')} of {rec.get('rows_committed')} committed), "
              f"max |diff| {rec.get('max_abs_diff')}")
        out.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
