"""The sweep configuration and its validation, in one place for every front-end.

``SweepConfig`` is what ``lrisc-sim sweep``, an experiment TOML file and ``lrisc_sim.sweep()`` fill in; each
front-end parses its own syntax (flags, keys, Python values) and calls ``validate()``, which raises a
``ConfigError`` naming the *field*. The front-end words it with its own name for the field (``FLAGS`` for the
CLI, ``TOML_KEYS`` for experiment files), so the rules and the messages' substance are written once.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from fractions import Fraction

from lrisc_sim.metrics import METRIC_NAMES

EQUALIZERS = ("mmse", "zf")
#: Most Monte Carlo trials per point; the plan as a whole is bounded by ``engine.MAX_IMAGE_POINTS``.
MAX_TRIALS = 10**6

#: The CLI flag of each field (``lrisc-sim sweep``).
FLAGS = {"codecs": "--codec", "snr_db": "--snr", "cbr": "--cbr", "channel": "--channel", "equalizer": "--equalizer",
         "dataset": "--dataset", "limit": "--limit", "trials": "--trials", "seed": "--seed",
         "batch_size": "--batch-size", "device": "--device", "metrics": "--metrics", "side_charge": "--side-charge",
         "codec_options": "--checkpoint", "decode_batch": "--decode-batch", "out": "--out", "executor": "--executor",
         "ray_address": "--ray-address", "redo": "--redo", "drop": "--drop", "csi": "--csi",
         "design_snr": "--design-snr", "constellation": "--constellation"}
#: The experiment-file key of each field (``experiments/*.toml``).
TOML_KEYS = {"codecs": "codecs[{i}].spec", "snr_db": "grid.snr", "cbr": "grid.cbr", "channel": "channel.model",
             "equalizer": "channel.equalizer", "dataset": "dataset", "limit": "limit", "trials": "trials",
             "seed": "seed", "batch_size": "batch_size", "device": "device", "metrics": "metrics",
             "side_charge": "side_charge", "codec_options": "codecs[{i}].{key}", "decode_batch": "decode_batch",
             "out": "out", "csi": "channel.csi", "design_snr": "channel.design_snr",
             "constellation": "channel.constellation"}


class ConfigError(ValueError):
    """A bad value of one ``SweepConfig`` field: ``field``, the offending ``value`` and the ``problem`` (which says
    what would do). ``str()`` is ``field: problem``; front-ends reword it with ``worded``."""

    def __init__(self, field_name: str, value, problem: str, index: int | None = None, show_value: bool = False,
                 key: str | None = None):
        self.field = field_name
        self.key = key  # the option of ``codec_options`` (``checkpoint``, ``steps``, ...)
        self.value = value
        self.problem = problem
        self.index = index  # position in a list field (e.g. which codec), when it matters
        self.show_value = show_value  # name the value after the field (paths, addresses, lists of names)
        super().__init__(self.worded({}))

    def name(self, names: dict[str, str]) -> str:
        """The front-end's name of the field (``{i}`` in a name is the list index), e.g. ``--trials``."""
        return names.get(self.field, self.field).format(i=self.index, key=self.key or "checkpoint")

    def worded(self, names: dict[str, str]) -> str:
        """The message with the front-end's name of the field, e.g. ``--trials: must be a positive integer,
        got 0`` or ``--out runs/x: exists and is not a folder; ...``."""
        v = self.value
        shown = ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
        head = f"{self.name(names)} {shown}" if self.show_value and shown.strip() else self.name(names)
        return f"{head}: {self.problem}"


@dataclass
class SweepConfig:
    """Everything a sweep needs; filled by the CLI (``lrisc-sim sweep``), experiment TOML files and
    ``lrisc_sim.sweep()``; checked by :meth:`validate`."""

    codecs: list[str]
    snr_db: list[float]
    cbr: list[Fraction | float]
    channel: str = "awgn"
    equalizer: str = "mmse"
    dataset: str = "builtin"
    limit: int | None = None
    trials: int = 1
    seed: int = 0
    batch_size: int = 4
    device: str = "auto"
    metrics: tuple[str, ...] = METRIC_NAMES
    side_charge: str = "fixed"
    codec_options: dict[str, dict] = field(default_factory=dict)
    decode_batch: int | None = None  # rows (images x points) per decode call; None: DECODE_PIXELS of the device
    # the link axes (lrisc_sim.link): every combination is a variant with its own channel column
    csi: list[str] = field(default_factory=lambda: ["perfect"])  # perfect | ls:P | lmmse:P
    design_snr: list[float | None] = field(default_factory=lambda: [None])  # None ("channel"): told the channel SNR
    constellation: list[str] = field(default_factory=lambda: ["none"])  # none | qamM | pskM | bpsk | qpsk

    def link_variants(self) -> list:
        """The ``lrisc_sim.link.LinkVariant`` of every combination of the link axes (canonical values)."""
        from lrisc_sim.link import variants

        return variants(self.csi, self.design_snr, self.constellation)

    def validate(self) -> SweepConfig:
        """Check every field (types, ranges, names of codecs, channel and metrics, checkpoints); return self or
        raise the ``ConfigError`` of the first bad field. Nothing is built or loaded (plugins are imported)."""
        from lrisc_sim.codec import OptionError, SideInfoCharge
        from lrisc_sim.registry import PluginError, UnknownCodecError, check_spec, parse_spec

        if not isinstance(self.codecs, (list, tuple)) or not self.codecs or not all(
                isinstance(c, str) and c.strip() for c in self.codecs):
            raise ConfigError("codecs", self.codecs, "give at least one codec spec ('lrisc-sim codecs' lists them)")
        if not isinstance(self.codec_options, dict) or not all(
                isinstance(v, dict) for v in self.codec_options.values()):
            raise ConfigError("codec_options", self.codec_options, "must map codec specs to dicts of options")
        for spec in self.codec_options:
            if spec not in self.codecs:
                raise ConfigError("codec_options", spec, f"options for {spec}, which is not a codec of this sweep "
                                                         f"({', '.join(self.codecs)}); add it or drop the options")
        seen: dict[tuple, str] = {}
        for i, c in enumerate(self.codecs):
            opts = self.codec_options.get(c, {})
            try:
                check_spec(c, opts)
                ident = parse_spec(c).identity()
            except OptionError as e:
                if e.in_spec:
                    raise ConfigError("codecs", c, e.problem, i, show_value=True) from None
                raise ConfigError("codec_options", e.value, e.problem, i, key=e.option) from None
            except (UnknownCodecError, PluginError) as e:
                raise ConfigError("codecs", c, str(e), i) from None
            if ident in seen:
                raise ConfigError("codecs", c, f"the codec {c} is given twice (as {seen[ident]} before): give each "
                                               "codec once; two settings of one codec differ in their spec's "
                                               "options, e.g. lrisc:steps=4 and lrisc:steps=8", i, show_value=True)
            seen[ident] = c
            ck = opts.get("checkpoint")
            if ck is not None and not os.path.isfile(str(ck)):
                raise ConfigError("codec_options", ck, f"checkpoint file {ck} of {c} not found", i)
        _numbers("snr_db", self.snr_db, lambda v: abs(v) <= 100, "SNR values must be finite, within -100..100 dB")
        _numbers("cbr", self.cbr, lambda v: 0 < v <= 1, "CBR values must lie in (0, 1], e.g. 1/48")
        _distinct("snr_db", self.snr_db, "dB")
        _distinct("cbr", self.cbr, "")
        from channels.registry import parse_channel_spec

        if not isinstance(self.channel, str):
            raise ConfigError("channel", self.channel, "must be a channel spec string, e.g. awgn or rician:K=4")
        try:
            ch_name, _ = parse_channel_spec(self.channel)
            _check_channel_object(ch_name)
        except ValueError as e:
            raise ConfigError("channel", self.channel, str(e)) from None
        _link_axes(self)
        if self.equalizer not in EQUALIZERS:
            raise ConfigError("equalizer", self.equalizer, f"unknown equaliser {self.equalizer!r}: use mmse or zf")
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ConfigError("dataset", self.dataset, "give builtin, kodak, a folder or an image file")
        for name, optional in (("trials", False), ("batch_size", False), ("limit", True), ("decode_batch", True),
                               ("seed", False)):
            v = getattr(self, name)
            if optional and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or (name != "seed" and v < 1):
                raise ConfigError(name, v, f"must be {'an' if name == 'seed' else 'a positive'} integer, got {v!r}")
        if self.trials > MAX_TRIALS:  # the whole plan is bounded too, once the images are known (engine.Plan)
            raise ConfigError("trials", self.trials, f"{self.trials:,} trials is over the limit of {MAX_TRIALS:,}; "
                                                     "use fewer trials (or split the sweep)")
        from channels.realization import SeedError, check_seed  # the one rule for seeds (0..2^32-1)

        try:
            check_seed(self.seed)
        except SeedError as e:
            raise ConfigError("seed", self.seed, e.problem) from None
        if not isinstance(self.device, str) or not (self.device in ("auto", "cpu") or self.device == "cuda"
                                                    or (self.device.startswith("cuda:")
                                                        and self.device[5:].isdigit())):
            raise ConfigError("device", self.device, f"unknown device {self.device!r}: use auto, cpu, cuda or cuda:N")
        mets = tuple(self.metrics) if isinstance(self.metrics, (list, tuple)) else ()
        bad = [m for m in mets if m not in METRIC_NAMES]
        if bad or not mets:
            raise ConfigError("metrics", self.metrics, f"unknown metric(s) {', '.join(map(str, bad)) or '(none)'}: "
                                                      f"choose from {', '.join(METRIC_NAMES)}")
        try:
            SideInfoCharge.parse(self.side_charge)
        except (ValueError, AttributeError):
            raise ConfigError("side_charge", self.side_charge, f"bad side-information charge {self.side_charge!r}: "
                                                              "use fixed, fixed:BITS_PER_USE or capacity") from None
        for i, c in enumerate(self.codecs):  # explicit options the plan would ignore (a checkpoint for another CBR)
            try:
                check_spec(c, self.codec_options.get(c, {}), cbrs=list(self.cbr))
            except OptionError as e:  # pragma: no cover - checked above
                raise ConfigError("codecs", c, e.problem, i, show_value=True) from None
            except ValueError as e:
                raise ConfigError("codec_options", c, str(e), i, key="checkpoint") from None
        return self


LINK_EXAMPLES = {"csi": "perfect,ls:2", "design_snr": "channel,10", "constellation": "none,qam16,qam64"}


def link_value(name: str, value, channel) -> str | float | None:
    """One value of the link axis ``name`` (``csi``, ``design_snr``, ``constellation``) in canonical form, checked
    (a CSI's pilots must fit ``channel``, a spec or a ``Channel``); a one-line ``ConfigError`` about ``name``
    otherwise. The one check of the sweep front-ends and of ``lrisc_sim.send``."""
    from lrisc_sim import link

    try:
        if name == "csi":
            c = link.canonical_csi(value)
            link.check_csi(c, channel)
            return c
        if name == "design_snr":
            return link.canonical_design_snr(value)
        return link.canonical_constellation(value)
    except (ValueError, TypeError) as e:
        raise ConfigError(name, value, str(e)) from None


def _link_axes(cfg: SweepConfig) -> None:
    """Check the link axes (``csi``, ``design_snr``, ``constellation``): non-empty lists of valid, distinct values
    (:func:`link_value`), pilots that fit the channel's coherence blocks."""
    for name, example in LINK_EXAMPLES.items():
        values = getattr(cfg, name)
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(name, values, f"give at least one value, e.g. {example}")
        seen: dict = {}
        for v in values:
            c = link_value(name, v, cfg.channel)
            if c in seen:
                raise ConfigError(name, [seen[c], v], f"{seen[c]} and {v} are the same value; give each once",
                                  show_value=True)
            seen[c] = v


def _check_channel_object(name: str) -> None:
    """A plugin channel's object is imported and checked (a ``Channel`` subclass or a marked factory) before the
    run, so that a spec naming anything else (``os:system``) is refused up front; nothing is called."""
    from channels.registry import CHANNEL_INFO
    from lrisc_sim.plugins import CHANNEL_GROUP, entry_points, load_object

    if name in CHANNEL_INFO:
        return
    plugin = entry_points(CHANNEL_GROUP).get(name)
    load_object(plugin.target if plugin is not None else name, "channel")


#: grid values closer than this are the same point: refused (``_distinct``), never merged or run twice
SAME_POINT = 1e-9


def _distinct(name: str, values, unit: str) -> None:
    """``ConfigError`` naming two values of a grid that are the same point (within ``SAME_POINT``)."""
    order = sorted(range(len(values)), key=lambda j: float(values[j]))
    for a, b in zip(order, order[1:]):
        if abs(float(values[a]) - float(values[b])) <= SAME_POINT:
            va, vb = (str(v) if isinstance(v, Fraction) else f"{float(v):.12g}" for v in (values[a], values[b]))
            raise ConfigError(name, [values[a], values[b]], f"{va} and {vb}{' ' + unit if unit else ''} are the same "
                                                            f"point (equal within {SAME_POINT:g}); give each value "
                                                            "once")


def _numbers(name: str, values, ok, rule: str) -> None:
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(name, values, f"give at least one value; {rule}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, Fraction)) or not math.isfinite(float(v)) \
                or not ok(v):
            raise ConfigError(name, v, f"bad value {v!r}; {rule}")
