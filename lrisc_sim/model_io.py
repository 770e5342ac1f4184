"""One model format for every learned codec: weights in ``.safetensors``, class tag and full config in its header.

In the spirit of ``from_pretrained``: a file written by :func:`save_model` holds the module's tensors and, in
the safetensors metadata, ``format`` (:data:`FORMAT`), ``class`` (the registered tag, e.g. ``deepjscc``) and
``config`` (the JSON of the architecture). :func:`load_model` reads the header first (a pickle is refused
unparsed, ``lrisc_sim.safeio``), checks the tag, builds the class from its config (checked by the class) and
loads the tensors strictly; every failure is a one-line :class:`~lrisc_sim.safeio.CheckpointError` naming the
file. Decode-time choices (LRISC's sampler and its number of steps) are codec options, not part of a model file.

A model class joins with :func:`register_model` (``@register_model("tag")``, as CompressAI registers its
models) and provides ``config_dict() -> dict`` and ``from_config(dict) -> Module`` (a classmethod). The built-in
tags are listed in :data:`BUILTIN` and imported lazily; a plugin package registers its classes when its module is
imported (a codec spec or an installed entry point names that module). A file never makes the program import
anything by itself: its tag is looked up among the registered classes only.

Files written before this format (DeepJSCC: ``config`` only; LRISC: ``format = lrisc-v1``) load as before;
``python -m lrisc_sim.model_io convert FILE...`` rewrites their header (the tensors are kept byte for byte).
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lrisc_sim.safeio import CheckpointError, safetensors_metadata

FORMAT = "lrisc-sim-model/1"
#: Built-in model classes by tag (imported when a file of that tag is read).
BUILTIN = {"deepjscc": "baselines.deepjscc:DeepJSCC", "deepjscc-adaptive": "baselines.deepjscc_adaptive:AdaptiveDeepJSCC",
           "lrisc": "lrisc_sim.lrisc.model:LRISC"}
_REGISTRY: dict[str, type] = {}


def register_model(tag: str) -> Callable[[type], type]:
    """Class decorator: files whose ``class`` is ``tag`` are built by this class (``from_config``)."""

    def deco(cls: type) -> type:
        for name in ("config_dict", "from_config"):
            if not callable(getattr(cls, name, None)):
                raise TypeError(f"register_model({tag!r}): {cls.__name__} must define {name}()")
        have = _REGISTRY.get(tag)
        if have is not None and have is not cls and f"{have.__module__}:{have.__qualname__}" != \
                f"{cls.__module__}:{cls.__qualname__}":
            raise ValueError(f"model tag {tag!r} is already registered by {have.__module__}.{have.__qualname__}")
        _REGISTRY[tag] = cls
        cls.model_tag = tag
        return cls

    return deco


def model_class(tag: str) -> type:
    """The class registered for ``tag`` (built-ins imported on demand); ``CheckpointError`` if unknown."""
    if tag not in _REGISTRY and tag in BUILTIN:
        mod, _, attr = BUILTIN[tag].partition(":")
        getattr(importlib.import_module(mod), attr)  # importing registers it
    if tag not in _REGISTRY:
        known = ", ".join(sorted(set(BUILTIN) | set(_REGISTRY)))
        raise CheckpointError(f"no model class is registered for {tag!r} (known: {known}); import the plugin "
                              "that defines it (its codec spec does) or use a checkpoint of a known model")
    return _REGISTRY[tag]


#: how messages name the checkpoints of the built-in tags
NAMES = {"deepjscc": "DeepJSCC", "deepjscc-adaptive": "adaptive DeepJSCC", "lrisc": "LRISC"}


def header(path: str | Path, expect: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(tag, config)`` of a model file, from its header only; legacy headers are recognised. ``expect`` (a tag)
    only words the messages."""
    what = f"{NAMES.get(expect, expect)} checkpoint" if expect else "model file"
    fix = f"give a {what} written by lrisc-sim (lrisc-sim train RECIPE.toml)"
    meta = safetensors_metadata(path, what, fix)
    tag = meta.get("class")
    if tag is None and meta.get("format") == "lrisc-v1":
        tag = "lrisc"
    elif tag is None and "config" in meta:
        tag = "deepjscc"  # the only other format written before the class tag
    if tag is None or "config" not in meta:
        raise CheckpointError(f"{path}: no model class and config in its header; {fix}")
    try:
        cfg = json.loads(meta["config"])
    except ValueError:
        raise CheckpointError(f"{path}: its config is not JSON; {fix}") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: its config is not a JSON object; {fix}")
    return str(tag), cfg


def save_model(model: torch.nn.Module, path: str | Path, card: dict | None = None) -> Path:
    """Write ``model`` (a registered class) to ``path`` atomically, and its JSON model card beside it if given."""
    from safetensors.torch import save_file

    tag = getattr(type(model), "model_tag", None)
    if tag is None or _REGISTRY.get(tag) is not type(model):
        raise TypeError(f"{type(model).__name__} is not a registered model class: decorate it with "
                        "@register_model('tag')")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "class": tag, "config": json.dumps(model.config_dict(), sort_keys=True)}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    if card is not None:
        path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return path


def load_model(path: str | Path, expect: str | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The model in ``path`` (eval mode, on ``device``); ``expect`` the tag the caller needs (one-line error
    naming the file's tag otherwise)."""
    from safetensors.torch import load_file

    path = Path(path)
    tag, cfg = header(path, expect)
    if expect is not None and tag != expect:
        name, want = NAMES.get(tag, tag), NAMES.get(expect, expect)
        raise CheckpointError(f"{path} is a {name} checkpoint, not a {want} one: use it with --checkpoint "
                              f"{tag}=PATH, or give a {want} checkpoint")
    cls = model_class(tag)
    try:
        model = cls.from_config(cfg)
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: its {tag} config cannot be built ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                              f"; give a checkpoint of this version") from None
    try:
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0].rstrip(":") if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: its weights do not fit the {tag} architecture in its header ({first}); "
                              "retrain or re-export it") from None
    return model.to(device).eval()


def convert(path: str | Path) -> bool:
    """Rewrite a legacy header as :data:`FORMAT` (tensors unchanged); False when it already is."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = Path(path)
    meta = safetensors_metadata(path, "model file", "give a model file written by lrisc-sim")
    if meta.get("format") == FORMAT:
        return False
    tag, cfg = header(path)
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT, "class": tag, "config": json.dumps(cfg, sort_keys=True)})
    tmp.replace(path)
    return True


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m lrisc_sim.model_io",
                                description="Convert model files written before the class-tagged format.")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="rewrite legacy headers (tensors unchanged)")
    c.add_argument("files", nargs="+", help=".safetensors model files")
    a = p.parse_args(argv)
    for f in a.files:
        try:
            print(f"{f}: {'converted' if convert(f) else 'already ' + FORMAT}")
        except CheckpointError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
