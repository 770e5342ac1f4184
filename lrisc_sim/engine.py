"""Monte Carlo engine: codec x CBR x SNR x trial over a dataset, on identical channel realizations.

The work is split into tasks, one per (codec, CBR, batch of equal-size images); a task yields the rows of one
(SNR, trial) point at a time so that the local executor writes them as they finish. Work that does not depend on
the SNR (the encoder of an SNR-unaware codec, the unit-variance noise and fading draws) is done once per task.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch

from channels.base import Channel, ChannelOutput, Received, equalize
from channels.realization import Realization
from lrisc_sim.codec import (Codec, Context, Decoded, Encoded, ImageTooSmall, SideInfoCharge, cbr_report,
                             codec_note, encoder_needs_snr, pad_cat)
from lrisc_sim.data import Item, group_by_size, pad_to_multiple
from lrisc_sim.link import LinkPath, LinkState, LinkVariant, channel_column, row_state
from lrisc_sim.link_rules import (check_channel, check_encoded, nonfinite_pixels, underfilled, wrap_channel_error,
                                  wrap_codec_error)
from lrisc_sim.metrics import METRIC_NAMES
from lrisc_sim.results import Row, point_key
from lrisc_sim.sweep_config import ConfigError, SweepConfig

STAGES = ("encode", "channel", "decode", "metrics")


# Default bound on one decode call of a ``batched_decode`` codec, in padded pixels (rows x H x W): on a CPU 2^18
# (64 rows of 64 x 64, 4 of 256 x 256), since stacking points only pays there when a point's batch is small
# (benchmarks/results/batched_mc.txt: DeepJSCC's decode time 0.22 -> 0.14 s on single 64 x 64 images, 2.2 -> 3.1 s
# on four 256 x 256 crops); on a GPU 2^26 (1024 rows of 256 x 256). At least one point is decoded per call.
DECODE_PIXELS = {"cpu": 2**18, "cuda": 2**26}

#: Largest sweep plan, in image-points (codecs x CBRs x SNRs x trials x images): a larger one is refused before it
#: is built, with the count (``Plan``); trials alone are bounded by ``sweep_config.MAX_TRIALS``.
MAX_IMAGE_POINTS = 10**7
#: Realizations (per trial) kept alive in a task; beyond this the cache is cleared (their draws are redone).
MAX_CACHED_REALIZATIONS = 1024


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU is an error with the fix."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", device, "no CUDA GPU is visible to torch here; use cpu or auto", show_value=True)
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ConfigError("device", device, f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")
    return torch.device(device)


class PointGrid(Sequence):
    """Every (snr_db, trial) pair of a task, SNR-major, without building the list: ``len`` is
    ``len(snrs) x trials``, item ``i`` is ``(snrs[i // trials], i % trials)``; slices give lists."""

    def __init__(self, snrs: Sequence[float], trials: int):
        self.snrs = list(snrs)
        self.trials = int(trials)

    def __len__(self) -> int:
        return len(self.snrs) * self.trials

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.snrs[i // self.trials], i % self.trials

    def __eq__(self, other) -> bool:
        return list(self) == list(other) if isinstance(other, (list, PointGrid)) else NotImplemented


@dataclass
class Task:
    """One unit of work: a codec at one CBR on one batch of equal-size images, over the points still missing."""

    codec: str
    cbr: Fraction | float
    items: list[Item]
    points: Sequence[tuple[float, int]]  # (snr_db, trial) pairs still to do for at least one image (a list or a
    # PointGrid when none is done yet)
    variant: LinkVariant = LinkVariant()  # the link axes' point (CSI, design SNR, constellation)

    @property
    def n_points(self) -> int:
        return len(self.points) * len(self.items)


class Plan:
    """The tasks of a sweep, sized before they are built and made lazily (``Engine.plan``).

    The grid (codecs x CBRs x SNRs x trials x images) is checked against :data:`MAX_IMAGE_POINTS` first (a
    ``ConfigError`` with the count names the largest factor). Finished rows are counted per (codec, CBR, image) in
    one pass over ``done``: a batch with every point done is skipped, one with none done gets a ``PointGrid``
    (nothing enumerated), and only a partly done batch lists its missing points (as before: a point is missing
    when any image of the batch lacks it). Iterating yields the ``Task``s in the order of the nested loops codec,
    CBR, batch; ``total`` is the image-points still to do, ``len`` the number of tasks."""

    def __init__(self, cfg: SweepConfig, channel: str, items: Sequence[Item], done: set[tuple],
                 links: Sequence[tuple[LinkVariant, str]] | None = None):
        n_img = len(items)
        self.links = list(links) if links is not None else [(LinkVariant(), channel)]
        factors = {"codecs": len(cfg.codecs) * len(self.links), "cbr": len(cfg.cbr), "snr_db": len(cfg.snr_db),
                   "trials": int(cfg.trials), "limit": n_img}
        size = math.prod(factors.values())
        if size > MAX_IMAGE_POINTS:
            worst = max(("trials", "snr_db", "cbr", "codecs", "limit"), key=lambda f: factors[f])
            raise ConfigError(worst, getattr(cfg, worst), (
                f"the sweep has {factors['codecs']} codec(s) x {factors['cbr']} CBR(s) x {factors['snr_db']} SNR(s) "
                f"x {factors['trials']} trial(s) x {n_img} image(s) = {size:,} image-points, over the limit of "
                f"{MAX_IMAGE_POINTS:,}; use fewer trials, SNRs, CBRs or images, or split it into several sweeps"))
        self.cfg, self.channel = cfg, channel
        self.batches = list(group_by_size(items, cfg.batch_size))
        per_point = len(cfg.snr_db) * int(cfg.trials)
        self._partial: dict[tuple[int, int, int, int], list[tuple[float, int]]] = {}
        self._skip: set[tuple[int, int, int, int]] = set()
        self.total = 0
        for li, (_, label) in enumerate(self.links):
            counts = _done_counts(cfg, label, {it.id for it in items}, done)
            for ci, spec in enumerate(cfg.codecs):
                for ri, cbr in enumerate(cfg.cbr):
                    key_cbr = round(float(cbr), 12)
                    for bi, batch in enumerate(self.batches):
                        have = [counts.get((spec, key_cbr, it.id), 0) for it in batch]
                        if all(h >= per_point for h in have):
                            self._skip.add((li, ci, ri, bi))
                        elif any(have):
                            pts = [(snr, t) for snr in cfg.snr_db for t in range(cfg.trials)
                                   if any(point_key(spec, float(cbr), snr, label, t, it.id) not in done
                                          for it in batch)]
                            if pts:
                                self._partial[(li, ci, ri, bi)] = pts
                                self.total += len(pts) * len(batch)
                            else:
                                self._skip.add((li, ci, ri, bi))
                        else:
                            self.total += per_point * len(batch)
        self._n = len(self.links) * len(cfg.codecs) * len(cfg.cbr) * len(self.batches) - len(self._skip)

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[Task]:
        cfg = self.cfg
        for li, (variant, _) in enumerate(self.links):
            for ci, spec in enumerate(cfg.codecs):
                for ri, cbr in enumerate(cfg.cbr):
                    for bi, batch in enumerate(self.batches):
                        if (li, ci, ri, bi) in self._skip:
                            continue
                        pts = self._partial.get((li, ci, ri, bi))
                        yield Task(spec, cbr, batch, pts if pts is not None else PointGrid(cfg.snr_db, cfg.trials),
                                   variant)


def _done_counts(cfg: SweepConfig, channel: str, ids: set[str], done: set[tuple]) -> dict[tuple, int]:
    """Finished rows of this sweep's grid per (codec, rounded CBR, image), in one pass over ``done``."""
    codecs, cbrs = set(cfg.codecs), {round(float(c), 12) for c in cfg.cbr}
    snrs = {round(float(s), 9) for s in cfg.snr_db}
    counts: dict[tuple, int] = defaultdict(int)
    for codec, cbr, snr, ch, trial, image in done:
        if (ch == channel and codec in codecs and cbr in cbrs and snr in snrs and 0 <= trial < cfg.trials
                and image in ids):
            counts[(codec, cbr, image)] += 1
    return counts


class Engine:
    """Runs tasks of a sweep. ``timings`` accumulates seconds per codec and stage (encode, channel, decode,
    metrics) for the benchmark."""

    def __init__(self, cfg: SweepConfig, channel: Channel, device: torch.device,
                 codec_factory: Callable[[str], Codec] | None = None):
        self.cfg = cfg
        self.channel = channel
        self.device = device
        self.charge = SideInfoCharge.parse(cfg.side_charge)
        self._codecs: dict[str, Codec] = {}
        self._factory = codec_factory
        self.timings: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(STAGES, 0.0))
        self._noted: set[tuple[str, float]] = set()  # (codec, CBR) pairs already noted as not filling the budget
        self._paths: dict[LinkVariant, LinkPath] = {}
        from channels.registry import parse_channel_spec

        self._fading = parse_channel_spec(cfg.channel)[0] != "awgn"  # rows carry the channel state

    def codec(self, spec: str) -> Codec:
        if spec not in self._codecs:
            if self._factory is not None:
                c = self._factory(spec)
            else:
                from lrisc_sim.registry import make_codec

                c = make_codec(spec, device=str(self.device), **self.cfg.codec_options.get(spec, {}))
            self._codecs[spec] = c.to(self.device)
        return self._codecs[spec]

    @property
    def channel_label(self) -> str:
        """The ``channel`` column of the default link: the channel spec, plus the equaliser when it is not the
        default MMSE."""
        return channel_column(self.cfg.channel, self.cfg.equalizer)

    @property
    def links(self) -> list[tuple[LinkVariant, str]]:
        """Every link variant of the sweep (``lrisc_sim.link``) with its ``channel`` column: the default link's
        label plus the variant's suffix, e.g. ``rayleigh-block [CSI ls:2]``."""
        return [(v, channel_column(self.cfg.channel, self.cfg.equalizer, v)) for v in self.cfg.link_variants()]

    def link_path(self, variant: LinkVariant) -> LinkPath:
        if variant not in self._paths:
            self._paths[variant] = LinkPath(variant, self.channel)
        return self._paths[variant]

    def describe_codecs(self) -> list[str]:
        """One line per codec of the sweep: which coder, checkpoint or external tool produced its rows (codecs
        not used by this process, e.g. on a resume or under Ray, are built here to describe themselves)."""
        return [codec_note(spec, self.codec(spec)) for spec in self.cfg.codecs]

    def plan(self, items: Sequence[Item], done: set[tuple]) -> Plan:
        """Tasks for every (codec, CBR, batch) with at least one missing row; finished points are skipped. The plan
        is sized first (a grid over ``MAX_IMAGE_POINTS`` is refused with its count) and built lazily (``Plan``)."""
        return Plan(self.cfg, self.channel_label, items, done, self.links)

    def points_per_decode(self, codec: Codec, b: int, hw: tuple[int, int]) -> int:
        """How many (SNR, trial) points of ``b`` images of padded size ``hw`` go into one decode call: 1 unless the
        codec has ``batched_decode``; else ``decode_batch`` rows, or the device's ``DECODE_PIXELS`` bound, divided
        by ``b`` (at least 1)."""
        if not codec.batched_decode:
            return 1
        rows = self.cfg.decode_batch
        if rows is None:
            rows = DECODE_PIXELS.get(self.device.type, DECODE_PIXELS["cpu"]) // max(1, hw[0] * hw[1])
        return max(1, int(rows) // b)

    def run_task(self, task: Task) -> Iterator[list[Row]]:
        """Yield the rows of each (SNR, trial) point of a task, in order. Every point is ``codec.run(enc, send,
        ctx)`` on the encoding of its SNR (one encoding for every SNR when the encoder takes none). A
        ``batched_decode`` codec runs several consecutive points in one call (``points_per_decode``) on their
        concatenated rows; each row keeps its own realization, encoding and decoder seed, so the numbers are those
        of one call per point."""
        codec = self.codec(task.codec)
        tim = self.timings[task.codec]
        x0 = torch.stack([it.image for it in task.items]).to(self.device)
        hw = tuple(x0.shape[-2:])
        x = pad_to_multiple(x0, codec.multiple)
        ids = [it.id for it in task.items]
        cbr = float(task.cbr)
        needs_snr = encoder_needs_snr(codec, self.charge)
        variant = task.variant
        path = self.link_path(variant)
        states: dict[tuple[float, int], LinkState] = {}  # per point: the longest transmission's state
        realizations: dict[int, Realization] = {}  # made when first used; bounded (a plan may have 10^6 trials)

        def realization(trial: int) -> Realization:
            r = realizations.get(trial)
            if r is None:
                if len(realizations) >= MAX_CACHED_REALIZATIONS:
                    realizations.clear()
                r = realizations[trial] = Realization(self.cfg.seed, ids, trial, self.device)
            return r
        encoded: dict[object, tuple[Encoded, Context]] = {}
        from lrisc_sim.metrics import Reference

        reference = Reference(x0)  # the sources' LPIPS features, once for every SNR and trial
        b = len(ids)
        per = self.points_per_decode(codec, b, tuple(x.shape[-2:]))
        t_ch = 0.0

        def transmit(enc: Encoded, snr: float, trial: int) -> Received:
            nonlocal t_ch
            c0 = time.perf_counter()
            rx, state = send_checked(self.channel, self.cfg.channel, enc, float(snr), realization(trial),
                                     self.cfg.equalizer, ids, trial, path)
            before = states.get((snr, trial))
            if before is None or state.h_true.shape[1] >= before.h_true.shape[1]:
                states[(snr, trial)] = state
            t_ch += time.perf_counter() - c0
            return rx

        for start in range(0, len(task.points), per):
            chunk = task.points[start : start + per]
            t0 = time.perf_counter()
            keys = list(dict.fromkeys(variant.told(snr) if needs_snr else None for snr, _ in chunk))
            for key in [k for k in encoded if k not in keys]:
                del encoded[key]  # only the encodings of this chunk's SNRs alive at a time
            for key in keys:
                if key not in encoded:
                    snr_vec = torch.full((b,), float(key), device=self.device) if needs_snr else None
                    ctx = Context(hw, self.charge, snr_vec)
                    with torch.no_grad():
                        encoded[key] = (encode_batch(codec, x, cbr, ctx, ids, task.codec, key), ctx)
            t1 = time.perf_counter()
            t_ch = 0.0
            at = chunk[0] if len(chunk) == 1 else (None, None)  # the point named if the codec raises
            with torch.no_grad(), codec_errors(task.codec, "decode", cbr, ids, *at):
                if per == 1:
                    snr, trial = chunk[0]
                    enc, ctx = encoded[keys[0]]
                    dec, used = codec.run(enc, lambda e: transmit(e, snr, trial), ctx)
                    if used is not enc:  # e.g. the winning MCS of an envelope: the rules hold for what was sent
                        check_encoded(task.codec, used, ctx, cbr, ids, snr_db=variant.told(snr))
                    outs = [(dec, used)]
                else:
                    parts = [encoded[variant.told(snr) if needs_snr else None] for snr, _ in chunk]
                    merged = codec.concat_encoded([e for e, _ in parts])
                    snrs = [c.snr_db for _, c in parts]
                    ctx = Context(hw, self.charge, torch.cat(snrs) if needs_snr else None)

                    def send(e: Encoded) -> Received:  # every part on its own point's realization
                        if e is not merged:
                            raise RuntimeError(f"{task.codec}: run() must send the Encoded it was given")
                        return concat_received([transmit(p, snr, trial) for (p, _), (snr, trial) in zip(parts, chunk)])

                    dec, _ = codec.run(merged, send, ctx)
                    outs = [(split_decoded(dec, j * b, b), p) for j, (p, _) in enumerate(parts)]
            t2 = time.perf_counter()
            tim["encode"] += t1 - t0
            tim["channel"] += t_ch
            tim["decode"] += (t2 - t1) - t_ch
            spent = (t2 - t0) / len(chunk)  # encode, channel and decode time of one point
            for (snr, trial), (dec, enc_used) in zip(chunk, outs):
                yield self._rows(task, snr, trial, dec, enc_used, x0, reference, spent, codec,
                                 states.pop((snr, trial), None))

    def _rows(self, task: Task, snr: float, trial: int, dec: Decoded, enc_used: Encoded, x0: torch.Tensor,
              reference, spent: float, codec: Codec | None = None, state: LinkState | None = None) -> list[Row]:
        """The rows of one point from its decoded batch: metrics, CBR split and info columns (with the link's
        channel state, ``lrisc_sim.link.row_state``)."""
        tim = self.timings[task.codec]
        ids = [it.id for it in task.items]
        hw = tuple(x0.shape[-2:])
        cbr = float(task.cbr)
        t2 = time.perf_counter()
        y = dec.images[..., : hw[0], : hw[1]].clamp(0, 1)
        if not bool(torch.isfinite(y).all()):  # the codec's fault: symbols and channel outputs were checked
            raise nonfinite_pixels(task.codec, y, ids, cbr, snr, codec.weight_files() if codec is not None else ())
        try:
            mets = self.metrics(x0, y, reference)
        except ImageTooSmall as e:
            raise ImageTooSmall(f"{_which(ids, hw)}: {e}") from None
        t3 = time.perf_counter()
        rep = cbr_report(enc_used, hw, self.charge, task.variant.told(snr))
        self._note_underfill(task, enc_used, rep)
        tim["metrics"] += t3 - t2
        per_img = (spent + t3 - t2) / len(ids)
        info = {**enc_used.info, **dec.info,
                **row_state(task.variant, state, enc_used.length, snr, self._fading, dec.ok, 3 * hw[0] * hw[1])}
        label = channel_column(self.cfg.channel, self.cfg.equalizer, task.variant)
        rows = []
        for i, img in enumerate(ids):
            rows.append(Row(
                codec=task.codec, cbr_target=cbr, snr_db=float(snr), channel=label, trial=trial,
                image=img, cbr_payload=float(rep["cbr_payload"][i]), cbr_side=float(rep["cbr_side"][i]),
                cbr_total=float(rep["cbr_total"][i]),
                **{m: float(mets[m][i]) if m in mets else float("nan") for m in METRIC_NAMES},
                seconds=per_img, ok=bool(dec.ok[i]), seed=self.cfg.seed, side_charge=self.charge.describe(),
                info={k: _scalar(v[i]) for k, v in info.items()}))
        return rows

    def _note_underfill(self, task: Task, enc: Encoded, rep: dict[str, torch.Tensor]) -> None:
        """Say once per (codec, CBR) on stderr when the codec's images (those that send anything) use less than
        ``link_rules.UNDERFILL`` of the target CBR: its rows stand at the CBR it used."""
        key = (task.codec, float(task.cbr))
        if key in self._noted:
            return
        sent = enc.length.detach().cpu() > 0
        if not bool(sent.any()):
            return
        used = float(rep["cbr_total"][sent].mean())
        if underfilled(used, float(task.cbr)):
            self._noted.add(key)
            from lrisc_sim.grammar import cbr_label

            print(f"lrisc-sim: note: {task.codec} cannot fill CBR {cbr_label(task.cbr)}: it sends CBR {used:.4g} "
                  f"({100 * used / float(task.cbr):.0f}% of the target); its rows report the CBR it used "
                  "(cbr_total)", file=sys.stderr)

    def metrics(self, x: torch.Tensor, y: torch.Tensor, reference=None) -> dict[str, torch.Tensor]:
        from lrisc_sim.metrics import compute_metrics

        return {k: v.detach().cpu() for k, v in compute_metrics(x, y, self.cfg.metrics, reference).items()}


def encode_batch(codec: Codec, x: torch.Tensor, cbr: float, ctx: Context, ids: Sequence[str] | None = None,
                 spec: str | None = None, snr_db: float | None = None) -> Encoded:
    """``codec.encode(x, cbr, ctx)`` checked against the link's rules (``link_rules.check_encoded``: power and
    budget), naming the images ``ids`` in the error when they are too small for it, and the codec (``spec``, else
    its ``name``), the point and the images when it raises (``link_rules.wrap_codec_error``)."""
    name = spec or getattr(codec, "name", type(codec).__name__)
    names = list(ids) if ids is not None else [f"image{i}" for i in range(x.shape[0])]
    try:
        enc = codec.encode(x, cbr, ctx)
    except ImageTooSmall as e:
        if ids is None:
            raise
        raise ImageTooSmall(f"{_which(ids, ctx.hw)}: {e}") from None
    except Exception as e:
        err = wrap_codec_error(name, "encode", e, cbr, names, snr_db)
        if err is e:
            raise
        raise err from e
    check_encoded(name, enc, ctx, cbr, names, x.shape[0], snr_db)
    return enc


@contextmanager
def codec_errors(spec: str, stage: str, cbr: float, ids: Sequence[str], snr_db: float | None = None,
                  trial: int | None = None):
    """Re-raise an exception from inside a codec's ``stage`` as one line naming the codec, point and images
    (``link_rules.wrap_codec_error``; worded errors and channel faults pass unchanged)."""
    try:
        yield
    except Exception as e:
        err = wrap_codec_error(spec, stage, e, cbr, ids, snr_db, trial)
        if err is e:
            raise
        raise err from e


def send_checked(channel: Channel, spec: str, enc: Encoded, snr_db: float, realization: Realization,
                 equalizer: str, ids: Sequence[str], trial: int | None = None, link: LinkPath | None = None
                 ) -> tuple[Received, LinkState]:
    """The one place symbols enter the channel: ``equalize(channel(enc.symbols, snr_db, realization), equalizer)``
    through the ``link`` (``lrisc_sim.link.LinkPath``: constellation, pilots and estimated CSI; None: the default
    link), with the channel's faults named: an exception inside the channel becomes a one-line
    ``ChannelError`` naming ``spec``, and its outputs are checked (``link_rules.check_channel``: shapes, finite
    values, no zero gain under ZF). Returns the ``Received`` and the transmission's ``LinkState``."""
    if link is None:
        link = LinkPath(LinkVariant(), channel)
    try:
        sent, out, state = link.send(enc.symbols, enc.length, snr_db, realization)
    except Exception as e:
        err = wrap_channel_error(spec, e, ids, snr_db, trial)
        if err is e:
            raise
        raise err from e
    rx = equalize(out, equalizer)
    check_channel(spec, out, rx, sent, equalizer, ids, snr_db)
    return rx, state


def _which(ids: Sequence[str], hw: tuple[int, int]) -> str:
    """'image kodim01 (768x512 px)' or 'images a, b, c (64x96 px)', for error messages."""
    names = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    return f"image{'s' if len(ids) > 1 else ''} {names} ({hw[1]}x{hw[0]} px)"


def concat_received(rxs: list[Received]) -> Received:
    """The rows of ``rxs`` one after the other, symbols padded to the widest (s_hat and y 0, gain, noise
    variance and h 1: slots past a row's payload carry nothing)."""
    if len(rxs) == 1:
        return rxs[0]
    raw = ChannelOutput(y=pad_cat([r.raw.y for r in rxs]), h=pad_cat([r.raw.h for r in rxs], 1.0),
                        n0=torch.cat([r.raw.n0 for r in rxs]), snr_db=torch.cat([r.raw.snr_db for r in rxs]))
    return Received(s_hat=pad_cat([r.s_hat for r in rxs]), noise_var=pad_cat([r.noise_var for r in rxs], 1.0),
                    gain=pad_cat([r.gain for r in rxs], 1.0), raw=raw)


def split_decoded(dec: Decoded, start: int, n: int) -> Decoded:
    """Rows ``start`` .. ``start + n - 1`` of a decoded batch (images, ok and the per-image info lists)."""
    return Decoded(images=dec.images[start : start + n], ok=dec.ok[start : start + n],
                   info={k: v[start : start + n] for k, v in dec.info.items()})


def _scalar(v):
    if isinstance(v, torch.Tensor):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def count_points(tasks: Sequence[Task]) -> int:
    return sum(t.n_points for t in tasks)


def output_dir(out: str | Path) -> Path:
    """The output folder ``out``, created if needed and checked to be writable (one-line ``ConfigError``s about
    the field ``out``)."""
    import tempfile

    if not str(out).strip():
        raise ConfigError("out", out, "the output folder is empty; give one, e.g. runs/sweep")
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise ConfigError("out", p, "exists and is not a folder; choose a folder path", show_value=True)
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=p):  # can files be created there?
            pass
    except NotADirectoryError:
        raise ConfigError("out", p, "a part of this path is a file, not a folder; choose a folder path",
                          show_value=True) from None
    except OSError as e:
        raise ConfigError("out", p, f"cannot write there ({e.strerror or type(e).__name__}); choose a writable "
                                    "folder", show_value=True) from None
    return p
