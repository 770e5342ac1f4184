"""Experiment files (``experiments/*.toml``): schema, validation with clear errors, and the runner.

Schema (every key optional unless marked; unknown keys are errors)::

    name = "fig4_snr"                 # default: the file name
    title = "PSNR and LPIPS vs SNR"   # plot title
    kind = "sweep"                    # "sweep" (curves) or "visual" (an image grid, Fig. 6)
    out = "results/fig4_snr"          # default: results/NAME
    dataset = "kodak"                 # builtin | kodak | folder path (relative to the file or the cwd)
    limit = 24                        # first N images
    seed = 0
    trials = 1
    batch_size = 4
    metrics = ["psnr", "ms_ssim", "lpips"]
    side_charge = "fixed"             # fixed | fixed:B | capacity
    compare = "deepjscc"              # after the sweep, paired differences to this codec (compare_deepjscc.csv)

    [channel]
    model = "awgn"                    # any spec of `lrisc-sim channels`
    equalizer = "mmse"                # mmse | zf
    csi = ["perfect", "ls:2"]         # link axes (lrisc_sim.link), a value or a list each: receiver CSI,
    design_snr = ["channel", 10]      # the SNR the codecs are told ("channel": the channel's),
    constellation = ["none", "qam16"] # the transmitted symbols' constellation

    [grid]                            # required for kind = "sweep"
    snr = "0:15:5"                    # the CLI grammar, or a list of numbers
    cbr = "1/48"                      # the CLI grammar, or a list

    [[codecs]]                        # at least one; each spec once (two settings: options in the spec)
    spec = "lrisc"                    # required: a codec spec of `lrisc-sim codecs` (e.g. "lrisc:steps=8")
    label = "LRISC"                   # optional legend label
    checkpoint = "path.safetensors"   # optional; other keys are the codec's declared options
                                      # (`lrisc-sim codecs --options`), checked before anything runs; programs
                                      # (bpgenc, bpgdec) and run settings (device) are refused here

    A sweep reads [grid] and a visual grid [visual] (one CBR); the other table is an error, never ignored.

    [visual]                          # required for kind = "visual"
    image = "kodim23"                 # image id in the dataset
    snr = [0, 5, 10, 15]
    cbr = "1/48"
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrisc_sim.grammar import GridError, parse_cbr, parse_snr
from lrisc_sim.metrics import METRIC_NAMES
from lrisc_sim.sweep_config import TOML_KEYS, ConfigError, SweepConfig

TOP_KEYS = {"name", "title", "kind", "out", "dataset", "limit", "seed", "trials", "batch_size", "metrics",
            "side_charge", "channel", "grid", "codecs", "visual", "description", "compare"}
CHANNEL_KEYS = {"model", "equalizer", "csi", "design_snr", "constellation"}
GRID_KEYS = {"snr", "cbr"}
VISUAL_KEYS = {"image", "snr", "cbr"}


class ExperimentError(ValueError):
    """A problem in an experiment file; the message names the file and the key."""


@dataclass
class Experiment:
    name: str
    path: Path
    kind: str
    sweep: SweepConfig
    out: Path
    title: str = ""
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    visual: dict[str, Any] = field(default_factory=dict)
    compare: str | None = None  # reference codec of the paired differences written after the sweep


def _type(file: Path, key: str, value, types, what: str):
    if isinstance(value, bool) or not isinstance(value, types):
        raise ExperimentError(f"{file}: key '{key}' must be {what}, got {value!r}")
    return value


def _grid(file: Path, key: str, value, parser) -> list:
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if not isinstance(value, (str, int, float)):
        raise ExperimentError(f"{file}: key '{key}' must be a string like '0:15:5' or a list")
    try:
        return parser(str(value))
    except GridError as e:
        raise ExperimentError(f"{file}: key '{key}': {e}") from None


def _codec_options(file: Path, i: int, spec: str, opts: dict) -> None:
    """Check the options of ``codecs[i]`` (its keys and those written in its spec) against the codec's
    declaration, as an experiment file may give them: no run settings, no programs (``bpgenc``)."""
    from lrisc_sim.codec import OptionError
    from lrisc_sim.registry import PluginError, UnknownCodecError, codec_options

    try:
        codec_options(spec, opts, from_file=True)
    except OptionError as e:
        key = "spec" if e.in_spec or not e.option else e.option
        raise ExperimentError(f"{file}: key 'codecs[{i}].{key}': {e.problem}") from None
    except (UnknownCodecError, PluginError) as e:
        raise ExperimentError(f"{file}: key 'codecs[{i}].spec': {e}") from None


def _axis(value) -> list:
    """A link axis of ``[channel]``: one value or a list (checked by ``SweepConfig.validate``)."""
    return list(value) if isinstance(value, list) else [value]


def load_experiment(path: str | Path) -> Experiment:
    """Parse and validate an experiment file; raise ``ExperimentError`` naming the file and key."""
    file = Path(path)
    if not file.is_file():
        raise ExperimentError(f"{file}: experiment file not found (see experiments/*.toml)")
    try:
        d = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ExperimentError(f"{file}: not valid TOML ({e})") from None
    except UnicodeDecodeError:
        raise ExperimentError(f"{file}: not a text file (not UTF-8; a binary file?); give an experiment TOML file "
                              "like experiments/fig4_snr.toml") from None
    unknown = set(d) - TOP_KEYS
    if unknown:
        raise ExperimentError(f"{file}: unknown key(s) {', '.join(sorted(unknown))}; allowed: "
                              f"{', '.join(sorted(TOP_KEYS))}")
    name = _type(file, "name", d.get("name", file.stem), str, "a string")
    kind = d.get("kind", "sweep")
    if kind not in ("sweep", "visual"):
        raise ExperimentError(f"{file}: key 'kind' must be 'sweep' or 'visual', got {kind!r}")
    ch = _type(file, "channel", d.get("channel", {}), dict, "a table [channel]")
    if set(ch) - CHANNEL_KEYS:
        raise ExperimentError(f"{file}: unknown key(s) in [channel]: {', '.join(sorted(set(ch) - CHANNEL_KEYS))}")
    codecs = d.get("codecs")
    if not isinstance(codecs, list) or not codecs or not all(isinstance(c, dict) for c in codecs):
        raise ExperimentError(f"{file}: key 'codecs' must be a non-empty array of tables [[codecs]] with 'spec'")
    specs, options, labels = [], {}, {}
    for i, c in enumerate(codecs):
        spec = c.get("spec")
        if not isinstance(spec, str):
            raise ExperimentError(f"{file}: key 'codecs[{i}].spec' must be a codec spec string, got {spec!r}")
        if spec in options:  # the same spec twice: its rows would be one codec's (refused, never merged)
            raise ExperimentError(f"{file}: key 'codecs[{i}].spec': {spec!r} is also codecs[{specs.index(spec)}]"
                                  "'s spec; give each codec once (two settings of one codec: write the options in "
                                  "the spec, e.g. spec = \"lrisc:steps=8\")")
        opts = {k: v for k, v in c.items() if k not in ("spec", "label")}
        if "checkpoint" in opts:  # relative to the file when not found from the working folder
            ck = Path(str(opts["checkpoint"]))
            opts["checkpoint"] = str(ck if ck.is_absolute() or ck.exists() else file.parent / ck)
        _codec_options(file, i, spec, opts)
        specs.append(spec)
        options[spec] = opts
        labels[spec] = _type(file, f"codecs[{i}].label", c.get("label", spec), str, "a string")
    metrics = d.get("metrics", list(METRIC_NAMES))
    if not isinstance(metrics, list):
        raise ExperimentError(f"{file}: key 'metrics' must be a list drawn from {list(METRIC_NAMES)}, got "
                              f"{metrics!r}")
    dataset = _type(file, "dataset", d.get("dataset", "builtin"), str, "a string")
    if dataset not in ("builtin", "kodak") and not Path(dataset).exists() and (file.parent / dataset).exists():
        dataset = str(file.parent / dataset)
    visual: dict[str, Any] = {}
    unused, other = ("visual", "visual") if kind == "sweep" else ("grid", "sweep")
    if unused in d:  # a table the kind does not read would be ignored
        raise ExperimentError(f"{file}: table [{unused}] is not used by kind = '{kind}' (a sweep reads [grid], a "
                              f"visual grid [visual]); remove it, or set kind = '{other}'")
    if kind == "sweep":
        grid = _type(file, "grid", d.get("grid"), dict, "a table [grid] with snr and cbr")
        if set(grid) - GRID_KEYS or not GRID_KEYS <= set(grid):
            raise ExperimentError(f"{file}: table [grid] needs exactly the keys snr and cbr, got {sorted(grid)}")
        snr, cbr = _grid(file, "grid.snr", grid["snr"], parse_snr), _grid(file, "grid.cbr", grid["cbr"], parse_cbr)
    else:
        vis = _type(file, "visual", d.get("visual"), dict, "a table [visual] with image, snr and cbr")
        if set(vis) - VISUAL_KEYS or "image" not in vis:
            raise ExperimentError(f"{file}: table [visual] takes image (required), snr and cbr; got {sorted(vis)}")
        snr = _grid(file, "visual.snr", vis.get("snr", [0, 5, 10, 15]), parse_snr)
        cbr = _grid(file, "visual.cbr", vis.get("cbr", "1/48"), parse_cbr)
        if len(cbr) != 1:
            raise ExperimentError(f"{file}: key 'visual.cbr': a visual grid is drawn at one CBR, got {len(cbr)} "
                                  f"({vis['cbr']}); give one, or use kind = 'sweep' for several")
        visual = {"image": _type(file, "visual.image", vis["image"], str, "an image id string")}
    sweep = SweepConfig(codecs=specs, snr_db=snr, cbr=cbr, channel=ch.get("model", "awgn"),
                        equalizer=ch.get("equalizer", "mmse"), dataset=dataset, limit=d.get("limit"),
                        trials=d.get("trials", 1), seed=d.get("seed", 0), batch_size=d.get("batch_size", 4),
                        metrics=tuple(metrics), side_charge=d.get("side_charge", "fixed"), codec_options=options,
                        csi=_axis(ch.get("csi", "perfect")), design_snr=_axis(ch.get("design_snr", "channel")),
                        constellation=_axis(ch.get("constellation", "none")))
    try:
        sweep.validate()
    except ConfigError as e:
        raise ExperimentError(f"{file}: key '{e.name(TOML_KEYS)}': {e.problem}") from None
    out = Path(_type(file, "out", d.get("out", f"results/{name}"), str, "a path string"))
    compare = _type(file, "compare", d.get("compare"), str, "a codec spec of the file") if "compare" in d else None
    if compare is not None and (kind == "visual" or compare not in sweep.codecs):
        raise ExperimentError(f"{file}: key 'compare': {compare!r} is not a codec of this sweep; give one of "
                              f"{', '.join(sweep.codecs)} (the reference of the paired differences)")
    return Experiment(name=name, path=file, kind=kind, sweep=sweep, out=out, compare=compare,
                      title=_type(file, "title", d.get("title", name), str, "a string"),
                      description=_type(file, "description", d.get("description", ""), str, "a string"),
                      labels=labels, visual=visual)


def run_experiment(path: str | Path, out: str | Path | None = None, executor: str = "local",
                   ray_address: str | None = None, progress: bool = True, device: str = "auto", quiet: bool = False,
                   redo: Sequence[str] = (), drop: Sequence[str] = ()):
    """Run (or resume) an experiment into its output folder; returns the summary (sweeps) or grid path.
    ``redo``: codec specs whose rows are recomputed (a visual grid is always made anew); ``drop``: codec specs the
    file no longer lists whose rows leave the folder."""
    from lrisc_sim.engine import output_dir
    from lrisc_sim.safeio import atomic_write_text, folder_lock

    exp = load_experiment(path)
    if exp.kind == "visual" and drop:  # never silently ignored
        raise ConfigError("drop", list(drop), f"{exp.path} is a visual grid, which keeps no rows to drop; leave "
                                              "--drop out", show_value=True)
    exp.sweep.device = device
    dest = output_dir(exp.out if out is None else out)
    with folder_lock(dest):  # one run per output folder at a time
        atomic_write_text(dest / "experiment.json", json.dumps({"file": str(exp.path), "name": exp.name,
                                                                 "title": exp.title, "labels": exp.labels}, indent=2))
        if exp.kind == "visual":
            from lrisc_sim.visual import visual_grid

            result = visual_grid(exp, dest)
        else:
            from lrisc_sim.sweep_run import run_sweep

            result = run_sweep(exp.sweep, dest, executor=executor, ray_address=ray_address, progress=progress,
                               quiet=quiet, title=exp.title, labels=exp.labels, redo=redo,
                               drop=drop)
            if exp.compare is not None:  # the paired differences to the file's reference codec
                from lrisc_sim.paired import run_compare

                run_compare(dest, exp.compare)
    if dest.resolve().parent.name == "results":  # keep results/README.md in step with the tables
        from lrisc_sim.report import write_report

        write_report(dest.resolve().parent)
    return result
