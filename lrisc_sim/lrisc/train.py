"""Three-stage training of LRISC (paper Algorithm 1): ``lrisc-sim train lrisc --stage 1|2|3 --data DIR``.

Stage 1 trains g_e, g_d, h_e, h_d (and the factorized prior) without the channel: z~ = g_e(x) + U(-1/2, 1/2),
loss (1 - eta) d(x0, x_bar0) + eta d_p(x0, x_bar0) + lambda R (Algorithm 1 line 8). Against the known collapse
of x0-prediction to grey images, a warm-up (``warmup_steps``) adds an auxiliary direct decoder of the context
maps, ||aux(z~) - x0||^2, whose weight decays from ``aux_weight`` to a tenth of it, and draws half of the
steps from the noisier half of the schedule, so that the U-Net learns to use z~ early.

Stage 2 loads and freezes stage 1 and trains f_e, f_d through a complex AWGN channel with eq. (11) on x_hat0
(the x_bar0 and rate terms do not depend on f): first ``stage2_fixed_fraction`` of the steps at SNR 10 dB with
the SNR modules off, then a uniform random SNR per image with them on. Our addition: ``latent_weight``
||z_hat - z~||^2 / ||z~||^2 (normalised latent MSE), which makes f_e/f_d converge in the short CPU budget. Stage 3 fine-tunes everything with
eq. (11) (x_hat0 and x_bar0 terms, rate, latent term) at a lower learning rate.

In stages 2 and 3, each image gets a random target CBR (log-uniform over ``cbr_range``) and its rate indices
come from the same rate control as at inference, so one model serves every CBR.

Every stage is resumable (state in ``OUT/stageS/state.safetensors``: tensors and JSON, no pickle; saved every few
minutes and at validations): re-running the same command continues (from the state, else from the stage's
export, never afresh over them without ``--no-resume``); an old pickled ``state.pt`` is refused. The
result is ``OUT/stageS/lrisc_PRESET_stageS.safetensors`` plus a JSON model card; ``--ship`` also copies it to the
package's checkpoint folder (the codec's default). While a stage runs, every validation exports its weights in the
same format to ``OUT/stageS/export.safetensors`` with a card (status, step, CPU-hours, history) in ``export.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from lrisc_sim.provenance import cpu_name, git_commit
from lrisc_sim.lrisc.config import TrainConfig, preset, train_preset
from lrisc_sim.lrisc.jscc import RateControlError, rate_control
from lrisc_sim.lrisc.losses import LossOutput, Perceptual, rdp_loss
from lrisc_sim.lrisc.model import LRISC
from lrisc_sim.lrisc.rate_index import RateIndexCoding
from lrisc_sim.metrics import psnr, quantize
from lrisc_sim.train_state import (EMA, StateError, TrainRun, card_value, check_meta, read_card, read_meta,
                                   weights_for_export)

STATE_NAME = "state.safetensors"  # OUT/stageS/STATE_NAME: the resumable state of a stage
EXPORT_NAME = "export.safetensors"  # OUT/stageS/EXPORT_NAME (+ export.json): the latest validated weights
# keys of a stage state's JSON meta besides TrainRun's (checked on resume; "ema": running loss averages)
STATE_KEYS = {"ema_updates": "count", "warm_from": "count", "prior_cpu_hours": "hours", "config": "dict"}
STAGE_NAMES = {1: "g_e, g_d, h_e, h_d without channel", 2: "f_e, f_d with AWGN channel", 3: "end-to-end fine-tuning"}


@dataclass
class RunConfig:
    """A training run (filled by the CLI)."""

    stage: int = 1
    preset: str = "small"
    data: str = ""
    val: str = "4"  # a folder, or N: hold out the last N images of ``data``
    out: str = "runs/lrisc"
    init: str | None = None
    init_partial: bool = False  # stage 1: the preset's architecture, from --init every module that fits whole
    continue_from: str | None = None  # an export of this stage in progress, continued when the state is absent
    continued: dict | None = None  # where a continued run came from: {"from", "step", "command", "commit"}
    sample_steps: int | None = None  # denoising steps written into the weights' config (the codec's default)
    ema: float = 0.999  # EMA decay of the weights that are validated, exported and written (0: the raw weights)
    resume: bool = True
    device: str = "cpu"
    threads: int | None = None
    seed: int = 0
    val_every: int = 500
    val_crop: int = 128
    val_steps: int | None = None
    save_minutes: float = 5.0
    max_minutes: float | None = None
    perceptual: bool = True
    ship: bool = False
    workers: int = 0  # DataLoader workers streaming the files (0: all training images in memory)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def steps(self) -> int:
        return self.train.steps[self.stage - 1]

    def stage_dir(self, stage: int | None = None) -> Path:
        return Path(self.out) / f"stage{stage or self.stage}"

    def weights_path(self, stage: int | None = None) -> Path:
        s = stage or self.stage
        return self.stage_dir(s) / f"lrisc_{self.preset}_stage{s}.safetensors"


# ---------------------------------------------------------------- helpers

# the code an LRISC training run depends on (checked against the commit for the model card)
CODE_FILES = ("lrisc_sim/lrisc", "lrisc_sim/lpips.py", "lrisc_sim/data.py", "lrisc_sim/codec.py", "channels")

def load_perceptual(device: torch.device, enabled: bool = True, log=print) -> Perceptual | None:
    """d_p: LPIPS from the project's metric module (None, with a message, if disabled or unavailable)."""
    if not enabled:
        return None
    try:
        from lrisc_sim.lpips import get_lpips

        return get_lpips(device)
    except Exception as e:  # noqa: BLE001 (weights missing, module absent): train without d_p, say so
        log(f"warning: LPIPS unavailable ({e}); training without the perceptual term d_p")
        return None


def set_trainable(model: LRISC, stage: int) -> list[torch.nn.Parameter]:
    """Freeze everything except the modules of ``stage``; return their parameters."""
    model.requires_grad_(False)
    params = []
    for m in model.stage_modules(stage):
        m.requires_grad_(True)
        params += list(m.parameters())
    return params


def random_cbr(b: int, lo: float, hi: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """B target CBRs, log-uniform over [lo, hi]."""
    u = torch.rand(b, generator=generator, dtype=torch.float64)
    return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))


def train_rate_indices(model: LRISC, token_bits: torch.Tensor, hw: tuple[int, int], tc: TrainConfig,
                       generator: torch.Generator | None = None, grid: tuple[int, int] | None = None
                       ) -> torch.Tensor:
    """Rate indices q (``B x L`` on the latent ``grid``) for random target CBRs, from the inference rate control
    (no gradient)."""
    b = token_bits.shape[0]
    cbr = random_cbr(b, *tc.cbr_range, generator=generator)
    budget = torch.floor(cbr * 3 * hw[0] * hw[1]).to(token_bits.device)
    try:
        jc = model.cfg.jscc
        coding = RateIndexCoding("auto", tuple(jc.side_codes))
        return rate_control(token_bits, budget, model.f_e.quantizer, coding=coding, grid=grid,
                            block=jc.rate_block if grid is not None else 1).q
    except RateControlError:
        return torch.zeros_like(token_bits, dtype=torch.long)


def stage_snr(stage: int, step: int, tc: TrainConfig, b: int, device: torch.device,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, bool]:
    """Training SNR (B, dB) and whether the SNR modules are on at this step of this stage."""
    if stage == 2 and step < int(tc.stage2_fixed_fraction * tc.steps[1]):
        return torch.full((b,), tc.fixed_snr, device=device), False
    lo, hi = tc.snr_range
    return (lo + (hi - lo) * torch.rand(b, generator=generator)).to(device), True


def warmup_factor(step: int, tc: TrainConfig) -> float:
    """1 at step 0, linearly down to 0 at ``warmup_steps`` (0 without warm-up)."""
    if tc.warmup_steps <= 0:
        return 0.0
    return max(0.0, 1.0 - step / tc.warmup_steps)


def with_t_max(index: torch.Tensor, tc: TrainConfig, diff, generator: torch.Generator | None = None) -> torch.Tensor:
    """``index`` (B diffusion steps n - 1) with a ``t_max_share`` of the batch moved to the last step n = N (pure
    noise): the plain-MSE decoder path that sets the first DDIM estimate, in every stage."""
    if tc.t_max_share <= 0:
        return index
    at_t = (torch.rand(index.shape[0], generator=generator) < tc.t_max_share).to(index.device)
    return torch.where(at_t, torch.full_like(index, diff.cfg.num_train_timesteps - 1), index)


def stage_loss(model: LRISC, stage: int, x: torch.Tensor, step: int, tc: TrainConfig,
               perceptual: Perceptual | None, generator: torch.Generator | None = None) -> LossOutput:
    """The loss of one training step of ``stage`` on a batch x (``B x 3 x H x W`` in [0, 1])."""
    b = x.shape[0]
    diff = model.diffusion
    if stage == 1:
        lat = model.latent(x, "noise")
        w = warmup_factor(step, tc)
        index = with_t_max(diff.sample_timesteps(b, x.device, high_fraction=0.5 * w, generator=generator), tc,
                           diff, generator)
        ctx = model.g_d.context(lat.z_tilde)
        xn = diff.add_noise(2 * x - 1, torch.randn(x.shape, generator=generator).to(x.device), index)
        x_bar = model.g_d(xn, diff.time_input(index), context=ctx)
        aux_w = tc.aux_weight * (0.1 + 0.9 * w)
        extra = {"aux": aux_w * (model.g_d.context_net.aux(ctx) - (2 * x - 1)).pow(2).mean()} if aux_w > 0 else {}
        return rdp_loss(x, [(x_bar, index)], lat.rate_bits(), diff, perceptual, tc.eta, stage1_lam(step, tc), extra,
                        lpips_max_index=lpips_max_index(tc, diff))

    snr, sm_on = stage_snr(stage, step, tc, b, x.device, generator)
    model.set_snr_modules(sm_on)
    if stage == 2:
        with torch.no_grad():
            lat = model.latent(x, "noise")
    else:
        lat = model.latent(x, "noise")
    q = train_rate_indices(model, lat.token_bits().detach(), tuple(x.shape[-2:]), tc, generator,
                           grid=tuple(lat.z.shape[-2:]))
    noise = torch.randn(x.shape, generator=generator).to(x.device)
    z_hat, _, _ = model.jscc_awgn(lat.z_tilde, q, snr, generator)
    index = with_t_max(diff.sample_timesteps(b, x.device, generator=generator), tc, diff, generator)
    xn = diff.add_noise(2 * x - 1, noise, index)
    t = diff.time_input(index)
    estimates = [(model.g_d(xn, t, z_hat), index)]
    if stage == 3:
        estimates.append((model.g_d(xn, t, lat.z_tilde), index))
    target = lat.z_tilde.detach()
    nmse = (z_hat - target).pow(2).mean() / target.pow(2).mean().clamp(min=1e-6)
    extra = {"latent": tc.latent_weight * nmse}
    rate = lat.rate_bits() if stage == 3 else None
    return rdp_loss(x, estimates, rate, diff, perceptual, tc.eta, tc.lam, extra)


def stage1_lam(step: int, tc: TrainConfig) -> float:
    """Rate weight of stage 1 at ``step``: ``lam_start`` ramped linearly (in log) to ``lam`` over ``lam_ramp``."""
    if tc.lam_start is None or tc.lam_ramp <= 0:
        return tc.lam
    t = min(step / max(tc.lam_ramp * tc.steps[0], 1), 1.0)
    return math.exp(math.log(tc.lam_start) + t * (math.log(tc.lam) - math.log(tc.lam_start)))


def lpips_max_index(tc: TrainConfig, diff) -> int | None:
    """d_p only on estimates made below ``lpips_max_t`` N (None: every estimate)."""
    return None if tc.lpips_max_t >= 1 else int(tc.lpips_max_t * diff.cfg.num_train_timesteps)


class _StageStep(torch.nn.Module):
    """One training step's loss as a module, so that DistributedDataParallel sees a forward call."""

    def __init__(self, model: LRISC, stage: int, tc: TrainConfig, perceptual: Perceptual | None):
        super().__init__()
        self.model, self.stage, self.tc, self.perceptual = model, stage, tc, perceptual

    def forward(self, x: torch.Tensor, step: int) -> LossOutput:
        return stage_loss(self.model, self.stage, x, step, self.tc, self.perceptual)


def lr_at(step: int, total: int, base: float, warm: int = 100, warm_from: int = 0) -> float:
    """Cosine decay from ``base`` (after the first ``warm`` steps) to a tenth of it at ``total``, times a linear
    warm-up over the ``warm`` steps from ``warm_from`` (0, or the step a run continued at with a fresh optimizer)."""
    t = min(max(step - warm, 0) / max(total - warm, 1), 1.0)
    ramp = min((step - warm_from + 1) / warm, 1.0) if warm > 0 else 1.0
    return base * (0.1 + 0.45 * (1 + math.cos(math.pi * t))) * ramp


# ---------------------------------------------------------------- data and validation

def split_data(cfg: RunConfig):
    """Training image paths and validation images (``list[(id, 3 x S x S)]``, centre crops of ``val_crop``)."""
    from lrisc_sim.data import image_paths, load_image

    folders = [f for f in str(cfg.data).split(",") if f]  # one folder or several, comma-separated
    if not folders:
        raise ValueError("--data is empty: give a folder of training images (or several, comma-separated)")
    paths = image_paths(folders[0])
    if cfg.val.isdigit():  # held out from the end of the first folder
        n = int(cfg.val)
        if n >= len(paths):
            raise ValueError(f"--val {n}: {folders[0]} has only {len(paths)} images; hold out fewer")
        val_paths = paths[len(paths) - n:] if n else []
        paths = paths[: len(paths) - n]
    else:
        val_paths = image_paths(cfg.val)
    paths = paths + [p for f in folders[1:] for p in image_paths(f)]
    val = []
    for p in val_paths:
        im = load_image(p)
        h, w = im.shape[-2:]
        s = min(h, w, cfg.val_crop) // 16 * 16
        i, j = (h - s) // 2, (w - s) // 2
        val.append((p.stem, im[:, i: i + s, j: j + s]))
    return paths, val, [p.name for p in val_paths]


@torch.no_grad()
def validate(model: LRISC, stage: int, val: list, device: torch.device, perceptual: Perceptual | None,
             steps: int | None = None, snr_db: float = 10.0, cbr: float = 1 / 48) -> dict:
    """Mean PSNR / LPIPS of full sampling on the validation crops: stage 1 without channel (z~ = round(z)),
    stages 2-3 through the codec at ``snr_db`` AWGN and ``cbr``; ``std_ratio`` (output / source pixel std)
    flags the grey-image collapse when it falls towards 0."""
    from channels.awgn import AWGN
    from lrisc_sim.lrisc.codec import LRISCCodec
    from lrisc_sim.transmission import send

    if not val:
        return {}
    was_training = model.training
    model.eval()
    psnrs, lps, ratios, cbrs = [], [], [], []
    codec = LRISCCodec(model, steps=steps)
    for vid, im in val:
        x = im[None].to(device)
        if stage == 1:
            lat = model.latent(x, "round")
            y = model.reconstruct(lat.z_tilde, [0], steps)
        else:
            model.set_snr_modules(True)
            t = send(codec, x, cbr, snr_db, AWGN(), [vid], seed=0, trial=0)
            y = t.output
            cbrs.append(float(t.cbr["cbr_total"][0]))
        y = quantize(y)  # uint8 levels, as the metrics see them
        psnrs.append(float(psnr(x, y)[0]))
        if perceptual is not None:
            lps.append(float(perceptual(x, y)[0]))
        ratios.append(float(y.std() / x.std().clamp(min=1e-6)))
    model.train(was_training)
    out = {"psnr": round(float(np.mean(psnrs)), 3), "std_ratio": round(float(np.mean(ratios)), 3)}
    if lps:
        out["lpips"] = round(float(np.mean(lps)), 4)
    if cbrs:
        out.update({"snr_db": snr_db, "cbr_target": cbr, "cbr_total": round(float(np.mean(cbrs)), 5)})
    return out


# ---------------------------------------------------------------- training loop

def build_model(cfg: RunConfig, device: torch.device, log=print) -> LRISC:
    """A fresh model (stage 1) or the previous stage's weights (``--init``, default OUT/stage{S-1})."""
    if cfg.continue_from:
        return LRISC.load(cfg.continue_from, device).train()  # checked by continue_card
    if cfg.stage == 1 and not cfg.init:
        if cfg.init_partial:
            raise ValueError("--init-partial needs --init CHECKPOINT (the weights to take what fits from)")
        return LRISC(preset(cfg.preset)).to(device)
    init = Path(cfg.init) if cfg.init else cfg.weights_path(cfg.stage - 1)
    if not init.is_file():
        raise ValueError(f"stage {cfg.stage} starts from {init}, which does not exist: finish stage "
                         f"{cfg.stage - 1} first or pass --init PATH")
    if cfg.init_partial:
        if cfg.stage != 1:
            raise ValueError(f"--init-partial is for stage 1 (a new architecture); stage {cfg.stage} continues "
                             "the previous stage's model: drop --init-partial")
        model = LRISC(preset(cfg.preset))
        fresh = model.load_matching(init)
        log(f"preset '{cfg.preset}' initialised from {init} where it fits; fresh: {', '.join(fresh) or 'none'}")
        return model.to(device).train()
    log(f"initialising from {init}")
    model = LRISC.load(init, device)
    if model.cfg.preset != cfg.preset:
        log(f"note: {init} is preset '{model.cfg.preset}'; continuing with its architecture")
        cfg.preset = model.cfg.preset
    if cfg.stage == 1:  # a new model from old weights takes the preset's side-information rule (not architecture)
        new = preset(model.cfg.preset).jscc
        model.cfg.jscc.rate_block, model.cfg.jscc.side_codes = new.rate_block, tuple(new.side_codes)
    return model.train()


def continue_card(cfg: RunConfig) -> dict:
    """The card of ``--continue-from`` (an ``export.safetensors`` of this stage in progress, e.g. committed from
    another machine), checked against the command: same stage, same architecture as the preset, not finished."""
    path = Path(cfg.continue_from)
    if cfg.init or cfg.init_partial:
        raise ValueError("--continue-from already gives the weights (and the step) to start from: drop --init / "
                         "--init-partial")
    if not path.is_file() or not path.with_suffix(".json").is_file():
        raise ValueError(f"--continue-from {path}: needs the weights and their card {path.with_suffix('.json').name} "
                         "(a stage's export.safetensors + export.json)")
    card_path = path.with_suffix(".json")
    fix = "restore it (e.g. from git) or use --init to start from other weights"
    card = read_card(card_path, fix)
    if card.get("stage") != cfg.stage or "history" not in card or "steps" not in card:
        raise ValueError(f"--continue-from {path}: its card is not an export of stage {cfg.stage} in progress "
                         f"(stage {card.get('stage')}); use --init to start from other weights")
    for key, kind in (("steps", "count"), ("history", "list"), ("wall_time_s", "seconds"), ("cpu_hours", "hours")):
        card_value(card, card_path, key, kind, None, fix)
    from lrisc_sim.safeio import safetensors_metadata

    arch = json.loads(safetensors_metadata(path, "LRISC checkpoint", "give an export.safetensors of this stage")
                      .get("config", "null"))
    want = json.loads(json.dumps(preset(cfg.preset).to_dict()))
    for c in (arch, want):  # the sampling steps are not architecture (--sample-steps)
        (c or {}).get("diffusion", {}).pop("steps", None)
    if arch != want:
        raise ValueError(f"--continue-from {path}: its architecture is not preset '{cfg.preset}' of this version; "
                         "use --init --init-partial to take what fits")
    if int(card["steps"]) >= cfg.steps:
        raise ValueError(f"--continue-from {path}: it is at step {card['steps']}, not before this stage's "
                         f"--steps {cfg.steps}: raise --steps or start stage {cfg.stage + 1} from it with --init")
    return card


def validate_config(cfg: RunConfig) -> None:
    """Check every option against the trainers' shared rules (:mod:`lrisc_sim.train_checks`) before any work:
    numbers and ranges, seed, device, the run folder; and the card of the weights a later stage starts from."""
    from lrisc_sim.train_checks import TrainOptionError, validate_training_args

    t = cfg.train
    validate_training_args(
        {"steps": cfg.steps, "batch_size": t.batch, "crop": t.crop, "val_crop": cfg.val_crop,
         "lr": t.lr_stage3 if cfg.stage == 3 else t.lr, "lam": t.lam, "eta": t.eta, "warmup_steps": t.warmup_steps,
         "aux_weight": t.aux_weight, "latent_weight": t.latent_weight, "t_max_share": t.t_max_share,
         "lpips_max_t": t.lpips_max_t, "lam_start": t.lam_start, "lam_ramp": t.lam_ramp, "ema": cfg.ema,
         "val_every": cfg.val_every, "save_minutes": cfg.save_minutes, "max_minutes": cfg.max_minutes,
         "sample_steps": cfg.sample_steps, "val_steps": cfg.val_steps, "workers": cfg.workers,
         "threads": cfg.threads},
        device=cfg.device, seed=cfg.seed, folders={"out": cfg.out})
    if t.lam_start is not None and t.lam_ramp > 0 and t.lam <= 0:
        raise TrainOptionError(f"--lam {t.lam:g}: must be > 0 when --lam-start ramps to it (a log-scale ramp)")
    sdir = cfg.stage_dir()
    for p in (sdir, sdir / STATE_NAME):
        if p.exists() and p.is_dir() != (p == sdir):
            raise TrainOptionError(f"--out {cfg.out}: {p} is a {'file' if p == sdir else 'folder'}; move it away "
                                   "or give another --out")
    if cfg.stage > 1 and not cfg.continue_from:  # its card is read at the end of the stage
        card = (Path(cfg.init) if cfg.init else cfg.weights_path(cfg.stage - 1)).with_suffix(".json")
        if card.is_file():
            read_card(card, "restore it, or give --init weights whose card is intact")


def existing_work(cfg: RunConfig, log=print) -> str | None:
    """The export of this stage in ``--out`` (else its final weights) when its state is gone: the same command
    continues from it (as with ``--continue-from``) rather than start afresh over it; None when there is none.
    A finished stage, or ``--init`` given as well, is a one-line error saying what to do."""
    sdir = cfg.stage_dir()
    found = next((p for p in (sdir / EXPORT_NAME, cfg.weights_path()) if p.is_file()
                  and p.with_suffix(".json").is_file()), None)
    if found is None:
        return None
    card = read_card(found.with_suffix(".json"), "restore it, or pass --no-resume to start afresh (overwriting it)")
    step = card.get("steps")
    if cfg.init or cfg.init_partial:
        raise ValueError(f"{found} holds stage {cfg.stage} at step {step} without its state: drop --init to "
                         f"continue it, or pass --no-resume to start afresh from --init (overwriting it)")
    if isinstance(step, int) and step >= cfg.steps:
        raise ValueError(f"{found} holds stage {cfg.stage} finished at step {step} (--steps {cfg.steps}) without "
                         "its state: raise --steps to train on from it, or pass --no-resume to start afresh "
                         "(overwriting it)")
    log(f"no training state in {sdir}, but {found.name} is there (step {step}): continuing from it")
    return str(found)


def train(cfg: RunConfig, log=print) -> dict:
    """Run (or continue) one stage; return its model card (also written beside the weights).

    At every validation the current weights are also exported in the shipped format with a card of the run so
    far (status, step, CPU-hours of this stage, loss and validation history): ``OUT/stageS/export.safetensors``
    and ``export.json``, so a run in progress can be committed at regular points.
    """
    from tqdm import tqdm

    from lrisc_sim import ddp
    from lrisc_sim.train_checks import check_loss

    validate_config(cfg)  # before any work: a one-line error for a bad option
    dist = ddp.init(cfg.device)  # torchrun: DDP over the ranks (gloo on CPU, NCCL on CUDA); else one process
    if not dist.main:
        log = lambda *a, **k: None  # noqa: E731 (rank 0 logs)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = dist.device
    torch.manual_seed(cfg.seed + 7919 * cfg.stage)
    sdir = cfg.stage_dir()
    resuming = cfg.resume and (sdir / STATE_NAME).exists()
    if cfg.resume and not resuming and not cfg.continue_from:  # never start afresh over this stage's export
        cfg.continue_from = existing_work(cfg, log)
    cont = continue_card(cfg) if cfg.continue_from and not resuming else None
    if cfg.continue_from and resuming:  # both: the one further along (an export committed from another machine
        # can be ahead of an old state here); the state's meta is checked like any resumed state (no pickle)
        state_step = check_meta(read_meta(sdir / STATE_NAME), sdir / STATE_NAME)["step"]
        card = continue_card(cfg)
        if int(card["steps"]) > state_step:
            log(f"--continue-from {cfg.continue_from} is at step {card['steps']}, ahead of the state here (step "
                f"{state_step}): continuing the export")
            resuming, cont = False, card
        else:
            log(f"the state here (step {state_step}) is at least as far as --continue-from {cfg.continue_from} "
                f"(step {card['steps']}): resuming the state")
    model = build_model(cfg, device, log)  # with --continue-from, its export gives the architecture (a state here
    # then overwrites the weights): the previous stage's weights need not be on this machine
    if cfg.sample_steps is not None:
        if not 1 <= cfg.sample_steps <= model.cfg.diffusion.num_train_timesteps:
            raise ValueError(f"--sample-steps {cfg.sample_steps}: give 1 .. {model.cfg.diffusion.num_train_timesteps}")
        model.cfg.diffusion.steps = cfg.sample_steps
    tc = cfg.train
    dist.local_batch(tc.batch)  # the global batch must split evenly over the ranks
    if tc.crop % model.cfg.multiple:
        raise ValueError(f"--crop {tc.crop} must be a multiple of {model.cfg.multiple}")
    params = set_trainable(model, cfg.stage)
    lr = tc.lr_stage3 if cfg.stage == 3 else tc.lr
    opt = torch.optim.Adam(params, lr=lr)
    perceptual = load_perceptual(device, cfg.perceptual and tc.eta > 0, log)
    train_paths, val, val_names = split_data(cfg)
    run = TrainRun(sdir / STATE_NAME, threads=cfg.threads or torch.get_num_threads(), world=dist.world,
                   cuda=device.type == "cuda", save_minutes=cfg.save_minutes, max_minutes=cfg.max_minutes)
    loss_avg: dict[str, float] = {}  # running averages of the loss terms (the state's meta key "ema")
    ema_state: dict[str, torch.Tensor] = {}
    ema_updates = 0
    warm_from = 0  # the step the learning rate was last warmed up from (a continue starts a fresh optimizer)
    if cont is not None:
        run.step, run.history, run.elapsed = int(cont["steps"]), list(cont["history"]), float(cont["wall_time_s"])
        # CPU-hours go on from the card's, whatever threads x processes this machine runs
        run.prior_cpu_hours = float(cont.get("cpu_hours", 0.0)) - run.cpu_hours(run.elapsed)
        cfg.continued = {"from": str(cfg.continue_from), "step": run.step, "command": cont.get("command"),
                         "commit": cont.get("commit")}
        warm_from = ema_updates = run.step  # the EMA starts at the exported (EMA) weights at its full decay
        log(f"no training state at {run.path}: continuing {cfg.continue_from} at step {run.step} with a fresh "
            f"optimizer (learning rate warmed up again over 100 steps)")
    if cfg.resume and cont is None:
        legacy = sdir / "state.pt"  # written by earlier versions with torch.save (a pickle): never loaded
        if not run.path.exists() and legacy.exists():
            raise StateError(f"{legacy} is an old pickle/torch.save training state, which could run code and is "
                             f"never loaded: delete it (stage {cfg.stage} then restarts from step 0) or pass "
                             "--no-resume")
        if run.path.exists():
            meta, ema_state, _ = run.resume(model, opt, device, steps=cfg.steps, required={"ema": "numbers"},
                                            optional=STATE_KEYS)
            loss_avg = meta["ema"]
            ema_updates = int(meta.get("ema_updates", 0)) if ema_state else 0
            warm_from, run.prior_cpu_hours = int(meta.get("warm_from", 0)), float(meta.get("prior_cpu_hours", 0.0))
            saved = meta.get("config", {})  # the card keeps naming where a continued run came from
            cfg.continue_from, cfg.continued = saved.get("continue_from"), saved.get("continued")
            log(f"resumed {run.path} at step {run.step}")
    crop_seed = cfg.seed + 1000 * run.step + 100_000 * cfg.stage  # a fresh crop stream after a resume
    n_train = len(train_paths)
    batches = dist.batches(train_paths, tc.crop, tc.batch, cfg.workers, seed=crop_seed)
    if dist.active:  # the diffusion and channel noise differ per rank (the slices hold different images)
        torch.manual_seed(cfg.seed + 7919 * cfg.stage + 1_000_003 * dist.rank + run.step)
    net = dist.wrap(_StageStep(model, cfg.stage, tc, perceptual), find_unused=True) if dist.active else None
    n_par = sum(p.numel() for p in model.parameters())
    log(f"LRISC preset '{cfg.preset}', stage {cfg.stage} ({STAGE_NAMES[cfg.stage]}): {n_par / 1e6:.2f} M "
        f"parameters, {sum(p.numel() for p in params) / 1e6:.2f} M trained; {n_train} training images, "
        f"{len(val)} validation; {tc.crop}x{tc.crop} crops, batch {tc.batch}; {cfg.steps} steps; "
        f"d_p {'LPIPS' if perceptual else 'off'}")

    # the weights that are validated and exported: an EMA of the training weights (rank 0 keeps it)
    ema = EMA(model, cfg.ema, ema_state, ema_updates) if cfg.ema > 0 and dist.main else None
    if ema is not None and not ema_state and run.step > 0 and cont is None:
        log(f"EMA (decay {cfg.ema:g}) starts at step {run.step} from the current weights")

    def save() -> None:  # safetensors + JSON (lrisc_sim.train_state), written atomically; no pickle
        run.save(model, opt, ema.shadow if ema else None, ema=loss_avg, ema_updates=ema.updates if ema else 0,
                 warm_from=warm_from, prior_cpu_hours=run.prior_cpu_hours, config=asdict(cfg))

    def evaluated() -> LRISC:
        """The EMA weights (if any) in a model of the same architecture and SNR-module switches."""
        m = weights_for_export(model, ema, lambda: LRISC(model.cfg).to(device))
        m.f_e.snr.enabled, m.f_d.snr.enabled = model.f_e.snr.enabled, model.f_d.snr.enabled
        return m

    def validate_and_export() -> dict:
        """Validate, record the point in the history, export the weights with their card (rank 0 only)."""
        evm = evaluated()
        v = validate(evm, cfg.stage, val, device, perceptual, cfg.val_steps)
        model.train()
        run.record(train={k: round(x, 5) for k, x in loss_avg.items()}, val=v)
        export(cfg, model, run, val_names, evm)
        bar.write(f"step {run.step}: train {json.dumps(run.history[-1]['train'])}; val {json.dumps(v)}; "
                  f"{run.elapsed:.0f} s")
        return v

    model.train()
    bar = tqdm(total=cfg.steps, initial=run.step, desc=f"lrisc stage {cfg.stage}", dynamic_ncols=True,
               mininterval=1 if sys.stderr.isatty() else 60, disable=not dist.main)
    with run.stop_on_signals():  # SIGINT / SIGTERM: finish the step, save, return
        run.start()
        stopped = False
        while run.step < cfg.steps:
            for g in opt.param_groups:
                g["lr"] = lr_at(run.step, cfg.steps, lr, warm_from=warm_from)
            x = next(batches).to(device)
            # bf16 mixed precision on CUDA (the entropy models compute their likelihoods in float32)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out = net(x, run.step) if net is not None else stage_loss(model, cfg.stage, x, run.step, tc, perceptual)
            opt.zero_grad(set_to_none=True)
            out.total.backward()
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            opt.step()
            if ema is not None:
                ema.update(model)
            run.step += 1
            parts = {k: dist.mean(v) for k, v in out.parts.items()} if dist.active else out.parts
            for k, v in parts.items():
                fresh = k not in loss_avg or not math.isfinite(loss_avg[k])
                loss_avg[k] = v if fresh else 0.98 * loss_avg[k] + 0.02 * v
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in loss_avg.items()}, refresh=False)
            if not math.isfinite(parts["loss"]):  # NaN / inf: stop before anything is saved or exported
                bar.close()
                check_loss(parts["loss"], run.step)
            validating = run.step % cfg.val_every == 0 or run.step == cfg.steps
            if dist.active and (validating or dist.any(run.save_due())):  # the same decision on every rank
                run.lap()
                if dist.main:  # rank 0 validates, exports and saves; the others wait
                    validate_and_export()
                    save()
                dist.barrier()
                run.mark_saved()
            elif validating:
                run.lap()
                v = validate_and_export()
                if v.get("std_ratio", 1.0) < 0.3:
                    bar.write("warning: outputs are close to uniform grey (std ratio < 0.3): the x0-prediction "
                              "collapse; consider a longer --warmup-steps or a larger --aux-weight")
                save()
            elif run.save_due():
                run.lap()
                save()
            if dist.any(run.out_of_time()) and run.step < cfg.steps:
                stopped = True
                break
    bar.close()
    run.lap()
    if not dist.main:
        dist.barrier()
        dist.close()
        return {"stage": cfg.stage, "step": run.step, "stopped": stopped, "rank": dist.rank}
    save()
    dist.barrier()
    dist.close()
    if stopped:
        log(f"stopped {run.stop_reason()} at step {run.step}/{cfg.steps}; state in {run.path}: run the same "
            "command again to continue")
        return {"stage": cfg.stage, "step": run.step, "stopped": True}
    card = model_card(cfg, model, run.history, run.elapsed, val_names)
    path = cfg.weights_path()
    final = evaluated()
    final.set_snr_modules(True)
    final.save(path, card)
    log(f"wrote {path} and {path.with_suffix('.json').name}")
    if cfg.ship:
        ship(path)
        log(f"shipped as {shipped_path(model.cfg.preset)}")
    return card


def export(cfg: RunConfig, model: LRISC, run: TrainRun, val_names: list, weights: LRISC | None = None) -> Path:
    """Write the weights of a run in progress (``weights``: the validated model, e.g. the EMA; default
    ``model``) in the shipped format with their card (:func:`model_card` plus ``status`` and ``cpu_hours``, this
    stage's) to ``OUT/stageS/export.safetensors`` and ``export.json``; return the weights' path."""
    card = model_card(cfg, model, run.history, run.elapsed, val_names)
    card["status"] = run.status(cfg.steps)
    card["cpu_hours"] = round(run.cpu_hours(), 4)
    path = cfg.stage_dir() / EXPORT_NAME
    (weights or model).save(path, card)
    return path


def shipped_path(preset_name: str) -> Path:
    from lrisc_sim.lrisc.codec import CHECKPOINT_DIR

    return CHECKPOINT_DIR / f"lrisc_{preset_name}.safetensors"


def ship(path: Path) -> Path:
    """Copy a stage's weights and model card into the package's checkpoint folder (the codec's default)."""
    model_preset = json.loads(path.with_suffix(".json").read_text()).get("preset", "small")
    dst = shipped_path(model_preset)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, dst)
    shutil.copyfile(path.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


def command_line(cfg: RunConfig) -> str:
    """The command that reproduces this stage."""
    t = cfg.train
    parts = ["lrisc-sim train lrisc", f"--stage {cfg.stage}", f"--preset {cfg.preset}", f"--data {cfg.data}",
             f"--val {cfg.val}", f"--steps {cfg.steps}", f"--batch-size {t.batch}", f"--crop {t.crop}",
             f"--lr {t.lr_stage3 if cfg.stage == 3 else t.lr:g}", f"--lam {t.lam:g}", f"--eta {t.eta:g}",
             f"--seed {cfg.seed}", f"--device {cfg.device}", f"--out {cfg.out}"]
    if cfg.stage == 1:
        parts += [f"--warmup-steps {t.warmup_steps}", f"--aux-weight {t.aux_weight:g}"]
        if t.lpips_max_t < 1:
            parts.append(f"--lpips-max-t {t.lpips_max_t:g}")
        if t.lam_start is not None and t.lam_ramp > 0:
            parts += [f"--lam-start {t.lam_start:g}", f"--lam-ramp {t.lam_ramp:g}"]
    if t.t_max_share > 0:
        parts.append(f"--t-max-share {t.t_max_share:g}")
    if cfg.init:
        parts.append(f"--init {cfg.init}")
    if cfg.init_partial:
        parts.append("--init-partial")
    if cfg.continue_from:
        parts.append(f"--continue-from {cfg.continue_from}")
    if cfg.sample_steps:
        parts.append(f"--sample-steps {cfg.sample_steps}")
    parts.append(f"--ema {cfg.ema:g}")
    if cfg.threads:
        parts.append(f"--threads {cfg.threads}")
    if not cfg.perceptual:
        parts.append("--no-lpips")
    return " ".join(parts)


def model_card(cfg: RunConfig, model: LRISC, history: list, elapsed: float, val_names: list) -> dict:
    """JSON model card of a finished stage (earlier stages' cards are kept under ``previous_stages``)."""
    from lrisc_sim.data import image_paths

    prev = []
    if cfg.stage > 1:
        p = (Path(cfg.init) if cfg.init else cfg.weights_path(cfg.stage - 1)).with_suffix(".json")
        if p.is_file():
            c = json.loads(p.read_text())
            prev = c.get("previous_stages", []) + [{k: c.get(k) for k in ("stage", "steps", "wall_time_s",
                                                                          "command", "commit", "validation")}]
    counts = {name: sum(p.numel() for p in getattr(model, name).parameters())
              for name in ("g_e", "h_e", "h_d", "prior_y", "f_e", "f_d", "g_d")}
    n_train = sum(len(image_paths(f)) for f in str(cfg.data).split(",") if f) - (int(cfg.val) if cfg.val.isdigit() else 0)
    steps_done = history[-1]["step"] if history else cfg.steps
    return {
        "model": "LRISC (latent-feature-guided conditional diffusion, entropy-driven variable-length JSCC, "
                 "SNR adaptation)",
        "preset": model.cfg.preset,
        "stage": cfg.stage,
        "stage_description": STAGE_NAMES[cfg.stage],
        "config": model.cfg.to_dict(),
        "parameters": {**counts, "total": sum(counts.values())},
        "training": asdict(cfg.train),
        "ema_decay": cfg.ema,
        "data": {"train": cfg.data, "train_images": n_train, "validation": val_names if cfg.val.isdigit() else cfg.val},
        "perceptual_loss": "LPIPS (alex, v0.1)" if cfg.perceptual else "off",
        "steps": steps_done,
        "wall_time_s": round(elapsed, 1),
        "device": cfg.device,
        "threads": cfg.threads or torch.get_num_threads(),
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "command": command_line(cfg),
        **git_commit(CODE_FILES),
        "validation": history[-1]["val"] if history else {},
        "history": history,
        "previous_stages": prev,
        **({"continued_from": cfg.continued} if cfg.continued else {}),
        "date": time.strftime("%Y-%m-%d"),
    }


# ---------------------------------------------------------------- CLI

def configure_train_parser(p: argparse.ArgumentParser) -> None:
    """Options of ``lrisc-sim train lrisc``."""
    d = RunConfig()
    p.add_argument("--stage", type=int, choices=(1, 2, 3), required=True,
                   help="1: g_e, g_d, h_e, h_d without channel; 2: f_e, f_d with the channel; 3: fine-tune all")
    p.add_argument("--preset", default="small", choices=("small", "paper", "tiny"),
                   help="model and training sizes (small: 2-core CPU; paper: the paper's sizes, GPU)")
    p.add_argument("--data", required=True,
                   help="folder(s) of training images, comma-separated (random crops; COCO folders work)")
    p.add_argument("--val", default=d.val, help="validation folder, or N to hold out the last N images of --data")
    p.add_argument("--steps", type=int, default=None, help="steps of this stage (default: the preset's)")
    p.add_argument("--batch-size", type=int, default=None, help="crops per step (default: the preset's)")
    p.add_argument("--crop", type=int, default=None, help="crop size (multiple of 16)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (cosine decay)")
    p.add_argument("--lam", type=float, default=None, help="lambda: weight of the rate (bits per pixel)")
    p.add_argument("--eta", type=float, default=None, help="eta: perceptual vs squared-error trade-off (0.5)")
    p.add_argument("--warmup-steps", type=int, default=None, help="stage-1 warm-up against grey-image collapse")
    p.add_argument("--aux-weight", type=float, default=None, help="initial weight of the warm-up auxiliary decoder")
    p.add_argument("--latent-weight", type=float, default=None, help="weight of ||z_hat - z||^2 in stages 2-3")
    p.add_argument("--t-max-share", type=float, default=None,
                   help="share of each batch at the last step (pure noise, weight 1): the plain-MSE path that sets "
                        "the first DDIM estimate (any stage)")
    p.add_argument("--lpips-max-t", type=float, default=None,
                   help="stage 1: the perceptual term only on estimates below this fraction of N_train (1: all)")
    p.add_argument("--lam-start", type=float, default=None,
                   help="stage 1: rate weight at step 0, ramped to --lam over --lam-ramp of the steps")
    p.add_argument("--lam-ramp", type=float, default=None, help="stage 1: fraction of the steps of that ramp")
    p.add_argument("--init", default=None, help="weights to start from (default: the previous stage's in --out)")
    p.add_argument("--ema", type=float, default=d.ema,
                   help="EMA decay of the weights that are validated, exported and written (0: the raw weights)")
    p.add_argument("--init-partial", action="store_true",
                   help="stage 1: build the --preset architecture and take from --init each module that fits whole "
                        "(g_e, hyperprior, f_e/f_d, g_d); the others start fresh (the log names them)")
    p.add_argument("--continue-from", default=None, metavar="EXPORT",
                   help="continue this stage from an export of it in progress (OUT/stageS/export.safetensors + "
                        ".json, e.g. committed on another machine) when OUT/stageS/state.safetensors is absent: "
                        "step, validation history and CPU-hours from its card, a fresh optimizer")
    p.add_argument("--out", default=d.out, help="run folder: OUT/stageS/{state.safetensors, lrisc_PRESET_stageS.*}")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/stageS/state.safetensors, else from OUT/stageS/export.safetensors (the "
                        "default; as in train deepjscc)")
    p.add_argument("--no-resume", action="store_true",
                   help="start the stage afresh even if its state or export exists in OUT/stageS (overwrites them)")
    p.add_argument("--device", default=d.device, help="torch device: cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the crops and the noise, 0 .. 2^32-1")
    p.add_argument("--val-every", type=int, default=d.val_every,
                   help="steps between validations (each exports the weights and saves the state)")
    p.add_argument("--sample-steps", type=int, default=None,
                   help="denoising steps written into the weights' config: what the codec samples with by default "
                        "(default: the preset's, or --init's)")
    p.add_argument("--val-steps", type=int, default=None, help="denoising steps in validation (default: model's)")
    p.add_argument("--save-minutes", type=float, default=d.save_minutes, help="save the resumable state this often")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop (saving the state) after this many minutes; rerun the command to continue")
    p.add_argument("--no-lpips", action="store_true", help="train without the LPIPS term d_p")
    p.add_argument("--ship", action="store_true", help="copy the result into the package's checkpoint folder")
    p.add_argument("--workers", type=int, default=0,
                   help="DataLoader workers that stream the image files (COCO-sized folders); 0: all in memory")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    if args.resume and args.no_resume:
        raise ValueError("--resume and --no-resume contradict each other: give one (resuming is the default)")
    tc = train_preset(args.preset)
    steps = list(tc.steps)
    if args.steps is not None:
        steps[args.stage - 1] = args.steps
    over = {"steps": tuple(steps)}
    for name, attr in (("batch_size", "batch"), ("crop", "crop"), ("lam", "lam"), ("eta", "eta"),
                       ("warmup_steps", "warmup_steps"), ("aux_weight", "aux_weight"),
                       ("latent_weight", "latent_weight"), ("t_max_share", "t_max_share"),
                       ("lpips_max_t", "lpips_max_t"), ("lam_start", "lam_start"), ("lam_ramp", "lam_ramp")):
        if getattr(args, name) is not None:
            over[attr] = getattr(args, name)
    if args.lr is not None:
        over["lr_stage3" if args.stage == 3 else "lr"] = args.lr
    tc = replace(tc, **over)
    return RunConfig(stage=args.stage, preset=args.preset, data=args.data, val=str(args.val), out=args.out,
                     init=args.init, init_partial=args.init_partial, continue_from=args.continue_from, ema=args.ema,
                     sample_steps=args.sample_steps, resume=not args.no_resume,
                     device=args.device, threads=args.threads,
                     seed=args.seed, val_every=args.val_every, val_steps=args.val_steps,
                     save_minutes=args.save_minutes, max_minutes=args.max_minutes, perceptual=not args.no_lpips,
                     ship=args.ship, workers=args.workers, train=tc)


def run_train(args: argparse.Namespace) -> int:
    """Entry point of ``lrisc-sim train lrisc``; returns the exit status."""
    train(config_from_args(args))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m ...`` runs the same as ``lrisc-sim train lrisc``."""
    from lrisc_sim.cli import main as cli_main

    return cli_main(["train", "lrisc", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
