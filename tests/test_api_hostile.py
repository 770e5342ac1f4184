"""Hostile input (issue 29, /work/shared/hostile-cases.md): the API's arguments, edited result files, a full disk,
`transmit --redo`, `metrics` on small images. Each case ends in one line that names the input and the fix, or is
accepted as the grammar it is."""

import errno
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import lrisc_sim
from lrisc_sim.cli import main
from lrisc_sim.sweep_config import ConfigError


@pytest.fixture
def one(tmp_path):
    """A folder with one 64 x 64 image."""
    d = tmp_path / "one"
    d.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(d / "a.png")
    return d


def img():
    return torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))


def sw(one, tmp_path, **kw):
    args = dict(codecs="uncoded", snr="10", cbr="1/16", dataset=one, out=tmp_path / "api", metrics="psnr",
                progress=False)
    args.update(kw)
    return lrisc_sim.sweep(**args)


def tx(*a, **kw):
    return lrisc_sim.transmit(*a, **{"codec": "uncoded", "cbr": 1 / 16, "metrics": ("psnr",), "device": "cpu",
                                     **kw})


def sd(x, **kw):
    return lrisc_sim.send("uncoded", x, **{"cbr": 1 / 16, "snr_db": 10.0, **kw})


def one_line(e: BaseException, *needles):
    msg = str(e)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, (n, msg)


# (case, call, the error's field, needles): refused with one line naming the argument and the fix
REFUSED = [
    ("api_sweep_codecs_none", lambda o, t: sw(o, t, codecs=None), "codecs",
     ["codecs:", "a string or a list of strings", "['uncoded', 'softcast']", "got NoneType"]),
    ("api_sweep_codecs_int", lambda o, t: sw(o, t, codecs=5), "codecs", ["codecs:", "got int"]),
    ("api_sweep_dataset_tensor", lambda o, t: sw(o, t, dataset=torch.rand(3, 8, 8)), "dataset",
     ["dataset:", "a folder or an image file", "got Tensor"]),
    ("api_sweep_out_none", lambda o, t: sw(o, t, out=None), "out", ["out:", "an output folder", "got None"]),
    ("api_sweep_cbr_bad_in_list", lambda o, t: sw(o, t, cbr=["1/x"]), "cbr", ["cbr:", "bad CBR '1/x'"]),
    ("api_sweep_snr_none_in_list", lambda o, t: sw(o, t, snr=[None]), "snr", ["snr:", "bad value None"]),
    ("api_transmit_numpy", lambda o, t: tx(np.random.rand(3, 64, 64).astype(np.float32)), "image",
     ["image:", "a torch tensor 3 x H x W in [0, 1]", "got ndarray", "torch.from_numpy"]),
    ("api_transmit_outside01", lambda o, t: tx(img() * 10 - 5), "image",
     ["image:", "outside [0, 1]", "scale the images to [0, 1]"]),
    ("api_transmit_255scale", lambda o, t: tx(img() * 255), "image",
     ["image:", "outside [0, 1]", "divide 0..255 images by 255"]),
    ("api_transmit_codec_obj", lambda o, t: tx(img(), codec=object()), "codec",
     ["codec:", "a codec spec string", "lrisc_sim.Codec", "got object"]),
    ("api_send_empty", lambda o, t: sd(torch.rand(0, 3, 64, 64)), "x", ["x:", "holds no pixels", "at least one"]),
    ("api_send_uint8", lambda o, t: sd(torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8)), "x",
     ["x:", "torch.uint8", "x.float() / 255"]),
    ("api_send_nan", lambda o, t: sd(torch.full((1, 3, 64, 64), float("nan"))), "x", ["x:", "NaN"]),
    ("api_send_cbr_neg", lambda o, t: sd(img(), cbr=-0.5), "cbr", ["cbr:", "-0.5", "must lie in (0, 1]"]),
    ("api_send_cbr_5", lambda o, t: sd(img(), cbr=5.0), "cbr", ["cbr:", "5.0", "must lie in (0, 1]"]),
    ("api_send_cbr_two", lambda o, t: sd(img(), cbr="1/16,1/8"), "cbr", ["cbr 1/16,1/8", "give one CBR"]),
    ("api_send_snr_nan", lambda o, t: sd(img(), snr_db=float("nan")), "snr_db",
     ["snr_db:", "nan", "finite, within -100..100 dB"]),
    ("api_send_ids_dup", lambda o, t: sd(torch.rand(2, 3, 64, 64), ids=["a", "a"]), "ids",
     ["ids a:", "its own id"]),
    ("api_send_numpy", lambda o, t: sd(np.random.rand(1, 3, 64, 64)), "x",
     ["x:", "must be a torch tensor B x 3 x H x W in [0, 1]", "got ndarray"]),
    ("api_send_list", lambda o, t: sd([[[0.5]]]), "x", ["x:", "must be a torch tensor B x 3 x H x W in [0, 1]",
                                                          "got list"]),
    ("api_send_channel_obj", lambda o, t: sd(img(), channel=3), "channel", ["channel:", "got int"]),
]


@pytest.mark.parametrize("case, call, field, needles", REFUSED, ids=[c[0] for c in REFUSED])
def test_bad_api_arguments_are_one_line_errors(case, call, field, needles, one, tmp_path):
    with pytest.raises(ConfigError) as e:
        call(one, tmp_path)
    assert e.value.field == field
    one_line(e.value, *needles)
    assert not (tmp_path / "api").exists()  # refused before anything was written


def test_send_seed_outside_32_bits_is_refused():
    with pytest.raises(ValueError, match="seed"):
        sd(img(), seed=-1)


def test_grammar_strings_are_accepted_where_lists_are_expected(one, tmp_path):
    df = sw(one, tmp_path, cbr=["1/16"], snr=["0", 10], metrics="psnr")  # api_sweep_cbr_strlist, api_sweep_metrics_str
    assert sorted(df["snr_db"]) == [0.0, 10.0] and set(df["cbr_target"]) == {1 / 16}
    again = sw(one, tmp_path, cbr=["1/16"], snr=["0", 10], redo="uncoded")  # api_sweep_redo_str: one codec
    assert again["psnr"].tolist() == df["psnr"].tolist()
    t = sd(img(), cbr="1/16")  # api_send_cbr_str: the grammar, one value
    t2 = sd(img(), cbr=1 / 16)
    assert torch.equal(t.output, t2.output) and torch.equal(t.cbr["cbr_total"], t2.cbr["cbr_total"])


def test_valid_inputs_still_pass():
    x = torch.full((1, 3, 16, 16), 0.5)
    assert bool(sd(x, cbr=1 / 2, snr_db=20.0).ok[0])
    assert bool(sd(torch.zeros(3, 16, 16), cbr=1 / 2, snr_db=20).ok[0])  # 3 x H x W, integer SNR, value 0
    assert bool(sd(torch.ones(1, 3, 16, 16, dtype=torch.float64), cbr=1 / 2, snr_db=20.0).ok[0])


# --- results.csv and config.json edited by hand (readback) ------------------------------------------------------

def cli_sweep(one, out, *extra):
    return ["sweep", "--no-progress", "--metrics", "psnr", "--dataset", str(one), "--codec", "uncoded",
            "--snr", "0,10", "--cbr", "1/16", "--threads", "1", "--out", str(out), *extra]


def cli_error(capsys, rc, *needles):
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    line = err.splitlines()[-1]
    assert line.startswith("lrisc-sim: error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in line, (n, line)
    return line


def _edit_csv(path, fn):
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(fn(lines)))


def _cell(line: str, col: str, value: str) -> str:
    from lrisc_sim.results import COLUMNS

    import csv
    import io

    row = next(csv.reader([line]))
    row[COLUMNS.index(col)] = value
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(row)
    return buf.getvalue()


READBACK = [
    ("rb_nan_snr", lambda ls: [ls[0], _cell(ls[1], "snr_db", "nan")] + ls[2:],
     ["results.csv: line 2 has snr_db 'nan', not a finite number", "fix or delete that line"]),
    ("rb_dup_rows", lambda ls: ls + [ls[1]],
     ["results.csv: line 4 repeats the point of line 2 (codec uncoded, CBR 1/16, SNR 0 dB", "image a)",
      "delete one of the two lines"]),
    ("rb_ok_maybe", lambda ls: [ls[0], _cell(ls[1], "ok", "maybe")] + ls[2:],
     ["results.csv: line 2 has ok 'maybe'", "ok must be True or False", "fix or delete that line"]),
    ("rb_cbr_zero", lambda ls: [ls[0], _cell(ls[1], "cbr_target", "0")] + ls[2:],
     ["line 2 has cbr_target '0', outside (0, 1]"]),
    ("rb_trial_text", lambda ls: [ls[0], _cell(ls[1], "trial", "x")] + ls[2:], ["line 2 has trial 'x'"]),
]


@pytest.mark.parametrize("case, edit, needles", READBACK, ids=[c[0] for c in READBACK])
def test_edited_rows_are_refused_with_file_and_line(case, edit, needles, one, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(cli_sweep(one, out)) == 0
    _edit_csv(out / "results.csv", edit)
    before = (out / "results.csv").read_bytes()
    capsys.readouterr()
    cli_error(capsys, main(cli_sweep(one, out)), str(out / "results.csv"), *needles)
    assert (out / "results.csv").read_bytes() == before  # left as it was


def test_load_refuses_ok_other_than_true_false(one, tmp_path):
    from lrisc_sim.results import load

    out = tmp_path / "out"
    assert main(cli_sweep(one, out)) == 0
    _edit_csv(out / "results.csv", lambda ls: [ls[0], _cell(ls[1], "ok", "maybe")] + ls[2:])
    with pytest.raises(ValueError, match=r"row 1 has ok 'maybe'; ok must be True or False"):
        load(out / "results.csv")


def test_blank_line_then_redo(one, tmp_path, capsys):  # rb_blank_redo
    out = tmp_path / "out"
    assert main(cli_sweep(one, out)) == 0
    ref = pd.read_csv(out / "results.csv")
    _edit_csv(out / "results.csv", lambda ls: ls[:2] + ["\n"] + ls[2:])
    assert main(cli_sweep(one, out, "--redo", "uncoded")) == 0
    assert "removed 2 rows of uncoded" in capsys.readouterr().err
    after = pd.read_csv(out / "results.csv")
    assert after["psnr"].tolist() == ref["psnr"].tolist()


def test_bom_is_accepted(one, tmp_path):  # rb_bom
    out = tmp_path / "out"
    assert main(cli_sweep(one, out)) == 0
    ref = (out / "results.csv").read_bytes()
    (out / "results.csv").write_bytes(b"\xef\xbb\xbf" + ref.replace(b"\n", b"\r\n"))  # as a spreadsheet saves it
    assert main(cli_sweep(one, out, "--snr", "0,10,20")) == 0
    df = pd.read_csv(out / "results.csv")
    assert df.columns[0] == "codec" and len(df) == 3 and not df.duplicated(["snr_db", "image"]).any()


@pytest.mark.parametrize("value", ['"x"', "[1, 2]", '{"uncoded": "x"}'])
def test_config_json_of_the_wrong_shape(value, one, tmp_path, capsys):  # rb_config_fp_str
    out = tmp_path / "out"
    assert main(cli_sweep(one, out)) == 0
    f = out / "config.json"
    cfg = json.loads(f.read_text())
    cfg["codec_fingerprints"] = json.loads(value)
    f.write_text(json.dumps(cfg))
    capsys.readouterr()
    cli_error(capsys, main(cli_sweep(one, out)), f"{f} cannot be read", "codec_fingerprints",
              "delete it to resume from results.csv")


def test_summary_that_is_a_folder_is_refused_before_any_work(one, tmp_path, capsys):  # rb_summary_dir
    out = tmp_path / "out"
    (out / "summary.csv").mkdir(parents=True)
    cli_error(capsys, main(cli_sweep(one, out)), f"{out / 'summary.csv'} is a folder", "remove or rename it")
    assert not (out / "results.csv").exists() or len(pd.read_csv(out / "results.csv")) == 0


def test_disk_full_names_the_folder_and_keeps_the_rows(one, tmp_path, capsys, monkeypatch):  # out_full
    from lrisc_sim.results import ResultsTable

    orig = ResultsTable.append
    calls = {"n": 0}

    def full(self, rows):
        calls["n"] += 1
        if calls["n"] == 2:
            with self.path.open("a") as f:
                f.write("uncoded,0.06")  # a torn line, as a write cut short by ENOSPC leaves
            raise OSError(errno.ENOSPC, "No space left on device")
        return orig(self, rows)

    monkeypatch.setattr(ResultsTable, "append", full)
    out = tmp_path / "out"
    cli_error(capsys, main(cli_sweep(one, out)),
              f"{out}: no space left on device; the 1 rows so far are kept in {out / 'results.csv'}; free space and "
              "rerun the same command to resume")
    monkeypatch.setattr(ResultsTable, "append", orig)
    assert main(cli_sweep(one, out)) == 0
    assert len(pd.read_csv(out / "results.csv")) == 2


# --- commands -----------------------------------------------------------------------------------------------------

def test_transmit_has_no_redo(tmp_path, capsys):  # redo_transmit
    with pytest.raises(SystemExit):
        main(["transmit", "x.png", "--redo", "uncoded"])
    assert "unrecognized arguments: --redo" in capsys.readouterr().err


@pytest.mark.parametrize("side", [16, 1])  # m_16, m_1x1
def test_metrics_of_small_images(side, tmp_path, capsys):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(a)
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(b)
    cli_error(capsys, main(["metrics", str(a), str(b)]), f"{a} ({side}x{side} px)", "LPIPS needs",
              "--metrics psnr,ms_ssim")
    assert main(["metrics", str(a), str(b), "--metrics", "psnr"]) == 0
    out = capsys.readouterr().out
    x = np.asarray(Image.open(a), dtype=float) / 255
    y = np.asarray(Image.open(b), dtype=float) / 255
    want = 10 * np.log10(1 / np.mean((x - y) ** 2))  # hand computation
    assert out.startswith("PSNR (dB)") and abs(float(out.split()[-1]) - want) < 1e-3 and "LPIPS" not in out
    cli_error(capsys, main(["metrics", str(a), str(b), "--metrics", "psnr,foo"]), "--metrics psnr,foo",
              "unknown metric(s) foo")
