"""Name -> codec factory, imported lazily so that ``lrisc-sim --help`` stays fast.

A codec spec is ``NAME`` or ``NAME:ARG`` (e.g. ``bpg-ldpc:16qam-1/2``); the factory receives ARG (or None) and
keyword options (device, checkpoint, ...). Names are the built-in codecs below and the installed plugins (entry
point group ``lrisc_sim.codecs``); a spec ``package.module:Name[:ARG]`` names a factory or ``Codec`` class
directly (``lrisc_sim.plugins``). ``available()`` says, per codec, where it comes from, whether it can run here
and why not.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from lrisc_sim.codec import Codec
from lrisc_sim.plugins import (CODEC_GROUP, PluginError, entry_points, is_object_spec, load_object, plugin_rows,
                               split_object_spec)


@dataclass(frozen=True)
class CodecEntry:
    name: str
    target: str  # "module:factory"
    summary: str
    checkpoint: bool = False  # takes a ``checkpoint`` option (a weights file)
    origin: str = "built-in"


CODECS: dict[str, CodecEntry] = {
    e.name: e
    for e in [
        CodecEntry("uncoded", "baselines.analog:make_uncoded", "uncoded analog: pixels sent as symbols (no training)"),
        CodecEntry("softcast", "baselines.softcast:make_softcast",
                   "SoftCast-style linear codec: 2-D DCT chunks, power allocation, LLSE decoding (no training)"),
        CodecEntry("deepjscc", "baselines.deepjscc:make_deepjscc",
                   "DeepJSCC (Bourtsoulatze et al. 2019), CNN analog JSCC; shipped checkpoints per CBR",
                   checkpoint=True),
        CodecEntry("bpg-ldpc", "baselines.digital.codecs:make_bpg_ldpc",
                   "BPG (or HEVC-intra) + 5G LDPC + QAM; best-MCS envelope, or ':MCS' for one MCS"),
        CodecEntry("bpg-capacity", "baselines.digital.codecs:make_bpg_capacity",
                   "BPG (or HEVC-intra) at the capacity budget k log2(1+SNR), error-free (separation bound)"),
        CodecEntry("jpeg2000-ldpc", "baselines.digital.codecs:make_j2k_ldpc",
                   "JPEG2000 + 5G LDPC + QAM; best-MCS envelope, or ':MCS' for one MCS"),
        CodecEntry("jpeg2000-capacity", "baselines.digital.codecs:make_j2k_capacity",
                   "JPEG2000 at the capacity budget (separation bound)"),
        CodecEntry("lrisc", "lrisc_sim.lrisc.codec:make_lrisc",
                   "LRISC (the paper): latent-guided conditional diffusion, entropy-driven variable-length JSCC",
                   checkpoint=True),
    ]
}


class UnknownCodecError(ValueError):
    pass


def codec_entries() -> dict[str, CodecEntry]:
    """Every codec name: the built-in ones, then the installed plugins (a plugin cannot replace a built-in name;
    ``available()`` reports such a clash)."""
    out = dict(CODECS)
    for name, p in entry_points(CODEC_GROUP).items():
        if name not in out:
            out[name] = CodecEntry(name, p.target, f"third-party codec {p.target}", _plugin_checkpoint(p.target),
                                   p.origin)
    return out


def _plugin_checkpoint(target: str) -> bool:
    try:
        return bool(getattr(load_object(target, "codec"), "takes_checkpoint", False))
    except PluginError:
        return False


def split_spec(spec: str) -> tuple[str, str | None]:
    """``NAME:ARG`` -> (NAME, ARG); ``package.module:Name:ARG`` -> (``package.module:Name``, ARG)."""
    if is_object_spec(spec, codec_entries()):
        return split_object_spec(spec)
    name, sep, arg = spec.strip().partition(":")
    return name, (arg if sep else None)


def codec_entry(name: str) -> CodecEntry:
    """The entry of a codec name or ``package.module:Name`` target; ``UnknownCodecError`` listing the names."""
    if is_object_spec(name, codec_entries()):
        target = split_object_spec(name)[0]
        return CodecEntry(target, target, f"codec object {target}", _plugin_checkpoint(target), "module path")
    entries = codec_entries()
    if name not in entries:
        raise UnknownCodecError(f"unknown codec '{name}': choose from {', '.join(entries)} (see 'lrisc-sim codecs'), "
                                "or name a plugin object as package.module:Name")
    return entries[name]


def takes_checkpoint(name: str) -> bool:
    """Whether codec ``name`` uses a ``checkpoint`` option (a weights file)."""
    try:
        return codec_entry(name).checkpoint
    except (UnknownCodecError, PluginError):
        return False


def checkpoint_codecs() -> list[str]:
    return [n for n, e in codec_entries().items() if e.checkpoint]


def check_spec(spec: str) -> None:
    """Raise the one-line error of an unknown codec name (or an unimportable plugin object) without building it."""
    name, _ = split_spec(spec)
    entry = codec_entry(name)
    if entry.origin != "built-in":
        load_object(entry.target, "codec")


def make_codec(spec: str, **options) -> Codec:
    """Build a codec from its spec; raise ``UnknownCodecError`` with the list of names for a bad name, and a
    ``ValueError`` for a ``checkpoint`` given to a codec that has none (it would be ignored)."""
    name, arg = split_spec(spec)
    entry = codec_entry(name)
    if options.get("checkpoint") and not entry.checkpoint:
        raise ValueError(f"codec '{name}' takes no checkpoint (only {', '.join(checkpoint_codecs())} do); "
                         f"leave the checkpoint out for {name}")
    if entry.origin == "built-in":
        mod, _, fn = entry.target.partition(":")
        try:
            factory = getattr(importlib.import_module(mod), fn)
        except (ImportError, AttributeError) as e:
            raise UnknownCodecError(f"codec '{name}' is not available in this installation ({e})") from e
    else:
        factory = load_object(entry.target, "codec")
    codec = factory(arg, **options)
    if not isinstance(codec, Codec):
        raise PluginError(f"codec '{name}' ({entry.target}) returned {type(codec).__name__}, not a "
                          "lrisc_sim.codec.Codec; return an instance of a Codec subclass")
    return codec


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
