"""One training loop for every trainable codec, over any channel of the channel layer.

A codec becomes trainable by providing a :class:`TrainTask` (its model, its loss and its validation, in the
spirit of CompressAI's loss modules); :class:`Trainer` does everything else, the same way for every codec:

* data: random crops of the training folders (``lrisc_sim.data``), validation on held-out photos;
* the channel: a :class:`channels.training.TrainingLink` (the evaluation channel, differentiable in the symbols,
  any built-in or plugin channel, an SNR range per image) drawn per step from the run's seed;
* optimisation: Adam, a linear warm-up then cosine decay from ``lr`` to ``lr_final``, gradient clipping, an EMA
  of the weights (what is validated and exported), bf16 autocast on CUDA, DDP under ``torchrun``;
* bookkeeping: a resumable state (safetensors + JSON, outside the work tree; saved every few minutes, at each
  validation and on SIGINT / SIGTERM), ``max_minutes``, the validation curve per CPU-hour, and at each validation
  an export of the weights (``lrisc_sim.model_io``) with a model card written from the configuration;
* safety: a non-finite loss stops the run naming the step, with the state of the last good save kept.

The loop itself is :meth:`Trainer.fit`; a stage of a recipe (``lrisc_sim.recipe``) is one ``fit``.
"""

from __future__ import annotations

import math
import sys
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from channels.training import TrainingLink
from lrisc_sim.train_checks import NonFiniteLoss, check_device, check_loss
from lrisc_sim.train_state import EMA, StateError, TrainRun, read_card


@dataclass
class LossOutput:
    """Scalar loss to minimise (``total``) and its parts (floats, for the log and the model card)."""

    total: torch.Tensor
    parts: dict[str, float] = field(default_factory=dict)


@dataclass
class StageConfig:
    """One stage of training: what the recipe's ``[[stages]]`` table (merged over its ``[defaults]``) holds.

    steps : optimisation steps of the stage (the stage is done when its step count reaches them).
    batch, crop : global batch size and square crop size (pixels) of the training images.
    lr, lr_final, warmup : Adam's peak learning rate, the cosine's end value, linear warm-up steps.
    ema : decay of the weight EMA that is validated and exported (0: the raw weights), ``clip`` the gradient-norm
        clipping (0: none).
    channel, snr, equalizer : the training link (a channel spec, ``"10"`` or ``"LO:HI"`` dB per image, mmse|zf).
    init : weights to start from: ``previous`` (the previous stage's export), a path, or None (fresh).
    val_every : steps between validations (and exports); ``save_minutes`` between state saves.
    options : the codec's own stage options (loss weights, frozen parts, ...), checked by its ``TrainTask``.
    """

    name: str = "train"
    steps: int = 1000
    batch: int = 16
    crop: int = 128
    lr: float = 1e-3
    lr_final: float | None = None
    warmup: int = 100
    ema: float = 0.999
    clip: float = 1.0
    channel: str = "awgn"
    snr: str = "10"
    equalizer: str = "mmse"
    init: str | None = None
    seed: int = 0
    val_every: int = 250
    save_minutes: float = 10.0
    options: dict[str, Any] = field(default_factory=dict)

    def check(self) -> StageConfig:
        """Every field against its rule (``lrisc_sim.train_checks``); one-line ``ValueError`` naming the key."""
        from channels.registry import parse_channel_spec
        from channels.training import parse_snr_range
        from lrisc_sim.train_checks import RULES

        keys = {"batch": "batch_size"}
        for name in ("steps", "batch", "crop", "lr", "lr_final", "warmup", "ema", "clip", "val_every",
                     "save_minutes"):
            v = getattr(self, name)
            rule = RULES[keys.get(name, name)]
            if v is not None and not rule.ok(v):
                raise ValueError(f"{name} = {v!r}: {rule.describe()}")
        if not isinstance(self.name, str) or not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ValueError(f"name = {self.name!r}: letters, digits, '-', '_' and '.' only (it names files)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ValueError(f"seed = {self.seed!r}: give an integer in 0 .. 2^32 - 1")
        parse_snr_range(self.snr)
        if not isinstance(self.channel, str):
            raise ValueError(f"channel = {self.channel!r}: give a channel spec, e.g. rayleigh-block")
        parse_channel_spec(self.channel)
        if self.equalizer not in ("mmse", "zf"):
            raise ValueError(f"equalizer = {self.equalizer!r}: use mmse or zf")
        if self.init is not None and not isinstance(self.init, str):
            raise ValueError(f"init = {self.init!r}: give a model file or \"previous\"")
        return self

    def lr_at(self, step: int, warm_from: int = 0) -> float:
        """Learning rate at ``step``: cosine from ``lr`` (step 0) to ``lr_final`` (default ``lr / 10``) at
        ``steps``, times a linear warm-up over ``warmup`` steps from ``warm_from`` (0, or the step a run went on
        from with a fresh optimizer)."""
        final = self.lr / 10 if self.lr_final is None else self.lr_final
        t = min(max(step, 0) / max(self.steps, 1), 1.0)
        lr = final + 0.5 * (self.lr - final) * (1 + math.cos(math.pi * t))
        if self.warmup > 0:
            lr *= min((step - warm_from + 1) / self.warmup, 1.0)
        return lr


@dataclass
class Batch:
    """What a task's loss sees at one step.

    x : ``B x 3 x crop x crop`` float32 in [0, 1], this rank's slice of the global batch.
    snr_db : ``B`` float32, the SNR of each image; ``realization`` its channel randomness.
    step : the global step; ``generator`` a CPU generator seeded by (seed, step, rank) for the task's own draws
        (diffusion steps, quantisation noise, ...).
    """

    x: torch.Tensor
    snr_db: torch.Tensor
    realization: Any
    step: int
    generator: torch.Generator


class TrainTask(ABC):
    """What a codec provides to be trained: its model, loss and validation.

    ``tag`` is the model class tag (``lrisc_sim.model_io``). Subclasses check their stage ``options`` in
    :meth:`check_options` (one-line ``ValueError`` naming a bad or unknown option).
    """

    tag: str = ""

    def check_options(self, stage: StageConfig) -> None:
        """Refuse options this task does not know (override to accept and range-check yours)."""
        if stage.options:
            raise ValueError(f"stage {stage.name}: unknown option(s) {', '.join(sorted(stage.options))} for "
                             f"{self.tag}")

    @abstractmethod
    def build(self, stage: StageConfig, init: Path | None, device: torch.device, log=print) -> torch.nn.Module:
        """The model to train: from ``init`` (a model file) when given, else fresh."""

    def trainable(self, model: torch.nn.Module, stage: StageConfig) -> list[torch.nn.Parameter]:
        """The parameters this stage trains (default: all)."""
        return list(model.parameters())

    @abstractmethod
    def loss(self, model: torch.nn.Module, batch: Batch, link: TrainingLink, stage: StageConfig) -> LossOutput:
        """The loss of one step; send symbols with ``link.send(s, batch.snr_db, batch.realization)``."""

    @abstractmethod
    def validate(self, model: torch.nn.Module, val: list[tuple[str, torch.Tensor]], link: TrainingLink,
                 stage: StageConfig, device: torch.device) -> dict[str, float]:
        """Validation metrics of ``model`` on the held-out crops (PSNR first)."""

    def card(self, model: torch.nn.Module, stage: StageConfig) -> dict[str, Any]:
        """Extra model-card fields (e.g. the model's description)."""
        return {}


@dataclass
class Data:
    """Training folders and validation images: ``train`` (one or more folders), ``val`` (N = hold out the last N
    images of the first folder, or a folder), ``val_crop`` (centre crops, multiples of ``multiple``)."""

    train: list[str]
    val: int | str = 4
    val_crop: int = 256
    workers: int = 0

    def split(self, multiple: int) -> tuple[list[Path], list[tuple[str, torch.Tensor]]]:
        """Training image paths and validation images ``[(id, 3 x h x w)]``."""
        from lrisc_sim.data import image_paths, load_image

        if not self.train:
            raise ValueError("data.train is empty: give a folder of training images (or several)")
        paths = [image_paths(f) for f in self.train]
        if isinstance(self.val, int) or str(self.val).isdigit():
            n = int(self.val)
            if n >= len(paths[0]):
                raise ValueError(f"data.val = {n}: {self.train[0]} has only {len(paths[0])} images; hold out fewer")
            val_paths = paths[0][len(paths[0]) - n:] if n else []
            paths[0] = paths[0][: len(paths[0]) - n]
        else:
            val_paths = image_paths(self.val)
        val = []
        for p in val_paths:
            im = load_image(p)
            h, w = im.shape[-2:]
            ch, cw = min(h, self.val_crop) // multiple * multiple, min(w, self.val_crop) // multiple * multiple
            i, j = (h - ch) // 2, (w - cw) // 2
            val.append((p.stem, im[:, i: i + ch, j: j + cw]))
        return [p for ps in paths for p in ps], val


#: the keys of a state's meta this trainer writes and needs back (``train_state.check_meta`` kinds)
STATE_KEYS = {"stage": "text", "loss_avg": "numbers", "warm_from": "count", "ema_updates": "count",
              "prior_cpu_hours": "hours"}


class Trainer:
    """Runs one stage of a task (:meth:`fit`): resumable, DDP-aware, writing an export and a card per validation.

    Parameters
    ----------
    task : the codec's :class:`TrainTask`.
    data : the training and validation images.
    export : the model file the stage writes (``.safetensors``; the card is the ``.json`` beside it).
    state : the resumable state file (outside the work tree).
    device, threads, max_minutes : where and how long; ``fresh`` starts over although a state exists.
    card : fields every card of the run carries (recipe, commit, ...).
    on_export : called with the export's path after every export (the recipe carries it for committing).
    """

    def __init__(self, task: TrainTask, data: Data, export: Path, state: Path, device: str = "cpu",
                 threads: int | None = None, max_minutes: float | None = None, fresh: bool = False,
                 card: dict | None = None, log=print, on_export=None):
        self.task, self.data, self.export, self.state = task, data, Path(export), Path(state)
        self.device_name, self.threads, self.max_minutes, self.fresh = device, threads, max_minutes, fresh
        self.card_base = dict(card or {})
        self.log = log
        self.on_export = on_export  # called with the export's path after each export (e.g. to carry it)

    # ------------------------------------------------------------------ the loop
    def fit(self, stage: StageConfig, init: Path | None = None, continue_export: bool = False) -> dict:
        """Train ``stage`` to its ``steps`` (or until ``max_minutes`` / a signal); return the latest card.

        ``init``: the weights to start from. With ``continue_export``, ``init`` is an export of this very stage
        in progress (e.g. committed on another machine) and the run goes on at its step, with its history and
        CPU-hours, a fresh optimizer (re-warmed) and the EMA starting at the exported weights; a state here that
        is at least as far along wins."""
        from tqdm import tqdm

        from channels import make_channel
        from lrisc_sim import ddp

        self.task.check_options(stage)
        check_device(self.device_name)
        dist = ddp.init(self.device_name)
        log = self.log if dist.main else (lambda *a, **k: None)
        if self.threads:
            torch.set_num_threads(self.threads)
        device = dist.device
        dist.local_batch(stage.batch)
        link = TrainingLink(make_channel(stage.channel), stage.snr, stage.equalizer, stage.seed)
        torch.manual_seed(stage.seed)  # a fresh model's initial weights follow the seed
        model = self.task.build(stage, init, device, log)
        multiple = int(getattr(model, "multiple", 16))
        if stage.crop % multiple:
            raise ValueError(f"stage {stage.name}: crop {stage.crop} must be a multiple of {multiple}")
        params = self.task.trainable(model, stage)
        opt = torch.optim.Adam(params, lr=stage.lr)
        train_paths, val = self.data.split(multiple)
        run = TrainRun(self.state, threads=self.threads or torch.get_num_threads(), world=dist.world,
                       cuda=device.type == "cuda", save_minutes=stage.save_minutes, max_minutes=self.max_minutes)
        ema_state: dict[str, torch.Tensor] = {}
        warm_from, ema_updates, loss_avg = 0, 0, {}
        if self.state.exists() and not self.fresh:
            meta, ema_state, _ = run.resume(model, opt, device, steps=stage.steps, required=STATE_KEYS)
            if meta["stage"] != stage.name:
                raise StateError(f"{self.state} is the state of stage {meta['stage']}, not {stage.name}; delete it "
                                 "or start the stage afresh (--fresh)")
            loss_avg = dict(meta["loss_avg"])
            warm_from, ema_updates = meta["warm_from"], meta["ema_updates"]
            # the CPU-hours so far as saved (a state of an older version has none: its prior share), so that a
            # resume with another thread count charges only the time after it at the new count
            if "cpu_hours" in meta:
                run.prior_cpu_hours += float(meta["cpu_hours"]) - run.cpu_hours(run.elapsed)
            else:
                run.prior_cpu_hours = float(meta["prior_cpu_hours"])
            log(f"resumed {self.state} at step {run.step}")
        elif continue_export and init is not None:
            card = read_card(init.with_suffix(".json"), "delete it (and its weights) to start the stage afresh")
            if not isinstance(card.get("stage"), dict) or card["stage"].get("name") != stage.name or \
                    not isinstance(card.get("history"), list) or not isinstance(card.get("steps"), int):
                raise StateError(f"{init}: not an export of stage {stage.name} in progress; delete it or start the "
                                 "stage from other weights")
            run.step, run.history = int(card["steps"]), list(card["history"])
            run.elapsed = float(card.get("wall_time_s", 0.0))
            run.prior_cpu_hours = float(card.get("cpu_hours", 0.0)) - run.cpu_hours(run.elapsed)
            warm_from = ema_updates = run.step
            log(f"continuing {init} at step {run.step} (fresh optimizer, re-warmed over {stage.warmup} steps)")
        ema = EMA(model, stage.ema, ema_state, ema_updates) if stage.ema > 0 and dist.main else None
        batches = dist.batches(train_paths, stage.crop, stage.batch, self.data.workers,
                               seed=stage.seed + 1000 * run.step)
        net = dist.wrap(_LossModule(self.task, model, link, stage), find_unused=True) if dist.active else None
        log(f"{self.task.tag} stage {stage.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M "
            f"parameters ({sum(p.numel() for p in params) / 1e6:.2f} M trained); {len(train_paths)} training "
            f"images, {len(val)} validation; {stage.crop}x{stage.crop} crops, batch {stage.batch}; "
            f"{stage.steps} steps over {link.describe()}")

        def weights() -> torch.nn.Module:
            if ema is None:
                return model
            m = type(model).from_config(model.config_dict()).to(device)
            ema.copy_to(m)
            return m

        card: dict = {}

        def save() -> None:
            run.save(model, opt, ema.shadow if ema else None, stage=stage.name, loss_avg=loss_avg,
                     warm_from=warm_from, ema_updates=ema.updates if ema else 0,
                     prior_cpu_hours=run.prior_cpu_hours, cpu_hours=run.cpu_hours(), config=asdict(stage))

        def validate_and_export() -> dict:
            m = weights()
            v = self.task.validate(m, val, link, stage, device)
            model.train()
            run.record(train={k: round(x, 6) for k, x in loss_avg.items()}, val=v)
            return self.write_export(m, stage, run, link)

        if run.step == 0 and not run.history and init is not None and dist.main and val:
            # the starting point of a stage that begins from other weights: step 0 of its validation curve
            v0 = self.task.validate(model, val, link, stage, device)
            run.history.append({"step": 0, "train": {}, "val": v0, "seconds": 0.0,
                                "cpu_hours": round(run.prior_cpu_hours, 4)})
            log(f"step 0 ({init}): val {v0}")
        model.train()
        bar = tqdm(total=stage.steps, initial=run.step, desc=f"{self.task.tag} {stage.name}", dynamic_ncols=True,
                   mininterval=1 if sys.stderr.isatty() else 60, disable=not dist.main)
        with bar, run.stop_on_signals():  # the bar is closed on an error too (its line not redrawn after it)
            run.start()
            while run.step < stage.steps:
                for g in opt.param_groups:
                    g["lr"] = stage.lr_at(run.step, warm_from)
                x = next(batches).to(device)
                snr, realization = link.draw(run.step, stage.batch, device)
                lo = dist.rank * x.shape[0]
                idx = list(range(lo, lo + x.shape[0]))
                gen = torch.Generator().manual_seed(((stage.seed * 1_000_003 + run.step) * 64 + dist.rank)
                                                    % 2**63)
                batch = Batch(x, snr[idx], realization.subset(idx), run.step, gen)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    out = net(batch) if net is not None else self.task.loss(model, batch, link, stage)
                parts = {k: dist.mean(float(v)) for k, v in out.parts.items()} if dist.active else out.parts
                total = dist.mean(float(out.total.detach())) if dist.active else float(out.total.detach())
                check_loss(total, run.step + 1)
                opt.zero_grad(set_to_none=True)
                out.total.backward()
                if stage.clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, stage.clip)
                opt.step()
                if ema is not None:
                    ema.update(model)
                run.step += 1
                for k, v in {**parts, "loss": total}.items():
                    loss_avg[k] = v if k not in loss_avg else 0.98 * loss_avg[k] + 0.02 * v
                bar.update(1)
                bar.set_postfix({k: f"{v:.4g}" for k, v in loss_avg.items()}, refresh=False)
                over = dist.any(run.out_of_time())
                if run.step % stage.val_every == 0 or run.step == stage.steps or over:
                    run.lap()
                    if dist.main:
                        card = validate_and_export()
                        save()
                        bar.write(f"step {run.step}: val {card['validation']}; {run.cpu_hours():.2f} CPU-h")
                    dist.barrier()
                    if over:
                        break
                elif dist.main and run.save_due():
                    run.lap()
                    save()
        bar.close()
        dist.close()
        if dist.main and not card:  # resumed a finished stage: nothing left to train
            card = self.write_export(weights(), stage, run, link) if not self.export.exists() else \
                self.read_card()
        if dist.main and run.step < stage.steps:
            log(f"stopped {run.stop_reason()} at step {run.step} of {stage.steps}; run the same command again to "
                f"continue (state {self.state})")
        return card

    # ------------------------------------------------------------------ exports
    def write_export(self, model: torch.nn.Module, stage: StageConfig, run: TrainRun, link: TrainingLink) -> dict:
        """Write the weights and their card (from the configuration, never a rebuilt command line)."""
        from lrisc_sim.model_io import save_model

        card = {**self.card_base, "model": self.task.tag, "config": model.config_dict(), "stage": asdict(stage),
                "channel": link.describe(), "data": {"train": self.data.train, "val": self.data.val,
                                                    "val_crop": self.data.val_crop},
                "steps": run.step, "status": run.status(stage.steps), "validation": run.history[-1]["val"]
                if run.history else {}, "history": run.history, "cpu_hours": round(run.cpu_hours(), 4),
                "wall_time_s": round(run.elapsed, 1), "device": str(self.device_name),
                "threads": self.threads or torch.get_num_threads(), "world": run.world,
                **self.task.card(model, stage)}
        save_model(model, self.export, card)
        if self.on_export is not None:
            self.on_export(self.export)
        return card

    def read_card(self) -> dict:
        return read_card(self.export.with_suffix(".json"), "delete it (and its weights) to rewrite them")


class _LossModule(torch.nn.Module):
    """One step's loss as a module, so that DistributedDataParallel sees a forward call."""

    def __init__(self, task: TrainTask, model: torch.nn.Module, link: TrainingLink, stage: StageConfig):
        super().__init__()
        self.task, self.model, self.link, self.stage = task, model, link, stage

    def forward(self, batch: Batch) -> LossOutput:
        return self.task.loss(self.model, batch, self.link, self.stage)
