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


def _recipe(tmp: Path, data: Path, codec: str) -> Path:
    """A DeepJSCC recipe (narrow, 6 steps, SNR 5..15 dB, validated every step so that the card holds the running
    loss of each step) or a tiny LRISC stage 1."""
    p = tmp / f"{codec}.toml"
    model = ('cbr = "1/16"\nlevels = 3\nextra = 1\nfirst_width = 8\nwidth = 8' if codec == "deepjscc" else
             'preset = "tiny"')
    stage = ('steps = 6\nbatch = 4\nval_every = 1\nsnr = "5:15"\nwarmup = 2' if codec == "deepjscc" else
             'modules = "source"\nsteps = 4\nbatch = 2\nval_every = 2\nlpips = false\nval_steps = 1')
    p.write_text(f"""name = "{codec}_ddp"
codec = "{codec}"
[model]
{model}
[data]
train = ["{data}"]
val = 1
val_crop = 32
[[stages]]
name = "s1"
crop = 32
{stage}
""")
    return p


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
            "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "lrisc_sim.cli", *args]


def _card(cache: Path, name: str) -> dict:
    import json

    return json.loads((cache / "train" / name / "s1.json").read_text())


@pytest.mark.slow
def test_two_gloo_processes_follow_the_one_process_loss_curve(tmp_path):
    """The same recipe under torchrun (2 gloo processes, each half of the global batch and its slice of the
    channel realization) gives the one-process loss at every step: the card's running loss average, recorded at
    each step (val_every = 1), is a one-to-one function of the step losses."""
    data = _images(tmp_path / "data")
    p = _recipe(tmp_path, data, "deepjscc")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    one = subprocess.run([sys.executable, "-m", "lrisc_sim.cli", "train", str(p), "--threads", "1"],
                         capture_output=True, text=True, env={**env, "LRISC_SIM_CACHE": str(tmp_path / "c1")},
                         timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(_torchrun("train", str(p), "--threads", "1"), capture_output=True, text=True,
                         env={**env, "LRISC_SIM_CACHE": str(tmp_path / "c2")}, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    c1, c2 = _card(tmp_path / "c1", "deepjscc_ddp"), _card(tmp_path / "c2", "deepjscc_ddp")
    a = np.array([h["train"]["loss"] for h in c1["history"]])
    b = np.array([h["train"]["loss"] for h in c2["history"]])
    assert len(a) == len(b) == 6
    np.testing.assert_allclose(b, a, rtol=1e-4)
    assert a[-1] != a[0]  # it trained
    assert c2["world"] == 2 and c1["world"] == 1  # rank 0 alone exported the weights and the card


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
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "LRISC_SIM_CACHE": str(tmp_path / "c")}
    r = subprocess.run(_torchrun("train", str(_recipe(tmp_path, data, "lrisc")), "--threads", "1"),
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    card = _card(tmp_path / "c", "lrisc_ddp")
    assert [h["step"] for h in card["history"]] == [2, 4] and card["world"] == 2  # rank 0 alone validated, wrote
    assert (tmp_path / "c" / "train" / "lrisc_ddp" / "s1.safetensors").is_file()
    assert r.stdout.count("lrisc stage s1:") == 1  # one log, not one per rank
