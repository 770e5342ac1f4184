"""Experiment files: schema errors name the file and key; a tiny experiment runs end to end, resumes, and the
Ray executor gives the same numbers as the local one."""


import pandas as pd
import pytest
from PIL import Image

from lrisc_sim.experiment import ExperimentError, load_experiment, run_experiment

TINY = """
name = "tiny"
title = "tiny test"
dataset = "{data}"
seed = 3
trials = 1
batch_size = 1
metrics = ["psnr"]

[channel]
model = "rayleigh"
equalizer = "mmse"

[grid]
snr = "0:10:10"
cbr = [0.0625]

[[codecs]]
spec = "softcast"
label = "SoftCast"

[[codecs]]
spec = "uncoded"
"""


@pytest.fixture
def tiny(tmp_path):
    from skimage import data

    a = data.chelsea()
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(a[:64, :64]).save(d / "a.png")
    Image.fromarray(a[100:164, 200:264]).save(d / "b.png")
    f = tmp_path / "tiny.toml"
    f.write_text(TINY.format(data=d))
    return f


def test_tiny_experiment_end_to_end_and_resume(tiny, tmp_path):
    out = tmp_path / "results" / "tiny"
    run_experiment(tiny, out=out, progress=False, device="cpu", quiet=True)
    report = (tmp_path / "results" / "README.md").read_text()
    assert "tiny test" in report and "softcast" in report and "PSNR" in report
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 2 * 2 * 2  # codecs x SNR x images
    assert (out / "summary.csv").is_file() and (out / "vs_snr.png").is_file()
    assert df["channel"].str.startswith("rayleigh").all()
    mtime = (out / "results.csv").stat().st_mtime_ns
    run_experiment(tiny, out=out, progress=False, device="cpu", quiet=True)  # nothing left to do
    assert len(pd.read_csv(out / "results.csv")) == 8
    assert (out / "results.csv").stat().st_mtime_ns == mtime
    notes = (out / "codecs.txt").read_text().splitlines()  # a resume with nothing to do still names every codec
    assert [n.split(" ")[0].rstrip(":") for n in notes] == ["softcast", "uncoded"]


def test_ray_executor_matches_local(tiny, tmp_path):
    pytest.importorskip("ray")
    import ray

    local, dist = tmp_path / "local", tmp_path / "ray"
    run_experiment(tiny, out=local, progress=False, device="cpu", quiet=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        run_experiment(tiny, out=dist, executor="ray", progress=False, device="cpu", quiet=True)
    finally:
        ray.shutdown()
    key = ["codec", "snr_db", "image", "trial"]
    a = pd.read_csv(local / "results.csv").sort_values(key).reset_index(drop=True)
    b = pd.read_csv(dist / "results.csv").sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[key + ["psnr", "cbr_total"]], b[key + ["psnr", "cbr_total"]])
    assert (dist / "codecs.txt").read_text() == (local / "codecs.txt").read_text()


@pytest.mark.parametrize("patch, msg", [
    (("seed = 3", "seed = 'x'"), "key 'seed'"),
    (("trials = 1", "trials = 0"), "key 'trials'"),
    (('title = "tiny test"', 'colour = "red"'), "unknown key(s) colour"),
    (('snr = "0:10:10"', 'snr = "0:10:0"'), "key 'grid.snr'"),
    (("cbr = [0.0625]", "cbr = [2]"), "key 'grid.cbr'"),
    (('spec = "softcast"', 'spec = "magic"'), "codecs[0].spec"),
    (('model = "rayleigh"', 'model = "mars"'), "channel.model"),
    (('equalizer = "mmse"', 'equalizer = "ml"'), "channel.equalizer"),
    (('metrics = ["psnr"]', 'metrics = ["psnr", "fid"]'), "key 'metrics'"),
    (("[grid]", "[grd]"), "unknown key(s) grd"),
    (('name = "tiny"', 'name = "tiny'), "not valid TOML"),
])
def test_schema_errors_name_file_and_key(tiny, patch, msg):
    tiny.write_text(tiny.read_text().replace(*patch))
    with pytest.raises(ExperimentError) as e:
        load_experiment(tiny)
    assert msg in str(e.value) and str(tiny) in str(e.value)


def test_shipped_experiment_files_validate():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.toml"))
    assert files, "experiments/*.toml missing"
    for f in files:
        exp = load_experiment(f)
        assert exp.out.parts[0] == "results"


def test_visual_experiment_grid(tiny, tmp_path):
    text = tiny.read_text().replace('[grid]\nsnr = "0:10:10"\ncbr = [0.0625]', '[visual]\nimage = "a"\nsnr = [0, 10]\ncbr = "1/16"')
    f = tmp_path / "vis.toml"
    f.write_text('kind = "visual"\n' + text)
    out = tmp_path / "vis"
    grid = run_experiment(f, out=out, progress=False, device="cpu", quiet=True)
    assert grid.is_file() and grid.stat().st_size > 1000
    m = pd.read_csv(out / "metrics.csv")
    assert len(m) == 4 and set(m["codec"]) == {"softcast", "uncoded"}
