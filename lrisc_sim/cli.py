"""The ``lrisc-sim`` command line. Heavy imports happen inside the commands so ``--help`` stays fast."""

from __future__ import annotations

import argparse
import sys

MAIN_EXAMPLE = "lrisc-sim sweep --snr 0:15:5 --cbr 1/48"
DEFAULT_CODECS = "lrisc,deepjscc,bpg-ldpc,softcast"  # the paper's comparison, with the shipped checkpoints

class CliError(Exception):
    """An error already phrased for the user."""


def _add_common_run_options(p: argparse.ArgumentParser, redo: bool = True) -> None:
    p.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 on <= 2 cores, else half the cores)")
    if not redo:  # transmit keeps no rows, so there is nothing to redo
        return
    p.add_argument("--redo", action="append", default=[], metavar="CODEC",
                   help="recompute the rows of these codec specs (comma-separated, repeatable), e.g. after "
                        "retraining a checkpoint; other codecs resume as usual")
    p.add_argument("--drop", action="append", default=[], metavar="CODEC",
                   help="remove the rows of these codec specs, which this run no longer lists, from the output "
                        "folder (comma-separated, repeatable)")


def build_parser() -> argparse.ArgumentParser:
    """The parser (nothing heavy is imported: `lrisc-sim --help` stays fast)."""
    p = argparse.ArgumentParser(
        prog="lrisc-sim",
        description="Link-level simulator for wireless image transmission: LRISC (latent-guided conditional "
                    "diffusion JSCC), DeepJSCC, BPG+LDPC and more over AWGN, fading and 3GPP channels.",
        epilog=f"Example: {MAIN_EXAMPLE}   (then see results in runs/sweep/)")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    p.add_argument("--version", action="store_true",
                   help="print the version (and the git commit when run from a checkout) and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("sweep", help="Monte Carlo sweep over SNR and CBR", description=(
        "Run codecs x CBR x SNR x trials over a dataset on identical channel realizations. Writes results.csv "
        "(one row per image and point, resumable: rerun the same command after an interruption), summary.csv "
        "(mean over images with a 95% CI over images), vs_snr.png / vs_cbr.png and config.json to --out."))
    s.add_argument("--snr", default="0:15:5", help="SNR grid in dB (Es/N0): '0:15:5' (inclusive), '0,3,7', '10' "
                                                   "(default 0:15:5)")
    s.add_argument("--cbr", default="1/48", help="CBR(s) k/(3HW): '1/48', '0.02', '1/64,1/16' (default 1/48)")
    s.add_argument("--codec", default=DEFAULT_CODECS,
                   help="comma-separated codec specs, e.g. 'lrisc,deepjscc,bpg-ldpc:qpsk-1/2,uncoded' "
                        f"(default {DEFAULT_CODECS}; 'lrisc-sim codecs' lists them)")
    s.add_argument("--channel", default="awgn", help="channel spec: awgn, rayleigh, rayleigh-block:L=64, "
                                                      "rayleigh-fast, rician:K=4, tdl-a ... (default awgn)")
    s.add_argument("--equalizer", default="mmse", choices=["mmse", "zf"], help="receiver equaliser (default mmse)")
    s.add_argument("--csi", default="perfect",
                   help="channel knowledge at the receiver, comma-separated values compared in one folder: 'perfect' "
                        "(default), 'ls:P' or 'lmmse:P' (P pilot symbols per coherence block, estimate of h from "
                        "them; pilots are reported in the cbr_pilot column, not charged to the codec's budget)")
    s.add_argument("--design-snr", default="channel",
                   help="the SNR the transmitters are told (encoders, MCS choice; the receiver knows its channel), "
                        "comma-separated values: 'channel' (the channel's SNR, default) or dB values, e.g. '10'; "
                        "--snr stays the channel's")
    s.add_argument("--constellation", default="none",
                   help="map every transmitted symbol to the nearest point of a unit-power constellation, "
                        "comma-separated values: none (default), qam16, qam64, psk8, bpsk, qpsk ...")
    s.add_argument("--dataset", default="builtin", help="'builtin' (scikit-image photos), 'kodak', a folder or "
                                                         "an image file (default builtin)")
    s.add_argument("--limit", type=int, default=None, help="use only the first N images")
    s.add_argument("--trials", type=int, default=1, help="channel realizations per image and point (default 1)")
    s.add_argument("--seed", type=int, default=0,
                   help="global seed of the channel realizations, 0 .. 2^32-1 (default 0)")
    s.add_argument("--batch-size", type=int, default=4, help="images per batch (default 4)")
    s.add_argument("--decode-batch", type=int, default=None, metavar="N",
                   help="rows (images x SNR/trial points) per decoder call of the codecs that decode several "
                        "points at once (softcast, uncoded, deepjscc; same numbers to the bit); 1 = one call per "
                        "point (default: 2^18 pixels on CPU, 2^26 on a GPU)")
    s.add_argument("--metrics", default="psnr,ms_ssim,lpips", help="metrics to compute (default all three)")
    s.add_argument("--side-charge", default="fixed",
                   help="how side bits are charged: 'fixed' (1 bit per channel use = rate-1/2 LDPC + QPSK), "
                        "'fixed:B' (B bits per use) or 'capacity' (log2(1+SNR)); default fixed")
    s.add_argument("--checkpoint", action="append", default=[], metavar="CODEC=PATH",
                   help="use this checkpoint for a codec, e.g. lrisc=path/to/model.safetensors (repeatable)")
    s.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local (default) or ray (tasks on a Ray cluster; --ray-address)")
    s.add_argument("--ray-address", default=None, help="existing Ray cluster address (default: local instance)")
    s.add_argument("--out", default="runs/sweep", help="output folder (default runs/sweep)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_common_run_options(s)

    r = sub.add_parser("run", help="run an experiment file (experiments/*.toml)",
                       description="Run or resume an experiment described by a TOML file; writes results/NAME/ "
                                   "(or --out).")
    r.add_argument("experiment", help="path to an experiments/*.toml file")
    r.add_argument("--out", default=None, help="output folder (default: the file's 'out' key or results/NAME)")
    r.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local (default) or ray: run the tasks on a Ray cluster (as for sweep)")
    r.add_argument("--ray-address", default=None, help="address of the Ray cluster (default: start a local one)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_common_run_options(r)

    c = sub.add_parser("compare", help="paired differences of codecs to a reference codec in a sweep folder",
                       description="Per codec, point and metric: the mean paired difference codec - REF over the "
                                   "identical realizations (mean over images, 95% t CI over images, paired t and "
                                   "Wilcoxon p-values), and the average gap over the SNR or CBR range; printed and "
                                   "written to OUT/compare_REF.csv.")
    c.add_argument("out", metavar="OUT", help="a folder written by sweep or run (with results.csv)")
    c.add_argument("--ref", required=True, metavar="CODEC", help="the reference codec spec, e.g. deepjscc")
    c.add_argument("--metrics", default=None, help="comma-separated metrics (default: those computed)")

    pl = sub.add_parser("plot", help="redraw a sweep folder's plots (labels, PDF/SVG, difference panel)",
                        description="Redraw vs_snr / vs_cbr from OUT/results.csv into OUT, with legend labels, "
                                    "file formats and an optional paired-difference panel.")
    pl.add_argument("out", metavar="OUT", help="a folder written by sweep or run (with results.csv)")
    pl.add_argument("--label", action="append", default=[], metavar="CODEC=TEXT",
                    help="legend text of a codec (repeatable; over the experiment file's labels)")
    pl.add_argument("--format", default="png", help="comma-separated: png, pdf, svg (default png)")
    pl.add_argument("--diff", default=None, metavar="REF",
                    help="add a panel of paired differences to this codec (with 95%% CIs)")
    pl.add_argument("--metrics", default=None, help="comma-separated metrics (default: those computed)")

    m = sub.add_parser("metrics", help="PSNR, MS-SSIM and LPIPS between two images",
                       description="Compare a reference image A with a distorted image B of the same size.")
    m.add_argument("a", help="reference image")
    m.add_argument("b", help="distorted image")
    m.add_argument("--metrics", default="psnr,ms_ssim,lpips",
                   help="metrics to compute, e.g. psnr for images too small for LPIPS (default psnr,ms_ssim,lpips)")
    m.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (LPIPS runs there)")

    cp = sub.add_parser("codecs", help="list codecs and whether they can run here (--options: their options)",
                        description="List every codec, whether it can run on this machine, and why not; with "
                                    "--options, each codec's options (name, type, default, valid values, meaning), "
                                    "written in a spec as NAME[:ARG]:KEY=VALUE,KEY=VALUE (e.g. lrisc:steps=8).")
    cp.add_argument("--options", nargs="?", const="", default=None, metavar="CODEC",
                    help="list the options of every codec, or of CODEC only")
    sub.add_parser("channels", help="list channel models and whether they can run here",
                   description="List every channel model, its spec grammar and availability.")

    t = sub.add_parser("transmit", help="send one image through a codec and save what it shows",
                       description="Encode one image, send it over the channel at one SNR, decode it, and save "
                                   "the output (and, for LRISC, the latent and received latent maps) to --out.")
    t.add_argument("image", help="an image file (any size; padded for the codec and cropped back)")
    t.add_argument("--codec", default="lrisc", help="a codec spec, e.g. lrisc, deepjscc, lrisc:steps=8 (default lrisc)")
    t.add_argument("--snr", default="10", help="SNR in dB (default 10)")
    t.add_argument("--cbr", default="1/48", help="one CBR, e.g. 1/48 or 0.02 (default 1/48)")
    t.add_argument("--channel", default="awgn", help="a channel spec, e.g. awgn, rayleigh-block, rician:K=4")
    t.add_argument("--equalizer", default="mmse", choices=["mmse", "zf"], help="mmse (default) or zf")
    t.add_argument("--seed", type=int, default=0, help="seed of the channel realization, 0 .. 2^32-1 (default 0)")
    t.add_argument("--checkpoint", default=None, help="weights file of the codec (default: the shipped ones)")
    t.add_argument("--out", default="runs/transmit", help="folder for output.png, source.png, maps and "
                                                          "metrics.txt (default runs/transmit)")
    _add_common_run_options(t, redo=False)

    tr = sub.add_parser("train", help="train a codec from a recipe file (recipes/*.toml)",
                        description="Run the stages of a training recipe (recipes/*.toml: the codec, its data, "
                                    "channel and SNR range, stages with their steps and losses) in order, "
                                    "resumably: the same command run again continues where it stopped. Each stage "
                                    "exports its weights and model card at every validation.")
    tr.add_argument("recipe", help="a recipe file, e.g. recipes/deepjscc_cbr1-48_rayleigh.toml")
    tr.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (bf16 autocast on CUDA; under torchrun "
                                                    "every process gets its own GPU)")
    tr.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 on <= 2 cores)")
    tr.add_argument("--max-minutes", type=float, default=None,
                    help="stop (and save) after this many minutes; the same command continues")
    tr.add_argument("--stage", default=None, help="run only this stage of the recipe (by name)")
    tr.add_argument("--fresh", action="store_true",
                    help="start the stages it runs afresh, overwriting their saved state and export (an explicit "
                         "choice: without it a rerun always continues)")
    tr.add_argument("--no-ship", action="store_true", help="do not copy the final export to the recipe's 'ship' path")
    return p


def _checkpoints(pairs: list[str], codecs: list[str]) -> dict[str, dict]:
    """``--checkpoint CODEC=PATH`` options by codec spec (every spec of the sweep with that name); a checkpoint is
    never silently ignored: one for a codec that is not swept is an error here, the rest is ``validate()``'s."""
    from lrisc_sim.registry import split_spec

    by_name: dict[str, list[str]] = {}
    for c in codecs:
        try:
            name = split_spec(c)[0]
        except ValueError:  # a malformed spec: validate() words it as --codec
            name = c
        by_name.setdefault(name, []).append(c)
    opts: dict[str, dict] = {}
    for pair in pairs:
        codec, sep, path = pair.partition("=")
        if not sep or not codec or not path:
            raise CliError(f"bad --checkpoint '{pair}': use CODEC=PATH, e.g. lrisc=model.safetensors")
        if codec not in by_name:
            raise CliError(f"--checkpoint {pair}: {codec} is not in --codec {','.join(codecs)}; add it there or "
                           "leave the checkpoint out")
        for spec in by_name[codec]:
            opts.setdefault(spec, {})["checkpoint"] = path
    return opts


def _validated(cfg):
    """``cfg.validate()`` with its error worded as the flag (``--trials: must be ...``)."""
    from lrisc_sim.sweep_config import FLAGS, ConfigError

    try:
        return cfg.validate()
    except ConfigError as e:
        raise CliError(e.worded(FLAGS)) from None


def _threads(n: int | None) -> None:
    if n is not None and n < 1:
        raise CliError(f"--threads {n}: must be a positive number of threads (or leave it out for the default)")


def _out(value: str | None) -> None:
    if value is not None and not value.strip():
        raise CliError("--out is empty: give an output folder, e.g. --out runs/sweep")


def _ray(a) -> None:
    if a.ray_address is not None and a.executor != "ray":
        raise CliError(f"--ray-address {a.ray_address} needs --executor ray (the local executor uses no cluster)")


def cmd_sweep(a) -> int:
    from lrisc_sim.grammar import parse_cbr, parse_snr
    from lrisc_sim.sweep_run import run_sweep, set_threads
    from lrisc_sim.sweep_config import SweepConfig

    snr, cbr = parse_snr(a.snr), parse_cbr(a.cbr)
    from lrisc_sim.registry import split_codec_list

    codecs = split_codec_list(a.codec)  # commas inside a spec's options stay with it (softcast:chunk=8,var_bits=16)
    metrics = tuple(m.strip() for m in a.metrics.split(",") if m.strip())
    _threads(a.threads)
    _out(a.out)
    _ray(a)
    cfg = _validated(SweepConfig(codecs=codecs, snr_db=snr, cbr=cbr, channel=a.channel, equalizer=a.equalizer,
                                 dataset=a.dataset, limit=a.limit, trials=a.trials, seed=a.seed,
                                 batch_size=a.batch_size, device=a.device, metrics=metrics,
                                 side_charge=a.side_charge, decode_batch=a.decode_batch,
                                 codec_options=_checkpoints(a.checkpoint, codecs), csi=_list(a.csi),
                                 design_snr=_list(a.design_snr), constellation=_list(a.constellation)))
    set_threads(a.threads)
    run_sweep(cfg, a.out, executor=a.executor, ray_address=a.ray_address, progress=not a.no_progress,
              redo=_codec_names(a.redo), drop=_codec_names(a.drop))
    return 0


def _list(value: str) -> list[str]:
    """A comma-separated flag value as a list (empty items dropped: the config check names an empty list)."""
    return [v.strip() for v in str(value).split(",") if v.strip()]


def _codec_names(values: list[str]) -> list[str]:
    """The codec specs of a repeatable, comma-separated flag (``--redo``, ``--drop``)."""
    return [s.strip() for v in values for s in v.split(",") if s.strip()]


def cmd_run(a) -> int:
    from lrisc_sim.experiment import run_experiment
    from lrisc_sim.sweep_run import set_threads

    _threads(a.threads)
    _out(a.out)
    _ray(a)
    set_threads(a.threads)
    from lrisc_sim.sweep_config import FLAGS, TOML_KEYS, ConfigError

    try:
        run_experiment(a.experiment, out=a.out, executor=a.executor, ray_address=a.ray_address,
                       progress=not a.no_progress, device=a.device, redo=_codec_names(a.redo),
                       drop=_codec_names(a.drop))
    except ConfigError as e:  # the file's keys, except what came from flags
        if e.field in ("out", "executor", "ray_address", "redo", "drop", "device"):
            raise CliError(e.worded(FLAGS)) from None
        raise CliError(f"{a.experiment}: key '{e.name(TOML_KEYS)}': {e.problem}") from None
    return 0


def cmd_metrics(a) -> int:
    from lrisc_sim.data import load_image
    from lrisc_sim.engine import resolve_device
    from lrisc_sim.metrics import compute_metrics

    x, y = load_image(a.a), load_image(a.b)
    if x.shape != y.shape:
        raise CliError(f"image sizes differ: {a.a} is {x.shape[2]}x{x.shape[1]}, {a.b} is {y.shape[2]}x{y.shape[1]}"
                       "; compare images of the same size")
    from lrisc_sim.codec import ImageTooSmall
    from lrisc_sim.metrics import METRIC_NAMES

    names = [n.strip() for n in a.metrics.split(",") if n.strip()]
    bad = [n for n in names if n not in METRIC_NAMES]
    if bad or not names:
        raise CliError(f"--metrics {a.metrics}: unknown metric(s) {', '.join(bad) or '(none)'}; choose from "
                       f"{','.join(METRIC_NAMES)}")
    dev = resolve_device(a.device)
    try:
        m = compute_metrics(x[None].to(dev), y[None].to(dev), [n for n in METRIC_NAMES if n in names])
    except ImageTooSmall as e:  # LPIPS on images below 32 x 32
        rest = ",".join(n for n in names if n != "lpips") or "psnr"
        raise CliError(f"{a.a} ({x.shape[2]}x{x.shape[1]} px): {str(e).split(';')[0]}; leave lpips out with "
                       f"--metrics {rest}") from None
    for k, label in (("psnr", "PSNR (dB)"), ("ms_ssim", "MS-SSIM"), ("lpips", "LPIPS (alex, v0.1)")):
        if k in m:
            print(f"{label:<20} {float(m[k][0]):.4f}")
    return 0


def _listing(rows: list[tuple[str, str, str, str]], width: int) -> None:
    for name, origin, status, summary in rows:
        print(f"{name:<{width}} {status if status == 'ok' else '-- ' + status}  [{origin}]\n{'':<{width}} {summary}")


def cmd_codecs(a) -> int:
    from lrisc_sim.registry import available, option_lines

    if a.options is not None:
        print("\n".join(option_lines(a.options or None)))
        return 0
    _listing(available(), 18)
    return 0


def cmd_channels(a) -> int:
    from channels.registry import available_channels

    _listing(available_channels(), 16)
    return 0


def cmd_transmit(a) -> int:
    from lrisc_sim.transmission import transmit
    from lrisc_sim.grammar import parse_cbr, parse_snr
    from lrisc_sim.sweep_run import set_threads
    from lrisc_sim.sweep_config import SweepConfig

    _threads(a.threads)
    _out(a.out)
    snr, cbr = parse_snr(a.snr), parse_cbr(a.cbr)  # the grammar of sweep: finite, within -100..100 dB
    if len(snr) != 1:
        raise CliError(f"--snr {a.snr}: transmit takes one SNR value, e.g. --snr 10")
    if len(cbr) != 1:
        raise CliError("transmit takes one --cbr value")
    _validated(SweepConfig(codecs=[a.codec], snr_db=snr, cbr=cbr, channel=a.channel, equalizer=a.equalizer,
                           dataset=a.image, seed=a.seed, device=a.device,
                           codec_options={a.codec: {"checkpoint": a.checkpoint}} if a.checkpoint else {}))
    set_threads(a.threads)
    t = transmit(a.image, codec=a.codec, snr_db=snr[0], cbr=float(cbr[0]), channel=a.channel,
                 equalizer=a.equalizer, seed=a.seed, checkpoint=a.checkpoint, out=a.out, device=a.device)
    for p in t.paths:
        print(p)
    return 0


def cmd_train(a) -> int:
    from lrisc_sim.recipe import run_recipe
    from lrisc_sim.train_checks import check_option

    check_option("threads", a.threads)
    check_option("max_minutes", a.max_minutes)
    _threads(a.threads)
    run_recipe(a.recipe, device=a.device, threads=a.threads or torch_threads(), max_minutes=a.max_minutes,
               fresh=a.fresh, only=a.stage, ship=not a.no_ship)  # every rank; nothing left to run is fine too
    return 0


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def cmd_compare(a) -> int:
    from lrisc_sim.paired import format_compare, run_compare

    table = run_compare(a.out, a.ref, a.metrics)
    print(format_compare(table))
    for note in table.attrs.get("notes", []):
        print(f"lrisc-sim: note: {note}", file=sys.stderr)
    print(f"\ncomparison: {table.attrs['path']}")
    return 0


def cmd_plot(a) -> int:
    from lrisc_sim.plots import parse_labels, plot_folder

    for p in plot_folder(a.out, labels=parse_labels(a.label), formats=a.format, diff=a.diff, metrics=a.metrics):
        print(p)
    return 0


COMMANDS = {"sweep": cmd_sweep, "run": cmd_run, "compare": cmd_compare, "plot": cmd_plot, "metrics": cmd_metrics,
            "codecs": cmd_codecs, "channels": cmd_channels, "transmit": cmd_transmit, "train": cmd_train}


# options whose values may start with '-' (argparse takes '-1/48' or '-5:5' for an option): such a value is
# joined to its option ('--cbr=-1/48') so that the grammar checks it and says what is wrong
NEGATIVE_OK = ("--snr", "--cbr")


def _join_negative_values(argv: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            return out + argv[i:]
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if tok in NEGATIVE_OK and len(nxt) > 1 and nxt[0] == "-" and (nxt[1].isdigit() or nxt[1] in ".:,"):
            out.append(f"{tok}={nxt}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    argv = _join_negative_values(sys.argv[1:] if argv is None else list(argv))
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.version:
        from lrisc_sim.provenance import version_line

        print(version_line())
        return 0
    if a.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[a.command](a)
    except KeyboardInterrupt:
        print("\nlrisc-sim: interrupted; finished points are saved: rerun the same command to resume",
              file=sys.stderr)
        return 130
    except Exception as e:  # one line for the user, the traceback with --debug
        if a.debug:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        from lrisc_sim.sweep_config import FLAGS, ConfigError

        if isinstance(e, ConfigError):  # a library error about a value: worded as the flag
            msg = e.worded(FLAGS)
        worded = (CliError, ValueError, FileNotFoundError, LookupError, _missing_binary_error())
        kind = "" if isinstance(e, worded) else f"{type(e).__name__}: "
        print(f"lrisc-sim: error: {kind}{msg}", file=sys.stderr)
        return 2


def _missing_binary_error() -> type:
    """The digital baseline's error for a missing or failing coder binary (its message is already worded)."""
    from baselines.digital.source import MissingBinaryError

    return MissingBinaryError


if __name__ == "__main__":
    sys.exit(main())
