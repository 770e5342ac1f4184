"""GPU check: the same short sweep of every codec on CUDA and on the CPU, compared row by row; a few dozen
training steps of each learned model on CUDA (mixed precision); throughput figures.

    python benchmarks/gpu_check.py [--out runs/gpu_check] [--limit 2] [--snr 0,10] [--cbr 1/48]
        [--codecs uncoded,softcast,deepjscc,lrisc,bpg-ldpc,bpg-capacity] [--train-steps 40] [--device cuda]
        [--data DIR]

Checks (each printed as PASS / FAIL with the numbers; the exit status is 1 if any fails):

* the CUDA sweep has exactly the rows of the CPU sweep (codec, CBR, SNR, trial, image);
* PSNR within 0.01 dB and LPIPS within 1e-3 per row for the deterministic codecs (all of them: noise and fading
  come from per-image CPU generators, the diffusion decoder's x_N too); rows where a digital link's decision
  flips (``ok`` differs) are listed separately, since one LLR at a decoding threshold can change a CRC;
* ``lrisc-sim train RECIPE.toml`` runs ``--train-steps`` steps of a DeepJSCC recipe (CBR 1/24) and of LRISC's
  stage 1 (``small`` preset) on the device (bf16 autocast on CUDA) and writes their weights (the recipes are
  written by :func:`train_recipe`, the runs' state under ``OUT/cache``);
* throughput: images x points per second of each sweep and training steps per second.

Everything goes through the public commands with ``--device``: no device-specific code lives here. ``--device
cpu`` runs the same script end to end on a machine without a GPU (the comparison is then CPU against CPU, a
check of the script itself). The report is also written to ``OUT/report.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

KEY = ["codec", "cbr_target", "snr_db", "trial", "image"]


def run(cmd: list[str], log: Path) -> float:
    """Run a command (output to ``log``); return its wall time; raise with the log's tail if it fails."""
    t = time.time()
    with open(log, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}:\n{tail}")
    return time.time() - t


def lrisc_sim() -> list[str]:
    return [sys.executable, "-m", "lrisc_sim.cli"]


def sweep(device: str, out: Path, a: argparse.Namespace) -> float:
    if out.exists():
        shutil.rmtree(out)
    cmd = lrisc_sim() + ["sweep", "--codec", a.codecs, "--snr", a.snr, "--cbr", a.cbr, "--dataset", a.dataset,
                         "--limit", str(a.limit), "--batch-size", "2", "--device", device, "--out", str(out)]
    return run(cmd, out.parent / f"sweep_{out.name}.log")


def compare(cpu: Path, dev: Path) -> dict:
    import pandas as pd

    a = pd.read_csv(cpu / "results.csv").set_index(KEY).sort_index()
    b = pd.read_csv(dev / "results.csv").set_index(KEY).sort_index()
    res: dict = {"rows_cpu": len(a), "rows_device": len(b), "same_rows": a.index.equals(b.index)}
    if not res["same_rows"]:
        res["missing"] = [list(k) for k in a.index.difference(b.index)[:10]]
        res["extra"] = [list(k) for k in b.index.difference(a.index)[:10]]
        return res
    flips = a["ok"] != b["ok"]
    res["ok_flips"] = [list(k) for k in a.index[flips]]
    same = ~flips
    per_codec = {}
    for codec in sorted(set(a.index.get_level_values("codec"))):
        m = same & (a.index.get_level_values("codec") == codec)
        d_psnr = (a.loc[m, "psnr"] - b.loc[m, "psnr"]).abs()
        d_lpips = (a.loc[m, "lpips"] - b.loc[m, "lpips"]).abs() if "lpips" in a else None
        per_codec[codec] = {"rows": int(m.sum()), "max_dpsnr_db": float(d_psnr.max()) if len(d_psnr) else 0.0,
                            "max_dlpips": float(d_lpips.max()) if d_lpips is not None and len(d_lpips) else 0.0}
    res["codecs"] = per_codec
    return res


def train_recipe(codec: str, data: Path, steps: int) -> str:
    """The short recipe ``train_checks`` runs for ``codec`` (deepjscc or lrisc) on the images in ``data``."""
    if codec == "deepjscc":
        model = 'cbr = "1/24"'
        stage = 'batch = 16\ncrop = 128\nsnr = "10"'
    else:
        model = 'preset = "small"'
        stage = 'modules = "source"\nbatch = 8\ncrop = 128\nval_steps = 2'
    return f"""name = "gpu_check_{codec}"
codec = "{codec}"
[model]
{model}
[data]
train = ["{data}"]
val = 1
val_crop = 128
[[stages]]
name = "check"
steps = {steps}
val_every = {steps}
{stage}
"""


def train_checks(device: str, out: Path, a: argparse.Namespace) -> dict:
    data = Path(a.data) if a.data else out / "train_images"
    if not a.data:  # the builtin photos as a training folder (no download)
        from PIL import Image

        from lrisc_sim.data import load_dataset

        data.mkdir(parents=True, exist_ok=True)
        for it in load_dataset("builtin", None):
            arr = (it.image.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
            Image.fromarray(arr).save(data / f"{it.id}.png")
    res = {}
    n = a.train_steps
    cache = out / "cache"
    if cache.exists():
        shutil.rmtree(cache)  # every check trains afresh
    os.environ["LRISC_SIM_CACHE"] = str(cache.resolve())
    for codec in ("deepjscc", "lrisc"):
        recipe = out / f"train_{codec}.toml"
        recipe.write_text(train_recipe(codec, data.resolve(), n))
        t = run(lrisc_sim() + ["train", str(recipe), "--device", device, "--no-ship"], out / f"train_{codec}.log")
        res[codec] = {"steps": n, "seconds": round(t, 1), "steps_per_s_incl_startup": round(n / t, 2),
                      "weights": (cache / "train" / f"gpu_check_{codec}" / "check.safetensors").is_file()}
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/gpu_check")
    p.add_argument("--device", default="cuda", help="device under test (default cuda; cpu checks the script)")
    p.add_argument("--codecs", default="uncoded,softcast,deepjscc,lrisc,bpg-ldpc,bpg-capacity")
    p.add_argument("--dataset", default="builtin")
    p.add_argument("--limit", type=int, default=2)
    p.add_argument("--snr", default="0,10")
    p.add_argument("--cbr", default="1/48")
    p.add_argument("--train-steps", type=int, default=40)
    p.add_argument("--data", default=None, help="training images (default: the builtin photos)")
    p.add_argument("--skip-train", action="store_true")
    a = p.parse_args()
    import torch

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA GPU visible to torch: run on a GPU machine, or --device cpu to check the script itself")
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    report: dict = {"device": a.device, "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    print(f"device under test {a.device} ({report['gpu'] or 'no GPU'}), torch {torch.__version__}", flush=True)
    n_img_pts = a.limit * len(a.snr.split(",")) * len(a.codecs.split(","))
    t_cpu = sweep("cpu", out / "cpu", a)
    t_dev = sweep(a.device, out / "device", a)
    report["sweep_seconds"] = {"cpu": round(t_cpu, 1), "device": round(t_dev, 1)}
    report["sweep_img_points_per_s"] = {"cpu": round(n_img_pts / t_cpu, 3), "device": round(n_img_pts / t_dev, 3)}
    cmp = compare(out / "cpu", out / "device")
    report["comparison"] = cmp
    failures = []
    if not cmp["same_rows"]:
        failures.append(f"rows differ: missing {cmp.get('missing')}, extra {cmp.get('extra')}")
    else:
        for codec, c in cmp["codecs"].items():
            good = c["max_dpsnr_db"] <= 0.01 and c["max_dlpips"] <= 1e-3
            print(f"{'PASS' if good else 'FAIL'} {codec:14s} {c['rows']:3d} rows, max |dPSNR| {c['max_dpsnr_db']:.4f} "
                  f"dB, max |dLPIPS| {c['max_dlpips']:.2e}")
            if not good:
                failures.append(f"{codec}: PSNR/LPIPS differ beyond tolerance")
        if cmp["ok_flips"]:
            print(f"NOTE {len(cmp['ok_flips'])} rows where a digital link's CRC decision differs: {cmp['ok_flips']}")
    print(f"sweep: CPU {t_cpu:.1f} s, {a.device} {t_dev:.1f} s ({n_img_pts} image-points incl. start-up)")
    if not a.skip_train:
        try:
            report["training"] = train_checks(a.device, out, a)
            for name, r in report["training"].items():
                good = r["weights"]
                print(f"{'PASS' if good else 'FAIL'} train {name}: {r['steps']} steps in {r['seconds']} s "
                      f"({r['steps_per_s_incl_startup']} steps/s incl. start-up)")
                if not good:
                    failures.append(f"train {name}: no weights written")
        except RuntimeError as e:
            failures.append(str(e))
            print(f"FAIL {e}")
    report["failures"] = failures
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'all checks passed' if not failures else f'{len(failures)} check(s) failed'}; report {out}/report.json")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
