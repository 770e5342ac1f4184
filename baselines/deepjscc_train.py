"""Training of a DeepJSCC model: ``lrisc-sim train deepjscc --cbr 1/48 --snr 10 --data DIR``.

Random crops, Adam (cosine decay), MSE loss through a complex AWGN channel at a fixed SNR (the paper's baseline)
or a uniform random SNR per image from a range (``--snr 0:20``); a progress bar with loss and PSNR; periodic
validation on held-out images with fixed channel noise; resumable state; a final safetensors file plus a JSON
model card (architecture, CBR, SNR, data, steps, wall time, command, commit, validation PSNR, Kodak PSNR).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from lrisc_sim.grammar import cbr_fraction
from lrisc_sim.metrics import psnr, psnr_from_mse
from lrisc_sim.provenance import cpu_name, git_commit
from lrisc_sim.results import ci95
from lrisc_sim.train_state import card_cpu_hours
from baselines.deepjscc import (DeepJSCC, DeepJSCCCodec, DeepJSCCConfig, DeepJSCCError, checkpoint_name,
                                cbr_str, default_levels, load_model, read_config, save_model)

# Paper-scale DeepJSCC on Kodak at 10 dB AWGN (ARCHITECTURE.md section 5.2): CBR -> PSNR (dB)
REFERENCE_KODAK_10DB = {"1/48": 27.4, "1/24": 30.0}


@dataclass
class TrainConfig:
    """Everything a training run depends on (filled by the CLI)."""

    cbr: str = "1/48"
    snr: str = "10"  # a number (dB) or a range "lo:hi" (uniform per image)
    data: str = ""
    val: str = "4"  # a folder, or N: hold out the last N images of ``data``
    steps: int = 5000
    batch_size: int = 16
    crop: int = 96
    lr: float = 1e-3
    lr_final: float = 5e-5
    warmup: int = 200  # linear warm-up steps, also after a restart without optimizer state
    ema: float = 0.999  # EMA decay of the weights that are validated and exported (0: no EMA)
    clip: float = 1.0  # gradient-norm clipping (0: none)
    init: str | None = None  # warm start: a checkpoint whose matching tensors (the trunk) are loaded
    device: str = "cpu"
    out: str = "."
    state: str | None = None
    resume: bool = True  # continue from the state, else from OUT/NAME.safetensors; False: start afresh over them
    threads: int | None = None
    seed: int = 0
    val_every: int = 500
    val_crop: int = 512
    max_minutes: float | None = None
    loss_log: str | None = None  # per-step training loss, one line per step (rank 0)
    workers: int = 0  # DataLoader workers streaming the files (0: all images in memory)
    eval_kodak: str | None = None
    eval_snr: float = 10.0
    kodak_every: int = 0  # also evaluate the exported weights on eval_kodak every N steps (0: only at the end)
    arch: DeepJSCCConfig = field(default_factory=DeepJSCCConfig)


def parse_snr_range(text: str) -> tuple[float, float]:
    """``"10"`` -> (10, 10); ``"0:20"`` -> (0, 20). One-line ``DeepJSCCError`` on bad input."""
    try:
        parts = [float(v) for v in str(text).split(":")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2 and parts[0] <= parts[1]:
        return parts[0], parts[1]
    raise DeepJSCCError(f"bad training SNR '{text}': use a number in dB (10) or a range LO:HI (0:20)")


# the code a DeepJSCC training run depends on (checked against the commit for the model card)
CODE_FILES = ("baselines/deepjscc.py", "baselines/deepjscc_train.py", "channels", "lrisc_sim/data.py",
              "lrisc_sim/codec.py")


def command_line(cfg: TrainConfig) -> str:
    """The ``lrisc-sim train deepjscc ...`` command that reproduces this run."""
    a = cfg.arch
    parts = ["lrisc-sim train deepjscc", f"--cbr {cfg.cbr}", f"--snr {cfg.snr}", f"--data {cfg.data}",
             f"--val {cfg.val}", f"--steps {cfg.steps}", f"--batch-size {cfg.batch_size}", f"--crop {cfg.crop}",
             f"--lr {cfg.lr:g}", f"--lr-final {cfg.lr_final:g}", f"--warmup {cfg.warmup}", f"--ema {cfg.ema:g}",
             f"--clip {cfg.clip:g}", f"--seed {cfg.seed}",
             f"--levels {a.levels}", f"--extra {a.extra}", f"--width {a.first_width},{a.width}",
             f"--val-every {cfg.val_every}", f"--device {cfg.device}", f"--out {cfg.out}"]
    if cfg.threads:
        parts.append(f"--threads {cfg.threads}")
    if cfg.init:
        parts.append(f"--init {cfg.init}")
    if cfg.eval_kodak:
        parts.append(f"--eval-kodak {cfg.eval_kodak}")
        if cfg.kodak_every:
            parts.append(f"--kodak-every {cfg.kodak_every}")
    return " ".join(parts)


# ---------------------------------------------------------------- data

def data_folders(data: str) -> list[str]:
    """``--data DIR[,DIR2,...]`` -> the folders."""
    return [d for d in str(data).split(",") if d]


def split_data(cfg: TrainConfig):
    """Training image paths and validation images (``list[(id, 3 x H x W)]``, centre-cropped to multiples of d).

    ``--data`` is one folder or several, comma-separated; ``--val N`` holds out the last N images of the first.
    """
    from lrisc_sim.data import image_paths, load_image

    folders = data_folders(cfg.data)
    if not folders:
        raise DeepJSCCError("--data is empty: give a folder of training images (or several, comma-separated)")
    paths = [image_paths(f) for f in folders]
    if cfg.val.isdigit():
        n = int(cfg.val)
        if n >= len(paths[0]):
            raise DeepJSCCError(f"--val {n}: {folders[0]} has only {len(paths[0])} images; hold out fewer")
        val_paths = paths[0][len(paths[0]) - n:] if n else []
        paths[0] = paths[0][: len(paths[0]) - n]
    else:
        val_paths = image_paths(cfg.val)
    train_paths = [p for ps in paths for p in ps]
    d = cfg.arch.factor
    val = []
    for p in val_paths:
        im = load_image(p)
        h, w = im.shape[-2:]
        ch, cw = min(h, cfg.val_crop) // d * d, min(w, cfg.val_crop) // d * d
        i, j = (h - ch) // 2, (w - cw) // 2
        val.append((p.stem, im[:, i: i + ch, j: j + cw]))
    return train_paths, val, [p.name for p in val_paths]


@torch.no_grad()
def validate(model: DeepJSCC, val: list, snr_db: float, device: torch.device, seed: int = 0) -> float:
    """Mean PSNR (dB) over the validation images at ``snr_db``, noise from the common random numbers (seed 0)."""
    from channels.realization import Realization

    if not val:
        return float("nan")
    model.eval()
    out = []
    for vid, im in val:
        x = im[None].to(device)
        s = model.encode(x)
        n = Realization(seed, [vid], 0, device).cn("noise", s.shape[1]) * math.sqrt(10 ** (-snr_db / 10))
        d = model.cfg.factor
        y = model.decode(s + n, (x.shape[-2] // d, x.shape[-1] // d))
        out.append(float(psnr(x, y)[0]))
    model.train()
    return float(np.mean(out))


@torch.no_grad()
def evaluate(checkpoint: str | Path, folder: str | Path, snr_db: float = 10.0, seed: int = 0,
             device: str = "cpu") -> dict:
    """PSNR of a checkpoint on every image of ``folder`` through the codec interface at ``snr_db`` AWGN.

    Common random numbers: seed ``seed``, trial 0, image ids = file stems. Returns mean, 95% CI half-width and
    per-image PSNR (outputs rounded to uint8 levels).
    """
    from channels.awgn import AWGN
    from lrisc_sim.data import image_paths, load_image
    from lrisc_sim.transmission import send

    codec = DeepJSCCCodec(checkpoint=checkpoint, dirs=[], device=device)
    cbr = cbr_fraction(codec.models[next(iter(codec.models))].cfg.cbr)
    per, cbrs = {}, []
    for p in image_paths(folder):
        x = load_image(p)[None]
        h, w = x.shape[-2:]
        t = send(codec, x.to(device), float(cbr), snr_db, AWGN(), [p.stem], seed=seed, trial=0)
        y = t.output.cpu()
        per[p.stem] = round(float(psnr(x, y)[0]), 4)
        cbrs.append(float(t.cbr["cbr_payload"][0]))
    v = np.array(list(per.values()))
    ci = ci95(v) if len(v) > 1 else float("nan")  # Student t, as every results table
    return {"dataset": str(folder), "channel": "awgn", "snr_db": snr_db, "seed": seed, "n_images": len(v),
            "cbr_used": sorted(set(round(c, 8) for c in cbrs)), "psnr_mean": round(float(v.mean()), 4),
            "psnr_ci95": round(float(ci), 4), "per_image": per}


# ---------------------------------------------------------------- training

def lr_at(step: int, cfg: TrainConfig, warm_from: int = 0) -> float:
    """Cosine decay from ``lr`` to ``lr_final`` over ``steps``, after a linear warm-up of ``warmup`` steps that
    starts at ``warm_from`` (0, or the step at which a run restarted without its optimizer state)."""
    t = min(step / max(cfg.steps, 1), 1.0)
    lr = cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + math.cos(math.pi * t))
    if cfg.warmup > 0 and step - warm_from < cfg.warmup:
        lr *= (step - warm_from + 1) / cfg.warmup
    return lr


def default_state_path(name: str) -> Path:
    """Resumable state outside the work tree: ``<cache>/train/deepjscc/NAME.state.safetensors``."""
    from lrisc_sim.data import cache_dir

    return cache_dir() / "train" / "deepjscc" / f"{name}.state.safetensors"


DECODER_INPUT = "decoder.net.0.weight"  # the decoder's first (transposed) convolution: c_in = the latent channels


def warm_start(model: DeepJSCC, path: str | Path, log=print) -> list[str]:
    """Load every tensor of checkpoint ``path`` whose name and shape match ``model`` (the trunk), and the overlap
    of the c-channel layers when only c differs (another CBR at the same depth): the first min(c, c_src)
    latent channels come from the checkpoint, and the decoder's weights from any extra channel start at zero,
    so a model with more channels starts as the checkpoint's decoder of its first channels. Return the names
    that were not loaded whole (kept at their initial values or loaded in part)."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise DeepJSCCError(f"--init {path}: no such checkpoint")
    read_config(path)  # a one-line DeepJSCCError for a pickle, garbage or another model's checkpoint
    src = load_file(str(path))
    own = model.state_dict()
    kept = [k for k in own if k not in src or src[k].shape != own[k].shape]
    new = {k: src[k] for k in own if k not in kept}
    partial = []
    for k in kept:
        if k in src and src[k].dim() == own[k].dim():
            t = own[k].clone()
            if k == DECODER_INPUT:  # ConvTranspose2d weight: c_in x out x k x k; extra inputs start unused
                t[src[k].shape[0]:] = 0
            region = tuple(slice(0, min(a, b)) for a, b in zip(t.shape, src[k].shape))
            t[region] = src[k][region]
            new[k] = t
            partial.append(k)
    model.load_state_dict(new, strict=False)
    whole = len(own) - len(kept)
    log(f"warm start from {path}: {whole} of {len(own)} tensors loaded"
        + (f", {len(partial)} in part ({', '.join(partial)})" if partial else "")
        + (f", new: {', '.join(k for k in kept if k not in partial)}" if len(partial) < len(kept) else ""))
    return kept

def init_cpu_hours(path: str | Path) -> float:
    """CPU-hours that went into a warm-start checkpoint, from its model card (0 if it has none)."""
    from lrisc_sim.train_state import StateError, read_card

    card = Path(path).with_suffix(".json")
    if not card.is_file():
        return 0.0
    fix = f"restore it or move it away from --init {path}"
    c = read_card(card, fix)
    try:
        return card_cpu_hours(c)
    except (TypeError, ValueError):
        raise StateError(f"{card}: its cpu_hours / wall_time_s / threads are not numbers; {fix}") from None


def validate_config(cfg: TrainConfig) -> tuple[float, float]:
    """Check every option against the trainers' shared rules (:mod:`lrisc_sim.train_checks`) before any work:
    numbers and ranges, seed, device, the folders and files written (``--out``, ``--state``, ``--loss-log``) and
    read at the end (``--eval-kodak``). Return the training SNR range (lo, hi) in dB."""
    from lrisc_sim.train_checks import RULES, TrainOptionError, validate_training_args

    lo, hi = parse_snr_range(cfg.snr)
    if not (RULES["snr"].ok(lo) and RULES["snr"].ok(hi)):
        raise TrainOptionError(f"--snr {cfg.snr}: {RULES['snr'].describe()}; a number (10) or a range LO:HI (0:20)")
    validate_training_args(
        {"steps": cfg.steps, "batch_size": cfg.batch_size, "crop": cfg.crop, "val_crop": cfg.val_crop,
         "lr": cfg.lr, "lr_final": cfg.lr_final, "warmup": cfg.warmup, "ema": cfg.ema, "clip": cfg.clip,
         "max_minutes": cfg.max_minutes, "val_every": cfg.val_every, "kodak_every": cfg.kodak_every,
         "levels": cfg.arch.levels, "extra": cfg.arch.extra, "workers": cfg.workers, "threads": cfg.threads,
         "eval_snr": cfg.eval_snr},
        device=cfg.device, seed=cfg.seed, folders={"out": cfg.out},
        files={"state": cfg.state or default_state_path(checkpoint_name(cfg.cbr, cfg.snr)),
               "loss_log": cfg.loss_log},
        inputs={"eval_kodak": cfg.eval_kodak})
    if cfg.crop % cfg.arch.factor:
        raise DeepJSCCError(f"--crop {cfg.crop} must be a multiple of the downsampling factor {cfg.arch.factor}")
    return lo, hi


STATE_KEYS = {"warm_from": "count", "prior_cpu_hours": "hours", "schedule": "schedule", "config": "dict"}


def _check_own_state(meta: dict, state_path: Path, cfg: TrainConfig) -> None:
    """A state resumed by default must be this run's: the one that exports to the same ``--out`` (the default
    state path is shared by every run of the same CBR and SNR)."""
    if meta.get("warm_from", 0) > meta["step"]:
        raise DeepJSCCError(f"{state_path}: its warm_from {meta['warm_from']} is beyond its step {meta['step']}; "
                            "pass --no-resume to start afresh (overwriting it) or delete it")
    saved = meta.get("config", {}).get("out")
    if isinstance(saved, str) and os.path.abspath(saved) != os.path.abspath(cfg.out):
        raise DeepJSCCError(f"{state_path} is the state of the run exporting to {saved}, not --out {cfg.out}: "
                            f"rerun with --out {saved} to continue it, give this run its own --state, or pass "
                            "--no-resume to start afresh (overwriting that state)")


def _continue_from_export(cfg: TrainConfig, path: Path, model: DeepJSCC, run, device) -> tuple[list, int]:
    """Load the exported weights ``path`` and their card into ``model`` and ``run`` (a machine without the state);
    return the cosine schedule and the step the warm-up restarts at. Cards that cannot be used are refused in one
    line naming the file."""
    from lrisc_sim.train_state import StateError, card_value, read_card

    card_path = path.with_suffix(".json")
    fix = f"restore it, or pass --no-resume to start afresh (overwriting {path.name} and its card)"
    card = read_card(card_path, fix) if card_path.is_file() else {}
    if read_config(path) != model.cfg:
        raise DeepJSCCError(f"{path} has another architecture than this command: use the options of its "
                            f"model card, another --out, or --no-resume to start afresh (overwriting it)")
    steps = card_value(card, card_path, "steps", "count", 0, fix)
    if steps > cfg.steps:
        raise StateError(f"{path} is at step {steps}, beyond --steps {cfg.steps}: raise --steps to go on from it, "
                         f"or pass --no-resume to start afresh (overwriting it)")
    validation = card_value(card, card_path, "validation", "dict", {}, fix)
    optimizer = card_value(card, card_path, "optimizer", "dict", {}, fix)
    model.load_state_dict(load_model(path, device).state_dict())
    run.step = steps
    run.history = card_value(validation, card_path, "history", "list", [], fix)
    run.elapsed = float(card_value(card, card_path, "wall_time_s", "seconds", 0.0, fix))
    run.prior_cpu_hours = float(card_value(card, card_path, "cpu_hours_prior", "hours", 0.0, fix))
    cfg.init = cfg.init or card_value(card, card_path, "warm_start", "path", None, fix)
    planned = re.search(r"--steps (\d+)", card_value(card, card_path, "command", "text", "", fix))
    schedule = card_value(optimizer, card_path, "schedule_steps", "schedule", None, fix) or \
        [[0, int(planned[1]) if planned else cfg.steps]]
    return schedule, run.step


def train(cfg: TrainConfig, log=print) -> dict:
    """Train one model; return its model card (also written beside the safetensors file in ``cfg.out``).

    The EMA weights are validated every ``val_every`` steps and then exported to ``OUT/NAME.safetensors`` with
    their model card, so the output folder always holds the latest usable model (commit it to move machines).
    The resumable state (weights, EMA, Adam, RNG; safetensors + JSON, no pickle) lives outside the work tree
    (:func:`default_state_path`, or ``--state``). The same command run again continues from it; when it is gone
    but ``OUT/NAME.safetensors`` exists, training continues from those weights with a fresh optimizer and a
    ``warmup``-step warm-up. Only ``resume=False`` (``--no-resume``) starts afresh over them. Every option is
    checked before any work (:func:`validate_config`); a NaN or infinite loss stops the run naming the step.
    """
    from tqdm import tqdm

    from lrisc_sim import ddp
    from lrisc_sim.train_checks import check_loss
    from lrisc_sim.train_state import EMA, StateError, TrainRun, weights_for_export

    cfg.arch.cbr = cbr_str(cbr_fraction(cfg.cbr))
    cfg.cbr = cfg.arch.cbr
    lo, hi = validate_config(cfg)  # before any work: a one-line error for a bad option
    dist = ddp.init(cfg.device)
    if not dist.main:
        log = lambda *a, **k: None  # noqa: E731 (rank 0 logs)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    name = checkpoint_name(cfg.cbr, cfg.snr)
    out = Path(cfg.out)
    path = out / f"{name}.safetensors"
    state_path = Path(cfg.state) if cfg.state else default_state_path(name)
    device = dist.device
    amp = device.type == "cuda"
    try:
        dist.local_batch(cfg.batch_size)
    except ValueError as e:
        raise DeepJSCCError(str(e)) from None
    torch.manual_seed(cfg.seed)
    model = DeepJSCC(cfg.arch).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    train_paths, val, val_names = split_data(cfg)
    run = TrainRun(state_path, threads=cfg.threads or torch.get_num_threads(), world=dist.world,
                   cuda=device.type == "cuda", max_minutes=cfg.max_minutes)
    warm_from = 0
    schedule: list[list[int]] = []  # [step, steps]: the cosine's length from that step (it changes when a resumed
    ema_state: dict = {}            # run is given another --steps)
    given_init = cfg.init
    if cfg.resume and state_path.is_file():  # the same command again: continue where the state is
        try:
            meta, ema_state, _ = run.resume(model, opt, device, steps=cfg.steps, optional=STATE_KEYS)
        except StateError as e:
            raise DeepJSCCError(str(e)) from None
        _check_own_state(meta, state_path, cfg)
        warm_from, run.prior_cpu_hours = meta.get("warm_from", 0), meta.get("prior_cpu_hours", 0.0)
        cfg.init = cfg.init or meta.get("config", {}).get("init")  # the card keeps naming the warm start
        planned = meta.get("config", {}).get("steps", cfg.steps)
        schedule = meta.get("schedule") or [[0, planned if isinstance(planned, int) else cfg.steps]]
        log(f"resumed {state_path} at step {run.step}" + (" (--init only starts a fresh run)" if given_init else ""))
    elif cfg.resume and path.is_file():  # a machine without the state: continue from the exported weights
        schedule, warm_from = _continue_from_export(cfg, path, model, run, device)
        log(f"no training state at {state_path}: continuing from the exported weights {path} at step {run.step} "
            f"with a fresh optimizer ({cfg.warmup}-step warm-up)"
            + (" (--init only starts a fresh run)" if given_init else ""))
    else:  # a fresh run (over an existing state or export only with --no-resume)
        over = [str(p) for p in (state_path, path) if p.exists()]
        if over:
            log(f"starting afresh (--no-resume): overwriting {' and '.join(over)}")
        if cfg.init:
            warm_start(model, cfg.init, log)
            run.prior_cpu_hours = init_cpu_hours(cfg.init)
    if not schedule or schedule[-1][1] != cfg.steps:
        schedule.append([run.step, cfg.steps])
    ema = EMA(model, cfg.ema, ema_state, updates=run.step - warm_from if ema_state else 0) if cfg.ema > 0 else None
    batches = dist.batches(train_paths, cfg.crop, cfg.batch_size, cfg.workers, seed=cfg.seed + 1000 * run.step)
    val_snr = 10.0 if lo <= 10.0 <= hi else (lo + hi) / 2
    log(f"{cfg.arch.describe()}; {sum(p.numel() for p in model.parameters())} parameters; "
        f"{len(train_paths)} training images, {len(val)} validation; SNR {cfg.snr} dB; {cfg.steps} steps; "
        f"state {state_path}")

    kodak: dict[int, dict] = {}  # Kodak evaluations of the exported weights, by step

    def export() -> dict:
        """Validate the EMA weights and write them with their model card to ``path`` (and, every
        ``kodak_every`` steps, their Kodak PSNR into the history)."""
        eval_model = weights_for_export(model, ema, lambda: DeepJSCC(cfg.arch).to(device))
        v = validate(eval_model, val, val_snr, device)
        run.record(train_loss=round(run_loss, 6), val_psnr=round(v, 4))
        save_model(eval_model, path)
        if cfg.eval_kodak and cfg.kodak_every and run.step % cfg.kodak_every == 0:
            kodak[run.step] = evaluate(path, cfg.eval_kodak, cfg.eval_snr, device=cfg.device)
            run.history[-1]["kodak_psnr"] = kodak[run.step]["psnr_mean"]
        card = model_card(cfg, eval_model, run.history, run.elapsed, val_names, val_snr)
        card["cpu_hours"] = round(run.cpu_hours(), 4)
        card["cpu_hours_prior"] = run.prior_cpu_hours
        card["status"] = run.status(cfg.steps)
        card["optimizer"]["schedule_steps"] = schedule
        path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
        return card

    def save() -> None:
        run.save(model, opt, ema.shadow if ema else None, warm_from=warm_from, prior_cpu_hours=run.prior_cpu_hours,
                 schedule=schedule,
                 config=json.loads(json.dumps(asdict(cfg), default=str)))

    net = dist.wrap(model)
    model.train()
    bar = tqdm(total=cfg.steps, initial=run.step, desc=f"deepjscc {cfg.cbr}", mininterval=1 if sys.stderr.isatty()
               else 60, dynamic_ncols=True, disable=not dist.main)
    k = cfg.arch.channels * (cfg.crop // cfg.arch.factor) ** 2 // 2  # complex symbols per training crop
    loss_log = open(cfg.loss_log, "a") if cfg.loss_log and dist.main else None
    run_loss = run.history[-1]["train_loss"] if run.history else float("nan")
    with run.stop_on_signals():  # SIGINT / SIGTERM: finish the step, save, return
        run.start()
        card: dict = {}
        while run.step < cfg.steps:
            for g in opt.param_groups:
                g["lr"] = lr_at(run.step, cfg, warm_from)
            # the global batch, its SNRs and channel noise are the same on every rank (seeded by (seed, step));
            # each rank trains on its slice, so N processes follow the loss curve of one with the same batch
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + run.step)
            x = next(batches)
            snr_g = (lo + (hi - lo) * torch.rand(cfg.batch_size, generator=g) if hi > lo
                     else torch.full((cfg.batch_size,), lo))
            noise_g = torch.view_as_complex(torch.randn(cfg.batch_size, k, 2, generator=g) / math.sqrt(2))
            x = x.to(device)
            snr, noise = (dist.shard(t).to(device) for t in (snr_g, noise_g))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                y = net(x, snr, noise)
            loss = torch.mean((y.float() - x) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            if ema is not None:
                ema.update(model)
            run.step += 1
            lv = dist.mean(float(loss.detach()))
            if not math.isfinite(lv):  # NaN / inf: stop before anything is saved or exported
                bar.close()
                check_loss(lv, run.step)
            if loss_log:
                loss_log.write(f"{run.step} {lv:.9g}\n")
                loss_log.flush()
            run_loss = lv if not math.isfinite(run_loss) else 0.98 * run_loss + 0.02 * lv
            bar.update(1)
            bar.set_postfix(loss=f"{run_loss:.5f}", psnr=f"{float(psnr_from_mse(run_loss)):.2f}", refresh=False)
            over = dist.any(run.out_of_time())
            if run.step % cfg.val_every == 0 or run.step == cfg.steps or over:
                run.lap()
                if dist.main:
                    card = export()
                    save()
                    bar.write(f"step {run.step}: train loss {run_loss:.5f} ({float(psnr_from_mse(run_loss)):.2f} dB), "
                              f"val PSNR {run.history[-1]['val_psnr']:.2f} dB at {val_snr:g} dB, {run.elapsed:.0f} s, "
                              f"{run.cpu_hours():.2f} CPU-h")
                dist.barrier()
                if over:
                    break
    bar.close()
    if loss_log:
        loss_log.close()
    if not dist.main:
        dist.close()
        return card
    dist.close()
    if run.step < cfg.steps:
        log(f"stopped {run.stop_reason()} at step {run.step}/{cfg.steps}; run the same command again to "
            f"continue (state {state_path})")
        return card
    if not card:  # nothing left to train (resumed a finished run)
        run.lap()
        card = export()
    if cfg.eval_kodak:
        log(f"evaluating {path.name} on {cfg.eval_kodak} at {cfg.eval_snr:g} dB AWGN")
        card["kodak"] = kodak.get(run.step) or evaluate(path, cfg.eval_kodak, cfg.eval_snr, device=cfg.device)
        ref = REFERENCE_KODAK_10DB.get(cfg.cbr)
        if ref is not None and cfg.eval_snr == 10.0:
            card["kodak"]["paper_scale_reference_psnr"] = ref
        path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
        log(f"Kodak PSNR {card['kodak']['psnr_mean']:.2f} dB (+/- {card['kodak']['psnr_ci95']:.2f})")
    log(f"wrote {path} and {path.with_suffix('.json').name}")
    return card


def model_card(cfg: TrainConfig, model: DeepJSCC, history: list, elapsed: float, val_names: list,
               val_snr: float) -> dict:
    from lrisc_sim.data import image_paths

    lo, hi = parse_snr_range(cfg.snr)
    n_train = sum(len(image_paths(f)) for f in data_folders(cfg.data)) - (int(cfg.val) if cfg.val.isdigit() else 0)
    return {
        "model": "DeepJSCC (Bourtsoulatze, Kurka, Gunduz 2019), complex AWGN channel, MSE",
        "architecture": {**asdict(model.cfg), "downsampling": model.cfg.factor, "latent_channels":
                         model.cfg.channels, "parameters": sum(p.numel() for p in model.parameters()),
                         "summary": model.cfg.describe()},
        "cbr": cfg.cbr,
        "training_snr_db": lo if lo == hi else [lo, hi],
        "training_snr_mode": "fixed" if lo == hi else "uniform per image",
        "data": {"train": cfg.data, "train_images": n_train, "crop": cfg.crop, "batch_size": cfg.batch_size,
                 "validation": val_names if cfg.val.isdigit() else cfg.val},
        "optimizer": {"name": "Adam", "lr": cfg.lr, "lr_final": cfg.lr_final, "warmup": cfg.warmup,
                      "schedule": "linear warm-up, cosine", "grad_clip": cfg.clip},
        "ema_decay": cfg.ema,
        "warm_start": cfg.init,
        "steps": history[-1]["step"] if history else 0,
        "wall_time_s": round(elapsed, 1),
        "steps_per_s": round((history[-1]["step"] if history else 0) / max(elapsed, 1e-9), 3),
        "device": cfg.device,
        "threads": cfg.threads or torch.get_num_threads(),
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "command": command_line(cfg),
        **git_commit(CODE_FILES),
        "validation": {"snr_db": val_snr, "crop": cfg.val_crop, "psnr": history[-1]["val_psnr"] if history
                       else None, "history": history},
        "date": time.strftime("%Y-%m-%d"),
    }


def _recipe_row(card: dict, stem: str, cbr_of: dict[str, str]) -> str:
    """One row of the summary's training-recipe table for a model card; ``cbr_of``: checkpoint stem -> CBR of
    the summary's cards (names a warm start from another CBR)."""
    o, d, init = card["optimizer"], card["data"], card.get("warm_start")
    start = "random initialisation"
    if init:
        other = Path(init).stem
        note = (" (its earlier version)" if other == stem else
                f" (the trained {cbr_of[other]}, c-channel layers by overlap)" if other in cbr_of else "")
        start = f"`{Path(init).name}`{note}"
    sched = o.get("schedule_steps") or []
    steps = str(card["steps"]) + ("" if len(sched) < 2 else " (cosine over " + ", then ".join(
        f"{n} from step {s}" for s, n in sched) + ")")
    return (f"| {card['cbr']} | {steps} | {d['batch_size']} x {d['crop']}^2 | {o['lr']:g} -> {o['lr_final']:g} "
            f"(warm-up {o.get('warmup', 0)}) | {card.get('ema_decay') or 'none'} | {start} |")


def _order_line(finals: list[tuple[float, str, float]]) -> list[str]:
    """Whether the final Kodak PSNR at 10 dB rises strictly with the CBR (``finals``: sorted (CBR, label, PSNR))."""
    if len(finals) < 2:
        return []
    rising = all(a[2] < b[2] for a, b in zip(finals, finals[1:]))
    chain = " < ".join(f"{v:.2f} ({c})" for _, c, v in finals) if rising else \
        ", ".join(f"{c}: {v:.2f}" for _, c, v in finals)
    return [f"Kodak PSNR at 10 dB {'rises strictly' if rising else 'does NOT rise strictly'} with the CBR "
            f"over the finished models: {chain} dB."]


def write_summary(folder: str | Path) -> Path:
    """Write ``folder/README.md`` from the model cards (``deepjscc_*.json``) in ``folder``: one row per
    checkpoint, and the validation PSNR per CPU-hour of each so that the training curves are visible."""
    folder = Path(folder)
    rows, curves, recipes, finals = [], [], [], []
    cards = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("deepjscc_*.json"))}
    cbr_of = {stem: c["cbr"] for stem, c in cards.items()}
    for stem, c in cards.items():
        a, k = c["architecture"], c.get("kodak", {})
        ref = REFERENCE_KODAK_10DB.get(c["cbr"])
        snr = c["training_snr_db"]
        f = float(cbr_fraction(c["cbr"]))
        init = c.get("warm_start")
        hist = c["validation"]["history"]
        seen = [h for h in hist if "kodak_psnr" in h]
        ci = ci95(np.array(list(k["per_image"].values()))) if k.get("per_image") else k.get("psnr_ci95", 0.0)
        kodak = (f"{k['psnr_mean']:.2f} +/- {ci:.2f}" if k else
                 f"{seen[-1]['kodak_psnr']:.2f} (step {seen[-1]['step']})" if seen else "-")
        rows.append((f, f"| {c['cbr']} | {a['downsampling']} | {a['latent_channels']} | "
                     f"{a['first_width']}/{a['width']} | {a['parameters']:,} | "
                     f"{snr if not isinstance(snr, list) else f'{snr[0]:g}:{snr[1]:g}'} | {c['steps']} | "
                     f"{c['data']['crop']} | {card_cpu_hours(c):.2f} | {c['validation']['psnr']:.2f} | "
                     f"{kodak} | "
                     f"{ref if ref else '-'} | {c.get('status', 'final')} | "
                     f"{'`' + Path(init).name + '`' if init else '-'} |"))
        recipes.append((f, _recipe_row(c, stem, cbr_of)))
        if k and c["training_snr_mode"] == "fixed" and snr == 10:
            finals.append((f, c["cbr"], k["psnr_mean"]))
        if hist:
            pts = hist if len(hist) <= 12 else [hist[round(i * (len(hist) - 1) / 11)] for i in range(12)]
            curves.append((f, f"| {c['cbr']} | " + ", ".join(
                f"{h.get('cpu_hours', h['seconds'] * int(c.get('threads') or 1) / 3600):.2f} h: "
                f"{h['val_psnr']:.2f}" + (f" (Kodak {h['kodak_psnr']:.2f})" if "kodak_psnr" in h else "")
                for h in pts) + " |"))
    head = [
        "# DeepJSCC checkpoints",
        "",
        "Trained by `lrisc-sim train deepjscc` (`scripts/train_deepjscc.sh` runs the whole recipe; the command,",
        "commit, CPU and full validation history are in each `.json` model card). Kodak: the 24 images at 10 dB",
        "AWGN, common random numbers (seed 0, trial 0, ids = file stems), PSNR on outputs rounded to uint8, mean +/-",
        "95% CI over images (Student t, as in results/). Validation: centre 512x512 crops of the 4 held-out",
        "training images at the training SNR (EMA weights where the card has `ema_decay` > 0). The paper-scale",
        "column is DeepJSCC trained at full scale (ARCHITECTURE.md section 5.2); CPU-hours count every",
        "warm-start checkpoint behind a model.",
        "",
        "Architecture (`baselines/deepjscc.py`): encoder = 5x5 convolutions with PReLU, no batch norm, `levels`",
        "of them with stride 2 (d = 2^levels), then `extra` stride-1 ones, then a 5x5 convolution to c channels",
        "(+ PReLU), 5 layers in all as in the original (d = 4 where c = 96 CBR is an even integer >= 4, else d = 8:",
        "`default_levels`); the c H W / d^2 reals are paired into complex symbols (complex channel), normalised to",
        "unit power per image; decoder = the mirrored transposed convolutions ending in a sigmoid. CBR = c / (6 d^2),",
        "exact for H, W multiples of d; other sizes are padded by the engine and the encoder sends only the first",
        "floor(CBR 3 H W) symbols (latent positions inside the image first), so the CBR stays exact.",
        "",
        "| CBR | d | c | filters | parameters | train SNR (dB) | steps | crop | CPU-hours | val PSNR "
        "| Kodak PSNR @10 dB | paper-scale | status | warm start |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    tail = [""] + _order_line(sorted(finals))
    tail += ["", "## How each was trained", "",
             "Adam; the learning rate warms up linearly over the steps given and then follows a cosine to its final",
             "value; with an EMA decay, the exported and evaluated weights are the EMA of the training weights. A",
             "warm start loads the tensors of that checkpoint that fit (with the overlap of the c-channel layers when",
             "only c differs, the decoder's extra inputs at zero); its CPU-hours are counted in the table above. The",
             "pilots that chose these starts and crops are in the repository's `training/README.md`.", "",
             "| CBR | steps | batch x crop | learning rate | EMA | starts from |", "|---|---|---|---|---|---|"]
    tail += [r for _, r in sorted(recipes)]
    tail += ["", "## Validation PSNR (dB) against CPU-hours", "",
             "| CBR | CPU-hours: val PSNR |", "|---|---|"] + [r for _, r in sorted(curves)]
    out = folder / "README.md"
    out.write_text("\n".join(head + [r for _, r in sorted(rows)] + tail) + "\n")
    return out


# ---------------------------------------------------------------- CLI

def configure_train_parser(p: argparse.ArgumentParser) -> None:
    """Options of ``lrisc-sim train deepjscc``."""
    d = TrainConfig()
    a = DeepJSCCConfig()  # the default filter counts
    p.add_argument("--cbr", default=d.cbr, help="channel bandwidth ratio, e.g. 1/48 (default %(default)s)")
    p.add_argument("--snr", default=d.snr, help="training SNR in dB, or a range LO:HI drawn uniformly per image")
    p.add_argument("--data", required=True, help="folder of training images (random crops)")
    p.add_argument("--val", default=d.val, help="validation folder, or N to hold out the last N images of --data")
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="crops per step (default %(default)s)")
    p.add_argument("--crop", type=int, default=d.crop, help="crop size (multiple of the downsampling factor)")
    p.add_argument("--lr", type=float, default=d.lr, help="initial learning rate (cosine decay)")
    p.add_argument("--lr-final", type=float, default=d.lr_final, help="learning rate at the last step")
    p.add_argument("--warmup", type=int, default=d.warmup, help="linear warm-up steps (default %(default)s)")
    p.add_argument("--ema", type=float, default=d.ema, help="EMA decay of the exported weights (0: none)")
    p.add_argument("--clip", type=float, default=d.clip, help="gradient-norm clipping (0: none)")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="warm start: load the tensors of this checkpoint that fit (the trunk of another CBR)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop (saving the state) after this many minutes; the same command continues")
    p.add_argument("--loss-log", default=None, metavar="FILE", help="append 'step loss' per training step here")
    p.add_argument("--workers", type=int, default=0,
                   help="DataLoader workers that stream the image files (COCO-sized folders); 0: all in memory")
    p.add_argument("--levels", type=int, default=None,
                   help="stride-2 layers, downsampling d = 2^levels (default: 2 where the CBR allows, else 3)")
    p.add_argument("--extra", type=int, default=None,
                   help="stride-1 layers after the strided ones (default: 4 - levels, 5 layers in all)")
    p.add_argument("--width", default=f"{a.first_width},{a.width}", help="filters: FIRST,HIDDEN (or one number)")
    p.add_argument("--device", default=d.device, help="torch device: cpu, cuda, cuda:1, ... (default cpu)")
    p.add_argument("--out", default=d.out, help="folder for NAME.safetensors and its NAME.json model card")
    p.add_argument("--state", default=None,
                   help="resumable training state (default ~/.cache/lrisc-sim/train/deepjscc/NAME.state.safetensors)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the training state, or else from OUT/NAME.safetensors with a fresh optimizer "
                        "(the default; kept for scripts)")
    p.add_argument("--no-resume", action="store_true",
                   help="start afresh even if the training state or OUT/NAME.safetensors exists (overwrites them)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the initialisation and the crops, 0 .. 2^32-1")
    p.add_argument("--val-every", type=int, default=d.val_every, help="steps between validations (and saved states)")
    p.add_argument("--eval-kodak", default=None, metavar="DIR", help="evaluate the result on this folder")
    p.add_argument("--eval-snr", type=float, default=d.eval_snr, help="SNR (dB) of that evaluation")
    p.add_argument("--kodak-every", type=int, default=d.kodak_every, metavar="N",
                   help="with --eval-kodak: also evaluate the exported weights every N steps (recorded in the "
                        "card's history as kodak_psnr)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if args.workers < 0:
        raise DeepJSCCError(f"--workers {args.workers}: give 0 (images in memory) or a positive number of workers")
    try:
        w = [int(v) for v in str(args.width).split(",")]
    except ValueError:
        w = []
    if not 1 <= len(w) <= 2 or min(w) < 1:
        raise DeepJSCCError(f"bad --width '{args.width}': use FIRST,HIDDEN filter counts (32,64) or one number")
    first, hidden = (w[0], w[0]) if len(w) == 1 else (w[0], w[1])
    from lrisc_sim.train_checks import check_option

    if args.resume and args.no_resume:
        raise DeepJSCCError("--resume and --no-resume contradict each other: give one (resuming is the default)")
    for name in ("levels", "extra"):  # before the architecture is derived from them
        check_option(name, getattr(args, name))
    levels = args.levels if args.levels is not None else default_levels(args.cbr)
    extra = args.extra if args.extra is not None else 4 - levels  # 5 conv layers in all, as in the original
    arch = DeepJSCCConfig(cbr=args.cbr, levels=levels, extra=extra, first_width=first, width=hidden)
    arch.channels  # noqa: B018 (raises a clear error for a CBR the depth cannot give exactly)
    return TrainConfig(cbr=args.cbr, snr=args.snr, data=args.data, val=str(args.val), steps=args.steps,
                       batch_size=args.batch_size, crop=args.crop, lr=args.lr, lr_final=args.lr_final,
                       warmup=args.warmup, ema=args.ema, clip=args.clip, init=args.init,
                       max_minutes=args.max_minutes, loss_log=args.loss_log, workers=args.workers,
                       device=args.device, out=args.out, state=args.state, resume=not args.no_resume,
                       threads=args.threads, seed=args.seed, val_every=args.val_every,
                       eval_kodak=args.eval_kodak, eval_snr=args.eval_snr, arch=arch,
                       kodak_every=args.kodak_every)


def run_train(args: argparse.Namespace) -> int:
    """Entry point of ``lrisc-sim train deepjscc``; returns the exit status."""
    train(config_from_args(args))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m ...`` runs the same as ``lrisc-sim train deepjscc``."""
    from lrisc_sim.cli import main as cli_main

    return cli_main(["train", "deepjscc", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
