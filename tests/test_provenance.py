"""Provenance (issue 25 item 8): config.json records the version, commit, libraries, device and the run's start and
end; `lrisc-sim --version`; provenance is never part of a folder's identity."""

import json
from datetime import datetime
from importlib.metadata import version

import numpy as np
import pytest
import torch
from PIL import Image

from lrisc_sim import provenance
from lrisc_sim.cli import main


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(d / "a.png")
    return d


def sweep(folder, out, *extra):
    return ["sweep", "--no-progress", "--metrics", "psnr", "--dataset", str(folder), "--codec", "uncoded",
            "--snr", "10", "--cbr", "1/16", "--threads", "1", "--device", "cpu", "--out", str(out), *extra]


def _utc(s: str) -> datetime:
    assert s.endswith("Z") and len(s) == 20, s
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ")


def test_config_json_carries_provenance(folder, tmp_path):
    out = tmp_path / "out"
    assert main(sweep(folder, out)) == 0
    rec = json.loads((out / "config.json").read_text())["provenance"]
    assert rec["lrisc_sim"] == version("lrisc-sim")
    libs = rec["libraries"]
    assert set(libs) >= {"python", "torch", "numpy", "sionna"}
    assert libs["torch"] == torch.__version__ and libs["numpy"] == np.__version__
    assert rec["device"] == "cpu" and rec["cpu"]
    assert _utc(rec["start"]) <= _utc(rec["end"])
    git = rec["git"]
    if (provenance.ROOT / ".git").exists():
        assert len(git["commit"]) == 40 and isinstance(git["dirty"], bool)
    else:
        assert git is None


def test_provenance_is_not_identity_and_earlier_runs_are_kept(folder, tmp_path):
    out = tmp_path / "out"
    assert main(sweep(folder, out)) == 0
    f = out / "config.json"
    cfg = json.loads(f.read_text())
    cfg["provenance"].update(lrisc_sim="0.0.1", device="cuda:0 (another machine)",
                             git={"commit": "0" * 40, "dirty": True})
    f.write_text(json.dumps(cfg))
    assert main(sweep(folder, out, "--snr", "10,20")) == 0  # another version and machine: extended, not refused
    cfg = json.loads(f.read_text())
    assert cfg["earlier_runs"][-1]["lrisc_sim"] == "0.0.1"
    assert cfg["provenance"]["lrisc_sim"] == version("lrisc-sim") and cfg["provenance"]["end"]


def test_an_interrupted_run_has_no_end_time(folder, tmp_path, monkeypatch):
    from lrisc_sim.results import ResultsTable

    def stop(self, rows):
        raise KeyboardInterrupt

    monkeypatch.setattr(ResultsTable, "append", stop)
    out = tmp_path / "out"
    assert main(sweep(folder, out)) == 130
    rec = json.loads((out / "config.json").read_text())["provenance"]
    assert rec["start"] and rec["end"] is None


def test_version_flag(capsys):
    assert main(["--version"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"lrisc-sim {version('lrisc-sim')}")
    co = provenance.checkout()
    if co:
        assert f"git {co['commit'][:12]}" in line


def test_outside_a_checkout_there_is_no_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "ROOT", tmp_path)
    assert provenance.checkout() is None
    assert provenance.version_line() == f"lrisc-sim {provenance.package_version()}"
    assert provenance.run_record("cpu")["git"] is None
