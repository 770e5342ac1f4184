"""The command line end to end: a sweep writes its files, resumes after an interruption without losing or
repeating rows, and bad input gives one line and a non-zero exit."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lrisc_sim.cli import main
from lrisc_sim.results import ResultsTable


def sweep_args(folder, out, *extra):
    return ["sweep", "--dataset", str(folder), "--snr", "0:10:5", "--cbr", "1/16,1/8", "--codec", "softcast,uncoded",
            "--metrics", "psnr", "--batch-size", "2", "--trials", "2", "--out", str(out), "--no-progress", *extra]


def test_sweep_writes_tables_and_plots(tiny_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(sweep_args(tiny_folder, out)) == 0
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 2 * 2 * 3 * 2 * 3  # codecs x CBR x SNR x trials x images
    s = pd.read_csv(out / "summary.csv")
    assert {"psnr", "psnr_ci95", "cbr_total", "ok_rate"} <= set(s.columns)
    assert (out / "vs_snr.png").is_file() and (out / "vs_cbr.png").is_file()
    assert (df["cbr_total"] <= df["cbr_target"] + 1e-12).all()
    assert "softcast" in capsys.readouterr().out


def test_interrupted_sweep_resumes_without_loss(tiny_folder, tmp_path, monkeypatch):
    ref = tmp_path / "ref"
    assert main(sweep_args(tiny_folder, ref)) == 0
    out = tmp_path / "cut"
    calls = {"n": 0}
    orig = ResultsTable.append

    def flaky(self, rows):
        calls["n"] += 1
        if calls["n"] == 4:
            with self.path.open("a") as f:  # the kill lands in the middle of a write
                f.write("softcast,0.0625,0.05")
            raise KeyboardInterrupt
        return orig(self, rows)

    monkeypatch.setattr(ResultsTable, "append", flaky)
    assert main(sweep_args(tiny_folder, out)) == 130
    partial = pd.read_csv(out / "results.csv", on_bad_lines="skip")
    assert 0 < len(partial) < 72
    monkeypatch.setattr(ResultsTable, "append", orig)
    assert main(sweep_args(tiny_folder, out)) == 0
    key = ["codec", "cbr_target", "snr_db", "trial", "image"]
    a = pd.read_csv(ref / "results.csv").sort_values(key).reset_index(drop=True)
    b = pd.read_csv(out / "results.csv").sort_values(key).reset_index(drop=True)
    assert not b.duplicated(key).any()
    cols = key + ["psnr", "cbr_total", "ok"]
    pd.testing.assert_frame_equal(a[cols], b[cols])  # bit-identical numbers after resume


def test_resume_refuses_other_seed(tiny_folder, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(sweep_args(tiny_folder, out, "--seed", "1")) == 0
    assert main(sweep_args(tiny_folder, out, "--seed", "2")) == 2
    assert "seed 1" in capsys.readouterr().err


def test_redo_recomputes_only_named_codecs(tiny_folder, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(sweep_args(tiny_folder, out)) == 0
    before = pd.read_csv(out / "results.csv")
    assert main(sweep_args(tiny_folder, out, "--redo", "uncoded")) == 0
    assert "removed 36 rows of uncoded" in capsys.readouterr().err
    after = pd.read_csv(out / "results.csv")
    assert len(after) == len(before) == 72
    assert list(after["codec"].iloc[-36:].unique()) == ["uncoded"]  # appended again at the end
    assert main(sweep_args(tiny_folder, out, "--redo", "softcast,bogus")) == 2
    err = capsys.readouterr().err.strip()
    assert "--redo bogus: not a codec of this sweep" in err and len(err.splitlines()) == 1


def test_drop_removes_a_codec_the_run_no_longer_lists(tiny_folder, tmp_path, capsys):
    """Rows of a codec outside the run stay and the run says so; --drop removes them, its record goes too."""
    out = tmp_path / "d"
    assert main(sweep_args(tiny_folder, out)) == 0
    one = [a if a != "softcast,uncoded" else "uncoded" for a in sweep_args(tiny_folder, out)]
    assert "uncoded" in one
    capsys.readouterr()
    assert main(one) == 0
    assert "also holds rows of softcast, which this run does not list" in capsys.readouterr().err
    assert main(one + ["--drop", "softcast"]) == 0
    assert "removed 36 rows of softcast" in capsys.readouterr().err
    rows = pd.read_csv(out / "results.csv")
    assert set(rows["codec"]) == {"uncoded"} and len(rows) == 36
    assert set(pd.read_csv(out / "summary.csv")["codec"]) == {"uncoded"}
    cfg = json.loads((out / "config.json").read_text())
    assert "softcast" not in cfg["codec_fingerprints"] and "softcast" not in cfg["codecs"]
    for bad, msg in ((["--drop", "uncoded"], "--drop uncoded: is a codec of this sweep; --redo recomputes"),
                     (["--drop", "softcast"], "has no rows of it")):
        assert main(one + bad) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("args, msg", [
    (["sweep", "--snr", "0:15:0"], "bad SNR"),
    (["sweep", "--cbr", "1/x"], "bad CBR"),
    (["sweep", "--codec", "nosuch"], "unknown codec"),
    (["sweep", "--channel", "nosuch"], "unknown channel"),
    (["sweep", "--dataset", "/no/such/folder"], "not found"),
    (["sweep", "--metrics", "psnr,foo"], "unknown metric"),
    (["sweep", "--side-charge", "bits"], "side-information"),
    (["sweep", "--checkpoint", "lrisc"], "CODEC=PATH"),
    (["metrics", "/no/a.png", "/no/b.png"], "no such image"),
    (["run", "/no/exp.toml"], "not found"),
])
def test_bad_input_one_line(args, msg, tmp_path, capsys):
    rc = main(args + (["--out", str(tmp_path / "o"), "--no-progress"] if args[0] == "sweep" else []))
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert msg in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_metrics_command(tmp_path, capsys):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + 3, 0, 255).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(b).save(tmp_path / "b.png")
    assert main(["metrics", str(tmp_path / "a.png"), str(tmp_path / "b.png")]) == 0
    out = capsys.readouterr().out
    assert "PSNR" in out and "LPIPS" in out
    Image.fromarray(a[:40]).save(tmp_path / "c.png")
    assert main(["metrics", str(tmp_path / "a.png"), str(tmp_path / "c.png")]) == 2


def test_help_and_listings():
    for cmd in (["--help"], ["sweep", "--help"], ["run", "--help"], ["metrics", "--help"], ["codecs", "--help"],
                ["channels", "--help"], ["transmit", "--help"], ["train", "--help"]):
        r = subprocess.run([sys.executable, "-m", "lrisc_sim.cli", *cmd], capture_output=True, text=True)
        assert r.returncode == 0 and "usage" in r.stdout
    r = subprocess.run([sys.executable, "-m", "lrisc_sim.cli", "codecs"], capture_output=True, text=True)
    assert "softcast" in r.stdout and "bpg-ldpc" in r.stdout
    r = subprocess.run([sys.executable, "-m", "lrisc_sim.cli", "channels"], capture_output=True, text=True)
    assert "awgn" in r.stdout and "rayleigh" in r.stdout
