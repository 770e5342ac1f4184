"""Spec safety (issue 29 item 1): a codec or channel spec (CLI, experiment file, API) may only produce a ``Codec``
or a ``Channel``. The named object is checked *before* it is called: anything else (``os:system``,
``os.path:join``, ``json:loads``) is a one-line error naming the spec, and nothing runs (a marker file that the
command would create must not appear). Plugin failures (import, ``__init__``, an abstract class) name the plugin."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from lrisc_sim.cli import main
from lrisc_sim.plugins import PluginError


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


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """Write a module ``name`` with ``source`` into a folder on sys.path; returns a function doing so."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))

    def write(name: str, source: str) -> str:
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return write


# --------------------------------------------------------------- arbitrary callables are refused uncalled

NOT_CODECS = [  # (spec, what the error must say)
    ("os:system", "codec spec 'os:system' is not a codec plugin"),
    ("os.path:join", "codec spec 'os.path:join' is not a codec plugin"),
    ("json:loads", "codec spec 'json:loads' is not a codec plugin"),
    ("os:system:touch {marker}", "codec spec 'os:system' is not a codec plugin"),
    ("os:sep", "not callable"),
    ("collections:OrderedDict", "class OrderedDict is not a Codec subclass"),
]


@pytest.mark.parametrize("spec,msg", NOT_CODECS)
def test_codec_specs_naming_other_callables_are_refused_uncalled(spec, msg, image_dir, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    spec = spec.format(marker=marker)
    rc = main(sweep_args(image_dir, tmp_path / "o", "--codec", spec))
    one_line_error(capsys, rc, "--codec", msg)
    assert not marker.exists() and not (tmp_path / "o").exists()
    from lrisc_sim import load_codec

    with pytest.raises(PluginError, match="not a codec plugin|not callable") as e:
        load_codec(spec, device="cpu")
    assert "nothing was called" in str(e.value) or "not callable" in str(e.value)
    assert not marker.exists()


def test_os_system_channel_spec_never_runs_its_command(image_dir, tmp_path, capsys):
    """``--channel 'os:system:command=touch FILE'`` (os.system takes ``command=``): refused, no marker; the same
    from an experiment file (toml_channel_ossystem) and from the API."""
    marker = tmp_path / "MARKER"
    spec = f"os:system:command=touch {marker}"
    rc = main(sweep_args(image_dir, tmp_path / "o", "--channel", spec))
    one_line_error(capsys, rc, "--channel", "channel spec 'os:system' is not a channel plugin", "nothing was called")
    assert not marker.exists()

    exp = tmp_path / "e.toml"
    exp.write_text(f'dataset = "{image_dir}"\n[grid]\nsnr = "10"\ncbr = "1/16"\n[channel]\nmodel = "{spec}"\n'
                   '[[codecs]]\nspec = "uncoded"\n')
    rc = main(["run", str(exp), "--out", str(tmp_path / "r"), "--no-progress"])
    one_line_error(capsys, rc, f"{exp}: key 'channel.model'", "is not a channel plugin")
    assert not marker.exists()

    from lrisc_sim import make_channel

    with pytest.raises(PluginError, match="not a channel plugin"):
        make_channel(spec)
    assert not marker.exists()


def test_a_codec_option_naming_a_program_is_refused_in_experiment_files(tmp_path, capsys):
    """toml_bpgenc_script: ``bpgenc = './evil.sh'`` (as a key or inside the spec) is refused in one line saying
    where binaries come from; the script never runs."""
    marker = tmp_path / "MARKER"
    script = tmp_path / "evil.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    from lrisc_sim.experiment import ExperimentError, load_experiment

    for table in (f'spec = "bpg-ldpc"\nbpgenc = "{script}"', f'spec = "bpg-ldpc:bpgenc={script}"',
                  f'spec = "bpg-capacity"\nbpgdec = "{script}"'):
        exp = tmp_path / "e.toml"
        exp.write_text(f'[grid]\nsnr = "10"\ncbr = "1/16"\n[[codecs]]\n{table}\n')
        with pytest.raises(ExperimentError) as e:
            load_experiment(exp)
        msg = str(e.value)
        assert "cannot name a program to run" in msg and "PATH" in msg and "environment variable" in msg
        assert "command line" in msg and msg.startswith(f"{exp}: key 'codecs[0].") and len(msg.splitlines()) == 1
    assert not marker.exists()


# --------------------------------------------------------------- plugin failures name the plugin

def test_plugin_import_failure_names_the_plugin(plugin_module, image_dir, tmp_path, capsys):
    mod = plugin_module("lrisc_bad_import_plugin", "x = 1 / 0\n")
    rc = main(sweep_args(image_dir, tmp_path / "o", "--codec", f"{mod}:Thing"))
    one_line_error(capsys, rc, f"codec '{mod}:Thing'", f"importing plugin module {mod} failed (ZeroDivisionError")


def test_plugin_codec_failing_in_init_names_the_spec(plugin_module):
    mod = plugin_module("lrisc_init_raises_plugin", """
        from lrisc_sim.codec import Codec

        class Boom(Codec):
            def __init__(self):
                raise RuntimeError("boom in __init__")

            def encode(self, x, cbr, ctx=None):
                raise AssertionError

            def decode(self, rx, enc, ctx=None):
                raise AssertionError
        """)
    from lrisc_sim.registry import make_codec

    with pytest.raises(PluginError, match=rf"codec '{mod}:Boom' .*failed while being built: RuntimeError: boom in"):
        make_codec(f"{mod}:Boom", device="cpu")


def test_abstract_plugin_codec_says_encode_and_decode_are_missing(plugin_module, image_dir, tmp_path, capsys):
    mod = plugin_module("lrisc_abstract_plugin", """
        from lrisc_sim.codec import Codec

        class NoAbstract(Codec):
            pass

        class EncodeOnly(Codec):
            def encode(self, x, cbr, ctx=None):
                raise AssertionError
        """)
    rc = main(sweep_args(image_dir, tmp_path / "o", "--codec", f"{mod}:NoAbstract"))
    one_line_error(capsys, rc, "NoAbstract does not implement encode and decode")
    from lrisc_sim.registry import make_codec

    with pytest.raises(PluginError, match="EncodeOnly does not implement decode"):
        make_codec(f"{mod}:EncodeOnly")


def test_plugin_channel_failing_in_init_names_the_spec(plugin_module):
    mod = plugin_module("lrisc_channel_raises_plugin", """
        from channels.base import Channel

        class Broken(Channel):
            def __init__(self, a=1):
                raise RuntimeError("boom in channel")

            def gains(self, realization, k):
                raise AssertionError
        """)
    from lrisc_sim import make_channel

    with pytest.raises(PluginError, match=rf"channel '{mod}:Broken:a=2' .*failed while being built: RuntimeError"):
        make_channel(f"{mod}:Broken:a=2")


# --------------------------------------------------------------- what a spec may name

def test_marked_factories_and_codec_classes_are_accepted(plugin_module):
    """A factory marked by hand (``lrisc_sim_factory = "codec"``) or by ``codec_factory`` is called as
    ``factory(ARG, device=..., **options)``; a Codec subclass as ``cls(**options)``; a factory marked for
    channels is no codec factory."""
    mod = plugin_module("lrisc_marked_plugin", """
        from baselines.analog import Uncoded
        from lrisc_sim.codec import Option
        from lrisc_sim.plugins import codec_factory

        def by_hand(arg=None, device=None):
            return Uncoded(estimator=arg or "llse")
        by_hand.lrisc_sim_factory = "codec"

        @codec_factory([Option("est", "str", "llse", "estimator", choices=("llse", "zf"))])
        def declared(arg=None, device=None, est="llse"):
            return Uncoded(estimator=est)

        def for_channels():
            raise AssertionError("must not be called")
        for_channels.lrisc_sim_factory = "channel"

        class Plain(Uncoded):
            options = (Option("upsample", "str", "bicubic", "upsampling", choices=("bicubic", "bilinear")),)
        """)
    from lrisc_sim.registry import make_codec

    assert make_codec(f"{mod}:by_hand:zf", device="cpu").estimator == "zf"
    assert make_codec(f"{mod}:declared:est=zf", device="cpu").estimator == "zf"
    with pytest.raises(ValueError, match="'estimator' is not an option of .*its options: est"):
        make_codec(f"{mod}:declared:estimator=zf")
    with pytest.raises(ValueError, match="takes no ARG"):
        make_codec(f"{mod}:declared:zf")
    assert make_codec(f"{mod}:Plain:upsample=bilinear").upsample == "bilinear"
    with pytest.raises(PluginError, match="not marked as a codec factory"):
        make_codec(f"{mod}:for_channels")
