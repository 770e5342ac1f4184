"""The Python API: a sweep, one transmission, a codec or a channel from a notebook or a script.

>>> import lrisc_sim
>>> df = lrisc_sim.sweep(["uncoded", "softcast"], snr="0,10", cbr="1/8", dataset="builtin", limit=1,
...                      metrics=("psnr",), out="runs/api-demo", progress=False)   # doctest: +SKIP
>>> df.groupby(["codec", "snr_db"]).psnr.mean()                                      # doctest: +SKIP

``sweep`` writes and resumes the same folder as ``lrisc-sim sweep`` (``results.csv``, ``summary.csv``, plots) and
returns the per-image rows of ``results.csv`` as a DataFrame; ``transmit`` sends one image and returns its
``Transmission`` (output ``1 x 3 x H x W``, metrics, the codec's maps); ``load_codec`` / ``make_channel`` build the
objects the engine uses (third-party ones included: ``package.module:Name`` specs and installed plugins).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from channels.base import Channel
from lrisc_sim.codec import Codec


def _grid(value, parse) -> list:
    if isinstance(value, (str, int, float, Fraction)):
        return parse(str(value)) if isinstance(value, str) else [value]
    return list(value)


def sweep(codecs: str | Sequence[str], snr: str | Sequence[float] = "0:15:5",
          cbr: str | Sequence[float | Fraction] = "1/48", channel: str = "awgn", dataset: str = "builtin",
          out: str | Path = "runs/sweep", *, limit: int | None = None, trials: int = 1, seed: int = 0,
          batch_size: int = 4, device: str = "auto", metrics: Sequence[str] = ("psnr", "ms_ssim", "lpips"),
          side_charge: str = "fixed", equalizer: str = "mmse", checkpoints: dict[str, str] | None = None,
          codec_options: dict[str, dict] | None = None, decode_batch: int | None = None, progress: bool = True,
          quiet: bool = True, redo: Sequence[str] = (), executor: str = "local", ray_address: str | None = None):
    """Run (or resume) a sweep into ``out`` and return its rows (``pandas.DataFrame``, one row per image and
    (codec, CBR, SNR, trial), the columns of ``results.csv``).

    ``codecs``: specs (a list or a comma-separated string); ``snr``/``cbr``: the CLI grammar (``"0:15:5"``,
    ``"1/64,1/48"``) or lists of numbers; ``checkpoints``: codec name -> weights file; ``codec_options``: codec
    spec -> options (as the keys of an experiment file's ``[[codecs]]``). A bad value raises a
    ``ConfigError`` naming the argument.
    """
    from lrisc_sim.grammar import parse_cbr, parse_snr
    from lrisc_sim.registry import split_spec
    from lrisc_sim.results import load
    from lrisc_sim.sweep_run import run_sweep
    from lrisc_sim.sweep_config import SweepConfig

    specs = [c.strip() for c in codecs.split(",")] if isinstance(codecs, str) else list(codecs)
    opts = {k: dict(v) for k, v in (codec_options or {}).items()}
    for name, path in (checkpoints or {}).items():
        for spec in (s for s in specs if split_spec(s)[0] == name):
            opts.setdefault(spec, {})["checkpoint"] = str(path)
    cfg = SweepConfig(codecs=specs, snr_db=_grid(snr, parse_snr), cbr=_grid(cbr, parse_cbr), channel=channel,
                      equalizer=equalizer, dataset=str(dataset), limit=limit, trials=trials, seed=seed,
                      batch_size=batch_size, device=device, metrics=tuple(metrics), side_charge=side_charge,
                      codec_options=opts, decode_batch=decode_batch)
    run_sweep(cfg, out, executor=executor, ray_address=ray_address, progress=progress, quiet=quiet, redo=redo)
    return load(Path(out) / "results.csv")


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
