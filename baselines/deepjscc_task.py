"""DeepJSCC as a trainable codec: its model, MSE loss through the training link, and PSNR validation.

Used by ``lrisc-sim train RECIPE.toml`` with ``codec = "deepjscc"``. Model options (``[model]``): ``cbr`` (a
fraction, e.g. ``"1/48"``), ``levels`` (stride-2 layers; default: the shipped choice for the CBR), ``extra``,
``width``, ``first_width``, ``kernel``. Stage option: ``val_snr`` (dB, default 10 dB when it lies in the stage's
SNR range, else the range's middle).

The loss is the mean squared error of the decoder's output, where the decoder sees the equalised symbols made
unbiased (``s_hat / gain``), exactly as :class:`baselines.deepjscc.DeepJSCCCodec` decodes in a sweep; so the
model trains over the channel (and equaliser) it is evaluated on: AWGN, Rayleigh or Rician fading, TDL.

A stage's ``init`` warm-starts the model with :func:`warm_start` (every tensor that fits, and the overlap of the
c-channel layers when only the CBR differs), so one CBR can start from another's weights; the model card names
the warm start and the CPU-hours behind it (:func:`init_cpu_hours`).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from baselines.deepjscc import DeepJSCC, DeepJSCCConfig, DeepJSCCError, cbr_str, default_levels, read_config
from channels.realization import Realization
from channels.training import TrainingLink
from lrisc_sim.grammar import cbr_fraction
from lrisc_sim.trainer import Batch, LossOutput, StageConfig, TrainTask


class DeepJSCCTask(TrainTask):
    """Train one DeepJSCC model (one CBR) by MSE over any channel."""

    tag = "deepjscc"

    def __init__(self, cbr: str = "1/48", levels: int | None = None, extra: int = 1, width: int = 64,
                 first_width: int = 32, kernel: int = 5):
        c = cbr_fraction(str(cbr))
        lv = default_levels(c) if levels is None else levels
        for name, v, lo, hi in (("levels", lv, 1, 6), ("extra", extra, 0, 8), ("width", width, 4, 1024),
                                ("first_width", first_width, 4, 1024), ("kernel", kernel, 1, 11)):
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"deepjscc {name} = {v!r}: give an integer in {lo}..{hi}")
        self.cfg = DeepJSCCConfig(cbr=cbr_str(c), levels=lv, extra=extra, first_width=first_width, width=width,
                                  kernel=kernel)
        self.cfg.channels  # a CBR the architecture cannot give exactly is refused here (DeepJSCCError)

    def check_options(self, stage: StageConfig) -> None:
        bad = sorted(set(stage.options) - {"val_snr"})
        if bad:
            raise ValueError(f"unknown deepjscc stage option(s) {', '.join(bad)}; deepjscc takes val_snr")
        v = stage.options.get("val_snr")
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not -50 <= v <= 60):
            raise ValueError(f"val_snr = {v!r}: give a number of dB in -50..60")

    def build(self, stage: StageConfig, init: Path | None, device: torch.device, log=print) -> DeepJSCC:
        model = DeepJSCC(self.cfg)
        if init is not None:
            warm_start(model, init, log)
        return model.to(device)

    def loss(self, model: DeepJSCC, batch: Batch, link: TrainingLink, stage: StageConfig) -> LossOutput:
        x = batch.x
        d = model.cfg.factor
        s = model.encode(x)
        rx = link.send(s, batch.snr_db, batch.realization)
        y = model.decode(rx.s_hat / rx.gain, (x.shape[-2] // d, x.shape[-1] // d))
        mse = torch.mean((y.float() - x) ** 2)
        return LossOutput(mse, {"mse": float(mse.detach())})

    @staticmethod
    def val_snr(stage: StageConfig, link: TrainingLink) -> float:
        lo, hi = link.snr_db
        v = stage.options.get("val_snr")
        return float(v) if v is not None else (10.0 if lo <= 10.0 <= hi else (lo + hi) / 2)

    @torch.no_grad()
    def validate(self, model: DeepJSCC, val: list[tuple[str, torch.Tensor]], link: TrainingLink,
                 stage: StageConfig, device: torch.device) -> dict[str, float]:
        """Mean PSNR of the held-out crops through the training channel at the validation SNR, on the common
        random numbers of a sweep (seed 0, trial 0, ids = file stems): the same draws every validation."""
        from lrisc_sim.metrics import psnr, quantize

        if not val:
            return {}
        model.eval()
        snr = self.val_snr(stage, link)
        out = []
        for vid, im in val:
            x = im[None].to(device)
            s = model.encode(x)
            rx = link.send(s, torch.tensor([snr]), Realization(0, [vid], 0, device))
            d = model.cfg.factor
            y = model.decode(rx.s_hat / rx.gain, (x.shape[-2] // d, x.shape[-1] // d))
            out.append(float(psnr(x, quantize(y))[0]))
        return {"psnr": round(sum(out) / len(out), 4), "snr_db": snr}

    def card(self, model: DeepJSCC, stage: StageConfig) -> dict[str, Any]:
        out: dict[str, Any] = {"description": model.cfg.describe(), "cbr": model.cfg.cbr,
                               "parameters": sum(p.numel() for p in model.parameters()),
                               "architecture": asdict(model.cfg)}
        if stage.init not in (None, "previous"):  # a model file: name it and the CPU-hours behind it
            out["warm_start"] = {"path": stage.init, "cpu_hours": round(init_cpu_hours(stage.init), 4)}
        return out


DECODER_INPUT = "decoder.net.0.weight"  # the decoder's first (transposed) convolution: c_in = the latent channels


def warm_start(model: DeepJSCC, path: str | Path, log=print) -> list[str]:
    """Load every tensor of checkpoint ``path`` whose name and shape match ``model`` (the trunk), and the overlap
    of the c-channel layers when only c differs (another CBR at the same depth): the first min(c, c_src)
    latent channels come from the checkpoint, and the decoder's weights from any extra channel start at zero,
    so a model with more channels starts as the checkpoint's decoder of its first channels. Return the names
    that were not loaded whole (kept at their initial values or loaded in part)."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise DeepJSCCError(f"init {path}: no such checkpoint")
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
    from lrisc_sim.train_state import StateError, card_cpu_hours, read_card

    card = Path(path).with_suffix(".json")
    if not card.is_file():
        return 0.0
    fix = f"restore it or move it away from init {path}"
    c = read_card(card, fix)
    try:
        return card_cpu_hours(c)
    except (TypeError, ValueError):
        raise StateError(f"{card}: its cpu_hours / wall_time_s / threads are not numbers; {fix}") from None
