"""Resumable training state without pickle: tensors in safetensors, everything else in JSON.

A training run saves its model, EMA weights, optimizer and RNG state with :func:`save_state` and resumes with
:func:`load_state`. The file is a plain ``.safetensors`` (tensors, nothing executable) whose metadata holds one
JSON document (step, elapsed time, history, optimizer hyper-parameters, ...). Nothing read here can run code: a
pickle (e.g. an old ``state.pt``) is refused with a one-line :class:`StateError`.

Tensor names: ``model.<param>``, ``ema.<param>``, ``opt.<i>.<key>`` (per-parameter optimizer state, ``i`` the
parameter's index in the optimizer's ``state_dict``), ``rng.cpu`` (``torch.get_rng_state()``), ``rng.cuda``.

:class:`TrainRun` is the trainer's bookkeeping around that file: step, elapsed seconds and the
validation history (the first keys of the JSON meta), the wall clock, the periodic-save and ``--max-minutes``
timers, CPU-hours and a graceful stop on SIGINT / SIGTERM (:meth:`TrainRun.stop_on_signals`: the loop ends after
the current step and saves, so an interrupted run loses nothing); :func:`weights_for_export` picks the weights a
trainer validates and exports (EMA if any), :func:`card_cpu_hours` reads the CPU-hours behind a model card.

A state or card that cannot be used is refused in one line naming the file and the fix (:class:`StateError`):
a pickle, a corrupt file, metadata without a key the trainer needs or with a value of the wrong kind
(:func:`check_meta`: e.g. a step that is not a count, or beyond the stage's ``steps``), optimizer groups or an RNG
state that do not fit, a model card that is not a JSON object (:func:`read_card`).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from lrisc_sim.safeio import HEAD_BYTES, is_pickle


class StateError(ValueError):
    """A training state that cannot be read, with a one-line message saying what to do."""


#: the fix the messages about an unusable state give (``lrisc-sim train RECIPE.toml --fresh``)
AFRESH = "run with --fresh to start the stage afresh (overwriting it) or delete it"

#: kinds of meta values :func:`check_meta` knows: a predicate and how to say it
KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "count": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"),
    "seconds": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < float("inf"),
                "a finite number >= 0"),
    "hours": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < float("inf"),
              "a finite number"),  # prior CPU-hours of a continued run can be negative (see the LRISC trainer)
    "list": (lambda v: isinstance(v, list), "a list"),
    "text": (lambda v: isinstance(v, str), "a string"),
    "path": (lambda v: v is None or isinstance(v, str), "a path or null"),
    "dict": (lambda v: isinstance(v, dict), "a JSON object"),
    "numbers": (lambda v: isinstance(v, dict) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                      for x in v.values()), "a JSON object of numbers"),
    "schedule": (lambda v: isinstance(v, list) and all(
        isinstance(x, list) and len(x) == 2 and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                                                    for i in x) for x in v), "a list of [step, steps] pairs"),
}
#: the keys every state's meta has (written by :meth:`TrainRun.meta`)
CORE_KEYS = {"step": "count", "elapsed": "seconds", "history": "list"}


def check_meta(meta: Any, path: str | Path, required: dict[str, str] | None = None,
               optional: dict[str, str] | None = None, steps: int | None = None) -> dict:
    """Check the JSON meta of state ``path`` before anything is loaded from it: the :data:`CORE_KEYS` and
    ``required`` keys present, these and the ``optional`` ones present of their kind (:data:`KINDS`), and its
    step not beyond ``steps`` (the stage's). Return ``meta``; a one-line :class:`StateError` naming
    the file, the key and the fix otherwise."""
    if not isinstance(meta, dict):
        raise StateError(f"{path}: its metadata is not a JSON object (not a state of this version); {AFRESH}")
    for key, kind in {**CORE_KEYS, **(required or {})}.items():
        if key not in meta:
            raise StateError(f"{path}: its metadata lacks '{key}' (not a complete state of this trainer); {AFRESH}")
    for key, kind in {**CORE_KEYS, **(required or {}), **(optional or {})}.items():
        ok, what = KINDS[kind]
        if key in meta and not ok(meta[key]):
            raise StateError(f"{path}: its '{key}' is {json.dumps(meta[key])[:40]}, not {what}; {AFRESH}")
    if steps is not None and meta["step"] > steps:
        raise StateError(f"{path} is at step {meta['step']}, beyond the stage's steps = {steps}: raise steps in "
                         f"the recipe to go on from it, or {AFRESH}")
    return meta


def read_card(path: str | Path, fix: str) -> dict:
    """The JSON model card at ``path`` (a JSON object); a one-line :class:`StateError` naming the file and
    ``fix`` (what the user can do) for anything else."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
            data = head + f.read()
    except OSError as e:
        raise StateError(f"cannot read model card {path}: {e.strerror}; {fix}") from None
    if is_pickle(head):
        raise StateError(f"{path} is a pickle, not a JSON model card, and is never loaded; {fix}")
    try:
        card = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        where = f" at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else ""
        raise StateError(f"{path}: not a JSON model card (unreadable{where}); {fix}") from None
    if not isinstance(card, dict):
        raise StateError(f"{path}: not a JSON model card (a {type(card).__name__}, not an object); {fix}")
    return card


def card_value(card: dict, path: str | Path, key: str, kind: str, default: Any, fix: str) -> Any:
    """``card[key]`` (``default`` when absent) checked to be of ``kind`` (:data:`KINDS`); a one-line
    :class:`StateError` naming the card, the key and ``fix`` otherwise."""
    if key not in card:
        return default
    ok, what = KINDS[kind]
    if not ok(card[key]):
        raise StateError(f"{path}: its '{key}' is {json.dumps(card[key])[:40]}, not {what}; {fix}")
    return card[key]


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


def _check_head(path: Path) -> None:
    """Refuse a file that cannot be read or is a pickle, before any parser sees it."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError as e:
        raise StateError(f"cannot read training state {path}: {e.strerror}") from None
    if is_pickle(head):
        raise StateError(f"{path} is a pickle/torch.save file, which could run code and is never loaded: delete "
                         f"it to start this training run afresh")


def _read(path: Path, tensors: bool) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open

    _check_head(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            doc = json.loads((f.metadata() or {})["state"])
            out = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
        if not isinstance(doc, dict) or not isinstance(doc.get("meta", {}), dict):
            raise TypeError("document")
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise StateError(f"{path}: not a training state written by lrisc-sim ({type(e).__name__}); delete it to "
                         f"start this training run afresh") from None
    return out, doc


def read_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, document)`` of a state file; :class:`StateError` for anything but a state written here."""
    return _read(Path(path), tensors=True)


def read_meta(path: str | Path) -> dict:
    """The JSON meta of a state file without its tensors (e.g. to compare its step with another source), with
    the same checks as :func:`read_state` (a pickle is refused before it is parsed)."""
    return _read(Path(path), tensors=False)[1].get("meta", {})


def load_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
               device: torch.device | str = "cpu") -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Restore ``model`` (and ``optimizer``, RNG) from ``path``; return ``(meta, ema, extra_tensors)``."""
    tensors, doc = read_state(path)
    return apply_state(path, tensors, doc, model, optimizer, device)


def apply_state(path: str | Path, tensors: dict[str, torch.Tensor], doc: dict, model: torch.nn.Module,
                optimizer: torch.optim.Optimizer | None = None, device: torch.device | str = "cpu"
                ) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Restore ``model``, ``optimizer`` and the RNG from a state read by :func:`read_state`; a one-line
    :class:`StateError` naming ``path`` when a part does not fit (architecture, optimizer groups, RNG)."""
    sub = lambda p: {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}  # noqa: E731
    try:
        model.load_state_dict(sub("model."))
    except RuntimeError as e:
        raise StateError(f"{path} belongs to another architecture ({str(e).splitlines()[0]}); {AFRESH}") from None
    ema = {k: v.to(device) for k, v in sub("ema.").items()}
    if optimizer is not None and doc.get("optimizer"):
        try:
            om = doc["optimizer"]
            state: dict[int, dict[str, Any]] = {}
            for k, v in sub("opt.").items():
                i, key = k.split(".", 1)
                state.setdefault(int(i), {})[key] = v.to(device) if key != "step" else v
            for i, sc in om.get("scalars", {}).items():
                state.setdefault(int(i), {}).update(sc)
            optimizer.load_state_dict({"state": state, "param_groups": om["param_groups"]})
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:
            raise StateError(f"{path}: its optimizer state does not fit this run ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:80] if str(e) else 'bad value'}); {AFRESH}") from None
    try:
        if "rng.cpu" in tensors:
            torch.set_rng_state(tensors["rng.cpu"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
    except (RuntimeError, TypeError, ValueError) as e:
        raise StateError(f"{path}: its RNG state does not fit this PyTorch ({str(e).splitlines()[0][:80]}); "
                         f"{AFRESH}") from None
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


def weights_for_export(model: torch.nn.Module, ema: EMA | None = None,
                       build: Callable[[], torch.nn.Module] | None = None) -> torch.nn.Module:
    """The weights a trainer validates and exports: ``model`` itself without EMA, else a fresh ``build()`` (an
    untrained module of the same architecture on the same device) holding the EMA weights."""
    if ema is None:
        return model
    if build is None:
        raise ValueError("weights_for_export: give build() to hold the EMA weights")
    out = build()
    ema.copy_to(out)
    return out


def card_cpu_hours(card: dict) -> float:
    """CPU-hours behind a model card: its ``cpu_hours`` (warm starts included where the trainer counts them), else
    wall time x threads of a CPU run, else 0 (a GPU run without the field)."""
    if "cpu_hours" in card:
        return float(card["cpu_hours"])
    if card.get("device", "cpu") != "cpu":
        return 0.0
    return float(card.get("wall_time_s", 0.0)) * int(card.get("threads") or 1) / 3600


class TrainRun:
    """Progress, clock and timers of one resumable training run, shared by the trainers.

    ``step``, ``elapsed`` (training seconds so far, summed over resumes) and ``history`` (one dict per validation,
    see :meth:`record`) are the first three keys of the state file's JSON meta; a trainer appends its own keys in
    :meth:`save` (DeepJSCC: warm_from, prior_cpu_hours, config; LRISC: ema, config). CPU-hours are
    ``prior_cpu_hours`` + elapsed x ``threads`` x ``world`` / 3600, with no CPU term on CUDA.

    >>> run = TrainRun("state.safetensors", threads=2, world=1)
    >>> run.elapsed = 1800.0
    >>> run.cpu_hours(), run.status(10)
    (1.0, 'in training (step 0 of 10)')
    """

    def __init__(self, path: str | Path, threads: int, world: int = 1, cuda: bool = False,
                 save_minutes: float | None = None, max_minutes: float | None = None, prior_cpu_hours: float = 0.0):
        self.path = Path(path)
        self.threads, self.world, self.cuda = threads, world, cuda
        self.save_minutes, self.max_minutes = save_minutes, max_minutes
        self.prior_cpu_hours = prior_cpu_hours
        self.step = 0
        self.elapsed = 0.0
        self.history: list[dict] = []
        self.stop_signal: int | None = None
        self._t0 = self._t_start = self._last_save = time.time()

    def resume(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
               device: torch.device | str = "cpu", steps: int | None = None, required: dict[str, str] | None = None,
               optional: dict[str, str] | None = None
               ) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Check the meta of :attr:`path` (:func:`check_meta`: the trainer's ``required`` and ``optional`` keys,
        the step not beyond ``steps``), then load it into ``model``, ``optimizer`` and the RNG
        (:func:`apply_state`); take step, elapsed and history from its meta; return ``(meta, ema,
        extra_tensors)`` for the trainer's own keys."""
        tensors, doc = read_state(self.path)
        check_meta(doc.get("meta"), self.path, required, optional, steps)
        meta, ema, extra = apply_state(self.path, tensors, doc, model, optimizer, device)
        self.step, self.elapsed, self.history = int(meta["step"]), float(meta["elapsed"]), meta["history"]
        return meta, ema, extra

    def start(self) -> None:
        """Start the clock before the first step (after any resume): ``elapsed`` continues from its value, the
        save and stop timers count from now."""
        now = time.time()
        self._t0, self._t_start, self._last_save = now - self.elapsed, now, now

    def lap(self) -> float:
        """Update and return ``elapsed``, the training seconds up to now."""
        self.elapsed = time.time() - self._t0
        return self.elapsed

    def out_of_time(self) -> bool:
        """True once ``max_minutes`` have passed since :meth:`start` (never without ``max_minutes``) or a stop
        signal arrived (:meth:`stop_on_signals`): the trainers then save and return after the current step."""
        if self.stop_signal is not None:
            return True
        return self.max_minutes is not None and time.time() - self._t_start > 60 * self.max_minutes

    def stop_reason(self) -> str:
        """Why :meth:`out_of_time` said stop, for the trainers' last message."""
        if self.stop_signal is not None:
            return f"on {signal.Signals(self.stop_signal).name}"
        return f"after {self.max_minutes:g} min"

    @contextmanager
    def stop_on_signals(self) -> Iterator[None]:
        """While active, SIGINT (Ctrl-C) and SIGTERM set :attr:`stop_signal` instead of killing the process, so the
        loop finishes its step, saves the state and returns; a second signal interrupts at once. Outside the main
        thread (where handlers cannot be installed) it does nothing."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, frame: Any) -> None:
            if self.stop_signal is not None:  # the second one: stop now
                raise KeyboardInterrupt
            self.stop_signal = signum
            print(f"\n{signal.Signals(signum).name}: stopping after this step and saving the state "
                  f"(send it again to stop at once)", file=sys.stderr, flush=True)

        for s in previous:
            signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def save_due(self) -> bool:
        """True once ``save_minutes`` have passed since the last save (or :meth:`start`)."""
        return self.save_minutes is not None and time.time() - self._last_save > 60 * self.save_minutes

    def mark_saved(self) -> None:
        """Restart the save timer (done by :meth:`save`; ranks that do not write call it themselves)."""
        self._last_save = time.time()

    def cpu_hours(self, elapsed: float | None = None) -> float:
        """CPU-hours after ``elapsed`` seconds of this run (default: :attr:`elapsed`), warm starts included."""
        t = self.elapsed if elapsed is None else elapsed
        return self.prior_cpu_hours + (0.0 if self.cuda else t * self.threads * self.world / 3600)

    def status(self, steps: int) -> str:
        """``final`` once ``steps`` are done, else ``in training (step S of N)`` (the model cards' status)."""
        return "final" if self.step >= steps else f"in training (step {self.step} of {steps})"

    def record(self, **fields: Any) -> dict:
        """Append ``{"step", **fields, "seconds", "cpu_hours"}`` to :attr:`history` (call :meth:`lap` first)."""
        entry = {"step": self.step, **fields, "seconds": round(self.elapsed, 1),
                 "cpu_hours": round(self.cpu_hours(), 4)}
        self.history.append(entry)
        return entry

    def meta(self, **extra: Any) -> dict:
        """The state's JSON meta: ``{"step", "elapsed", "history", **extra}``."""
        return {"step": self.step, "elapsed": self.elapsed, "history": self.history, **extra}

    def save(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
             ema_weights: dict[str, torch.Tensor] | None = None, **extra: Any) -> None:
        """Write the state atomically (:func:`save_state`) with :meth:`meta` and restart the save timer."""
        save_state(self.path, model, optimizer, ema_weights, self.meta(**extra))
        self.mark_saved()
