"""The GPU check script's row comparison and training recipes (the script itself needs a GPU; its logic is checked
here)."""

from __future__ import annotations

from tests.conftest import load_script
from pathlib import Path

import pandas as pd



def _module():
    return load_script("benchmarks/gpu_check.py")


def _write(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "results.csv", index=False)
    return folder


def _row(codec, image, psnr, lpips, ok=True):
    return {"codec": codec, "cbr_target": "1/48", "snr_db": 10.0, "trial": 0, "image": image, "psnr": psnr,
            "lpips": lpips, "ok": ok}


def test_compare_measures_differences_and_flips(tmp_path):
    gc = _module()
    a = _write(tmp_path / "a", [_row("lrisc", "x", 20.0, 0.4), _row("bpg-ldpc", "x", 30.0, 0.2),
                                _row("bpg-ldpc", "y", 31.0, 0.2)])
    b = _write(tmp_path / "b", [_row("bpg-ldpc", "y", 12.0, 0.8, ok=False), _row("lrisc", "x", 20.004, 0.4003),
                                _row("bpg-ldpc", "x", 30.0, 0.2)])
    r = gc.compare(a, b)
    assert r["same_rows"] and r["ok_flips"] == [["bpg-ldpc", "1/48", 10.0, 0, "y"]]
    assert abs(r["codecs"]["lrisc"]["max_dpsnr_db"] - 0.004) < 1e-9
    assert abs(r["codecs"]["lrisc"]["max_dlpips"] - 3e-4) < 1e-9
    assert r["codecs"]["bpg-ldpc"] == {"rows": 1, "max_dpsnr_db": 0.0, "max_dlpips": 0.0}  # the flip is apart


def test_compare_reports_missing_rows(tmp_path):
    gc = _module()
    a = _write(tmp_path / "a", [_row("lrisc", "x", 20.0, 0.4), _row("lrisc", "y", 21.0, 0.4)])
    b = _write(tmp_path / "b", [_row("lrisc", "x", 20.0, 0.4)])
    r = gc.compare(a, b)
    assert not r["same_rows"] and r["missing"] == [["lrisc", "1/48", 10.0, 0, "y"]]


def test_the_training_recipes_are_valid_for_their_tasks(tmp_path):
    """The recipes the script trains on the GPU parse, and their model and stage options fit their tasks."""
    from lrisc_sim.recipe import load_recipe, task_class

    gc = _module()
    for codec in ("deepjscc", "lrisc"):
        p = tmp_path / f"{codec}.toml"
        p.write_text(gc.train_recipe(codec, tmp_path, 40))
        r = load_recipe(p)
        assert r.codec == codec and r.stages[0].steps == 40 and r.stages[0].val_every == 40
        task = task_class(r.codec)(**r.model)
        task.check_options(r.stages[0])
