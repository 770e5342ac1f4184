"""The LRISC Kodak evaluation: the card's ``kodak`` section and the README block generated from it."""
from __future__ import annotations

import json

import torch

from lrisc_sim.lrisc.config import preset
from lrisc_sim.lrisc.evaluate import README_BEGIN, README_END, evaluate
from lrisc_sim.lrisc.model import LRISC


def test_evaluate_writes_card_and_readme_block(tmp_path, tiny_folder, one_thread):
    torch.manual_seed(0)
    ckpt = tmp_path / "ship" / "lrisc_tiny.safetensors"
    ckpt.parent.mkdir()
    LRISC(preset("tiny")).save(ckpt, card={"model": "LRISC tiny"})
    readme = ckpt.parent / "README.md"
    readme.write_text(f"# Title\n\nbefore\n\n{README_BEGIN}\nstale table\n{README_END}\n\nafter\n")
    res = evaluate(ckpt, str(tiny_folder), [5.0, 15.0], out=tmp_path / "eval", limit=2, threads=1)
    card = json.loads(ckpt.with_suffix(".json").read_text())
    assert card["model"] == "LRISC tiny" and card["kodak"] == json.loads(json.dumps(res))
    lr, dj = res["codecs"]["lrisc"], res["codecs"]["deepjscc"]
    assert set(lr) == set(dj) == {"5", "15"} and lr["5"]["n"] == 2
    assert lr["5"]["cbr_total"] <= 1 / 48 + 1e-9  # side information included, never above the target
    red = res["lpips_reduction_vs_deepjscc_pct"]
    assert abs(red["mean"] - sum(100 * (1 - lr[s]["lpips"] / dj[s]["lpips"]) for s in lr) / 2) < 0.02
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n\n") and text.endswith(f"{README_END}\n\nafter\n")
    assert "stale table" not in text
    row = next(ln for ln in text.splitlines() if ln.startswith("| 15 |")).split("|")
    assert row[2].strip() == f"{lr['15']['psnr']:.2f}" and row[3].strip() == f"{dj['15']['psnr']:.2f}"
    assert row[-2].strip() == f"{100 * (lr['15']['lpips'] / dj['15']['lpips'] - 1):+.1f}%"
    assert f"LPIPS is {red['mean']:.1f}% below DeepJSCC's" in text


def test_retrained_weights_need_redo_and_get_a_one_line_error(tmp_path, tiny_folder, one_thread, capsys):
    """Rows made by other weights are never mixed in: the CLI says to --redo, and --redo recomputes them."""
    from lrisc_sim.lrisc.evaluate import main

    ckpt = tmp_path / "lrisc_tiny.safetensors"
    torch.manual_seed(0)
    LRISC(preset("tiny")).save(ckpt)
    argv = ["--checkpoint", str(ckpt), "--data", str(tiny_folder), "--snr", "10", "--limit", "1", "--no-compare",
            "--out", str(tmp_path / "eval")]
    assert main(argv) == 0
    first = json.loads(ckpt.with_suffix(".json").read_text())["kodak"]["codecs"]["lrisc"]["10"]
    torch.manual_seed(1)
    LRISC(preset("tiny")).save(ckpt)  # "retrained"
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "redo lrisc" in err and "Traceback" not in err
    assert main(argv + ["--redo", "lrisc"]) == 0
    again = json.loads(ckpt.with_suffix(".json").read_text())["kodak"]["codecs"]["lrisc"]["10"]
    assert again["psnr"] != first["psnr"]


def test_unknown_redo_codec_is_refused(tmp_path, tiny_folder, capsys):
    from lrisc_sim.lrisc.evaluate import main

    assert main(["--data", str(tiny_folder), "--redo", "deepjsc", "--out", str(tmp_path / "e"), "--no-card"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--redo deepjsc: not a codec of this evaluation" in err


def test_each_shipped_point_has_its_own_readme_block(tmp_path):
    """A non-default point's Kodak table (the distortion point) goes into its own block, never over the default
    model's (the perceptual point)."""
    from lrisc_sim.lrisc.evaluate import markers, update_readme

    readme = tmp_path / "README.md"
    b2, e2 = markers("lrisc_small")
    assert (b2, e2) != (README_BEGIN, README_END)
    readme.write_text(f"{README_BEGIN}\ndefault\n{README_END}\n{b2}\nold\n{e2}\n")
    assert update_readme(readme, ["new"], "lrisc_small")
    assert readme.read_text() == f"{README_BEGIN}\ndefault\n{README_END}\n{b2}\nnew\n{e2}\n"
    assert markers("lrisc_small_perceptual") == (README_BEGIN, README_END)
