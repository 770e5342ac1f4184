"""benchmarks/lrisc_stage1_rd.py end to end on a tiny model and two small images: tables, CSVs and plot."""

from __future__ import annotations

from tests.conftest import load_script
import math

import numpy as np
import pandas as pd
import pytest
import torch

from lrisc_sim.lrisc.config import preset
from lrisc_sim.lrisc.model import LRISC



def _bench():
    return load_script("benchmarks/lrisc_stage1_rd.py")


def test_budget_rates_are_the_capacity_of_the_channel_uses():
    b = _bench()
    assert b.budget_bpp(1 / 48, 0.0) == pytest.approx(3 / 48)
    assert b.budget_bpp(1 / 48, 10.0) == pytest.approx(3 / 48 * math.log2(11))


def test_benchmark_runs_on_a_tiny_checkpoint(tmp_path):
    pytest.importorskip("pillow_heif")
    from PIL import Image

    torch.manual_seed(0)
    ck = tmp_path / "tiny.safetensors"
    LRISC(preset("tiny")).save(ck)
    data = tmp_path / "images"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        base = np.linspace(0, 255, 96 * 64 * 3).reshape(64, 96, 3)
        Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)).save(data / f"im{i}.png")
    out = tmp_path / "out"
    rc = _bench().main(["--checkpoint", f"tiny={ck}", "--data", str(data), "--steps", "1,2", "--sweep-limit", "1",
                        "--hevc-bpp", "1.0", "--out", str(out)])
    assert rc == 0
    for f in ("per_image.csv", "summary.csv", "summary.md", "rd.png"):
        assert (out / f).is_file()
    rows = pd.read_csv(out / "per_image.csv")
    lr = rows[rows.codec == "lrisc"]
    assert set(lr.steps) == {1, 2, 3} and len(lr[lr.image == "im1"]) == 1  # the sweep on the first image only
    assert (lr.bpp_actual > 0).all() and (lr.psnr > 0).all()
    hevc = rows[(rows.codec == "hevc") & (rows.label == "hevc at the rate of tiny")]
    assert (hevc.bpp.dropna() <= hevc.lrisc_bpp[hevc.bpp.notna()] + 1e-9).all()  # HEVC never above LRISC's bytes
    assert "| tiny ddim 3 |" in (out / "summary.md").read_text()
