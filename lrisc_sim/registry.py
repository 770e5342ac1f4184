"""Name -> codec factory, imported lazily so that ``lrisc-sim --help`` stays fast.

A codec spec is ``NAME`` or ``NAME:ARG`` (e.g. ``bpg-ldpc:16qam-1/2``); the factory receives ARG (or None) and
keyword options (device, checkpoint, ...). ``available()`` says, per codec, whether it can run here and why not.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from lrisc_sim.codec import Codec


@dataclass(frozen=True)
class CodecEntry:
    name: str
    target: str  # "module:factory"
    summary: str
    checkpoint: bool = False  # takes a ``checkpoint`` option (a weights file)


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


def split_spec(spec: str) -> tuple[str, str | None]:
    name, sep, arg = spec.strip().partition(":")
    return name, (arg if sep else None)


def takes_checkpoint(name: str) -> bool:
    """Whether codec ``name`` uses a ``checkpoint`` option (a weights file)."""
    e = CODECS.get(name)
    return e is not None and e.checkpoint


def checkpoint_codecs() -> list[str]:
    return [n for n, e in CODECS.items() if e.checkpoint]


def make_codec(spec: str, **options) -> Codec:
    """Build a codec from its spec; raise ``UnknownCodecError`` with the list of names for a bad name, and a
    ``ValueError`` for a ``checkpoint`` given to a codec that has none (it would be ignored)."""
    name, arg = split_spec(spec)
    entry = CODECS.get(name)
    if entry is None:
        raise UnknownCodecError(f"unknown codec '{name}': choose from {', '.join(CODECS)} (see 'lrisc-sim codecs')")
    if options.get("checkpoint") and not entry.checkpoint:
        raise ValueError(f"codec '{name}' takes no checkpoint (only {', '.join(checkpoint_codecs())} do); "
                         f"leave the checkpoint out for {name}")
    mod, _, fn = entry.target.partition(":")
    try:
        factory = getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as e:
        raise UnknownCodecError(f"codec '{name}' is not available in this installation ({e})") from e
    return factory(arg, **options)


def available() -> list[tuple[str, str, str]]:
    """(name, status, summary) for every codec; status is 'ok' or the reason it cannot run here."""
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
        rows.append((e.name, status, e.summary))
    return rows
