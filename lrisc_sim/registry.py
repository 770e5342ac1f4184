"""Name -> codec factory, imported lazily so that ``lrisc-sim --help`` stays fast; the codec spec grammar and the
central check of codec options.

Spec grammar: ``HEAD[:ARG][:KEY=VALUE,KEY=VALUE...]``. HEAD is a registry name (the built-in codecs below and the
installed plugins, entry point group ``lrisc_sim.codecs``) or ``package.module:Name`` (``lrisc_sim.plugins``).
The ``:``-separated segments after HEAD are read left to right: a segment whose first item is ``KEY=VALUE``
(KEY an identifier) holds options, comma-separated (an item without ``=`` continues the previous value, so
``mcs=qpsk-1/2,16qam-1/2`` is one value); the segments before it form ARG (``bpg-ldpc:16qam-1/2``,
``deepjscc:0:20``, ``lrisc:PATH``). So ``lrisc:steps=8``, ``bpg-ldpc:16qam-1/2:source=hevc`` and
``my_pkg.codecs:make_echo:3:gain=2`` all parse. Every option, from a spec or given as a key (experiment file,
API), is checked against the codec's declaration (``lrisc_sim.codec.Option``) before the codec is built:
``codec_options``. ``available()`` says, per codec, where it comes from, whether it can run here and why not.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any

from lrisc_sim.codec import Codec, Option, OptionError, parse_options
from lrisc_sim.plugins import (CODEC_GROUP, FactoryInfo, PluginError, check_object, declaration, entry_points,
                               is_object_spec, load_object, plugin_rows, split_object_spec)


@dataclass(frozen=True)
class CodecEntry:
    name: str
    target: str  # "module:factory"
    summary: str
    origin: str = "built-in"


CODECS: dict[str, CodecEntry] = {
    e.name: e
    for e in [
        CodecEntry("uncoded", "baselines.analog:make_uncoded", "uncoded analog: pixels sent as symbols (no training)"),
        CodecEntry("softcast", "baselines.softcast:make_softcast",
                   "SoftCast-style linear codec: 2-D DCT chunks, power allocation, LLSE decoding (no training)"),
        CodecEntry("deepjscc", "baselines.deepjscc:make_deepjscc",
                   "DeepJSCC (Bourtsoulatze et al. 2019), CNN analog JSCC; shipped checkpoints per CBR"),
        CodecEntry("deepjscc-adaptive", "baselines.deepjscc_adaptive:make_deepjscc_adaptive",
                   "SNR-adaptive DeepJSCC (ADJSCC-style SNR attention modules): one model for every SNR"),
        CodecEntry("bpg-ldpc", "baselines.digital.codecs:make_bpg_ldpc",
                   "BPG (or HEVC-intra) + 5G LDPC + QAM; genie best-MCS envelope, ':MCS' for one MCS, ':adaptive' for "
                   "the MCS chosen from the told SNR"),
        CodecEntry("bpg-capacity", "baselines.digital.codecs:make_bpg_capacity",
                   "BPG (or HEVC-intra) at the capacity budget k log2(1+SNR), error-free (separation bound)"),
        CodecEntry("jpeg2000-ldpc", "baselines.digital.codecs:make_j2k_ldpc",
                   "JPEG2000 + 5G LDPC + QAM; genie best-MCS envelope, ':MCS' for one MCS, ':adaptive' for the MCS "
                   "chosen from the told SNR"),
        CodecEntry("jpeg2000-capacity", "baselines.digital.codecs:make_j2k_capacity",
                   "JPEG2000 at the capacity budget (separation bound)"),
        CodecEntry("lrisc", "lrisc_sim.lrisc.codec:make_lrisc",
                   "LRISC (the paper): latent-guided conditional diffusion, entropy-driven variable-length JSCC"),
    ]
}


class UnknownCodecError(ValueError):
    pass


#: settings of the run that a codec table cannot set: where they are set instead
RUN_SETTINGS = {"device": "the device is the run's (--device, or device= in the API)",
                "side_charge": "the side-information charge is the sweep's (--side-charge or the key side_charge)"}


def codec_entries() -> dict[str, CodecEntry]:
    """Every codec name: the built-in ones, then the installed plugins (a plugin cannot replace a built-in name;
    ``available()`` reports such a clash)."""
    out = dict(CODECS)
    for name, p in entry_points(CODEC_GROUP).items():
        if name not in out:
            out[name] = CodecEntry(name, p.target, f"third-party codec {p.target}", p.origin)
    return out


@dataclass(frozen=True)
class Spec:
    """A parsed codec spec: ``name`` (registry name or ``package.module:Name``), ``arg`` (None when absent) and
    the ``options`` written in it (raw text values)."""

    text: str
    name: str
    arg: str | None
    options: dict[str, str] = field(default_factory=dict)

    def identity(self) -> tuple:
        """What makes two specs the same codec (options in any order): for duplicate checks."""
        return self.name, self.arg or None, tuple(sorted(self.options.items()))


_KEY = re.compile(r"^\s*[A-Za-z_]\w*\s*=")


def parse_spec(spec: str) -> Spec:
    """Split a codec spec by the grammar of the module docstring; one-line ``OptionError`` for an option given
    twice or an ARG after the options, ``PluginError`` for a malformed object path."""
    if not isinstance(spec, str) or not spec.strip():
        raise UnknownCodecError(f"codec spec must be a non-empty string, got {spec!r}; 'lrisc-sim codecs' lists "
                                "the names")
    text = spec.strip()
    if is_object_spec(text, codec_entries()):
        name, rest = split_object_spec(text)
    else:
        name, sep, rest_ = text.partition(":")
        rest = rest_ if sep else None
    if rest is None:
        return Spec(text, name, None)
    args: list[str] = []
    options: dict[str, str] = {}
    last: str | None = None
    for seg in rest.split(":"):
        if not _KEY.match(seg):
            if options:
                raise OptionError(text, seg, seg, f"'{seg}' after the options: write NAME[:ARG]:KEY=VALUE,... "
                                                  "with the options last", True)
            args.append(seg)
            continue
        for item in seg.split(","):
            if _KEY.match(item):
                key, _, value = item.partition("=")
                key = key.strip()
                if key in options:
                    raise OptionError(text, key, value, f"option '{key}' given twice", True)
                options[key], last = value.strip(), key
            elif item.strip() and last is not None:
                options[last] += "," + item.strip()
    return Spec(text, name, ":".join(args) if args else None, options)


def split_codec_list(text: str) -> list[str]:
    """A comma-separated list of codec specs (``--codec``): a piece that is ``KEY=VALUE``, or that follows a spec
    ending in options and is no codec name or object path, continues the previous spec, so
    ``softcast:chunk=8,var_bits=16,uncoded`` is two specs and ``bpg-ldpc:mcs=qpsk-1/2,16qam-1/2`` one."""
    names = codec_entries()
    out: list[str] = []
    for piece in (p.strip() for p in str(text).split(",")):
        if not piece:
            continue
        head = piece.partition(":")[0]
        in_options = bool(out) and _KEY.match(out[-1].rpartition(":")[2]) is not None
        if out and (_KEY.match(piece) or (in_options and head not in names and ":" not in piece)):
            out[-1] += "," + piece
        else:
            out.append(piece)
    return out


def split_spec(spec: str) -> tuple[str, str | None]:
    """``NAME:ARG`` -> (NAME, ARG); ``package.module:Name:ARG`` -> (``package.module:Name``, ARG); options written
    in the spec are left out (``parse_spec`` has them)."""
    p = parse_spec(spec)
    return p.name, p.arg


def codec_entry(name: str) -> CodecEntry:
    """The entry of a codec name or ``package.module:Name`` target; ``UnknownCodecError`` listing the names."""
    if is_object_spec(name, codec_entries()):
        target = split_object_spec(name)[0]
        return CodecEntry(target, target, f"codec object {target}", "module path")
    entries = codec_entries()
    if name not in entries:
        raise UnknownCodecError(f"unknown codec '{name}': choose from {', '.join(entries)} (see 'lrisc-sim codecs'), "
                                "or name a plugin object as package.module:Name")
    return entries[name]


def codec_object(entry: CodecEntry):
    """The factory (or ``Codec`` subclass) of an entry, imported and checked (``plugins.check_object``) without
    calling it; built-in factories are trusted names of this package."""
    if entry.origin != "built-in":
        return load_object(entry.target, "codec")
    mod, _, fn = entry.target.partition(":")
    try:
        obj = getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as e:
        raise UnknownCodecError(f"codec '{entry.name}' is not available in this installation ({e})") from e
    check_object(obj, entry.target, "codec")
    return obj


def codec_declaration(name: str) -> FactoryInfo:
    """The declared options (``Option``), ARG meaning and plan check of codec ``name``."""
    return declaration(codec_object(codec_entry(name)))


def takes_checkpoint(name: str) -> bool:
    """Whether codec ``name`` declares a ``checkpoint`` option (a weights file)."""
    try:
        return any(o.name == "checkpoint" for o in codec_declaration(name).options)
    except (UnknownCodecError, PluginError):
        return False


def checkpoint_codecs() -> list[str]:
    return [n for n in codec_entries() if takes_checkpoint(n)]


def codec_options(spec: str, options: dict[str, Any] | None = None, from_file: bool = False
                  ) -> tuple[Spec, dict[str, Any]]:
    """The parsed spec and every option of it (written in the spec, and ``options`` given as keys), typed and
    checked against the codec's declaration; ``OptionError`` naming the option (``in_spec`` says where it was
    written) for an unknown one, a bad value, an option given both ways, a run setting (``device``), an ARG to a
    codec that takes none, or (``from_file``) a ``program`` option: an experiment file may not name an
    executable."""
    p = parse_spec(spec)
    info = codec_declaration(p.name)
    base = p.name
    if p.arg and not info.arg:
        raise OptionError(p.text, "", p.arg, f"{base} takes no ARG after ':' (got '{p.arg}'); options are written "
                                             f"KEY=VALUE, e.g. {base}:KEY=VALUE", True)
    declared = {o.name: o for o in info.options}
    given = dict(options or {})
    for key in given:
        if key in p.options:
            raise OptionError(p.text, key, given[key], f"option '{key}' is given both in the spec and as a key; "
                                                       "give it once")
    for src, opts in ((True, p.options), (False, given)):
        for key, value in opts.items():
            if key in RUN_SETTINGS and key not in declared:
                raise OptionError(p.text, key, value, f"'{key}' is not a codec option: {RUN_SETTINGS[key]}", src)
            if key == "checkpoint" and key not in declared:
                raise OptionError(p.text, key, value, f"codec {base} takes no checkpoint (only "
                                                      f"{', '.join(checkpoint_codecs())} do); leave it out", src)
            opt = declared.get(key)
            if from_file and opt is not None and opt.type == "program":
                raise OptionError(p.text, key, value, f"an experiment file cannot name a program to run ({key} = "
                                                      f"{value!r}); binaries come from PATH, the environment "
                                                      f"variable LRISC_{key.upper()} or the command line "
                                                      f"(--codec {p.name}:{key}=PATH)", src)
    typed = parse_options(p.text, info.options, p.options, in_spec=True)
    typed.update(parse_options(p.text, info.options, given, in_spec=False))
    return p, typed


def check_spec(spec: str, options: dict[str, Any] | None = None, cbrs: list | None = None,
               from_file: bool = False) -> None:
    """Raise the one-line error of an unknown codec, an unusable plugin object or a bad option without building
    the codec; with ``cbrs`` (the sweep's CBRs) also the codec's plan check (e.g. a DeepJSCC checkpoint made for
    another CBR, which would go unused)."""
    p, typed = codec_options(spec, options, from_file)
    check = codec_declaration(p.name).check
    if cbrs is not None and check is not None:
        check(typed, list(cbrs))


def make_codec(spec: str, device: str | None = None, **options) -> Codec:
    """Build a codec from its spec and options (checked first, :func:`codec_options`); ``device`` goes to
    factories. A plugin object that fails while building is a ``PluginError`` naming the spec."""
    p, typed = codec_options(spec, options)
    entry = codec_entry(p.name)
    obj = codec_object(entry)
    args = () if p.arg is None else (p.arg,)
    is_class = isinstance(obj, type)
    kw = typed if is_class or device is None else {"device": device, **typed}
    if entry.origin == "built-in":
        codec = obj(*args or (None,), **kw)
    else:
        try:
            codec = obj(*args, **kw) if is_class else obj(*args or (None,), **kw)
        except OptionError:  # the plugin checked its ARG by its declared option: already names the spec
            raise
        except Exception as e:  # noqa: BLE001 - the plugin's own failure, named with the spec
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise PluginError(f"codec '{p.text}' ({entry.target}) failed while being built: {type(e).__name__}"
                              f"{': ' + msg if msg else ''}") from None
    if not isinstance(codec, Codec):
        raise PluginError(f"codec '{p.name}' ({entry.target}) returned {type(codec).__name__}, not a "
                          "lrisc_sim.codec.Codec; return an instance of a Codec subclass")
    return codec


def option_lines(name: str | None = None) -> list[str]:
    """The listing of ``lrisc-sim codecs --options [NAME]``: per codec its ARG and one line per option."""
    names = [parse_spec(name).name] if name else list(codec_entries())
    lines: list[str] = []
    for n in names:
        try:
            info = codec_declaration(n)
        except (UnknownCodecError, PluginError) as e:
            if name:
                raise
            lines += [n, f"  -- {e}"]
            continue
        lines.append(n + (f"[:ARG]   ARG: {info.arg}" if info.arg else ""))
        lines += [f"  {o.describe()}" for o in info.options] or ["  (no options)"]
    return lines


def available() -> list[tuple[str, str, str, str]]:
    """(name, origin, status, summary) for every codec; status is 'ok' or the reason it cannot run here."""
    rows = []
    for e in CODECS.values():
        mod, _, fn = e.target.partition(":")
        try:
            m = importlib.import_module(mod)
            check = getattr(m, "availability", None)
            status = check(e.name) if check else "ok"
            if not hasattr(m, fn):
                status = "not implemented in this installation"
        except ImportError as ex:
            status = f"not available: {ex}"
        rows.append((e.name, e.origin, status, e.summary))
    rows += plugin_rows(CODEC_GROUP, CODECS, "codec")
    return rows
