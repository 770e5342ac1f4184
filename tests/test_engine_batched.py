"""Batched Monte Carlo decoding: several (SNR, trial) points in one decoder call give the numbers of one call per
point, bit for bit, for the codecs with ``batched_decode`` (uncoded, softcast, deepjscc); LRISC stays per point by
default and agrees to about 1e-5 when batched."""

import pandas as pd
from dataclasses import asdict

import pytest
import torch
from PIL import Image
from skimage import data

from channels.awgn import AWGN
from lrisc_sim.cli import main
from lrisc_sim.data import Item
from lrisc_sim.engine import DECODE_PIXELS, Engine, SweepConfig
from lrisc_sim.lrisc.codec import LRISCCodec
from lrisc_sim.lrisc.config import preset
from lrisc_sim.lrisc.model import LRISC
from lrisc_sim.registry import make_codec

CROPS = [(0, 0), (200, 180), (300, 300)]  # 176 x 176: MS-SSIM is defined (> 160 px)
NUMBERS = ["psnr", "ms_ssim", "lpips", "cbr_payload", "cbr_side", "cbr_total", "ok", "info"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    a = data.astronaut()
    d = tmp_path_factory.mktemp("imgs")
    for i, (y, x) in enumerate(CROPS):
        Image.fromarray(a[y : y + 176, x : x + 176]).save(d / f"crop{i}.png")
    return d


def sweep(folder, out, codecs, *extra):
    assert main(["sweep", "--dataset", str(folder), "--snr", "0,10", "--cbr", "1/16", "--codec", codecs,
                 "--batch-size", "2", "--trials", "2", "--device", "cpu", "--out", str(out), "--no-progress",
                 *extra]) == 0
    return pd.read_csv(out / "results.csv")


@pytest.mark.parametrize("side", ["fixed", "capacity"])  # capacity: per-SNR encodings of unequal widths
def test_results_csv_bit_identical_across_decode_batches(folder, tmp_path, side):
    codecs = "softcast,uncoded,deepjscc" if side == "fixed" else "softcast,uncoded"
    runs = {n: sweep(folder, tmp_path / f"db{n}", codecs, "--side-charge", side, *(["--decode-batch", n] if n else []))
            for n in ("1", "3", "")}  # per point; 1 point (2 images) or 3 points (1 image) per call; default bound
    ref = runs["1"]
    assert len(ref) == len(codecs.split(",")) * 2 * 2 * len(CROPS)
    assert ref[["psnr", "ms_ssim", "lpips"]].notna().all().all()
    for n, df in runs.items():
        # same rows in the same order, same numbers to the bit
        pd.testing.assert_frame_equal(df[["codec", "snr_db", "trial", "image"]], ref[["codec", "snr_db", "trial", "image"]])
        pd.testing.assert_frame_equal(df[NUMBERS], ref[NUMBERS], check_exact=True)


def test_points_per_decode_bounds():
    cfg = SweepConfig(codecs=["softcast"], snr_db=[0.0], cbr=[1 / 16])
    eng = Engine(cfg, AWGN(), torch.device("cpu"))
    soft = make_codec("softcast")
    assert eng.points_per_decode(soft, 4, (64, 64)) == DECODE_PIXELS["cpu"] // (64 * 64) // 4 > 1
    assert eng.points_per_decode(soft, 4, (4096, 4096)) == 1  # at least one point per call
    cfg.decode_batch = 10
    assert eng.points_per_decode(soft, 4, (8, 8)) == 2
    cfg.decode_batch = 1
    assert eng.points_per_decode(soft, 4, (8, 8)) == 1
    cfg.decode_batch = None
    assert eng.points_per_decode(make_codec("bpg-ldpc"), 4, (8, 8)) == 1  # envelope codecs: per point


@pytest.fixture(scope="module")
def lrisc():
    torch.manual_seed(0)
    m = LRISC(preset("tiny")).eval()
    for a in (m.f_e.snr, m.f_d.snr):  # non-trivial SNR modules
        torch.nn.init.normal_(a.fcs[-1].weight, std=0.3)
    return LRISCCodec(m)


def engine_rows(codec, decode_batch, images):
    cfg = SweepConfig(codecs=["lrisc"], snr_db=[0.0, 10.0], cbr=[1 / 16], batch_size=2, trials=2,
                      decode_batch=decode_batch)
    eng = Engine(cfg, AWGN(), torch.device("cpu"), codec_factory=lambda spec: codec)
    return [r for t in eng.plan(images, set()) for rows in eng.run_task(t) for r in rows]


def test_lrisc_per_point_by_default_and_close_when_batched(lrisc):
    a = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 255
    images = [Item(f"c{i}", a[:, y : y + 64, x : x + 64].contiguous()) for i, (y, x) in enumerate(CROPS)]
    assert not lrisc.batched_decode
    cfg = SweepConfig(codecs=["lrisc"], snr_db=[0.0], cbr=[1 / 16])
    assert Engine(cfg, AWGN(), torch.device("cpu")).points_per_decode(lrisc, 2, (64, 64)) == 1
    ref = engine_rows(lrisc, None, images)  # per point, whatever the bound

    def numbers(rows):
        return [{k: "nan" if v != v else v for k, v in asdict(r).items() if k != "seconds"} for r in rows]

    assert numbers(engine_rows(lrisc, 1, images)) == numbers(ref)
    lrisc.batched_decode = True  # opt in: 4 points (SNRs and trials) of the same images in one U-Net batch
    try:
        got = engine_rows(lrisc, None, images)
    finally:
        lrisc.batched_decode = False
    assert [(r.snr_db, r.trial, r.image) for r in got] == [(r.snr_db, r.trial, r.image) for r in ref]
    for r, g in zip(ref, got):
        assert g.cbr_total == r.cbr_total and g.info == r.info
        # the per-image diffusion seeds follow the rows; only the batched convolutions round differently
        assert abs(g.psnr - r.psnr) < 1e-4 and abs(g.lpips - r.lpips) < 1e-4
    assert len({r.psnr for r in ref}) > 1
