"""Running a sweep into an output folder: results.csv (resumable), summary.csv, plots, config.json."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from lrisc_sim.engine import Engine, SweepConfig, count_points, output_dir, resolve_device
from lrisc_sim.grammar import cbr_label
from lrisc_sim.results import ResultsTable, format_summary, load, summarize
from lrisc_sim.safeio import NO_SPACE, DiskFull, atomic_write_text, count_rows, folder_lock
from lrisc_sim.sweep_config import ConfigError


def _config_record(cfg: SweepConfig, channel_desc: str) -> dict:
    d = asdict(cfg)
    d["cbr"] = [cbr_label(c) for c in cfg.cbr]
    d["channel_description"] = channel_desc
    return d


def file_digest(path: Path) -> str:
    """First 16 hex digits of the SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def fingerprints(engine: Engine, specs: list[str]) -> dict[str, dict]:
    """Per codec spec: its options and the digests of its weight files; rows made under another fingerprint are
    stale."""
    return {spec: {"options": engine.cfg.codec_options.get(spec, {}),
                   "weights": {p.name: file_digest(p) for p in engine.codec(spec).weight_files()}}
            for spec in specs}


def _check_stale(out: Path, old: dict, new: dict[str, dict], done: set[tuple]) -> None:
    """Refuse to resume rows made by other weights or options (the numbers would mix two models)."""
    with_rows = {k[0] for k in done}
    for spec, fp in new.items():
        before = old.get(spec)
        if spec in with_rows and before is not None and before != fp:
            changed = sorted(set(before.get("weights", {}).items()) ^ set(fp.get("weights", {}).items()))
            what = (f"weights {', '.join(sorted({n for n, _ in changed}))} changed" if changed else "options changed")
            raise ConfigError("redo", spec, f"{out}: the {spec} rows were made with other {spec} settings ({what}); "
                                            f"redo {spec} to recompute them, or choose another output folder")


def run_sweep(cfg: SweepConfig, out: str | Path, executor: str = "local", ray_address: str | None = None,
              progress: bool = True, quiet: bool = False, title: str | None = None,
              labels: dict[str, str] | None = None, redo: Sequence[str] = (), drop: Sequence[str] = ()):
    """Run (or resume, or extend) a sweep; returns the summary DataFrame of the whole folder.

    One experiment per folder: the folder's identity (``lrisc_sim.identity``: dataset and image digests, channel,
    equaliser, seed, metrics, side charge; per codec its options and weights) is stored in ``config.json``, and a
    sweep with another identity is refused with a one-line ``ConfigError`` about ``out`` saying what differs
    (a codec's changed settings: ``redo`` it). More SNR or CBR points, codecs or trials extend the folder (said on
    stderr; ``config.json`` records the union grid). Finished points are not redone, except those of the codecs
    in ``redo``; when ``redo`` covers every codec with rows, the folder takes this run's identity. ``drop``: codecs
    that this run does not list whose rows leave the folder (an experiment that no longer has them); rows of other
    codecs outside this run stay, and the run says so on stderr.
    The folder's run lock (``safeio.folder_lock``) is held throughout: a second writer is refused. ``cfg`` is
    validated first (``SweepConfig.validate``: a ``ConfigError`` names the bad field). A full disk ends the run
    with a one-line ``DiskFull`` naming the folder (the rows so far are kept)."""
    cfg.validate()
    if executor == "ray":
        from lrisc_sim.distributed import check_ray_address

        check_ray_address(ray_address)
    elif executor != "local":
        raise ConfigError("executor", executor, f"unknown executor {executor!r}: use local or ray")
    out = output_dir(out)
    with folder_lock(out):
        try:
            return _run_sweep(cfg, out, executor, ray_address, progress, quiet, title, labels, redo, drop)
        except OSError as e:
            if e.errno in NO_SPACE:
                raise DiskFull(out, count_rows(out / "results.csv")) from None
            raise


#: keys of config.json and the types a resume relies on (anything else there is kept as it is)
RECORD_TYPES = {"codecs": list, "snr_db": list, "cbr": list, "trials": int, "seed": int, "codec_options": dict,
                "codec_fingerprints": dict, "identity": dict, "provenance": dict, "earlier_runs": list}


def read_config(path: Path) -> dict:
    """A sweep folder's ``config.json`` ({} when absent); one-line ``ValueError`` when it cannot be parsed or a key
    a resume relies on has the wrong type."""
    fix = "delete it to resume from results.csv (its seed column is checked), or choose another output folder"
    if not path.exists():
        return {}
    try:
        d = json.loads(path.read_bytes())
    except (ValueError, OSError) as e:  # JSONDecodeError, UnicodeDecodeError (e.g. a binary file), unreadable
        raise ValueError(f"{path} cannot be read ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                         f"{fix}") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path} is not a sweep configuration (a JSON object); delete it to resume from "
                         "results.csv, or choose another output folder")
    for key, typ in RECORD_TYPES.items():
        v = d.get(key)
        if v is not None and (not isinstance(v, typ) or isinstance(v, bool)):
            raise ValueError(f"{path} cannot be read (key {key} is a {type(v).__name__}, not a {typ.__name__}); {fix}")
    fps = d.get("codec_fingerprints") or {}
    ident = d.get("identity") or {}
    if not all(isinstance(v, dict) and isinstance(v.get("weights", {}), dict) for v in fps.values()) or \
            not isinstance(ident.get("images") or {}, dict):
        raise ValueError(f"{path} cannot be read (codec_fingerprints or identity is malformed); {fix}")
    return d


def check_outputs_writable(out: Path) -> None:
    """Before any work: every file a sweep writes at its end (summary.csv, codecs.txt, config.json, the plots) that
    already exists must be a writable file, else a one-line ``ConfigError`` about ``out`` naming it."""
    names = {"results.csv", "summary.csv", "codecs.txt", "config.json", "vs_snr.png", "vs_cbr.png"}
    names |= {p.name for p in out.glob("vs_*")}
    for name in sorted(names):
        p = out / name
        if p.is_dir():
            raise ConfigError("out", out, f"{p} is a folder, where the sweep writes a file; remove or rename it, or "
                                          "choose another output folder", show_value=True)
        if p.exists() and not os.access(p, os.W_OK):
            raise ConfigError("out", out, f"{p} is not writable; make it writable (chmod u+w) or choose another "
                                          "output folder", show_value=True)


def _mismatch(out: Path, diffs: list[tuple[str, str]], old: dict, with_rows: set[str], cfg: SweepConfig):
    """The ``ConfigError`` refusing a sweep whose identity differs from the folder's: what differs and the fix."""
    keys = {k for k, _ in diffs}
    fix = "choose another output folder (one experiment per folder)"
    if keys <= {"metrics", "side_charge"}:
        keep = []
        if "metrics" in keys:
            keep.append(f"metrics {','.join(old.get('metrics') or [])}")
        if "side_charge" in keys:
            keep.append(f"side charge {old.get('side_charge_spec') or old.get('side_charge')}")
        redo = sorted(with_rows)
        how = (f", --redo {','.join(redo)} to recompute every row with this run's settings" if
               set(redo) <= set(cfg.codecs) else "")
        fix = f"rerun with {' and '.join(keep)}{how}, or {fix}"
    return ConfigError("out", out, f"holds another experiment (folder vs this run: {'; '.join(w for _, w in diffs)}"
                                   f"); {fix}", show_value=True)


def _run_sweep(cfg: SweepConfig, out: Path, executor: str, ray_address: str | None, progress: bool, quiet: bool,
               title: str | None, labels: dict[str, str] | None, redo: Sequence[str], drop: Sequence[str] = ()):
    from channels import make_channel
    from lrisc_sim.data import load_dataset
    from lrisc_sim.identity import differences, extension, folder_identity, legacy_identity, union_grid
    from lrisc_sim.provenance import run_record, utc_now

    channel = make_channel(cfg.channel)
    device = resolve_device(cfg.device)
    check_outputs_writable(out)
    cfg_path = out / "config.json"
    old = read_config(cfg_path)
    if old:
        if old.get("seed") != cfg.seed:
            raise ConfigError("seed", cfg.seed, f"{out} holds a sweep with seed {old.get('seed')}; resume with seed "
                                                f"{old.get('seed')} or choose another output folder")
    items = load_dataset(cfg.dataset, cfg.limit)
    table = ResultsTable(out / "results.csv")
    other = sorted(table.seeds - {cfg.seed})
    if other:  # config.json was deleted: the rows themselves say which seed made them
        raise ConfigError("seed", cfg.seed, f"{out / 'results.csv'} holds rows of seed {other[0]}; resume with seed "
                                            f"{other[0]} or choose another output folder")
    engine = Engine(cfg, channel, device)
    unknown = sorted(set(redo) - set(cfg.codecs))
    if unknown:
        raise ConfigError("redo", unknown, f"not a codec of this sweep (codecs: {', '.join(cfg.codecs)})",
                          show_value=True)
    listed = sorted(set(drop) & set(cfg.codecs))
    if listed:
        raise ConfigError("drop", listed, f"is a codec of this sweep; --redo recomputes its rows, --drop is for "
                                          "codecs this run no longer lists", show_value=True)
    ident = folder_identity(cfg, items)
    with_rows = {k[0] for k in table.done}
    absent = sorted(set(drop) - with_rows)
    if absent:
        raise ConfigError("drop", absent, f"{out} has no rows of it (codecs with rows: "
                                          f"{', '.join(sorted(with_rows)) or 'none'})", show_value=True)
    if drop:
        n = table.drop(drop)
        with_rows -= set(drop)
        if not quiet:
            print(f"lrisc-sim: removed {n} rows of {', '.join(sorted(drop))} from {out}", file=sys.stderr)
    outside = sorted(with_rows - set(cfg.codecs))
    if outside and not quiet:
        print(f"lrisc-sim: {out} also holds rows of {', '.join(outside)}, which this run does not list: they stay "
              f"in its tables and plots (--drop {','.join(outside)} removes them)", file=sys.stderr)
    old_ident = {"side_charge_spec": old.get("side_charge"), **(old.get("identity") or legacy_identity(old))} \
        if old else {}
    diffs = differences(old_ident, ident) if old and with_rows else []
    if diffs and not with_rows <= set(redo):
        raise _mismatch(out, diffs, old_ident, with_rows, cfg)
    if redo:
        n = table.drop(redo)
        if not quiet:
            print(f"lrisc-sim: removed {n} rows of {', '.join(redo)} to recompute them", file=sys.stderr)
        if diffs:
            print(f"lrisc-sim: {out}: every row is redone, under this run's settings "
                  f"({'; '.join(w for _, w in diffs)})", file=sys.stderr)
    fps = json.loads(json.dumps(fingerprints(engine, list(cfg.codecs)), default=str))  # as stored
    _check_stale(out, old.get("codec_fingerprints", {}), fps, table.done)
    kept = old if table.done else {}  # the folder's grid, while rows of it remain
    if drop and kept:  # a dropped codec leaves the folder's record too
        kept = {**kept, "codecs": [c for c in kept.get("codecs", []) if c not in drop],
                "codec_options": {k: v for k, v in (kept.get("codec_options") or {}).items() if k not in drop},
                "codec_fingerprints": {k: v for k, v in (kept.get("codec_fingerprints") or {}).items()
                                       if k not in drop}}
    added = extension(kept, cfg)
    if added:
        print(f"lrisc-sim: extending {out}: {', '.join(added)}", file=sys.stderr)
    tasks = engine.plan(items, table.done)
    total = count_points(tasks)
    from lrisc_sim.link import link_description

    described = link_description(channel, cfg.link_variants())
    record = _config_record(cfg, described)
    record.update(union_grid(kept, cfg))
    record["codec_options"] = {**kept.get("codec_options", {}), **record["codec_options"]}
    record["codec_fingerprints"] = {**kept.get("codec_fingerprints", {}), **fps}
    record["identity"] = ident
    run = run_record(str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})")
    record["provenance"] = run
    record["earlier_runs"] = ((old.get("earlier_runs") or []) + ([old["provenance"]] if old.get("provenance") else
                                                                  []))[-MAX_RUNS:]
    atomic_write_text(cfg_path, json.dumps(record, indent=2))  # a kill never leaves a torn config.json
    if not quiet:
        wanted = len(cfg.codecs) * len(cfg.cbr) * len(cfg.snr_db) * cfg.trials * len(items)
        done = wanted - total
        print(f"lrisc-sim: {len(items)} images, codecs {', '.join(cfg.codecs)}, CBR "
              f"{', '.join(cbr_label(c) for c in cfg.cbr)}, SNR {_values(cfg.snr_db)} dB, "
              f"{cfg.trials} trial(s), channel {described}, device {device}"
              + (f"; resuming ({done} of {wanted} rows already done)" if done else ""), file=sys.stderr)
    if executor == "ray":
        from lrisc_sim.distributed import run_tasks_ray

        run_tasks_ray(cfg, tasks, table, ray_address, progress=progress)
    elif executor == "local":
        _run_local(engine, tasks, table, total, progress)
    summary = finish(out, cfg, described, quiet=quiet, title=title, labels=labels,
                     codec_notes=engine.describe_codecs())
    run["end"] = utc_now()
    atomic_write_text(cfg_path, json.dumps(record, indent=2))
    return summary


MAX_RUNS = 50  # earlier runs' provenance records kept in config.json


def rows_of(df, cfg: SweepConfig):
    """The rows of ``df`` (a folder's ``results.csv``) that belong to the grid of ``cfg``: its codecs, CBRs, SNRs,
    trials and link variants (the folder may hold more after an extension). Images need no filter: a folder has one image list."""
    cbrs = {round(float(c), 12) for c in cfg.cbr}
    snrs = {round(float(s), 9) for s in cfg.snr_db}
    from lrisc_sim.link import channel_column

    labels = {channel_column(cfg.channel, cfg.equalizer, v) for v in cfg.link_variants()}
    keep = (df["codec"].isin(list(cfg.codecs)) & df["cbr_target"].map(lambda v: round(float(v), 12) in cbrs)
            & df["snr_db"].map(lambda v: round(float(v), 9) in snrs) & (df["trial"] < cfg.trials)
            & df["channel"].isin(labels))
    return df[keep].reset_index(drop=True)


def _values(vals, most: int = 12) -> str:
    """``0, 5, 10, 15`` or, for a long grid, ``-100 .. 100 (10001 values)``."""
    if len(vals) <= most:
        return ", ".join(f"{v:g}" for v in vals)
    return f"{min(vals):g} .. {max(vals):g} ({len(vals)} values)"


def _run_local(engine: Engine, tasks, table: ResultsTable, total: int, progress: bool) -> None:
    from tqdm import tqdm

    with tqdm(total=total, unit="img-pt", disable=not progress or total == 0, dynamic_ncols=True) as bar:
        for task in tasks:
            bar.set_description(f"{task.codec} CBR {cbr_label(task.cbr)}")
            for rows in engine.run_task(task):
                table.append(rows)
                bar.update(len(rows))


def finish(out: Path, cfg: SweepConfig, channel_desc: str, quiet: bool = False, title: str | None = None,
           labels: dict[str, str] | None = None, codec_notes: list[str] | None = None):
    """Write summary.csv, plots and codecs.txt from results.csv; print the summary table."""
    from lrisc_sim.codec import SideInfoCharge
    from lrisc_sim.plots import plot_summary

    df = load(out / "results.csv")
    summary = summarize(df)
    summary.to_csv(out / "summary.csv", index=False)
    note = f"{SideInfoCharge.parse(cfg.side_charge).describe()}; seed {cfg.seed}; {cfg.trials} trial(s)"
    if codec_notes:
        (out / "codecs.txt").write_text("\n".join(codec_notes) + "\n")
    head = f"{title}: " if title else ""
    plot_summary(summary, out, title=f"{head}{cfg.dataset} over {channel_desc}", note=note, labels=labels,
                 footer=codec_notes or ())
    if not quiet:
        print(format_summary(summary, cbr_label))
        print(f"\nresults: {out / 'results.csv'}  summary: {out / 'summary.csv'}")
    return summary


def set_threads(n: int | None) -> None:
    """Torch intra-op threads: default 1 on machines with <= 2 cores (measured faster when the other core is
    busy, ARCHITECTURE.md section 11.2), else half the cores."""
    import os

    if n is None:
        c = os.cpu_count() or 1
        n = 1 if c <= 2 else max(1, c // 2)
    torch.set_num_threads(n)
