"""Third-party codecs and channels: entry points and ``package.module:Name`` specs, and what a spec may call.

A plugin package declares, in its ``pyproject.toml``::

    [project.entry-points."lrisc_sim.codecs"]
    echo = "my_plugin.codecs:make_echo"        # lrisc-sim sweep --codec echo
    [project.entry-points."lrisc_sim.channels"]
    phase-noise = "my_plugin.channels:PhaseNoise"  # --channel phase-noise:sigma=0.1

or, without installing anything under a name, a spec names the object directly: ``my_plugin.codecs:make_echo``
(``--codec my_plugin.codecs:make_echo:ARG``, ``--channel my_plugin.channels:PhaseNoise:sigma=0.1``). A spec whose
part before the first ``:`` is a module (dotted, ``__main__`` for a class defined in a notebook, or an importable
top-level module that is no registered name) is such an object path.

What a spec may name (checked after the import and *before* anything is called; anything else, e.g.
``os:system`` or ``json:loads``, is a one-line ``PluginError`` naming the spec, and nothing is called):

* a codec: a ``lrisc_sim.codec.Codec`` subclass that implements ``encode`` and ``decode`` (or ``run``), built as
  ``cls(**options)`` (``cls(ARG, **options)`` with an ARG), its options declared in ``cls.options``; or a
  function decorated with :func:`codec_factory` (which declares its options), called as
  ``factory(ARG or None, device=..., **options)`` and returning a ``Codec``;
* a channel: a ``channels.base.Channel`` subclass, or a function decorated with :func:`channel_factory`, called
  with the spec's ``KEY=VALUE`` options (numbers parsed) and returning a ``Channel``.

A plain function can be marked without importing lrisc-sim by setting ``fn.lrisc_sim_factory = "codec"`` (or
``"channel"``); a codec factory marked so takes no options. Importing the module a spec names runs that module's
code (as any import does); an exception there is a one-line error naming the plugin.
``examples/lrisc-sim-example-plugin`` is a complete plugin package.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

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


#: attribute set by :func:`codec_factory` / :func:`channel_factory` (or by hand) on a callable a spec may name
FACTORY_MARK = "lrisc_sim_factory"


@dataclass(frozen=True)
class FactoryInfo:
    """What :func:`codec_factory` records on a function: its options, what its ARG means and an optional
    ``check(options, cbrs)`` that refuses options a sweep would ignore (e.g. a checkpoint for another CBR)."""

    options: tuple = ()
    arg: str = ""
    check: Callable[[dict, list], None] | None = None


def codec_factory(options: Sequence[Any] = (), arg: str = "",
                  check: Callable[[dict, list], None] | None = None) -> Callable[[Callable], Callable]:
    """Decorator marking ``fn(arg, device=..., **options) -> Codec`` as a codec factory a spec may name.

    ``options``: its :class:`lrisc_sim.codec.Option` declarations (validated centrally before ``fn`` is called);
    ``arg``: what the ARG of ``NAME:ARG`` means ("" = takes none); ``check(options, cbrs)``: optional, raises a
    ``ValueError`` when an explicit option would go unused at the sweep's CBRs."""

    def mark(fn: Callable) -> Callable:
        setattr(fn, FACTORY_MARK, "codec")
        fn.lrisc_sim_codec = FactoryInfo(tuple(options), arg, check)
        return fn

    return mark


def channel_factory(fn: Callable) -> Callable:
    """Decorator marking ``fn(**options) -> Channel`` as a channel factory a spec may name."""
    setattr(fn, FACTORY_MARK, "channel")
    return fn


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
    """Import ``module:attr`` (``attr`` may be dotted) and check that it is something a ``what`` (``codec`` or
    ``channel``) spec may name (module docstring); nothing is called. One-line ``PluginError`` naming the spec
    and what is wrong (an exception raised while importing the module included)."""
    mod, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(mod)
    except ImportError as e:
        raise PluginError(f"{what} '{target}': cannot import module {mod} ({e}); install the package that "
                          "provides it or fix the module path") from None
    except Exception as e:  # noqa: BLE001 - any failure of the plugin's own import-time code
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise PluginError(f"{what} '{target}': importing plugin module {mod} failed ({type(e).__name__}"
                          f"{': ' + text if text else ''}); fix or reinstall the plugin") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PluginError(f"{what} '{target}': module {mod} has no '{attr}'; check the name after ':'") from None
    check_object(obj, target, what)
    return obj


def check_object(obj: Any, target: str, what: str) -> None:
    """``PluginError`` unless ``obj`` is what a ``what`` spec may name: a ``Codec`` (``Channel``) subclass with
    its methods implemented, or a callable marked by :func:`codec_factory` (:func:`channel_factory`)."""
    if what == "codec":
        from lrisc_sim.codec import Codec as base
    else:
        from channels.base import Channel as base
    if inspect.isclass(obj) and issubclass(obj, base):
        missing = sorted(getattr(obj, "__abstractmethods__", ()))
        if what == "codec" and obj.decode is base.decode and obj.run is base.run:
            missing.append("decode")  # neither decode nor run overridden: nothing receives
        if missing:
            raise PluginError(f"{what} '{target}': {obj.__name__} does not implement {' and '.join(missing)} "
                              f"(the {base.__name__} contract); implement {', '.join(missing)} in the class")
        return
    if callable(obj) and not inspect.isclass(obj) and getattr(obj, FACTORY_MARK, None) in (what, True):
        return
    if inspect.isclass(obj):
        kind = f"class {obj.__name__} is not a {base.__name__} subclass"
    elif callable(obj):
        kind = f"{type(obj).__name__} {getattr(obj, '__name__', '?')} is not marked as a {what} factory"
    else:
        kind = f"it is a {type(obj).__name__}, not callable"
    deco = "codec_factory(options=...)" if what == "codec" else "channel_factory"
    raise PluginError(f"{what} spec '{target}' is not a {what} plugin ({kind}); a spec may name a "
                      f"{base.__name__} subclass or a function decorated with lrisc_sim.plugins.{deco}; "
                      "nothing was called")


def declaration(obj: Any) -> FactoryInfo:
    """The options, ARG meaning and plan check of a checked codec object (:func:`check_object`): a ``Codec``
    subclass's ``options``/``spec_arg``, or what :func:`codec_factory` recorded (a hand-marked factory: none)."""
    if inspect.isclass(obj):
        return FactoryInfo(tuple(obj.options), obj.spec_arg)
    info = getattr(obj, "lrisc_sim_codec", None)  # set by codec_factory; absent on a hand-marked factory
    return info if isinstance(info, FactoryInfo) else FactoryInfo(arg="any text (passed to the factory)")


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
