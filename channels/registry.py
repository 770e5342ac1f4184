"""The channel registry and spec grammar: ``NAME`` or ``NAME:KEY=VALUE,KEY=VALUE``.

=========================  ==========================================================================
``awgn``                   y = s + n
``rayleigh``               Rayleigh block fading, one h per image (= ``rayleigh-block``)
``rayleigh-block:L=64``    Rayleigh block fading, one h per coherence block of L symbols
``rayleigh-fast``          Rayleigh fast fading, one h per symbol
``rician:K=4``             Rician block fading, factor K (linear, ``inf`` allowed), one h per image;
                           ``rician:K=4,L=64`` (= ``rician-block``) per coherence block of L symbols
``rician-fast:K=4``        Rician fast fading (diffuse part per symbol, LOS phase per image)
``tdl-a`` ... ``tdl-e``    3GPP TR 38.901 TDL over OFDM (Sionna profiles); options ``ds`` (delay spread,
                           s, default 100e-9), ``speed`` (m/s, 0), ``fc`` (Hz, 3.5e9), ``scs`` (Hz,
                           30e3), ``fft`` (subcarriers, 128); e.g. ``tdl-a:ds=300e-9,speed=3``
``tdl-a30``, ...           fixed-delay TS 38.101-4 profiles (a10 a30 b100 c60 c300 d10 d30): as above
                           without ``ds``
=========================  ==========================================================================

Third-party channels: installed plugins (entry point group ``lrisc_sim.channels``) under their names, or
``package.module:Name[:KEY=VALUE,...]`` naming a ``Channel`` class or factory (``lrisc_sim.plugins``); their
options are passed as keywords, numbers parsed.

``make_channel(spec)`` builds the channel; ``parse_channel_spec(spec)`` only checks the string (no Sionna import);
``available_channels()`` lists the names with their origin and 'ok' or why they cannot run here. Every built-in
channel's ``name`` is its canonical spec and ``describe()`` a one-line description with its parameters.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass

from channels.awgn import AWGN
from channels.base import Channel
from channels.fading import MAX_COHERENCE, RayleighFading, RicianFading
from channels.tdl import FC_RANGE, MAX_DS, MAX_FFT, MAX_SPEED, SCS_RANGE


def _float(text: str) -> float:
    v = float(text)
    if math.isnan(v):
        raise ValueError("NaN")
    return v


def _int(text: str) -> int:
    v = float(text)
    if not v.is_integer():
        raise ValueError("not an integer")
    return int(v)


@dataclass(frozen=True)
class _Option:
    key: str
    parse: Callable[[str], float]
    check: Callable[[float], bool]
    form: str  # shown in errors, e.g. "L=INT in 1..1e9"
    why: str = ""  # shown when a value is out of range


# Bounds, checked at parse time so that nothing overflows or allocates beyond reason later: L above 10^9 is refused
# (any L >= k, the symbols of one image, is one gain per image, so nothing is lost; memory stays B x k); the TDL
# options keep to the physical ranges of ``channels.tdl`` (MAX_DS, MAX_SPEED, FC_RANGE, SCS_RANGE, MAX_FFT).
MAX_L = MAX_COHERENCE
_L = _Option("L", _int, lambda v: 1 <= v <= MAX_L, "L=INT in 1..1e9",
             "any L >= the symbols of an image is one gain per image (the same as without L)")
_K = _Option("K", _float, lambda v: v >= 0, "K=FLOAT>=0|inf")
_DS = _Option("ds", _float, lambda v: 0 < v <= MAX_DS, "ds=SECONDS<=1e-5",
              "delay spreads are seconds, e.g. 300e-9 (TR 38.901 tabulates 10 ns..1 us)")
_SPEED = _Option("speed", _float, lambda v: 0 <= v <= MAX_SPEED, "speed=M/S<=1000",
                 "the terminal speed in m/s, e.g. 3 (pedestrian) or 30 (vehicle)")
_FC = _Option("fc", _float, lambda v: FC_RANGE[0] <= v <= FC_RANGE[1], "fc=HZ in 1e8..1e11")
_SCS = _Option("scs", _float, lambda v: SCS_RANGE[0] <= v <= SCS_RANGE[1], "scs=HZ in 1e3..1e7")
_FFT = _Option("fft", _int, lambda v: 1 <= v <= MAX_FFT, "fft=INT in 1..4096",
               "4096 is the largest NR FFT; symbols fill ceil(k / fft) OFDM symbols of fft subcarriers")


@dataclass(frozen=True)
class ChannelInfo:
    """One registry entry: the spec name, its options, what it needs, a one-line summary and its builder."""

    name: str
    summary: str
    build: Callable[..., Channel]
    options: tuple[_Option, ...] = ()
    required: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()  # importable modules required at run time
    hint: str = ""  # how to get what is missing

    def form(self) -> str:
        """Accepted form of the spec, e.g. ``rician:K=FLOAT>=0|inf[,L=INT>=1]``."""
        req = [o.form for o in self.options if o.key in self.required]
        opt = [o.form for o in self.options if o.key not in self.required]
        text = self.name + (":" + ",".join(req) if req else "")
        if opt:
            text += "[" + (":" if not req else ",") + ",".join(opt) + "]"
        return text


def _tdl_builder(model: str) -> Callable[..., Channel]:
    def build(ds: float | None = None, speed: float = 0.0, fc: float = 3.5e9, scs: float = 30e3,
              fft: int = 128) -> Channel:
        from channels.tdl import TDLChannel

        return TDLChannel(model, delay_spread=ds, carrier_frequency=fc, speed=speed, subcarrier_spacing=scs,
                          fft_size=fft)

    return build


_SIONNA_HINT = "needs Sionna: pip install sionna-no-rt"

_ENTRIES = [
    ChannelInfo("awgn", "additive white Gaussian noise, y = s + n", lambda: AWGN()),
    ChannelInfo("rayleigh", "Rayleigh block fading, one h per image (or per L symbols)",
                lambda L=None: RayleighFading(coherence=L), (_L,)),
    ChannelInfo("rayleigh-block", "Rayleigh block fading, one h per coherence block of L symbols (per image "
                "without L)", lambda L=None: RayleighFading(coherence=L), (_L,)),
    ChannelInfo("rayleigh-fast", "Rayleigh fast fading, i.i.d. h per symbol", lambda: RayleighFading(coherence=1)),
    ChannelInfo("rician", "Rician block fading with factor K, one h per image (or per L symbols)",
                lambda K, L=None: RicianFading(K, coherence=L), (_K, _L), ("K",)),
    ChannelInfo("rician-block", "Rician block fading with factor K, one h per coherence block of L symbols",
                lambda K, L=None: RicianFading(K, coherence=L), (_K, _L), ("K",)),
    ChannelInfo("rician-fast", "Rician fast fading with factor K (diffuse part per symbol, LOS phase per image)",
                lambda K: RicianFading(K, fast=True), (_K,), ("K",)),
]
for _m in ("A", "B", "C", "D", "E"):
    _ENTRIES.append(ChannelInfo(
        f"tdl-{_m.lower()}", f"3GPP TR 38.901 TDL-{_m} over OFDM ({'LOS' if _m in 'DE' else 'NLOS'}, Sionna "
        "profile), delay spread ds (default 100 ns)", _tdl_builder(_m), (_DS, _SPEED, _FC, _SCS, _FFT),
        needs=("sionna",), hint=_SIONNA_HINT))
for _m in ("A10", "A30", "B100", "C60", "C300", "D10", "D30"):
    _ENTRIES.append(ChannelInfo(
        f"tdl-{_m.lower()}", f"3GPP TS 38.101-4 TDL-{_m} over OFDM (fixed delays, {_m[1:]} ns RMS, Sionna "
        "profile)", _tdl_builder(_m), (_SPEED, _FC, _SCS, _FFT), needs=("sionna",), hint=_SIONNA_HINT))

#: Registry of channel names -> :class:`ChannelInfo`.
CHANNEL_INFO: dict[str, ChannelInfo] = {e.name: e for e in _ENTRIES}


def channel_spec_help() -> str:
    """One line naming the accepted channel spec forms."""
    tdl_fixed = [n for n in CHANNEL_INFO if n.startswith("tdl-") and len(n) > 5]
    parts = [e.form() for e in _ENTRIES if not e.name.startswith("tdl-")]
    parts.append("tdl-{a,b,c,d,e}" + CHANNEL_INFO["tdl-a"].form()[len("tdl-a"):])
    parts.append("{" + ",".join(tdl_fixed) + "}" + CHANNEL_INFO["tdl-a30"].form()[len("tdl-a30"):])
    return "accepted channel specs: " + "; ".join(parts)


def _plugin_value(text: str) -> int | float | str:
    for typ in (int, float):
        try:
            return typ(text)
        except ValueError:
            pass
    return text


def _plugin_options(spec: str, rest: str) -> dict[str, int | float | str]:
    """``KEY=VALUE,...`` of a plugin channel spec (numbers parsed, other values kept as text)."""
    options: dict[str, int | float | str] = {}
    for item in filter(None, (t.strip() for t in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip().isidentifier() or not value.strip():
            raise ValueError(f"bad channel spec '{spec}': option '{item}' is not KEY=VALUE")
        if key.strip() in options:
            raise ValueError(f"bad channel spec '{spec}': option '{key.strip()}' given twice")
        options[key.strip()] = _plugin_value(value.strip())
    return options


def _plugin(spec: str) -> tuple[str, str, str, str] | None:
    """(name, target, origin, options text) of a plugin channel spec, or None for a built-in name."""
    from lrisc_sim.plugins import CHANNEL_GROUP, entry_points, is_object_spec, split_object_spec

    if is_object_spec(spec, [*CHANNEL_INFO, *entry_points(CHANNEL_GROUP)]):
        target, rest = split_object_spec(spec)
        return target, target, "module path", rest or ""
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    if name in CHANNEL_INFO:
        return None
    p = entry_points(CHANNEL_GROUP).get(name)
    return (name, p.target, p.origin, rest) if p else None


def parse_channel_spec(spec: str) -> tuple[str, dict[str, float]]:
    """Check a channel spec and split it into (name, options) without building the channel.

    :input spec: `str`, e.g. ``"rician-fast:K=4"``, ``"tdl-a:ds=100e-9,speed=3"``. Names are
        case-insensitive, and so are option keys (``L``/``l``).
    :output (name, options): the registry name and a dict of parsed option values (int or float).

    Raises `ValueError` with one line: for an unknown name it lists every accepted form, for unknown, repeated,
    missing or malformed options the forms of that channel.
    """
    if not isinstance(spec, str):
        raise ValueError(f"channel spec must be a string, got {type(spec).__name__}; {channel_spec_help()}")
    plugin = _plugin(spec)
    if plugin is not None:
        return plugin[0], _plugin_options(spec, plugin[3])
    text = spec.strip()
    name, sep, rest = text.partition(":")
    name = name.strip().lower()
    info = CHANNEL_INFO.get(name)
    if info is None:
        raise ValueError(f"unknown channel '{spec}'; {channel_spec_help()}; or a plugin as package.module:Name")

    def fail(why: str) -> ValueError:
        return ValueError(f"bad channel spec '{spec}': {why}; use {info.form()}")

    options: dict[str, float] = {}
    if sep:
        if not rest.strip():
            raise fail("nothing after ':'")
        by_key = {o.key.lower(): o for o in info.options}
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            key, value = key.strip(), value.strip()
            opt = by_key.get(key.lower())
            if opt is None:
                raise fail(f"unknown option '{key}'" if key else "empty option")
            if not eq or not value:
                raise fail(f"option '{opt.key}' needs a value")
            if opt.key in options:
                raise fail(f"option '{opt.key}' given twice")
            try:
                v = opt.parse(value)
            except ValueError:
                raise fail(f"bad value '{value}' for {opt.key}") from None
            if not opt.check(v):
                raise fail(f"value {value} out of range for {opt.key} ({opt.form}"
                           + (f": {opt.why})" if opt.why else ")"))
            options[opt.key] = v
    missing = [k for k in info.required if k not in options]
    if missing:
        raise fail(f"missing {', '.join(missing)}")
    return name, options


def make_channel(spec: str) -> Channel:
    """Build a channel from its spec (grammar in the module docstring).

    :input spec: `str`, e.g. ``"awgn"``, ``"rayleigh-block:L=64"``, ``"rician:K=4"``, ``"tdl-a:speed=3"``.
    :output channel: :class:`~channels.base.Channel`; ``channel.name`` is the canonical spec.

    Raises `ValueError` (one line, naming the accepted forms) for a bad spec, and `ImportError` when the channel
    needs a package that is not installed (see :func:`available_channels`).

    >>> make_channel("rician-fast:K=4").describe()
    'Rician fast fading K=4 (6.02 dB), diffuse part per symbol, LOS phase per image, perfect CSI'
    """
    name, options = parse_channel_spec(spec)
    plugin = _plugin(spec)
    if plugin is not None:
        from lrisc_sim.plugins import PluginError, load_object

        factory = load_object(plugin[1], "channel")  # a Channel subclass or a marked factory, else refused uncalled
        try:
            ch = factory(**options)
        except Exception as e:  # noqa: BLE001 - the plugin's own failure, named with the spec
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise PluginError(f"channel '{spec}' ({plugin[1]}) failed while being built: {type(e).__name__}"
                              f"{': ' + msg if msg else ''}") from None
        if not isinstance(ch, Channel):
            raise PluginError(f"channel '{name}' ({plugin[1]}) returned {type(ch).__name__}, not a "
                              "channels.base.Channel; return an instance of a Channel subclass")
        return ch
    info = CHANNEL_INFO[name]
    missing = [m for m in info.needs if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"channel '{name}' {info.hint or 'needs ' + ', '.join(missing)}")
    return info.build(**options)


def available_channels() -> list[tuple[str, str, str, str]]:
    """``[(name, origin, status, summary)]`` for every registered channel (built-in, then installed plugins);
    status is 'ok' or why it cannot run here."""
    from lrisc_sim.plugins import CHANNEL_GROUP, plugin_rows

    rows = []
    for info in _ENTRIES:
        missing = [m for m in info.needs if importlib.util.find_spec(m) is None]
        status = "ok" if not missing else (info.hint or f"needs {', '.join(missing)}")
        rows.append((info.name, "built-in", status, info.summary))
    rows += plugin_rows(CHANNEL_GROUP, CHANNEL_INFO, "channel")
    return rows
