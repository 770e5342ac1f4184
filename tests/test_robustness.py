"""Bad input, interruption and concurrent use (issue 15): no file read runs code, a second writer of an output
folder is refused, torn files are repaired or refused with the fix, image ids are unique, metrics do not depend
on the batch, and every vague message of the issue is one line naming the input and the fix (exit code 2)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from lrisc_sim.cli import main

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ helpers
@pytest.fixture
def folder(tiny_folder):
    """Three 64 x 96 crops of a photo."""
    return tiny_folder


def sweep(folder, out, *extra, codec="softcast,uncoded"):
    return ["sweep", "--dataset", str(folder), "--snr", "0,10", "--cbr", "1/8", "--codec", codec, "--metrics", "psnr",
            "--batch-size", "2", "--out", str(out), "--no-progress", *extra]


def one_line_error(capsys, rc: int, *needles: str) -> str:
    """Assert exit code 2 and one error line, the last on stderr, holding every needle (a sweep's banner line
    may come before it); return the line."""
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    lines = err.splitlines()
    assert "Traceback" not in err and [i for i, x in enumerate(lines) if "error" in x] == [len(lines) - 1], err
    line = lines[-1]
    assert line.startswith("lrisc-sim: error: "), err
    for n in needles:
        assert n in line, (n, line)
    return line


class Evil:
    """Unpickling this creates the file ``marker``: what a crafted state or checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious(tmp_path, kind: str = "pickle") -> tuple[bytes, Path]:
    """Bytes of a pickle (or a torch.save archive) that runs code when loaded, and the marker it would make."""
    marker = tmp_path / f"pwned-{kind}"
    if kind == "pickle":
        data = pickle.dumps({"model": Evil(marker)})
    else:
        f = tmp_path / "evil.pt"
        torch.save({"model": Evil(marker), "step": 3}, f)
        data = f.read_bytes()
    assert not marker.exists()
    pickle.loads(data) if kind == "pickle" else torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()  # the payload really runs when unpickled...
    marker.unlink()  # ...so the tests below show that nothing unpickles it
    return data, marker


def _train_folder(tmp_path, n=3, size=40):
    d = tmp_path / "train_imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(d / f"im{i}.png")
    return d


# ------------------------------------------------------------------------------------------------ 1. security
def _recipe(tmp_path, data, init=None, codec="lrisc", name="r"):
    """A one-stage recipe of a tiny model on ``data`` (its state lives in $LRISC_SIM_CACHE/train/NAME/s.*)."""
    model = 'preset = "tiny"' if codec == "lrisc" else 'cbr = "1/16"\nlevels = 2\nwidth = 8\nfirst_width = 8'
    extra = "lpips = false\nmodules = \"source\"\n" if codec == "lrisc" else ""
    p = tmp_path / f"{name}.toml"
    p.write_text(f'name = "{name}"\ncodec = "{codec}"\n[model]\n{model}\n[data]\ntrain = ["{data}"]\nval = 1\n'
                 f'val_crop = 32\n[[stages]]\nname = "s"\nsteps = 1\nbatch = 2\ncrop = 32\n{extra}'
                 + (f'init = "{init}"\n' if init else ""))
    return p


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_malicious_training_state_runs_nothing(tmp_path, capsys, kind, monkeypatch):
    monkeypatch.setenv("LRISC_SIM_CACHE", str(tmp_path / "cache"))
    data, marker = malicious(tmp_path, kind)
    state = tmp_path / "cache" / "train" / "r" / "s.state.safetensors"
    state.parent.mkdir(parents=True)
    state.write_bytes(data)
    rc = main(["train", str(_recipe(tmp_path, _train_folder(tmp_path))), "--threads", "1"])
    one_line_error(capsys, rc, str(state), "pickle", "never loaded")
    assert not marker.exists()


def test_malicious_files_anywhere_the_program_reads_run_nothing(tmp_path, folder, capsys, monkeypatch):
    data, marker = malicious(tmp_path, "pickle")
    zdata, zmarker = malicious(tmp_path, "torch.save")
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(data)
    zevil = tmp_path / "evil_zip.safetensors"
    zevil.write_bytes(zdata)
    img = next(folder.iterdir())
    train = _train_folder(tmp_path)
    for f in (evil, zevil):
        # checkpoints of both learned codecs, on sweep and transmit
        for codec in ("lrisc", "deepjscc"):
            rc = main(sweep(folder, tmp_path / f"o_{codec}", "--checkpoint", f"{codec}={f}", codec=codec))
            one_line_error(capsys, rc, str(f), "never loaded")
            rc = main(["transmit", str(img), "--codec", codec, "--checkpoint", str(f), "--out", str(tmp_path / "t")])
            one_line_error(capsys, rc, str(f), "never loaded")
        # the weights a training stage starts from (LRISC and DeepJSCC)
        monkeypatch.setenv("LRISC_SIM_CACHE", str(tmp_path / "cache"))
        for codec in ("lrisc", "deepjscc"):
            rc = main(["train", str(_recipe(tmp_path, train, init=f, codec=codec, name=f"i_{codec}")),
                       "--threads", "1"])
            one_line_error(capsys, rc, str(f), "never loaded")
    # an experiment file, a sweep folder's config.json and results.csv, an image, the LPIPS weights
    toml = tmp_path / "evil.toml"
    toml.write_bytes(data)
    one_line_error(capsys, main(["run", str(toml), "--out", str(tmp_path / "r")]), str(toml))
    for name in ("config.json", "results.csv"):
        out = tmp_path / f"sweep_{name}"
        out.mkdir()
        (out / name).write_bytes(data)
        one_line_error(capsys, main(sweep(folder, out)), str(out / name))
        assert (out / name).read_bytes() == data  # refused, left as it was
    pic = tmp_path / "evil.png"
    pic.write_bytes(data)
    one_line_error(capsys, main(["metrics", str(pic), str(pic)]), str(pic))
    from lrisc_sim.weights import WeightsUnavailable, lpips_weights_path

    for f in (evil, tmp_path / "alexnet.ckpt"):
        f.write_bytes(data)
        monkeypatch.setenv("LRISC_SIM_LPIPS_WEIGHTS", str(f))
        monkeypatch.setenv("LRISC_SIM_CACHE", str(tmp_path / "cache"))
        with pytest.raises((WeightsUnavailable, ValueError)):
            lpips_weights_path()
    assert not marker.exists() and not zmarker.exists()


# ------------------------------------------------------------------------------------------------ 2. explicit choices
def test_checkpoint_for_a_codec_without_one_or_unknown_is_an_error(folder, tmp_path, capsys):
    ck = ROOT / "lrisc_sim" / "checkpoints" / "lrisc" / "lrisc_small.safetensors"
    one_line_error(capsys, main(sweep(folder, tmp_path / "a", "--checkpoint", f"softcast={ck}")),
                   "--checkpoint", "codec softcast takes no checkpoint")
    one_line_error(capsys, main(sweep(folder, tmp_path / "b", "--checkpoint", f"nosuch={ck}")),
                   "--checkpoint nosuch=", "not in --codec")
    one_line_error(capsys, main(sweep(folder, tmp_path / "c", "--checkpoint", f"lrisc={ck}")),
                   "--checkpoint lrisc=", "not in --codec")
    img = next(folder.iterdir())
    one_line_error(capsys, main(["transmit", str(img), "--codec", "uncoded", "--checkpoint", str(ck), "--out",
                                 str(tmp_path / "t")]), "takes no checkpoint")
    from lrisc_sim.registry import make_codec

    with pytest.raises(ValueError, match="takes no checkpoint"):
        make_codec("softcast", checkpoint=str(ck))
    from lrisc_sim.experiment import ExperimentError, load_experiment

    exp = tmp_path / "e.toml"
    exp.write_text(f'[grid]\nsnr = "10"\ncbr = "1/8"\n[[codecs]]\nspec = "softcast"\ncheckpoint = "{ck}"\n')
    with pytest.raises(ExperimentError, match=r"codecs\[0\].checkpoint.*takes no checkpoint"):
        load_experiment(exp)


# ------------------------------------------------------------------------------------------------ 3. concurrent use
def _hold_lock(out: Path) -> subprocess.Popen:
    code = ("import sys, time; from lrisc_sim.safeio import folder_lock\n"
            "with folder_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(120)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert p.stdout.readline().strip() == "locked"
    return p


def test_second_writer_is_refused_and_a_killed_runs_lock_does_not_block(folder, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    holder = _hold_lock(out)
    try:
        rc = main(sweep(folder, out))
        one_line_error(capsys, rc, str(out), "in use by another lrisc-sim run", f"pid {holder.pid}",
                       "choose another output folder")
        assert not (out / "results.csv").exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # killed: no clean-up runs, the lock file stays
        holder.wait()
    assert (out / ".lock").exists()
    assert main(sweep(folder, out)) == 0  # the kernel dropped the dead process's lock: the resume runs
    assert len(pd.read_csv(out / "results.csv")) == 2 * 2 * 3


def test_two_concurrent_sweeps_leave_a_consistent_table(folder, tmp_path):
    out = tmp_path / "both"
    cmd = [sys.executable, "-m", "lrisc_sim.cli", *sweep(folder, out, "--threads", "1")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results)[0] == 0, results
    for rc, err in results:
        assert rc == 0 or (rc == 2 and "in use by another lrisc-sim run" in err), (rc, err)
    df = pd.read_csv(out / "results.csv")
    key = ["codec", "cbr_target", "snr_db", "channel", "trial", "image"]
    assert len(df) == 2 * 2 * 3 and not df.duplicated(key).any()
    assert set(df["seed"]) == {0}


# ------------------------------------------------------------------------------------------------ 4. crash safety
def test_config_json_is_written_atomically(tmp_path, monkeypatch):
    from lrisc_sim import safeio

    f = tmp_path / "config.json"
    safeio.atomic_write_text(f, json.dumps({"seed": 1}))

    def killed(fd):
        raise KeyboardInterrupt  # the process dies after writing part of the new file, before the rename

    monkeypatch.setattr(safeio.os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        safeio.atomic_write_text(f, json.dumps({"seed": 2, "codecs": ["x" * 10_000]}))
    assert json.loads(f.read_text()) == {"seed": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temp file left


def test_torn_config_json_says_how_to_resume(folder, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(sweep(folder, out, "--seed", "3")) == 0
    capsys.readouterr()
    cfg = out / "config.json"
    cfg.write_text(cfg.read_text()[:40])  # as an older version could leave it
    one_line_error(capsys, main(sweep(folder, out, "--seed", "3")), str(cfg), "delete it to resume")
    cfg.unlink()
    one_line_error(capsys, main(sweep(folder, out)), "--seed: ", "rows of seed 3", "resume with seed 3")  # the rows know
    assert main(sweep(folder, out, "--seed", "3")) == 0
    assert json.loads(cfg.read_text())["seed"] == 3


@pytest.mark.parametrize("torn", ["", "codec,cbr_tar", "codec,cbr_target,cbr_payload,cbr_side,cbr_total,snr_db,"
                                  "channel,trial,image,psnr,ms_ssim,lpips,seconds,ok,seed,side_charge,info"])
def test_torn_results_header_is_repaired_like_a_torn_row(folder, tmp_path, torn):
    out = tmp_path / "h"
    out.mkdir()
    (out / "results.csv").write_text(torn)  # killed while writing the header line
    assert main(sweep(folder, out)) == 0
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 2 * 2 * 3 and list(df.columns)[:2] == ["codec", "cbr_target"]


def test_a_foreign_results_csv_is_refused_and_left_alone(folder, tmp_path, capsys):
    out = tmp_path / "f"
    out.mkdir()
    (out / "results.csv").write_bytes(b"a,b\n1,2\n3,")
    one_line_error(capsys, main(sweep(folder, out)), "not a results table", "another --out")
    assert (out / "results.csv").read_bytes() == b"a,b\n1,2\n3,"


# ------------------------------------------------------------------------------------------------ 5. unique image ids
def test_files_with_the_same_stem_get_distinct_ids_and_noise(tmp_path, capsys):
    from lrisc_sim.data import load_dataset

    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("x.png", "x.bmp", "y.png", "sub/x.png"):
        Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(d / name)
    ids = [it.id for it in load_dataset(str(d))]
    assert ids == ["sub/x", "x.bmp", "x.png", "y"]  # suffix kept only where two files share a stem
    out = tmp_path / "o"
    assert main(["sweep", "--dataset", str(d), "--snr", "10", "--cbr", "1/4", "--codec", "uncoded", "--metrics",
                 "psnr", "--out", str(out), "--no-progress"]) == 0
    df = pd.read_csv(out / "results.csv")
    assert sorted(df["image"]) == sorted(ids) and len(df) == 4
    from channels.realization import Realization

    n = Realization(0, ["x.png", "x.bmp"], 0).cn("noise", 64)
    assert not torch.equal(n[0], n[1])


# ------------------------------------------------------------------------------------------------ 6. batch sizes
def test_metrics_are_bit_identical_across_batch_sizes():
    from lrisc_sim.metrics import Reference, compute_metrics

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # several threads are where batched convolutions sum in another order
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(3, 3, 168, 176, generator=g)
        y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
        one = [compute_metrics(x[i : i + 1], y[i : i + 1]) for i in range(3)]
        full = compute_metrics(x, y, ref=Reference(x))
        for k in ("psnr", "ms_ssim", "lpips"):
            assert torch.equal(torch.cat([m[k] for m in one]), full[k]), k
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("codec", ["softcast", "uncoded", "deepjscc"])
def test_rows_are_bit_identical_across_batch_sizes(folder, tmp_path, codec):
    frames = []
    for bs in ("1", "3"):
        out = tmp_path / f"b{bs}"
        assert main(["sweep", "--dataset", str(folder), "--snr", "5", "--cbr", "1/16", "--codec", codec,
                     "--batch-size", bs, "--threads", "2", "--out", str(out), "--no-progress"]) == 0
        frames.append(pd.read_csv(out / "results.csv").sort_values("image").reset_index(drop=True))
    cols = ["image", "psnr", "ms_ssim", "lpips", "cbr_total"]
    pd.testing.assert_frame_equal(frames[0][cols], frames[1][cols], check_exact=True)


# ------------------------------------------------------------------------------------------------ messages
def _png_header(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels (no image data): a decompression bomb's first bytes."""
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def test_images_too_small_for_a_codec_name_the_images_and_the_fix(tmp_path, capsys):
    d = tmp_path / "small"
    d.mkdir()
    for n in ("a", "b"):
        Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(d / f"{n}.png")
    for codec in ("softcast", "uncoded"):
        rc = main(["sweep", "--dataset", str(d), "--snr", "10", "--cbr", "1/48", "--codec", codec, "--metrics",
                   "psnr", "--out", str(tmp_path / codec), "--no-progress"])
        one_line_error(capsys, rc, "images a, b (8x8 px)", f"too few for {codec}'s side information",
                       "use a CBR of at least", "or larger images")
    rc = main(["sweep", "--dataset", str(d), "--snr", "10", "--cbr", "1", "--codec", "uncoded", "--out",
               str(tmp_path / "lp"), "--no-progress"])
    one_line_error(capsys, rc, "images a, b (8x8 px)", "LPIPS needs images of at least 32x32 px")
    rc = main(["transmit", str(d / "a.png"), "--codec", "softcast", "--out", str(tmp_path / "t")])
    one_line_error(capsys, rc, "image a (8x8 px)", "use a CBR of at least")


def test_read_only_or_invalid_out(folder, tmp_path, capsys, monkeypatch):
    f = tmp_path / "file.txt"
    f.write_text("x")
    one_line_error(capsys, main(sweep(folder, f / "sub")), f"--out {f / 'sub'}", "a part of this path is a file")
    one_line_error(capsys, main(sweep(folder, f)), f"--out {f}", "not a folder")
    import tempfile

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", denied)  # a read-only folder (root may write anywhere)
    ro = tmp_path / "ro"
    one_line_error(capsys, main(sweep(folder, ro)), f"--out {ro}", "cannot write there (Permission denied)",
                   "choose a writable folder")
    img = next(folder.iterdir())
    one_line_error(capsys, main(["transmit", str(img), "--codec", "softcast", "--out", str(ro)]),
                   "cannot write there")


def test_ray_address_unreachable_or_malformed_fails_fast(folder, tmp_path, capsys):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # a closed port on this machine: nothing answers
    t0 = time.time()
    rc = main(sweep(folder, tmp_path / "r", "--executor", "ray", "--ray-address", f"127.0.0.1:{port}"))
    one_line_error(capsys, rc, f"--ray-address 127.0.0.1:{port}", "no Ray cluster answers", "ray start --head")
    assert time.time() - t0 < 10
    for bad in ("nohost", "127.0.0.1:notaport", "http://127.0.0.1:6379", "127.0.0.1:99999"):
        rc = main(sweep(folder, tmp_path / "r", "--executor", "ray", "--ray-address", bad))
        one_line_error(capsys, rc, "--ray-address ", "not a Ray address", "HOST:PORT")
    one_line_error(capsys, main(sweep(folder, tmp_path / "r", "--ray-address", "127.0.0.1:6379")),
                   "needs --executor ray")


def test_checkpoint_files_of_the_wrong_kind(folder, tmp_path, capsys):
    img = str(next(folder.iterdir()))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 7 + b"not a checkpoint at all" * 10)
    dj = ROOT / "lrisc_sim" / "checkpoints" / "deepjscc" / "deepjscc_cbr1-48_snr10.safetensors"
    lr = ROOT / "lrisc_sim" / "checkpoints" / "lrisc" / "lrisc_small.safetensors"
    cases = [("lrisc", garbage, "not a readable LRISC checkpoint"),
             ("lrisc", dj, "is a DeepJSCC checkpoint, not a LRISC one: use it with --checkpoint deepjscc=PATH"),
             ("deepjscc", garbage, "not a readable DeepJSCC checkpoint"),
             ("deepjscc", lr, "is an LRISC checkpoint, not a DeepJSCC one")]
    for codec, ck, msg in cases:
        rc = main(["transmit", img, "--codec", codec, "--checkpoint", str(ck), "--out", str(tmp_path / "t")])
        one_line_error(capsys, rc, str(ck), msg)


@pytest.mark.parametrize("args, needles", [
    (["transmit", "{img}", "--codec", "softcast:foo"], ["softcast:foo", "chunk must be an integer", "softcast:32"]),
    (["transmit", "{img}", "--snr", "nan"], ["bad SNR 'nan'", "must be finite"]),
    (["transmit", "{img}", "--snr", "inf"], ["bad SNR 'inf'", "must be finite"]),
    (["transmit", "{img}", "--snr", "1e9"], ["SNR", "-100..100 dB"]),
    (["transmit", "{img}", "--snr", "0,5"], ["--snr 0,5", "one SNR value"]),
    (["transmit", "{img}", "--out", ""], ["--out is empty"]),
    (["transmit", "{img}", "--threads", "0"], ["--threads 0", "positive"]),
    (["sweep", "--out", ""], ["--out is empty"]),
    (["sweep", "--threads", "0"], ["--threads 0", "positive"]),
    (["sweep", "--threads", "-2"], ["--threads -2", "positive"]),
    (["sweep", "--cbr", "-1/48"], ["bad CBR '-1/48'", "(0, 1]", "accepted forms"]),
    (["sweep", "--cbr", "-0.5,1/48"], ["bad CBR '-0.5'", "accepted forms"]),
    (["sweep", "--snr", "-5:-10:5"], ["bad SNR range '-5:-10:5'", "stop < start"]),
    (["run", "{toml}", "--out", ""], ["--out is empty"]),
    (["run", "{toml}", "--threads", "0"], ["--threads 0"]),
    (["run", "{bintoml}"], ["{bintoml}", "not a text file"]),
    (["metrics", "{bomb}", "{bomb}"], ["{bomb}", "decompression bomb", "400000000 pixels", "downscale"]),
    (["train", "{toml}", "--threads", "0"], ["--threads 0"]),
])
def test_vague_messages_are_one_line_with_the_fix(args, needles, folder, tmp_path, capsys):
    toml = tmp_path / "e.toml"
    toml.write_text('[grid]\nsnr = "10"\ncbr = "1/8"\n[[codecs]]\nspec = "softcast"\n')
    bintoml = tmp_path / "bin.toml"
    bintoml.write_bytes(bytes(range(256)) * 4)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(20000, 20000))
    subs = {"{img}": str(next(folder.iterdir())), "{toml}": str(toml), "{bintoml}": str(bintoml),
            "{bomb}": str(bomb), "{folder}": str(folder)}
    args = [subs.get(a, a) for a in args]
    if args[0] == "sweep":
        args += ["--dataset", str(folder), "--no-progress"] + ([] if "--out" in args else ["--out", str(tmp_path / "o")])
    elif args[0] == "transmit" and "--out" not in args:
        args += ["--out", str(tmp_path / "t")]
    one_line_error(capsys, main(args), *[subs.get(n, n) for n in needles])


def test_negative_values_are_accepted_where_they_are_valid(folder, tmp_path):
    out = tmp_path / "neg"
    assert main(["sweep", "--dataset", str(folder), "--snr", "-5:0:5", "--cbr", "1/8", "--codec", "uncoded",
                 "--metrics", "psnr", "--out", str(out), "--no-progress"]) == 0
    assert sorted(pd.read_csv(out / "results.csv")["snr_db"].unique()) == [-5.0, 0.0]
    img = str(next(folder.iterdir()))
    assert main(["transmit", img, "--codec", "uncoded", "--snr", "-3", "--out", str(tmp_path / "t")]) == 0
    assert "at -3 dB" in (tmp_path / "t" / "metrics.txt").read_text()


def test_debug_shows_the_traceback(folder, tmp_path):
    with pytest.raises(Exception, match="--out is empty"):
        main(["--debug", *sweep(folder, "")])


def test_lrisc_rows_agree_across_batch_sizes_within_the_stated_tolerance(folder, tmp_path):
    """LRISC's networks run batched, and a batched convolution may round differently from a single one: its
    rows agree across batch sizes to about 1e-5 (README, Conventions), not to the bit."""
    frames = []
    for bs in ("1", "2"):
        out = tmp_path / f"b{bs}"
        assert main(["sweep", "--dataset", str(folder), "--limit", "2", "--snr", "5", "--cbr", "1/16", "--codec",
                     "lrisc", "--metrics", "psnr,lpips", "--batch-size", bs, "--threads", "1", "--out", str(out),
                     "--no-progress"]) == 0
        frames.append(pd.read_csv(out / "results.csv").sort_values("image").reset_index(drop=True))
    assert list(frames[0]["image"]) == list(frames[1]["image"])
    assert (frames[0]["cbr_total"] == frames[1]["cbr_total"]).all()
    for m in ("psnr", "lpips"):
        assert (frames[0][m] - frames[1][m]).abs().max() < 1e-4, m


def test_configured_bpg_binary_missing_is_one_worded_line(tmp_path, folder, capsys, monkeypatch):
    from lrisc_sim.cli import main

    monkeypatch.setenv("LRISC_BPGENC", str(tmp_path / "nonexistent"))
    monkeypatch.setenv("LRISC_BPGDEC", str(tmp_path / "nonexistent"))
    line = one_line_error(capsys, main(sweep(folder, tmp_path / "o", codec="bpg-capacity")), "nonexistent",
                          "LRISC_BPGENC")
    assert "MissingBinaryError" not in line
