"""The rules every training option is checked against, before any work: one rule per option, one-line errors.

The trainer checks each recipe stage's values against :data:`RULES` (``StageConfig.check``: e.g. ``ema = 1.5:
must lie in [0, 1) ...``) and the ``train`` command its own options (:func:`check_option`, ``--max-minutes``,
``--threads``); :func:`check_device` the device. :func:`validate_training_args` checks a set of values under the
options' names at once (a :class:`TrainOptionError`, a ``ValueError`` the CLI prints as ``lrisc-sim: error:
<message>``, naming the flag, the value and the valid range), with the folders and files a run writes and reads.
:func:`check_loss` stops a run on a non-finite loss, naming the step. Seeds follow the one rule of
:func:`channels.realization.check_seed`.

>>> validate_training_args({"steps": 10, "ema": 0.999, "t_max_share": 0.25}, device="cpu")
>>> validate_training_args({"steps": 0}, device="cpu")
Traceback (most recent call last):
...
lrisc_sim.train_checks.TrainOptionError: --steps 0: must be an integer >= 1 (optimizer steps)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class TrainOptionError(ValueError):
    """A training option outside its rule, with a one-line message naming the flag, the value and the fix."""


class NonFiniteLoss(FloatingPointError, ValueError):
    """The training loss became NaN or infinite; the message names the step (the state saved before is kept)."""


@dataclass(frozen=True)
class Rule:
    """The valid values of one numeric option: ``kind`` ``int`` or ``float`` (finite), within ``lo`` .. ``hi``
    (``None``: unbounded; ``lo_open`` / ``hi_open`` exclude the bound); ``what`` says what the option is."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    what: str = ""

    def ok(self, v: object) -> bool:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            return False
        if self.kind == "int" and not isinstance(v, numbers.Integral):
            return False
        x = float(v)
        if not math.isfinite(x):
            return False
        if self.lo is not None and (x < self.lo or (self.lo_open and x == self.lo)):
            return False
        return not (self.hi is not None and (x > self.hi or (self.hi_open and x == self.hi)))

    def describe(self) -> str:
        """``must be an integer >= 1`` / ``must lie in [0, 1)`` / ``must be a finite number > 0`` ..."""
        num = lambda v: f"{v:g}"  # noqa: E731
        if self.lo is not None and self.hi is not None:
            rng = f"{'(' if self.lo_open else '['}{num(self.lo)}, {num(self.hi)}{')' if self.hi_open else ']'}"
            head = f"must be an integer in {rng}" if self.kind == "int" else f"must lie in {rng}"
        else:
            kind = "an integer" if self.kind == "int" else "a finite number"
            if self.lo is not None:
                head = f"must be {kind} {'>' if self.lo_open else '>='} {num(self.lo)}"
            elif self.hi is not None:
                head = f"must be {kind} {'<' if self.hi_open else '<='} {num(self.hi)}"
            else:
                head = f"must be {kind}"
        return head + (f" ({self.what})" if self.what else "")


SNR_RULE = Rule("float", -100, 100, what="dB, the sweep's range")
#: option name (the flag without ``--``, ``_`` for ``-``) -> its rule; every trainer's numeric options
RULES: dict[str, Rule] = {
    "steps": Rule("int", 1, what="optimizer steps"),
    "batch_size": Rule("int", 1, what="crops per step"),
    "crop": Rule("int", 1, what="crop size in pixels"),
    "val_crop": Rule("int", 1, what="validation crop size in pixels"),
    "lr": Rule("float", 0, 1, lo_open=True, what="learning rate"),
    "lr_final": Rule("float", 0, 1, what="learning rate at the last step"),
    "warmup": Rule("int", 0, what="warm-up steps"),
    "warmup_steps": Rule("int", 0, what="warm-up steps"),
    "ema": Rule("float", 0, 1, hi_open=True, what="EMA decay; 0: no EMA"),
    "clip": Rule("float", 0, what="gradient-norm clipping; 0: none"),
    "max_minutes": Rule("float", 0, what="minutes before the run stops and saves"),
    "save_minutes": Rule("float", 0, lo_open=True, what="minutes between saved states"),
    "val_every": Rule("int", 1, what="steps between validations"),
    "kodak_every": Rule("int", 0, what="steps between Kodak evaluations; 0: only at the end"),
    "levels": Rule("int", 1, 8, what="stride-2 layers"),
    "extra": Rule("int", 0, what="stride-1 layers"),
    "workers": Rule("int", 0, what="DataLoader workers; 0: images in memory"),
    "threads": Rule("int", 1, what="torch CPU threads"),
    "snr": SNR_RULE,
    "eval_snr": SNR_RULE,
    "lam": Rule("float", 0, what="rate weight"),
    "lam_start": Rule("float", 0, lo_open=True, what="rate weight at step 0"),
    "lam_ramp": Rule("float", 0, 1, what="share of the steps"),
    "eta": Rule("float", 0, 1, what="perceptual share of the distortion"),
    "aux_weight": Rule("float", 0, what="loss weight"),
    "latent_weight": Rule("float", 0, what="loss weight"),
    "t_max_share": Rule("float", 0, 1, what="share of each batch"),
    "lpips_max_t": Rule("float", 0, 1, what="share of the diffusion steps"),
    "sample_steps": Rule("int", 1, what="denoising steps"),
    "val_steps": Rule("int", 1, what="denoising steps"),
}

DEVICES = "cpu, cuda or cuda:N"


def flag(name: str) -> str:
    """``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def check_option(name: str, value: object) -> None:
    """One option against its rule in :data:`RULES` (``None``: left at its default, not checked)."""
    rule = RULES[name]
    if value is not None and not rule.ok(value):
        raise TrainOptionError(f"{flag(name)} {value!r}: {rule.describe()}")


def check_device(device: str) -> None:
    """``cpu``, ``cuda`` or ``cuda:N`` that exists here; anything else names the valid devices."""
    import torch

    dev = str(device)
    head, _, index = dev.partition(":")
    if dev == "cpu":
        return
    if head != "cuda" or (index and not index.isdigit()):
        raise TrainOptionError(f"--device {dev}: not a training device; use {DEVICES}")
    if not torch.cuda.is_available():
        raise TrainOptionError(f"--device {dev}: this PyTorch sees no CUDA GPU (not compiled with CUDA, or no "
                               "GPU visible); use --device cpu")
    n = torch.cuda.device_count()
    if index and int(index) >= n:
        raise TrainOptionError(f"--device {dev}: this machine has {n} CUDA device(s) (cuda:0 .. cuda:{n - 1}); "
                               "pick one of them")


def _first_file_above(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` that is not a folder (then nothing can be created below it)."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_output_folder(name: str, path: str | Path) -> None:
    """A folder the run writes into: absent (it is created) or a folder, not a file or under one."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise TrainOptionError(f"{flag(name)} {p}: exists and is not a folder; give a folder (it is created if "
                               "absent)")
    blocker = _first_file_above(p)
    if blocker is not None:
        raise TrainOptionError(f"{flag(name)} {p}: {blocker} is a file, so no folder can be made there; give "
                               "another path")


def check_output_file(name: str, path: str | Path) -> None:
    """A file the run writes: absent or a file, not a folder, and not under a file."""
    p = Path(path)
    if p.is_dir():
        raise TrainOptionError(f"{flag(name)} {p}: is a folder; give a file path (e.g. {p / 'run.safetensors'})"
                               if name == "state" else f"{flag(name)} {p}: is a folder; give a file path")
    blocker = _first_file_above(p)
    if blocker is not None:
        raise TrainOptionError(f"{flag(name)} {p}: {blocker} is a file, so nothing can be written below it; give "
                               "another path")


def check_input_folder(name: str, path: str | Path) -> None:
    """A folder of images the run reads (e.g. at the end of training): it must exist and hold images."""
    from lrisc_sim.data import IMAGE_SUFFIXES, image_paths

    p = Path(path)
    if not p.is_dir():
        raise TrainOptionError(f"{flag(name)} {p}: no such folder; give a folder of images (checked before "
                               "training starts)")
    try:
        image_paths(p)
    except ValueError:
        raise TrainOptionError(f"{flag(name)} {p}: no image files in it ({', '.join(sorted(IMAGE_SUFFIXES))})"
                               ) from None


def validate_training_args(options: Mapping[str, object], *, device: str | None = None, seed: object = None,
                           folders: Mapping[str, str | Path | None] | None = None,
                           files: Mapping[str, str | Path | None] | None = None,
                           inputs: Mapping[str, str | Path | None] | None = None) -> None:
    """Check a trainer's options before any work; raise the :class:`TrainOptionError` of the first bad one.

    ``options``: numeric options by name (keys of :data:`RULES`; ``None`` values are defaults and skipped);
    ``device``: the torch device; ``seed``: the run's seed (0 .. 2^32 - 1); ``folders``: output folders by option
    name (``{"out": ...}``); ``files``: output files (``{"state": ..., "loss_log": ...}``); ``inputs``: folders of
    images read later (``{"eval_kodak": ...}``). ``None`` paths are skipped.
    """
    for name, value in options.items():
        check_option(name, value)
    if seed is not None:
        from channels.realization import SeedError, check_seed

        try:
            check_seed(seed)
        except SeedError as e:
            raise TrainOptionError(f"--seed {seed!r}: {e.problem.rsplit(', got', 1)[0]}") from None
    if device is not None:
        check_device(device)
    for name, path in (folders or {}).items():
        if path is not None:
            check_output_folder(name, path)
    for name, path in (files or {}).items():
        if path is not None:
            check_output_file(name, path)
    for name, path in (inputs or {}).items():
        if path is not None:
            check_input_folder(name, path)


def check_loss(value: float, step: int) -> None:
    """Stop on a NaN or infinite training loss (``value``, the loss of step ``step``, counted from 1) before
    anything is saved or exported: :class:`NonFiniteLoss` naming the step."""
    if not math.isfinite(value):
        raise NonFiniteLoss(f"the training loss became {value} at step {step}; nothing of this step was saved (the "
                            "last saved state is kept): lower the stage's lr or check the recipe and data, then "
                            "rerun the command to resume")
