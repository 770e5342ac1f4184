"""One experiment per output folder: a folder's identity, how two identities differ, and what an extension adds.

A sweep folder's *identity* is everything that defines its rows apart from the grid: the dataset and its image
list (ids and a digest of each image), the channel spec with its parameters, the equaliser, the seed, the
metrics and the side-information charge. The codecs' checkpoints, options and weights are part of it too, per
codec (``codec_fingerprints`` in ``sweep_run``, checked there with a ``--redo`` fix). It is stored in
``config.json`` (key ``identity``); a sweep with another identity is refused (:func:`differences` says what
differs), one that only adds grid points, codecs or trials *extends* the folder (:func:`extension` says by what,
:func:`union_grid` is what ``config.json`` then records). Provenance (versions, machine, time) is not identity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from lrisc_sim.grammar import cbr_label

#: identity keys compared as plain values, with the words a message uses for them
PLAIN = (("channel", "channel"), ("equalizer", "equalizer"), ("metrics", "metrics"),
         ("side_charge", "side charge"))


def image_digest(item) -> str:
    """First 16 hex digits of the SHA-256 of an image: its file's bytes (a dataset folder's lazy ``Item``), or its
    ``3 x H x W`` float32 pixels with their shape (an image held in memory, e.g. ``builtin``)."""
    h = hashlib.sha256()
    if item.path is not None:
        with open(item.path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    else:
        x = item.image.detach().to("cpu").contiguous()
        h.update(repr(tuple(x.shape)).encode())
        h.update(x.numpy().astype("<f4").tobytes())
    return h.hexdigest()[:16]


def folder_identity(cfg, items: Sequence) -> dict:
    """The identity of a sweep ``cfg`` (a ``SweepConfig``) over ``items`` (the dataset's ``Item``s, ``--limit``
    applied): a JSON-ready dict. Metrics are in table order and the side charge is its description, so that
    ``psnr,lpips`` and ``lpips,psnr`` or ``fixed`` and ``fixed:1`` are the same experiment (``side_charge_spec``
    is kept for messages only)."""
    from lrisc_sim.codec import SideInfoCharge
    from lrisc_sim.metrics import METRIC_NAMES

    return {"dataset": str(cfg.dataset), "limit": cfg.limit,
            "images": {it.id: image_digest(it) for it in items},
            "channel": cfg.channel, "equalizer": cfg.equalizer, "seed": cfg.seed,
            "metrics": [m for m in METRIC_NAMES if m in cfg.metrics],
            "side_charge": SideInfoCharge.parse(cfg.side_charge).describe(), "side_charge_spec": cfg.side_charge}


def legacy_identity(record: dict) -> dict:
    """The identity a ``config.json`` written before identities were stored implies (no image digests: the
    dataset is compared by name and ``limit``)."""
    from lrisc_sim.codec import SideInfoCharge
    from lrisc_sim.metrics import METRIC_NAMES

    try:
        charge = SideInfoCharge.parse(record.get("side_charge", "fixed")).describe()
    except (ValueError, AttributeError):
        charge = str(record.get("side_charge"))
    mets = record.get("metrics", METRIC_NAMES)
    return {"dataset": record.get("dataset"), "limit": record.get("limit"), "images": None,
            "channel": record.get("channel"), "equalizer": record.get("equalizer", "mmse"),
            "seed": record.get("seed"), "metrics": [m for m in METRIC_NAMES if m in mets], "side_charge": charge,
            "side_charge_spec": record.get("side_charge")}


def _dataset_words(ident: dict) -> str:
    n = len(ident["images"]) if ident.get("images") is not None else None
    parts = [f"{n} image{'s' if n != 1 else ''}"] if n is not None else []
    if ident.get("limit"):
        parts.append(f"limit {ident['limit']}")
    return f"{ident.get('dataset')}" + (f" ({', '.join(parts)})" if parts else "")


def _few(names: Sequence[str], k: int = 3) -> str:
    names = sorted(names)
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


def differences(old: dict, new: dict) -> list[tuple[str, str]]:
    """How the identity ``new`` (this run) differs from ``old`` (the folder's): ``[(key, words)]``, e.g.
    ``("dataset", "dataset kodak (24 images) vs builtin (3 images)")``; the seed is checked by the caller."""
    diffs = []
    oi, ni = old.get("images"), new.get("images")
    if oi is None:  # a legacy record: name and limit
        if (old.get("dataset"), old.get("limit")) != (new.get("dataset"), new.get("limit")):
            diffs.append(("dataset", f"dataset {_dataset_words(old)} vs {_dataset_words(new)}"))
    elif oi != ni:
        changed = [i for i in ni if i in oi and oi[i] != ni[i]]
        if set(oi) == set(ni) and old.get("dataset") == new.get("dataset"):
            diffs.append(("dataset", f"dataset {new.get('dataset')}: image{'s' if len(changed) > 1 else ''} "
                                     f"{_few(changed)} changed since the folder's rows were made (other bytes)"))
        else:
            extra = "" if _dataset_words(old) != _dataset_words(new) else \
                f", {len(set(ni) - set(oi))} image(s) not in the folder's list: {_few(set(ni) - set(oi))}"
            diffs.append(("dataset", f"dataset {_dataset_words(old)} vs {_dataset_words(new)}{extra}"))
    for key, words in PLAIN:
        a, b = old.get(key), new.get(key)
        if a != b:
            if key == "side_charge":  # shown as the specs (fixed, capacity), compared as what they charge
                a, b = old.get("side_charge_spec") or a, new.get("side_charge_spec") or b
            show = (lambda v: ",".join(v)) if key == "metrics" else str
            diffs.append((key, f"{words} {show(a) if a is not None else '?'} vs {show(b)}"))
    return diffs


def _cbr_value(label) -> float:
    from lrisc_sim.grammar import parse_cbr

    return float(parse_cbr(str(label))[0])


def union_grid(old: dict, cfg) -> dict:
    """The grid ``config.json`` records after this run: the folder's codecs, SNRs, CBRs (labels) and trials
    united with ``cfg``'s (old order first; SNRs sorted)."""
    codecs = list(old.get("codecs") or [])
    codecs += [c for c in cfg.codecs if c not in codecs]
    snrs = sorted({round(float(s), 9) for s in (old.get("snr_db") or [])} | {round(float(s), 9) for s in cfg.snr_db})
    cbrs = [str(c) for c in (old.get("cbr") or [])]
    have = {round(_cbr_value(c), 12) for c in cbrs}
    cbrs += [cbr_label(c) for c in cfg.cbr if round(float(c), 12) not in have]
    grid = {"codecs": codecs, "snr_db": snrs, "cbr": cbrs, "trials": max(int(old.get("trials") or 0), cfg.trials)}
    for axis, default in LINK_AXES:  # a folder made before the link axes holds the default link
        have = list(old.get(axis) or [default]) if old else []
        canon = {_link_value(axis, v) for v in have}
        grid[axis] = have + [v for v in getattr(cfg, axis) if _link_value(axis, v) not in canon]
    return grid


#: the link axes (``lrisc_sim.link``) and their default value: grid-like, a new value extends a folder
LINK_AXES = (("csi", "perfect"), ("design_snr", None), ("constellation", "none"))
LINK_WORDS = {"csi": "CSI value", "design_snr": "design SNR", "constellation": "constellation"}


def _link_value(axis: str, v):
    from lrisc_sim import link

    try:
        return {"csi": link.canonical_csi, "design_snr": link.canonical_design_snr,
                "constellation": link.canonical_constellation}[axis](v)
    except ValueError:
        return v


def extension(old: dict, cfg) -> list[str]:
    """What ``cfg`` adds to the folder's grid ``old`` (a ``config.json`` record): e.g. ``["+2 SNR points",
    "+1 codec (softcast)", "+2 trials"]``; empty when it adds nothing."""
    if not old.get("codecs"):
        return []
    u = union_grid(old, cfg)
    add = []
    n = len(u["snr_db"]) - len(old.get("snr_db") or [])
    if n > 0:
        add.append(f"+{n} SNR point{'s' if n > 1 else ''}")
    n = len(u["cbr"]) - len(old.get("cbr") or [])
    if n > 0:
        add.append(f"+{n} CBR point{'s' if n > 1 else ''}")
    new_codecs = u["codecs"][len(old["codecs"]):]
    if new_codecs:
        add.append(f"+{len(new_codecs)} codec{'s' if len(new_codecs) > 1 else ''} ({', '.join(new_codecs)})")
    for axis, default in LINK_AXES:
        new = u[axis][len(old.get(axis) or [default]):]
        if new:
            add.append(f"+{len(new)} {LINK_WORDS[axis]}{'s' if len(new) > 1 else ''} "
                       f"({', '.join('channel' if v is None else str(v) for v in new)})")
    n = u["trials"] - int(old.get("trials") or 0)
    if n > 0 and old.get("trials"):
        add.append(f"+{n} trial{'s' if n > 1 else ''}")
    return add
