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
    from lrisc_sim.sweep_config import ConfigError

    with pytest.raises(ConfigError, match="is a visual grid, which keeps no rows to drop"):  # never ignored
        run_experiment(f, out=out, progress=False, device="cpu", quiet=True, drop=["uncoded"])


STALE = """
name = "stale"
dataset = "{data}"
batch_size = 2
metrics = ["psnr"]

[grid]
snr = "5"
cbr = "1/48"

[[codecs]]
spec = "deepjscc"
checkpoint = "{ck}"

[[codecs]]
spec = "softcast"
"""


def test_changed_weights_stop_the_resume_until_redo(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    from baselines.deepjscc import CHECKPOINT_DIR

    src = CHECKPOINT_DIR / "deepjscc_cbr1-48_snr10.safetensors"
    ck = tmp_path / "mine.safetensors"
    ck.write_bytes(src.read_bytes())
    f = tmp_path / "stale.toml"
    f.write_text(STALE.format(data=tmp_path / "imgs", ck=ck))
    out = tmp_path / "out"
    run_experiment(f, out=out, progress=False, device="cpu", quiet=True)
    before = pd.read_csv(out / "results.csv").sort_values(["codec", "image"]).reset_index(drop=True)

    from safetensors import safe_open

    with safe_open(str(src), "pt") as h:
        meta = h.metadata()
    w = load_file(str(src))
    name = sorted(k for k in w if w[k].is_floating_point() and w[k].ndim == 4)[0]
    w[name] = w[name] * 1.5  # "retrained"
    save_file(w, str(ck), metadata=meta)
    with pytest.raises(ValueError, match=r"deepjscc rows were made with other deepjscc settings \(weights "
                                         r"mine.safetensors changed\); redo deepjscc to recompute them"):
        run_experiment(f, out=out, progress=False, device="cpu", quiet=True)
    with pytest.raises(ValueError, match="redo nope: not a codec of this sweep"):
        run_experiment(f, out=out, progress=False, device="cpu", quiet=True, redo=["nope"])

    run_experiment(f, out=out, progress=False, device="cpu", quiet=True, redo=["deepjscc"])
    after = pd.read_csv(out / "results.csv").sort_values(["codec", "image"]).reset_index(drop=True)
    assert len(after) == len(before) == 4
    soft = after["codec"] == "softcast"
    assert after.loc[soft, "psnr"].tolist() == before.loc[soft, "psnr"].tolist()  # kept, not recomputed
    assert (after.loc[~soft, "psnr"] != before.loc[~soft, "psnr"]).all()
    run_experiment(f, out=out, progress=False, device="cpu", quiet=True)  # resumes cleanly now


def test_changed_codec_options_are_stale_too(tiny, tmp_path):
    out = tmp_path / "results" / "tiny"
    run_experiment(tiny, out=out, progress=False, device="cpu", quiet=True)
    tiny.write_text(tiny.read_text().replace('spec = "softcast"', 'spec = "softcast"\nchunk = 8'))
    with pytest.raises(ValueError, match="softcast rows were made with other softcast settings"):
        run_experiment(tiny, out=out, progress=False, device="cpu", quiet=True)


def test_compare_key_writes_the_paired_differences_after_the_sweep(tmp_path):
    """`compare = CODEC` in an experiment file writes OUT/compare_CODEC.csv after the sweep; a codec that is not in
    the file is a one-line error naming the key."""
    import numpy as np
    from PIL import Image

    from lrisc_sim.experiment import ExperimentError, load_experiment, run_experiment

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype("uint8")).save(imgs / f"i{i}.png")
    text = (f'dataset = "{imgs}"\nmetrics = ["psnr"]\ncompare = "uncoded"\n[grid]\nsnr = "0,10"\ncbr = "1/4"\n'
            '[[codecs]]\nspec = "uncoded"\n[[codecs]]\nspec = "softcast"\n')
    (tmp_path / "e.toml").write_text(text)
    run_experiment(tmp_path / "e.toml", out=tmp_path / "out", progress=False, quiet=True)
    import pandas as pd

    t = pd.read_csv(tmp_path / "out" / "compare_uncoded.csv")
    assert set(t["codec"]) == {"softcast"} and set(t["kind"]) == {"point", "average"}
    (tmp_path / "bad.toml").write_text(text.replace('compare = "uncoded"', 'compare = "lrisc"'))
    with pytest.raises(ExperimentError, match="key 'compare'"):
        load_experiment(tmp_path / "bad.toml")
