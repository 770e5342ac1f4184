"""Codec options (issue 25 item 6, issue 29 item 2): declared once per codec (``lrisc_sim.codec.Option``), listed by
``lrisc-sim codecs --options``, written in specs (``lrisc:steps=8``) or as experiment-file keys, and checked
centrally before a codec is built: a misspelt, mistyped or out-of-range option is a one-line error naming it;
duplicate codecs and grid points are refused; an explicit checkpoint the sweep would not use is an error."""

from __future__ import annotations

import inspect
import json
import struct
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from lrisc_sim.cli import main
from lrisc_sim.codec import Option, OptionError, parse_options

ROOT = Path(__file__).resolve().parents[1]
DJ16 = ROOT / "lrisc_sim" / "checkpoints" / "deepjscc" / "deepjscc_cbr1-16_snr10.safetensors"


def one_line_error(capsys, rc: int, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("lrisc-sim: error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)
    return err


@pytest.fixture
def image_dir(tmp_path) -> Path:
    from lrisc_sim.transmission import save_image

    d = tmp_path / "imgs"
    d.mkdir()
    save_image(torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0)), d / "a.png")
    return d


def sweep_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["sweep", "--no-progress", "--metrics", "psnr", "--dataset", str(data), "--codec", "uncoded", "--snr",
            "10", "--cbr", "1/16", "--out", str(out), "--threads", "1", *extra]


# --------------------------------------------------------------- the Option contract

STEPS = Option("steps", "int", None, "steps", low=1, high=1000)
OCT = Option("oct", "float", 24.0, "octaves", low=0.0, high=64.0, low_open=True)
FLAG = Option("flag", "bool", True, "a flag")
EST = Option("est", "str", "llse", "estimator", choices=("llse", "zf"))

PARSE = [  # (option, raw value, typed value or None for an error)
    (STEPS, "8", 8), (STEPS, 8, 8), (STEPS, 8.0, 8), (STEPS, "1e3", 1000), (STEPS, "1", 1), (STEPS, "1000", 1000),
    (STEPS, "0", None), (STEPS, "-1", None), (STEPS, "1001", None), (STEPS, "many", None), (STEPS, 2.5, None),
    (STEPS, True, None), (STEPS, "nan", None), (STEPS, [8], None),
    (OCT, "24", 24.0), (OCT, 64, 64.0), (OCT, "1e-9", 1e-9), (OCT, "0", None), (OCT, "-24", None),
    (OCT, "nan", None), (OCT, "inf", None), (OCT, 65, None),
    (FLAG, "false", False), (FLAG, True, True), (FLAG, "1", True), (FLAG, "maybe", None), (FLAG, 2, None),
    (EST, "zf", "zf"), (EST, " llse ", "llse"), (EST, "ZF", None), (EST, 3, None),
]


@pytest.mark.parametrize("opt,raw,want", PARSE)
def test_option_parse_table(opt, raw, want):
    if want is None:
        with pytest.raises(OptionError) as e:
            opt.parse(raw, "c")
        assert e.value.option == opt.name and f"{opt.name} must be {opt.rule()}, got {raw!r}" in str(e.value)
    else:
        got = opt.parse(raw, "c")
        assert got == want and type(got) is type(want)


def test_rules_read_as_the_ranges():
    assert STEPS.rule() == "an integer in [1, 1000]"
    assert OCT.rule() == "a finite number in (0, 64]"
    assert EST.rule() == "one of llse, zf"
    with pytest.raises(OptionError, match=r"'stpes' is not an option of c \(its options: steps, oct"):
        parse_options("c", (STEPS, OCT), {"stpes": 2})


def test_declared_defaults_are_the_constructors():
    """The defaults listed are those used (rows unchanged): every declared option of the analog codecs has the
    default of the constructor parameter of the same name."""
    from baselines.analog import Uncoded
    from baselines.softcast import SoftCast

    for cls in (Uncoded, SoftCast):
        params = inspect.signature(cls.__init__).parameters
        for o in cls.options:
            assert params[o.name].default == o.default, (cls.__name__, o.name)


def test_default_options_written_out_give_identical_symbols():
    from lrisc_sim.codec import Context
    from lrisc_sim.registry import make_codec

    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    ctx = Context.of(x)
    for plain, spelled in (("softcast", "softcast:chunk=16,var_bits=8,var_octaves=24,estimator=llse"),
                           ("uncoded", "uncoded:estimator=llse,skip_fraction=0.0625,upsample=bicubic")):
        a, b = make_codec(plain).encode(x, 1 / 8, ctx), make_codec(spelled).encode(x, 1 / 8, ctx)
        assert torch.equal(a.symbols, b.symbols) and torch.equal(a.side_bits, b.side_bits)


# --------------------------------------------------------------- the spec grammar

GRAMMAR = [  # (spec, name, arg, options)
    ("lrisc", "lrisc", None, {}),
    ("lrisc:steps=8", "lrisc", None, {"steps": "8"}),
    ("bpg-ldpc:16qam-1/2", "bpg-ldpc", "16qam-1/2", {}),
    ("bpg-ldpc:16qam-1/2:source=hevc,num_iter=30", "bpg-ldpc", "16qam-1/2", {"source": "hevc", "num_iter": "30"}),
    ("bpg-ldpc:mcs=qpsk-1/2,16qam-1/2", "bpg-ldpc", None, {"mcs": "qpsk-1/2,16qam-1/2"}),
    ("deepjscc:0:20", "deepjscc", "0:20", {}),
    ("softcast:32", "softcast", "32", {}),
    ("lrisc:/tmp/a=b.safetensors", "lrisc", "/tmp/a=b.safetensors", {}),
    ("baselines.analog:make_uncoded:zf", "baselines.analog:make_uncoded", "zf", {}),
    ("baselines.analog:Uncoded:upsample=bilinear", "baselines.analog:Uncoded", None, {"upsample": "bilinear"}),
]


@pytest.mark.parametrize("spec,name,arg,options", GRAMMAR)
def test_spec_grammar(spec, name, arg, options):
    from lrisc_sim.registry import parse_spec

    p = parse_spec(spec)
    assert (p.name, p.arg, p.options) == (name, arg, options)


@pytest.mark.parametrize("text,specs", [
    ("uncoded,softcast", ["uncoded", "softcast"]),
    ("softcast:chunk=8,var_bits=16,uncoded", ["softcast:chunk=8,var_bits=16", "uncoded"]),
    ("bpg-ldpc:mcs=qpsk-1/2,16qam-1/2,lrisc:steps=8", ["bpg-ldpc:mcs=qpsk-1/2,16qam-1/2", "lrisc:steps=8"]),
    ("lrisc,deepjscc,bpg-ldpc:qpsk-1/2", ["lrisc", "deepjscc", "bpg-ldpc:qpsk-1/2"]),
])
def test_codec_lists_keep_option_commas(text, specs):
    from lrisc_sim.registry import split_codec_list

    assert split_codec_list(text) == specs


def test_spec_options_reach_the_codec():
    from lrisc_sim.registry import make_codec

    c = make_codec("softcast:chunk=8,var_bits=16", device="cpu")
    assert (c.chunk, c.var_bits, c.var_octaves) == (8, 16, 24.0)
    assert make_codec("uncoded:zf").estimator == "zf"
    with pytest.raises(OptionError, match="given both in the spec and as a key"):
        make_codec("softcast:chunk=8", chunk=8)
    with pytest.raises(OptionError, match="given twice"):
        make_codec("softcast:chunk=8,chunk=9")


# --------------------------------------------------------------- one-line errors from the CLI

CLI_CASES = [  # (extra flags, needles)
    (["--codec", "lrisc:stpes=2"], ["--codec lrisc:stpes=2", "'stpes' is not an option of lrisc",
                                     "checkpoint, point, steps, sampler, noise, seed, coding, rate_block"]),
    (["--codec", "lrisc:steps=-1"], ["--codec lrisc:steps=-1", "steps must be an integer in [1, 1000], got '-1'"]),
    (["--codec", "lrisc:steps=many"], ["steps must be an integer in [1, 1000], got 'many'"]),
    (["--codec", "lrisc:seed=abc"], ["seed must be an integer in [0, 9223372036854775807], got 'abc'"]),
    (["--codec", "softcast:var_bits=0"], ["var_bits must be an integer in [1, 24], got '0'"]),
    (["--codec", "softcast:var_bits=-3"], ["var_bits must be an integer in [1, 24], got '-3'"]),
    (["--codec", "softcast:var_bits=100000"], ["var_bits must be an integer in [1, 24], got '100000'"]),
    (["--codec", "softcast:var_octaves=nan"], ["var_octaves must be a finite number in (0, 64], got 'nan'"]),
    (["--codec", "softcast:var_octaves=-24"], ["var_octaves must be a finite number in (0, 64], got '-24'"]),
    (["--codec", "uncoded:seed=3"], ["'seed' is not an option of uncoded"]),
    (["--codec", "bpg-ldpc:16qam-1/2:num_iter=0"], ["num_iter must be an integer in [1, 1000], got '0'"]),
    (["--codec", "bpg-capacity:mcs=qpsk-1/2"], ["'mcs' is not an option of bpg-capacity"]),
    (["--codec", "uncoded,uncoded"], ["--codec uncoded", "given twice"]),
    (["--codec", "lrisc:steps=4,seed=1,lrisc:seed=1,steps=4"], ["given twice"]),
    (["--cbr", "1/48,0.020833333333"], ["--cbr", "0.020833333333 and 1/48 are the same point (equal within 1e-09)"]),
    (["--codec", "deepjscc", "--checkpoint", f"deepjscc={DJ16}", "--cbr", "1/48"],
     ["--checkpoint", "is for CBR 1/16, but the sweep runs CBR 1/48"]),
    (["--codec", "deepjscc", "--checkpoint", f"deepjscc={DJ16}", "--cbr", "1/16,1/48"],
     ["is for CBR 1/16, but the sweep runs CBR 1/16, 1/48"]),
]


@pytest.mark.parametrize("extra,needles", CLI_CASES)
def test_cli_option_errors(extra, needles, image_dir, tmp_path, capsys):
    rc = main(sweep_args(image_dir, tmp_path / "o", *extra))
    one_line_error(capsys, rc, *needles)
    assert not (tmp_path / "o").exists()


def test_api_duplicates_and_checkpoints(image_dir, tmp_path):
    import lrisc_sim
    from lrisc_sim.sweep_config import ConfigError

    kw = dict(dataset=str(image_dir), metrics="psnr", out=tmp_path / "o", progress=False, device="cpu")
    with pytest.raises(ConfigError, match=r"10 and 10.0000000001 dB are the same point"):
        lrisc_sim.sweep("uncoded", snr=[10, 10.0000000001], cbr="1/16", **kw)
    with pytest.raises(ConfigError, match="checkpoints deepjscc=.*deepjscc is not a codec of this sweep"):
        lrisc_sim.sweep("uncoded", snr="10", cbr="1/16", checkpoints={"deepjscc": str(DJ16)}, **kw)
    with pytest.raises(ConfigError, match="checkpoint file /nonexistent.safetensors of lrisc not found"):
        lrisc_sim.sweep("lrisc", snr="10", cbr="1/16", checkpoints={"lrisc": "/nonexistent.safetensors"}, **kw)
    with pytest.raises(ConfigError, match="is for CBR 1/16, but the sweep runs CBR 1/48"):
        lrisc_sim.sweep("deepjscc", snr="10", cbr="1/48", checkpoints={"deepjscc": str(DJ16)}, **kw)
    assert not (tmp_path / "o").exists()


def test_codecs_options_listing(capsys):
    assert main(["codecs", "--options", "lrisc"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("lrisc[:ARG]") and "steps" in out and "an integer in [1, 1000]" in out
    assert main(["codecs", "--options"]) == 0
    out = capsys.readouterr().out
    listed: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line.startswith("  "):
            listed[name].append(line.split()[0])
        else:
            name = line.split("[")[0].split()[0]
            listed[name] = []
    assert listed["uncoded"] == ["estimator", "skip_fraction", "upsample"]
    assert listed["softcast"] == ["chunk", "var_bits", "var_octaves", "estimator"]
    assert listed["deepjscc"] == ["snr", "checkpoint", "checkpoint_dir"]
    assert listed["lrisc"] == ["checkpoint", "point", "steps", "sampler", "noise", "seed", "coding", "rate_block"]
    assert "num_iter" in listed["bpg-ldpc"] and "num_iter" not in listed["bpg-capacity"]
    assert listed["jpeg2000-ldpc"] == listed["bpg-ldpc"] and listed["jpeg2000-capacity"] == listed["bpg-capacity"]
    one_line_error(capsys, main(["codecs", "--options", "nosuch"]), "unknown codec 'nosuch'")


# --------------------------------------------------------------- experiment files

TOML_CASES = [  # (file text after the grid, needles)
    ('[[codecs]]\nspec = "uncoded"\ndevice = "cuda"\n', ["key 'codecs[0].device'", "'device' is not a codec option"]),
    ('[[codecs]]\nspec = "lrisc"\nsteps = -1\n', ["key 'codecs[0].steps'", "steps must be an integer in [1, 1000]"]),
    ('[[codecs]]\nspec = "lrisc"\nsteps = "many"\n', ["key 'codecs[0].steps'", "got 'many'"]),
    ('[[codecs]]\nspec = "lrisc"\nseed = "abc"\n', ["key 'codecs[0].seed'", "got 'abc'"]),
    ('[[codecs]]\nspec = "lrisc"\nstpes = 2\n', ["key 'codecs[0].stpes'", "its options: checkpoint, point, steps"]),
    ('[[codecs]]\nspec = "lrisc:stpes=2"\n', ["key 'codecs[0].spec'", "'stpes' is not an option"]),
    ('[[codecs]]\nspec = "softcast"\nvar_octaves = -24.0\n', ["key 'codecs[0].var_octaves'", "(0, 64]"]),
    ('[[codecs]]\nspec = "uncoded"\nlabel = "a"\n[[codecs]]\nspec = "uncoded"\nestimator = "zf"\n',
     ["key 'codecs[1].spec'", "'uncoded' is also codecs[0]'s spec"]),
    ('[[codecs]]\nspec = "uncoded:zf"\n[[codecs]]\nspec = "uncoded:estimator=llse"\n', []),
    ('[visual]\nimage = "a"\n[[codecs]]\nspec = "uncoded"\n', ["table [visual] is not used by kind = 'sweep'"]),
]


@pytest.mark.parametrize("body,needles", TOML_CASES)
def test_experiment_file_options(body, needles, tmp_path):
    from lrisc_sim.experiment import ExperimentError, load_experiment

    exp = tmp_path / "e.toml"
    exp.write_text('[grid]\nsnr = "10"\ncbr = "1/16"\n' + body)
    if not needles:
        load_experiment(exp)
        return
    with pytest.raises(ExperimentError) as e:
        load_experiment(exp)
    msg = str(e.value)
    assert msg.startswith(f"{exp}: ") and len(msg.splitlines()) == 1
    for n in needles:
        assert n in msg, (n, msg)


@pytest.mark.parametrize("head,needles", [
    ('kind = "visual"\n[grid]\nsnr = "10"\ncbr = "1/16"\n[visual]\nimage = "a"\n',
     ["table [grid] is not used by kind = 'visual'"]),
    ('kind = "visual"\n[visual]\nimage = "a"\ncbr = "1/16,1/8"\n',
     ["key 'visual.cbr'", "a visual grid is drawn at one CBR, got 2"]),
])
def test_visual_files_use_every_value(head, needles, tmp_path):
    from lrisc_sim.experiment import ExperimentError, load_experiment

    exp = tmp_path / "v.toml"
    exp.write_text(head + '[[codecs]]\nspec = "uncoded"\n')
    with pytest.raises(ExperimentError) as e:
        load_experiment(exp)
    for n in needles:
        assert n in str(e.value)


# --------------------------------------------------------------- checkpoints

def _forged(path: Path, **cfg) -> Path:
    """A .safetensors file holding only a header whose metadata declares the DeepJSCC ``cfg``."""
    base = {"cbr": "1/48", "levels": 3, "extra": 1, "first_width": 32, "width": 64, "kernel": 5}
    meta = {"config": json.dumps({**base, **cfg})}
    h = json.dumps({"__metadata__": meta}).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h)
    return path


@pytest.mark.parametrize("cfg,needle", [
    ({"first_width": 200000}, "first_width = 200000"), ({"width": 10**9}, "width = 1000000000"),
    ({"levels": 40}, "levels = 40"), ({"extra": 10**6}, "extra = 1000000"), ({"kernel": 4}, "kernel = 4"),
])
def test_checkpoint_architecture_is_bounded(cfg, needle, tmp_path, image_dir, capsys):
    """ck_hugearch: a header declaring a huge architecture is refused before anything is allocated, naming the
    file and the field."""
    from baselines.deepjscc import DeepJSCCError, read_config

    ck = _forged(tmp_path / "huge.safetensors", **cfg)
    with pytest.raises(DeepJSCCError, match=rf"{ck}: its DeepJSCC config declares {needle}, outside"):
        read_config(ck)
    rc = main(sweep_args(image_dir, tmp_path / "o", "--codec", "deepjscc", "--checkpoint", f"deepjscc={ck}",
                         "--cbr", "1/48"))
    one_line_error(capsys, rc, str(ck), needle)


@pytest.mark.skipif(not DJ16.is_file(), reason="no shipped DeepJSCC checkpoints")
def test_a_deepjscc_checkpoint_is_used_and_named(image_dir, tmp_path):
    """ck_dj_othercbr: at the checkpoint's own CBR it is used, and codecs.txt names it; asked for another CBR
    (the API's send path) the codec refuses instead of using a shipped model."""
    from baselines.deepjscc import DeepJSCCError
    from lrisc_sim.registry import make_codec

    rc = main(sweep_args(image_dir, tmp_path / "o", "--codec", "deepjscc", "--checkpoint", f"deepjscc={DJ16}"))
    assert rc == 0
    assert f"deepjscc (checkpoint {DJ16}, CBR 1/16)" in (tmp_path / "o" / "codecs.txt").read_text()
    codec = make_codec("deepjscc", checkpoint=str(DJ16))
    assert codec.model_for("1/16") is codec.model_for(Fraction(1, 16))
    with pytest.raises(DeepJSCCError, match="is for CBR 1/16, not CBR 1/48"):
        codec.model_for("1/48")


def test_lrisc_operating_point_option():
    """``point`` names a shipped operating point (its weights file); with an explicit checkpoint it is an error,
    never silently one of the two."""
    from lrisc_sim.lrisc.codec import POINTS, LRISCError, make_lrisc

    assert set(POINTS) == {"distortion", "perceptual"}
    with pytest.raises(LRISCError, match="not both"):
        make_lrisc(checkpoint=str(POINTS["distortion"][0]), point="perceptual")
    if POINTS["distortion"][0].is_file():
        c = make_lrisc(point="distortion")
        assert c.weight_files() == [POINTS["distortion"][0]]
