"""The public Python API: the README example runs as written, and the API agrees with the CLI and the engine."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import torch

import lrisc_sim

ROOT = Path(__file__).resolve().parents[1]


def test_all_names_resolve_and_import_is_light():
    import subprocess
    import sys

    for name in lrisc_sim.__all__:
        assert getattr(lrisc_sim, name) is not None
    r = subprocess.run([sys.executable, "-c", "import sys, lrisc_sim; print('torch' in sys.modules)"],
                       capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"  # nothing heavy until a name is used


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Python API.*?```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "uncoded" in out and "softcast" in out and (tmp_path / "runs/notebook/results.csv").is_file()


def test_sweep_api_equals_cli_rows(tiny_folder, tmp_path):
    from lrisc_sim.cli import main

    df = lrisc_sim.sweep("uncoded,softcast", snr=[0.0, 10.0], cbr="1/16", dataset=str(tiny_folder),
                         out=tmp_path / "api", metrics=("psnr",), progress=False, device="cpu")
    assert main(["sweep", "--codec", "uncoded,softcast", "--snr", "0,10", "--cbr", "1/16", "--dataset",
                 str(tiny_folder), "--out", str(tmp_path / "cli"), "--metrics", "psnr", "--no-progress",
                 "--device", "cpu"]) == 0
    cli = pd.read_csv(tmp_path / "cli" / "results.csv")
    cols = ["codec", "snr_db", "image", "psnr", "cbr_total", "ok"]
    key = ["codec", "snr_db", "image"]
    pd.testing.assert_frame_equal(df[cols].sort_values(key).reset_index(drop=True),
                                  cli[cols].sort_values(key).reset_index(drop=True))
    # resume: nothing left to do, the same rows come back
    again = lrisc_sim.sweep("uncoded,softcast", snr=[0.0, 10.0], cbr="1/16", dataset=str(tiny_folder),
                            out=tmp_path / "api", metrics=("psnr",), progress=False, device="cpu")
    assert len(again) == len(df)


def test_transmit_reproduces_the_sweep_row(tiny_folder, tmp_path):
    img = sorted(tiny_folder.iterdir())[0]
    df = lrisc_sim.sweep(["softcast"], snr=[5.0], cbr=[1 / 16], dataset=str(img), out=tmp_path / "s",
                         metrics=("psnr",), progress=False, device="cpu")
    t = lrisc_sim.transmit(str(img), codec="softcast", snr_db=5.0, cbr=1 / 16, device="cpu", metrics=("psnr",))
    assert float(t.metrics["psnr"][0]) == pytest.approx(float(df.psnr.iloc[0]), abs=0)
    assert float(t.cbr["cbr_total"][0]) == pytest.approx(float(df.cbr_total.iloc[0]), abs=0)


@pytest.mark.parametrize("kw, field", [
    ({"trials": 0}, "trials"), ({"snr": [1000.0]}, "snr_db"), ({"codecs": ["nosuch"]}, "codecs"),
    ({"channel": "mars"}, "channel"), ({"metrics": ("fid",)}, "metrics"), ({"side_charge": "bits"}, "side_charge"),
    ({"equalizer": "ml"}, "equalizer"), ({"checkpoints": {"softcast": "x.safetensors"}}, "codec_options"),
])
def test_bad_arguments_name_the_field(kw, field, tmp_path):
    args = {"codecs": ["softcast"], "snr": "10", "cbr": "1/16", "out": tmp_path / "o", "progress": False, **kw}
    with pytest.raises(lrisc_sim.ConfigError) as e:
        lrisc_sim.sweep(**args)
    assert e.value.field == field and "\n" not in str(e.value)


def test_load_codec_and_send_shapes():
    codec = lrisc_sim.load_codec("uncoded", device="cpu")
    assert isinstance(codec, lrisc_sim.Codec)
    t = lrisc_sim.send(codec, torch.rand(2, 3, 20, 30), cbr=1 / 4, snr_db=10.0, channel="awgn")
    assert t.output.shape == (2, 3, 20, 30) and t.ok.shape == (2,) and t.received is not None
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        lrisc_sim.send(codec, torch.rand(2, 1, 20, 30), cbr=1 / 4, snr_db=10.0)
