"""The Python API: a sweep, one transmission, a codec or a channel from a notebook or a script.

>>> import lrisc_sim
>>> df = lrisc_sim.sweep(["uncoded", "softcast"], snr="0,10", cbr="1/8", dataset="builtin", limit=1,
...                      metrics=("psnr",), out="runs/api-demo", progress=False)   # doctest: +SKIP
>>> df.groupby(["codec", "snr_db"]).psnr.mean()                                      # doctest: +SKIP

``sweep`` writes, resumes or extends the same folder as ``lrisc-sim sweep`` (``results.csv``, ``summary.csv``,
plots; one experiment per folder) and returns the per-image rows of the requested grid as a DataFrame; ``transmit`` sends one image and returns its
``Transmission`` (output ``1 x 3 x H x W``, metrics, the codec's maps); ``load_codec`` / ``make_channel`` build the
objects the engine uses (third-party ones included: ``package.module:Name`` specs and installed plugins).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from channels.base import Channel
from lrisc_sim.codec import Codec


def _grid(name: str, value, parse) -> list:
    """An SNR or CBR argument: the CLI grammar (``"0:15:5"``, ``"1/64,1/48"``), a number, or a list of numbers and
    grammar strings (``["1/16", 0.125]``); anything else is a ``ConfigError`` naming ``name``."""
    from lrisc_sim.grammar import GridError
    from lrisc_sim.sweep_config import ConfigError

    if isinstance(value, (str, numbers.Real)) and not isinstance(value, bool):
        parts = [value]
    elif isinstance(value, (list, tuple, range)) or type(value).__name__ == "ndarray":
        parts = list(value)
    else:
        raise ConfigError(name, value, f"must be a string like {EXAMPLES[name]} or a list of numbers, got "
                                       f"{type(value).__name__}")
    out: list = []
    for v in parts:
        if isinstance(v, str):
            try:
                out += parse(v)
            except GridError as e:
                raise ConfigError(name, v, str(e)) from None
        elif isinstance(v, numbers.Real) and not isinstance(v, bool):
            out.append(v if isinstance(v, (float, Fraction)) else int(v) if isinstance(v, numbers.Integral)
                       else float(v))
        else:
            raise ConfigError(name, v, f"bad value {v!r} ({type(v).__name__}): give numbers or strings like "
                                       f"{EXAMPLES[name]}")
    return out


EXAMPLES = {"snr": "'0:15:5'", "cbr": "'1/48'", "codecs": "'uncoded,softcast' or ['uncoded', 'softcast']",
            "metrics": "'psnr' or ['psnr', 'lpips']", "redo": "'uncoded' or ['uncoded']",
            "drop": "'uncoded' or ['uncoded']"}


def _names(name: str, value) -> list[str]:
    """A list-of-names argument (codecs, metrics, redo): a comma-separated string or a list/tuple of strings."""
    from lrisc_sim.sweep_config import ConfigError

    if isinstance(value, str) and name == "codecs":  # commas inside a spec's options stay with it
        from lrisc_sim.registry import split_codec_list

        return split_codec_list(value)
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value]
    raise ConfigError(name, value, f"must be a string or a list of strings, e.g. {EXAMPLES[name]}, got "
                                   f"{type(value).__name__}")


def _path(name: str, value, example: str) -> str:
    """A path argument (dataset, out): a non-empty ``str`` or ``os.PathLike``; else a ``ConfigError``."""
    import os

    from lrisc_sim.sweep_config import ConfigError

    if isinstance(value, (str, os.PathLike)) and str(value).strip():
        return str(value)
    raise ConfigError(name, type(value).__name__, f"must be {example} (a str or pathlib.Path), got "
                                                  f"{type(value).__name__ if value is not None else 'None'}")


def sweep(codecs: str | Sequence[str], snr: str | Sequence[float] = "0:15:5",
          cbr: str | Sequence[float | Fraction] = "1/48", channel: str = "awgn", dataset: str | Path = "builtin",
          out: str | Path = "runs/sweep", *, limit: int | None = None, trials: int = 1, seed: int = 0,
          batch_size: int = 4, device: str = "auto", metrics: str | Sequence[str] = ("psnr", "ms_ssim", "lpips"),
          side_charge: str = "fixed", equalizer: str = "mmse", checkpoints: dict[str, str] | None = None,
          codec_options: dict[str, dict] | None = None, decode_batch: int | None = None, progress: bool = True,
          quiet: bool = True, redo: str | Sequence[str] = (), drop: str | Sequence[str] = (),
          executor: str = "local",
          ray_address: str | None = None, csi: str | Sequence[str] = "perfect",
          design_snr: str | float | Sequence[str | float] = "channel", constellation: str | Sequence[str] = "none"):
    """Run (or resume, or extend) a sweep into ``out`` and return the rows of the requested grid
    (``pandas.DataFrame``, one row per image and (codec, CBR, SNR, trial), the columns of ``results.csv``; the
    folder may hold more points after an extension).

    ``codecs``, ``metrics``, ``redo``, ``drop`` (codecs this sweep no longer lists whose rows leave ``out``): a
    list or a comma-separated string; ``snr``/``cbr``: the CLI grammar
    (``"0:15:5"``, ``"1/64,1/48"``), numbers, or lists of either; ``dataset``/``out``: ``str`` or ``Path``;
    ``checkpoints``: codec name -> weights file; ``codec_options``: codec spec -> options (as the keys of an
    experiment file's ``[[codecs]]``); ``csi``, ``design_snr``, ``constellation``: the link axes
    (``lrisc_sim.link``), a value, a comma-separated string or a list each (``csi="perfect,ls:2"``,
    ``design_snr=10``, ``constellation=["none", "qam16"]``). A bad value raises a one-line ``ConfigError`` naming the argument; a
    folder holding another experiment is refused as by ``lrisc-sim sweep`` (``ConfigError`` about ``out``).
    """
    from lrisc_sim.grammar import parse_cbr, parse_snr
    from lrisc_sim.registry import split_spec
    from lrisc_sim.results import load
    from lrisc_sim.sweep_config import ConfigError, SweepConfig
    from lrisc_sim.sweep_run import rows_of, run_sweep

    specs = _names("codecs", codecs)
    for name, v in (("checkpoints", checkpoints), ("codec_options", codec_options)):
        if v is not None and not isinstance(v, dict):
            raise ConfigError(name, v, f"must be a dict (codec -> {'file' if name == 'checkpoints' else 'options'})"
                                       f", got {type(v).__name__}")
    opts = {k: dict(v) for k, v in (codec_options or {}).items()}
    for name, path in (checkpoints or {}).items():  # never silently unused: as --checkpoint CODEC=PATH
        matching = [s for s in specs if _spec_name(s, split_spec) == name]
        if not matching:
            raise ConfigError("checkpoints", f"{name}={path}", f"{name} is not a codec of this sweep "
                                                               f"({', '.join(specs)}); add it or leave the checkpoint "
                                                               "out", show_value=True)
        for spec in matching:
            opts.setdefault(spec, {})["checkpoint"] = str(path)
    cfg = SweepConfig(codecs=specs, snr_db=_grid("snr", snr, parse_snr), cbr=_grid("cbr", cbr, parse_cbr),
                      channel=channel, equalizer=equalizer,
                      dataset=_path("dataset", dataset, "builtin, kodak, a folder or an image file"), limit=limit,
                      trials=trials, seed=seed, batch_size=batch_size, device=device,
                      metrics=tuple(_names("metrics", metrics)), side_charge=side_charge, codec_options=opts,
                      decode_batch=decode_batch, csi=_axis(csi), design_snr=_axis(design_snr),
                      constellation=_axis(constellation))
    out = _path("out", out, "an output folder, e.g. 'runs/sweep'")
    run_sweep(cfg, out, executor=executor, ray_address=ray_address, progress=progress, quiet=quiet,
              redo=_names("redo", redo), drop=_names("drop", drop))
    return rows_of(load(Path(out) / "results.csv"), cfg)


def _axis(value) -> list:
    """A link axis given as one value, a comma-separated string or a list."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _spec_name(spec: str, split_spec) -> str:
    """The codec name of a spec (the spec itself when malformed: ``validate`` words that error)."""
    try:
        return split_spec(spec)[0]
    except ValueError:
        return spec


def load_codec(spec: str, checkpoint: str | Path | None = None, device: str = "auto", **options) -> Codec:
    """The codec of a spec (``"lrisc"``, ``"bpg-ldpc:qpsk-1/2"``, ``"my_pkg.codecs:Echo"``), on ``device``."""
    from lrisc_sim.engine import resolve_device
    from lrisc_sim.registry import make_codec

    dev = resolve_device(device)
    if checkpoint is not None:
        options["checkpoint"] = str(checkpoint)
    return make_codec(spec, device=str(dev), **options).to(dev)


def make_channel(spec: str) -> Channel:
    """The channel of a spec (``"awgn"``, ``"rician:K=4"``, ``"tdl-a:speed=3"``, ``"my_pkg.channels:PhaseNoise"``)."""
    from channels.registry import make_channel as build

    return build(spec)


def compare(out: str | Path, ref: str, metrics: str | Sequence[str] | None = None):
    """Paired differences of every codec of the sweep folder ``out`` to the reference codec ``ref`` over the
    identical realizations (``pandas.DataFrame``, columns ``paired.COLUMNS``: per codec, point and metric the
    mean difference codec - ref over images with its 95% t CI and paired p-values, plus ``kind == "average"``
    rows over the SNR or CBR range); also written to ``out/compare_<ref>.csv``. Points one codec lacks are
    skipped, each with a ``UserWarning`` (the list is in ``.attrs["notes"]``). As ``lrisc-sim compare``."""
    import warnings

    from lrisc_sim.paired import run_compare

    table = run_compare(out, ref, metrics)
    for note in table.attrs.get("notes", []):
        warnings.warn(note, stacklevel=2)
    return table


def plot(out: str | Path, labels: dict[str, str] | None = None, formats: str | Sequence[str] = ("png",),
         diff: str | None = None, metrics: str | Sequence[str] | None = None) -> list[Path]:
    """Redraw the plots of the sweep folder ``out`` from its ``results.csv`` and return the files written
    (``vs_snr.<fmt>``, ``vs_cbr.<fmt>``). ``labels``: codec -> legend text (over the experiment file's labels);
    ``formats``: any of png, pdf, svg; ``diff``: a reference codec for a paired-difference panel. As
    ``lrisc-sim plot``; a bad argument raises a one-line ``PlotError`` (a ``ValueError``)."""
    from lrisc_sim.plots import PlotError, plot_folder

    if labels is not None and not (isinstance(labels, dict)
                                   and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())):
        raise PlotError(f"labels must be a dict of codec -> text, e.g. {{'lrisc': 'LRISC (ours)'}}, got {labels!r}")
    return plot_folder(out, labels=labels, formats=formats, diff=diff, metrics=metrics)
