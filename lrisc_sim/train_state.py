"""Resumable training state without pickle: tensors in safetensors, everything else in JSON.

A training run saves its model, EMA weights, optimizer and RNG state with :func:`save_state` and resumes with
:func:`load_state`. The file is a plain ``.safetensors`` (tensors, nothing executable) whose metadata holds one
JSON document (step, elapsed time, history, optimizer hyper-parameters, ...). Nothing read here can run code: a
pickle (e.g. an old ``state.pt``) is refused with a one-line :class:`StateError`.

Tensor names: ``model.<param>``, ``ema.<param>``, ``opt.<i>.<key>`` (per-parameter optimizer state, ``i`` the
parameter's index in the optimizer's ``state_dict``), ``rng.cpu`` (``torch.get_rng_state()``), ``rng.cuda``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch


class StateError(ValueError):
    """A training state that cannot be read, with a one-line message saying what to do."""


def save_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
               ema: dict[str, torch.Tensor] | None = None, meta: dict[str, Any] | None = None,
               tensors: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``path`` atomically (temp file + rename): model, optional EMA and optimizer state, RNG, ``meta``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        out[f"model.{k}"] = v
    for k, v in (ema or {}).items():
        out[f"ema.{k}"] = v
    opt_meta = None
    if optimizer is not None:
        sd = optimizer.state_dict()
        scalars: dict[str, dict[str, float]] = {}
        for i, st in sd["state"].items():
            for key, val in st.items():
                if torch.is_tensor(val):
                    out[f"opt.{i}.{key}"] = val
                else:
                    scalars.setdefault(str(i), {})[key] = float(val)
        opt_meta = {"param_groups": sd["param_groups"], "scalars": scalars}
    out["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        out["rng.cuda"] = torch.cuda.get_rng_state()
    for k, v in (tensors or {}).items():
        out[f"extra.{k}"] = v
    out = {k: v.detach().cpu().contiguous() for k, v in out.items()}
    doc = {"meta": meta or {}, "optimizer": opt_meta}
    tmp = path.with_name(path.name + ".tmp")
    save_file(out, str(tmp), metadata={"state": json.dumps(doc)})
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)


def read_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, document)`` of a state file; :class:`StateError` for anything but a state written here."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError as e:
        raise StateError(f"cannot read training state {path}: {e.strerror}") from None
    if head[:1] == b"\x80" or head == b"PK":
        raise StateError(f"{path} is a pickle/torch.save file, which could run code and is never loaded: delete "
                         f"it to start this training run afresh")
    try:
        with safe_open(str(path), framework="pt") as f:
            doc = json.loads((f.metadata() or {})["state"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise StateError(f"{path}: not a training state written by lrisc-sim ({type(e).__name__}); delete it to "
                         f"start this training run afresh") from None
    return tensors, doc


def load_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
               device: torch.device | str = "cpu") -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Restore ``model`` (and ``optimizer``, RNG) from ``path``; return ``(meta, ema, extra_tensors)``."""
    tensors, doc = read_state(path)
    sub = lambda p: {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}  # noqa: E731
    try:
        model.load_state_dict(sub("model."))
    except RuntimeError as e:
        raise StateError(f"{path} belongs to another architecture ({str(e).splitlines()[0]}); use another --out "
                         f"or delete the state") from None
    ema = {k: v.to(device) for k, v in sub("ema.").items()}
    if optimizer is not None and doc.get("optimizer"):
        om = doc["optimizer"]
        state: dict[int, dict[str, Any]] = {}
        for k, v in sub("opt.").items():
            i, key = k.split(".", 1)
            state.setdefault(int(i), {})[key] = v.to(device) if key != "step" else v
        for i, sc in om.get("scalars", {}).items():
            state.setdefault(int(i), {}).update(sc)
        optimizer.load_state_dict({"state": state, "param_groups": om["param_groups"]})
    if "rng.cpu" in tensors:
        torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return doc.get("meta", {}), ema, sub("extra.")


class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers.

    The decay at update n is min(decay, (1 + n) / (10 + n)), so that early in training (or after a warm start)
    the average is not dominated by the initial weights. ``updates`` counts the updates (saved with the state).
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.999, state: dict[str, torch.Tensor] | None = None,
                 updates: int = 0):
        self.decay = decay
        self.updates = updates
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if state:
            for k, v in state.items():
                if k in self.shadow and self.shadow[k].shape == v.shape:
                    self.shadow[k].copy_(v)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.lerp_(v.detach(), 1 - decay)
            else:
                s.copy_(v)

    def copy_to(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.shadow)
