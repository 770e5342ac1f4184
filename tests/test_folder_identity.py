"""One experiment per output folder (issue 25 item 1): a sweep whose identity differs from the folder's is refused
with one line saying what differs and the fix; more SNR/CBR points, codecs or trials extend the folder (said on
stderr, union grid in config.json); the API returns the rows of the requested grid. Tiny 64 x 64 images, codec
uncoded, PSNR only, one thread."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import lrisc_sim
from lrisc_sim.cli import main
from lrisc_sim.sweep_config import ConfigError

KEY = ["codec", "cbr_target", "snr_db", "trial", "image"]


def _images(d: Path, seed: int, names=("a", "b")) -> Path:
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(d / f"{n}.png")
    return d


@pytest.fixture
def data(tmp_path):
    """Two datasets with the same image ids (a, b) and other pixels."""
    return _images(tmp_path / "d1", 0), _images(tmp_path / "d2", 1)


def sweep(dataset, out, *extra):
    args = ["sweep", "--no-progress", "--metrics", "psnr", "--dataset", str(dataset), "--codec", "uncoded",
            "--snr", "10", "--cbr", "1/16", "--threads", "1", "--out", str(out)]
    # later flags override earlier ones (argparse keeps the last value)
    return args + list(extra)


def one_line_error(capsys, rc, *needles):
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    line = err.splitlines()[-1]
    assert line.startswith("lrisc-sim: error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in line, (n, line)
    return line


def _change_pixels(d1, d2):
    im = np.asarray(Image.open(d1 / "a.png")).copy()
    im[0, 0] = (im[0, 0].astype(int) + 1) % 256
    Image.fromarray(im).save(d1 / "a.png")


# (name, how the second run differs, what the one-line error must say); {d1}/{d2}: the dataset folders
CASES = [
    ("ds_changed", lambda d1, d2: (_change_pixels(d1, d2), sweep(d1, "OUT"))[1],
     ["--out ", "holds another experiment", "image a changed", "choose another output folder"]),
    ("ds_other_folder", lambda d1, d2: sweep(d2, "OUT"),
     ["holds another experiment", "dataset {d1} (2 images) vs {d2} (2 images)", "choose another output folder"]),
    ("limit", lambda d1, d2: sweep(d1, "OUT", "--limit", "1"),
     ["dataset {d1} (2 images) vs {d1} (1 image, limit 1)", "choose another output folder"]),
    ("rb_sidecharge_change", lambda d1, d2: sweep(d1, "OUT", "--side-charge", "capacity"),
     ["side charge fixed vs capacity", "rerun with side charge fixed", "choose another output folder"]),
    ("rb_metrics_change", lambda d1, d2: sweep(d1, "OUT", "--metrics", "psnr,ms_ssim"),
     ["metrics psnr vs psnr,ms_ssim", "rerun with metrics psnr", "--redo uncoded"]),
    ("channel", lambda d1, d2: sweep(d1, "OUT", "--channel", "rayleigh"),
     ["channel awgn vs rayleigh", "choose another output folder"]),
    ("channel_parameter", lambda d1, d2: sweep(d1, "OUT", "--channel", "rician:K=4"),
     ["channel awgn vs rician:K=4"]),
    ("equalizer", lambda d1, d2: sweep(d1, "OUT", "--equalizer", "zf"), ["equalizer mmse vs zf"]),
]


@pytest.mark.parametrize("name, second, needles", CASES, ids=[c[0] for c in CASES])
def test_another_experiment_in_the_folder_is_refused(name, second, needles, data, tmp_path, capsys):
    d1, d2 = data
    out = tmp_path / "out"
    assert main(sweep(d1, out)) == 0
    before = (out / "results.csv").read_bytes()
    args = [str(out) if a == "OUT" else a for a in second(d1, d2)]
    capsys.readouterr()
    line = one_line_error(capsys, main(args), *[n.format(d1=d1, d2=d2) for n in needles])
    assert str(out) in line
    assert (out / "results.csv").read_bytes() == before  # nothing appended, nothing dropped


def test_extending_is_said_and_config_records_the_union_grid(data, tmp_path, capsys):
    d1, _ = data
    out = tmp_path / "out"
    assert main(sweep(d1, out)) == 0
    first = pd.read_csv(out / "results.csv")
    capsys.readouterr()
    assert main(sweep(d1, out, "--snr", "0,10,20", "--codec", "uncoded,softcast", "--trials", "2")) == 0
    err = capsys.readouterr().err
    assert f"lrisc-sim: extending {out}: +2 SNR points, +1 codec (softcast), +1 trial" in err
    assert "resuming (2 of 24 rows already done)" in err  # 2 codecs x 3 SNR x 2 trials x 2 images, 2 done
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["codecs"] == ["uncoded", "softcast"] and cfg["snr_db"] == [0.0, 10.0, 20.0] and cfg["trials"] == 2
    assert cfg["cbr"] == ["1/16"]
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 24 and not df.duplicated(KEY).any()
    pd.testing.assert_frame_equal(df.iloc[:2][KEY + ["psnr"]], first[KEY + ["psnr"]])  # old rows kept as they were
    # a CBR point more: the grid again grows, the older CBR's rows stay
    assert main(sweep(d1, out, "--cbr", "1/8")) == 0
    assert "+1 CBR point" in capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["cbr"] == ["1/16", "1/8"]
    # the same command again (a subset of the grid) extends nothing and recomputes nothing
    assert main(sweep(d1, out)) == 0
    err = capsys.readouterr().err
    assert "lrisc-sim: extending" not in err
    assert "also holds rows of softcast, which this run does not list" in err  # said, not silently merged
    assert len(pd.read_csv(out / "results.csv")) == 26


def test_api_returns_the_requested_grid_and_refuses_another_image_list(data, tmp_path):
    d1, _ = data
    out = tmp_path / "api"
    kw = dict(dataset=d1, out=out, metrics="psnr", progress=False)
    full = lrisc_sim.sweep("uncoded", snr="0,10", cbr="1/16", trials=2, **kw)
    assert len(full) == 2 * 2 * 2  # SNR x trials x images
    part = lrisc_sim.sweep("uncoded", snr="0", cbr="1/16", **kw)  # a subset of the folder's grid: nothing to run
    assert len(part) == 2 and set(part["snr_db"]) == {0.0} and set(part["trial"]) == {0}
    want = full[(full.snr_db == 0) & (full.trial == 0)].sort_values("image")["psnr"].tolist()
    assert part.sort_values("image")["psnr"].tolist() == want
    with pytest.raises(ConfigError) as e:  # the sweep(limit=1, snr="0") after a full sweep
        lrisc_sim.sweep("uncoded", snr="0", cbr="1/16", limit=1, **kw)
    msg = str(e.value)
    assert e.value.field == "out" and "\n" not in msg
    assert f"dataset {d1} (2 images) vs {d1} (1 image, limit 1)" in msg and "choose another output folder" in msg


def test_metrics_change_with_redo_of_every_codec_takes_the_new_identity(data, tmp_path, capsys):
    d1, _ = data
    out = tmp_path / "out"
    assert main(sweep(d1, out)) == 0
    before = pd.read_csv(out / "results.csv").sort_values(KEY)
    assert main(sweep(d1, out, "--metrics", "psnr,ms_ssim", "--redo", "uncoded")) == 0
    assert "every row is redone" in capsys.readouterr().err
    after = pd.read_csv(out / "results.csv").sort_values(KEY)
    assert after["psnr"].tolist() == before["psnr"].tolist()  # the same realizations: the same numbers
    assert json.loads((out / "config.json").read_text())["identity"]["metrics"] == ["psnr", "ms_ssim"]
    assert main(sweep(d1, out, "--metrics", "psnr,ms_ssim")) == 0  # resumes under the new identity


def test_redo_that_does_not_cover_every_codec_keeps_the_identity(data, tmp_path, capsys):
    d1, _ = data
    out = tmp_path / "out"
    assert main(sweep(d1, out, "--codec", "uncoded,softcast")) == 0
    capsys.readouterr()
    one_line_error(capsys, main(sweep(d1, out, "--codec", "uncoded,softcast", "--metrics", "psnr,ms_ssim",
                                      "--redo", "uncoded")), "metrics psnr vs psnr,ms_ssim", "--redo softcast,uncoded")


def test_folder_written_before_identities_is_checked_by_its_keys(data, tmp_path, capsys):
    d1, d2 = data
    out = tmp_path / "out"
    assert main(sweep(d1, out)) == 0
    f = out / "config.json"
    cfg = json.loads(f.read_text())
    for k in ("identity", "provenance", "earlier_runs"):
        del cfg[k]
    f.write_text(json.dumps(cfg))
    capsys.readouterr()
    one_line_error(capsys, main(sweep(d2, out)), f"dataset {d1} vs {d2}")
    assert main(sweep(d1, out)) == 0  # the same keys: resumes, and the identity is recorded from now on
    assert set(json.loads(f.read_text())["identity"]["images"]) == {"a", "b"}


def test_without_config_json_the_seed_column_is_checked(data, tmp_path, capsys):
    d1, _ = data
    out = tmp_path / "out"
    assert main(sweep(d1, out, "--seed", "3")) == 0
    (out / "config.json").unlink()
    capsys.readouterr()
    one_line_error(capsys, main(sweep(d1, out)), "rows of seed 3", "resume with seed 3")
    assert main(sweep(d1, out, "--seed", "3")) == 0


def test_codec_settings_changed_names_redo(data, tmp_path, capsys):
    d1, _ = data
    out = tmp_path / "out"
    assert main(sweep(d1, out, "--codec", "softcast")) == 0
    capsys.readouterr()
    assert main(sweep(d1, out, "--codec", "softcast:chunk=8")) == 0  # another spec is another codec: an extension
    assert "+1 codec (softcast:chunk=8)" in capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    cfg["codec_fingerprints"]["softcast"]["options"] = {"chunk": 4}
    (out / "config.json").write_text(json.dumps(cfg))
    one_line_error(capsys, main(sweep(d1, out, "--codec", "softcast")), "redo softcast")


def test_identity_ignores_metric_order_and_spelling_of_the_same_side_charge(data, tmp_path, capsys):
    d1, _ = data
    out = tmp_path / "out"
    assert main(sweep(d1, out, "--metrics", "psnr,ms_ssim", "--side-charge", "fixed")) == 0
    assert main(sweep(d1, out, "--metrics", "ms_ssim,psnr", "--side-charge", "fixed:1")) == 0


def test_readme_plugin_example_has_its_own_folder():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    cmds = re.findall(r"lrisc-sim sweep [^`\n]*", text)
    plugin = [c for c in cmds if "pixel-repeat" in c]
    assert plugin, "the README's plugin example is gone"

    def out_of(c):
        m = re.search(r"--out (\S+)", c)
        return m.group(1) if m else "runs/sweep"

    others = {out_of(c) for c in cmds if "pixel-repeat" not in c}
    for c in plugin:
        assert out_of(c) not in others, c


def test_run_of_an_experiment_file_follows_the_same_rules(data, tmp_path, capsys):
    d1, _ = data
    f = tmp_path / "e.toml"
    text = (f'dataset = "{d1}"\nmetrics = ["psnr"]\nout = "{tmp_path / "res"}"\n[channel]\nmodel = "awgn"\n'
            '[grid]\nsnr = "10"\ncbr = "1/16"\n[[codecs]]\nspec = "uncoded"\n')
    f.write_text(text)
    assert main(["run", str(f), "--no-progress", "--threads", "1"]) == 0
    f.write_text(text.replace('model = "awgn"', 'model = "rayleigh"'))
    capsys.readouterr()
    one_line_error(capsys, main(["run", str(f), "--no-progress", "--threads", "1"]),
                   f"--out {tmp_path / 'res'}: holds another experiment", "channel awgn vs rayleigh")
    f.write_text(text.replace('snr = "10"', 'snr = "10,20"'))
    assert main(["run", str(f), "--no-progress", "--threads", "1"]) == 0
    assert "+1 SNR point" in capsys.readouterr().err
