"""Distributed training under torchrun (gloo, 2 processes on this CPU) follows the one-process loss curve."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lrisc_sim import ddp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _images(folder: Path, n: int = 4, size: int = 64) -> Path:
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    return folder


def _train_cmd(data: Path, out: Path, log: Path) -> list[str]:
    return ["train", "deepjscc", "--cbr", "1/16", "--snr", "5:15", "--data", str(data), "--val", "1",
            "--steps", "6", "--batch-size", "4", "--crop", "32", "--width", "8,8", "--levels", "3", "--extra", "1",
            "--val-every", "3", "--warmup", "2", "--threads", "1", "--out", str(out),
            "--state", str(out / "state.safetensors"), "--loss-log", str(log)]


def _losses(path: Path) -> np.ndarray:
    return np.array([float(line.split()[1]) for line in path.read_text().splitlines()])


@pytest.mark.slow
def test_two_gloo_processes_follow_the_one_process_loss_curve(tmp_path):
    data = _images(tmp_path / "data")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    one = subprocess.run([sys.executable, "-m", "lrisc_sim.cli", *_train_cmd(data, tmp_path / "o1", tmp_path / "l1")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                          "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "lrisc_sim.cli",
                          *_train_cmd(data, tmp_path / "o2", tmp_path / "l2")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = _losses(tmp_path / "l1"), _losses(tmp_path / "l2")
    assert len(a) == len(b) == 6
    np.testing.assert_allclose(b, a, rtol=1e-4)
    assert a[-1] != a[0]  # it trained
    # rank 0 alone exported the weights and the card
    assert (tmp_path / "o2" / "deepjscc_cbr1-16_snr10.safetensors").is_file() or \
        (tmp_path / "o2" / "deepjscc_cbr1-16_snr5-15.safetensors").is_file()


def test_one_process_dist_and_batch_split():
    d = ddp.init("cpu")
    assert not d.active and d.main and d.local_batch(5) == 5
    two = ddp.Dist(rank=1, world=2)
    import torch

    assert torch.equal(two.shard(torch.arange(4)), torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="multiple of the 2 processes"):
        two.local_batch(5)


@pytest.mark.slow
def test_lrisc_trains_under_torchrun_with_two_gloo_processes(tmp_path):
    data = _images(tmp_path / "data", n=3, size=48)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2", "--master-addr",
           "127.0.0.1", "--master-port", str(_free_port()), "-m", "lrisc_sim.cli", "train", "lrisc", "--stage", "1",
           "--preset", "tiny", "--data", str(data), "--val", "1", "--steps", "4", "--batch-size", "2",
           "--crop", "32", "--val-every", "2", "--val-steps", "1", "--no-lpips", "--threads", "1",
           "--out", str(tmp_path / "run")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    import json

    card = json.loads((tmp_path / "run" / "stage1" / "lrisc_tiny_stage1.json").read_text())
    assert [h["step"] for h in card["history"]] == [2, 4]  # rank 0 alone validated and wrote
    assert (tmp_path / "run" / "stage1" / "lrisc_tiny_stage1.safetensors").is_file()
    assert r.stdout.count("LRISC preset 'tiny'") == 1  # one log, not one per rank
