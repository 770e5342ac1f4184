"""Third-party codecs and channels: entry points and ``package.module:Name`` specs.

A plugin package declares, in its ``pyproject.toml``::

    [project.entry-points."lrisc_sim.codecs"]
    echo = "my_plugin.codecs:make_echo"        # lrisc-sim sweep --codec echo
    [project.entry-points."lrisc_sim.channels"]
    phase-noise = "my_plugin.channels:PhaseNoise"  # --channel phase-noise:sigma=0.1

or, without installing anything under a name, a spec names the object directly: ``my_plugin.codecs:make_echo``
(``--codec my_plugin.codecs:make_echo:ARG``, ``--channel my_plugin.channels:PhaseNoise:sigma=0.1``). A spec whose
part before the first ``:`` is a module (dotted, ``__main__`` for a class defined in a notebook, or an importable
top-level module that is no registered name) is such an object path.

How the objects are called: a codec object (a factory or a ``Codec`` subclass) as ``obj(arg, **options)``
(``arg``: the text after ``NAME:``, or None; ``options``: ``device`` and the experiment's codec keys, e.g.
``checkpoint``; a factory may set ``takes_checkpoint = True``), and must return a ``lrisc_sim.codec.Codec``; a
channel object as ``obj(**options)`` with the spec's ``KEY=VALUE`` options (numbers parsed), returning a
``channels.base.Channel``. ``examples/lrisc-sim-example-plugin`` is a complete plugin package.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata

CODEC_GROUP = "lrisc_sim.codecs"
CHANNEL_GROUP = "lrisc_sim.channels"


class PluginError(ValueError):
    """A plugin that cannot be found, imported or used; the message names it and the fix."""


@dataclass(frozen=True)
class Plugin:
    """One entry point: registry ``name``, ``target`` ``module:attr`` and its ``origin`` (distribution and
    version)."""

    name: str
    target: str
    origin: str


def entry_points(group: str) -> dict[str, Plugin]:
    """The installed plugins of ``group`` (``CODEC_GROUP`` or ``CHANNEL_GROUP``) by name."""
    out: dict[str, Plugin] = {}
    for ep in metadata.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        origin = f"plugin {dist.metadata['Name']} {dist.version}" if dist is not None else "plugin"
        out.setdefault(ep.name, Plugin(ep.name, ep.value, origin))
    return out


def is_object_spec(spec: str, known: Iterable[str] = ()) -> bool:
    """True for ``module:Name[:ARG]``: the part before the first ``:`` is a dotted module path, ``__main__`` (a
    class defined in a notebook or script), or an importable top-level module that is not one of the registry
    names ``known``."""
    head = spec.strip().partition(":")[0]
    if not head or not all(p.isidentifier() for p in head.split(".")):
        return False
    if "." in head or head == "__main__":
        return True
    return ":" in spec and head not in set(known) and importlib.util.find_spec(head) is not None


def split_object_spec(spec: str) -> tuple[str, str | None]:
    """``pkg.mod:Name:ARG`` -> (``pkg.mod:Name``, ``ARG``); ARG None when absent."""
    mod, sep, rest = spec.strip().partition(":")
    attr, sep2, arg = rest.partition(":")
    if not sep or not attr.strip():
        raise PluginError(f"bad spec '{spec}': name the object after the module, e.g. {mod}:MyCodec")
    return f"{mod}:{attr.strip()}", (arg if sep2 else None)


def load_object(target: str, what: str):
    """Import ``module:attr`` (``attr`` may be dotted); one-line ``PluginError`` naming what is wrong."""
    mod, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(mod)
    except ImportError as e:
        raise PluginError(f"{what} '{target}': cannot import module {mod} ({e}); install the package that "
                          "provides it or fix the module path") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PluginError(f"{what} '{target}': module {mod} has no '{attr}'; check the name after ':'") from None
    if not callable(obj):
        raise PluginError(f"{what} '{target}' is not callable: name a factory function or a class")
    return obj


def plugin_rows(group: str, builtin: Iterable[str], what: str) -> list[tuple[str, str, str, str]]:
    """``(name, origin, status, summary)`` of every installed plugin of ``group`` for the listings: 'ok' and the
    object's first docstring line, the reason it cannot be loaded, or 'ignored' for a built-in ``what`` name."""
    builtin = set(builtin)
    rows = []
    for name, p in entry_points(group).items():
        if name in builtin:
            rows.append((name, p.origin, f"ignored: the name of a built-in {what} ({p.target})", ""))
            continue
        try:
            obj = load_object(p.target, what)
            status, summary = "ok", (obj.__doc__ or p.target).strip().splitlines()[0]
        except PluginError as e:
            status, summary = str(e), p.target
        rows.append((name, p.origin, status, summary))
    return rows
