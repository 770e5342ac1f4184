"""Plots for papers: every format written, every codec in the legend (names starting with '_' too), no colour
repeated, labels from the experiment file, the CLI and the API, CI bands inside the metric's range, a
paired-difference panel, and bad requests as one-line errors."""

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from lrisc_sim.cli import main  # noqa: E402
from lrisc_sim.plots import curve_styles, figures, plot_folder  # noqa: E402
from lrisc_sim.results import COLUMNS, load, summarize  # noqa: E402

CODECS = ["__main__:X", "_hidden"] + [f"codec{i}" for i in range(10)]  # 12 codecs


def _results(folder, codecs=CODECS, snrs=(0.0, 10.0), images=("a", "b")):
    rows = []
    rng = np.random.default_rng(0)
    for k, c in enumerate(codecs):
        for snr in snrs:
            for img in images:
                rows.append({"codec": c, "cbr_target": 0.0625, "cbr_payload": 0.0625, "cbr_side": 0.0,
                             "cbr_total": 0.0625, "snr_db": snr, "channel": "awgn", "trial": 0, "image": img,
                             "psnr": 20 + k + snr / 2 + rng.normal(), "ms_ssim": min(1.0, 0.97 + 0.03 * rng.random()),
                             "lpips": 0.05 * rng.random(), "seconds": 0.1, "ok": True, "seed": 0,
                             "side_charge": "side info: 1 bit per complex channel use, error-free", "info": ""})
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=COLUMNS).to_csv(folder / "results.csv", index=False)
    return folder


def _legend(fig) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


def test_every_format_is_written(tmp_path):
    out = _results(tmp_path / "run")
    paths = plot_folder(out, formats="png,pdf,svg")
    assert sorted(p.name for p in paths) == ["vs_snr.pdf", "vs_snr.png", "vs_snr.svg"]
    magic = {".png": b"\x89PNG", ".pdf": b"%PDF", ".svg": b"<?xml"}
    for p in paths:
        assert p.read_bytes().startswith(magic[p.suffix])
    # SVG keeps its text as text: every codec, '_' names included, is in the legend
    svg = (out / "vs_snr.svg").read_text()
    assert all(c in svg for c in CODECS)


def test_legend_keeps_underscore_names_and_colours_are_distinct(tmp_path):
    out = _results(tmp_path / "run")
    s = summarize(load(out / "results.csv"))
    [(stem, fig)] = figures(s, metrics=("psnr", "ms_ssim"))
    assert stem == "vs_snr"
    assert sorted(_legend(fig)) == sorted(CODECS)  # matplotlib would drop '__main__:X' and '_hidden'
    for ax in fig.axes:
        colors = [line.get_color() for line in ax.get_lines()]
        assert len(colors) == 12 and len(set(colors)) == 12
    for n in (3, 12, 20, 31):
        st = curve_styles(n)
        assert len({x["color"] for x in st}) == n
        assert len({(x["color"], x["linestyle"], x["marker"]) for x in st}) == n


def test_bands_stay_inside_the_metric_range(tmp_path):
    out = _results(tmp_path / "run", codecs=["a", "b"])
    s = summarize(load(out / "results.csv"))
    assert (s["ms_ssim_hi"] <= 1.0).all() and (s["lpips_lo"] >= 0.0).all()
    [(_, fig)] = figures(s, metrics=("ms_ssim", "lpips"))
    ms, lp = fig.axes[:2]
    top = max(p.get_datalim(ms.transData).y1 for p in ms.collections)
    bottom = min(p.get_datalim(lp.transData).y0 for p in lp.collections)
    assert top <= 1.0 + 1e-9 and bottom >= -1e-9


def test_labels_from_the_experiment_file_the_cli_and_the_api(tmp_path, capsys):
    out = _results(tmp_path / "run", codecs=["lrisc", "deepjscc", "__main__:X"])
    (out / "experiment.json").write_text(json.dumps({"title": "Fig. 4", "labels": {"lrisc": "LRISC",
                                                                                   "deepjscc": "DeepJSCC"}}))
    s = summarize(load(out / "results.csv"))
    exp = json.loads((out / "experiment.json").read_text())["labels"]
    [(_, fig)] = figures(s, labels={**exp, "__main__:X": "Mine"})
    assert _legend(fig) == ["LRISC", "DeepJSCC", "Mine"]  # the experiment's order first
    assert main(["plot", str(out), "--label", "deepjscc=DeepJSCC (Bourtsoulatze)", "--format", "svg"]) == 0
    svg = (out / "vs_snr.svg").read_text()
    assert "DeepJSCC (Bourtsoulatze)" in svg and "LRISC" in svg and "__main__:X" in svg and "Fig. 4" in svg
    import lrisc_sim

    paths = lrisc_sim.plot(out, labels={"lrisc": "Ours"}, formats=["svg"])
    assert paths == [out / "vs_snr.svg"] and "Ours" in paths[0].read_text()


def test_difference_panel(tmp_path):
    out = _results(tmp_path / "run", codecs=["ref", "b", "c"])
    from lrisc_sim.paired import compare_frame

    df = load(out / "results.csv")
    d = compare_frame(df, "ref", ["psnr"])
    [(_, fig)] = figures(summarize(df), metrics=("psnr",), diff=d)
    assert len(fig.axes) == 2  # the metric, and its difference to ref below
    lower = fig.axes[1]
    assert "ref" in lower.get_ylabel()
    want = d[(d.kind == "point") & (d.codec == "b")].sort_values("snr_db")["diff"].to_numpy()
    got = [line.get_ydata() for line in lower.get_lines() if len(line.get_xdata()) == 2 and
           np.allclose(line.get_xdata(), [0, 10])]
    assert any(np.allclose(g, want) for g in got)
    paths = plot_folder(out, diff="ref", formats="png")
    assert paths[0].is_file()


@pytest.mark.parametrize("args, words", [
    (["--format", "jpg"], "--format jpg: choose from png, pdf, svg"),
    (["--label", "lrisc"], "use CODEC=TEXT"),
    (["--label", "nope=Name"], "nope has no rows in"),
    (["--diff", "nope"], "--diff nope: nope has no rows"),
    (["--metrics", "psnr,foo"], "--metrics foo: not a metric computed"),
])
def test_bad_requests_are_one_line_errors(tmp_path, capsys, args, words):
    out = _results(tmp_path / "run", codecs=["lrisc", "b"])
    assert main(["plot", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lrisc-sim: error: ") and "\n" not in err and words in err
    assert not (out / "vs_snr.png").exists()


def test_missing_folder(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "none")]) == 2
    assert "has no results.csv" in capsys.readouterr().err
