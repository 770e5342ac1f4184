"""The SNR-adaptive DeepJSCC as a trainable codec: its model, MSE loss through the training link over an SNR
range, validation at several SNRs, and the warm start from a single-SNR DeepJSCC.

Used by ``lrisc-sim train RECIPE.toml`` with ``codec = "deepjscc-adaptive"``. Model options (``[model]``):
``cbr`` (a fraction, e.g. ``"1/48"``), ``levels`` (default: DeepJSCC's choice for the CBR), ``extra``, ``width``,
``first_width``, ``kernel`` (as DeepJSCC) and ``af_hidden`` (hidden units of the AF modules). Stage option:
``val_snr``: a number or a list of numbers (dB) to validate at; default those of 0, 10 and 15 dB inside the
stage's SNR range (the range's middle when none is).

The loss is the MSE of the decoder's output where the encoder is told each image's SNR (``batch.snr_db``) and the
decoder sees the unbiased equalised symbols and their effective SNR, exactly as
:class:`baselines.deepjscc_adaptive.AdaptiveDeepJSCCCodec` does in a sweep. Validation reports ``psnr``, the
**mean** of the held-out crops' PSNR over the validation SNRs (the curve the recipe is chosen on: one model for
all of them), then ``psnr_<S>dB`` per validation SNR S.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from baselines.deepjscc import cbr_str, default_levels
from baselines.deepjscc_adaptive import (TAG, AdaptiveConfig, AdaptiveDeepJSCC, AdaptiveJSCCError, check_config,
                                         effective_snr_db)
from channels.realization import Realization
from channels.training import TrainingLink
from lrisc_sim.grammar import cbr_fraction
from lrisc_sim.trainer import Batch, LossOutput, StageConfig, TrainTask

#: validation SNRs (dB) used by default, those inside the stage's training range
DEFAULT_VAL_SNRS = (0.0, 10.0, 15.0)
#: model tags whose files can warm-start this model (tensors matched by name and shape)
WARM_TAGS = ("deepjscc", TAG)


class AdaptiveDeepJSCCTask(TrainTask):
    """Train one SNR-adaptive DeepJSCC model (one CBR, every SNR of the stage's range) by MSE over any channel."""

    tag = TAG

    def __init__(self, cbr: str = "1/48", levels: int | None = None, extra: int = 1, width: int = 64,
                 first_width: int = 32, kernel: int = 5, af_hidden: int = 32):
        if not isinstance(cbr, str):
            raise ValueError(f"{TAG} cbr = {cbr!r}: give the CBR as a fraction string, e.g. \"1/48\"")
        c = cbr_fraction(cbr)
        lv = default_levels(c) if levels is None else levels
        cfg = dict(cbr=cbr_str(c), levels=lv, extra=extra, first_width=first_width, width=width, kernel=kernel,
                   af_hidden=af_hidden)
        self.cfg = check_config(cfg, head=f"{TAG} [model]", fix="change it in the recipe")

    def check_options(self, stage: StageConfig) -> None:
        bad = sorted(set(stage.options) - {"val_snr"})
        if bad:
            raise ValueError(f"unknown {TAG} stage option(s) {', '.join(bad)}; {TAG} takes val_snr")
        v = stage.options.get("val_snr")
        if v is None:
            return
        vals = v if isinstance(v, list) else [v]
        if not vals or any(isinstance(s, bool) or not isinstance(s, (int, float)) or not -50 <= s <= 60
                           for s in vals):
            raise ValueError(f"val_snr = {v!r}: give a number of dB in -50..60 or a non-empty list of them")

    def build(self, stage: StageConfig, init: Path | None, device: torch.device, log=print) -> AdaptiveDeepJSCC:
        model = AdaptiveDeepJSCC(self.cfg)
        if init is not None:
            warm_start(model, init, log)
        return model.to(device)

    def loss(self, model: AdaptiveDeepJSCC, batch: Batch, link: TrainingLink, stage: StageConfig) -> LossOutput:
        x = batch.x
        d = model.cfg.factor
        s = model.encode(x, batch.snr_db)
        rx = link.send(s, batch.snr_db, batch.realization)
        y = model.decode(rx.s_hat / rx.gain, (x.shape[-2] // d, x.shape[-1] // d), effective_snr_db(rx))
        mse = torch.mean((y.float() - x) ** 2)
        return LossOutput(mse, {"mse": float(mse.detach())})

    @staticmethod
    def val_snrs(stage: StageConfig, link: TrainingLink) -> list[float]:
        """The validation SNRs (dB): the stage's ``val_snr``, else :data:`DEFAULT_VAL_SNRS` inside the training
        range, else the range's middle."""
        v = stage.options.get("val_snr")
        if v is not None:
            return [float(s) for s in (v if isinstance(v, list) else [v])]
        lo, hi = link.snr_db
        inside = [s for s in DEFAULT_VAL_SNRS if lo <= s <= hi]
        return inside or [(lo + hi) / 2]

    @torch.no_grad()
    def validate(self, model: AdaptiveDeepJSCC, val: list[tuple[str, torch.Tensor]], link: TrainingLink,
                 stage: StageConfig, device: torch.device) -> dict[str, Any]:
        """Mean PSNR of the held-out crops through the training channel at each validation SNR, on the common
        random numbers of a sweep (seed 0, trial 0, ids = file stems): ``psnr`` (the mean over the SNRs first),
        ``psnr_<S>dB`` per SNR and ``snr_db`` (the list)."""
        from lrisc_sim.metrics import psnr, quantize

        if not val:
            return {}
        model.eval()
        snrs = self.val_snrs(stage, link)
        d = model.cfg.factor
        per: dict[str, float] = {}
        for snr in snrs:
            out = []
            for vid, im in val:
                x = im[None].to(device)
                snr_t = torch.tensor([snr], device=device)
                s = model.encode(x, snr_t)
                rx = link.send(s, snr_t, Realization(0, [vid], 0, device))
                y = model.decode(rx.s_hat / rx.gain, (x.shape[-2] // d, x.shape[-1] // d), effective_snr_db(rx))
                out.append(float(psnr(x, quantize(y))[0]))
            per[f"psnr_{snr:g}dB"] = round(sum(out) / len(out), 4)
        return {"psnr": round(sum(per.values()) / len(per), 4), **per, "snr_db": snrs}

    def card(self, model: AdaptiveDeepJSCC, stage: StageConfig) -> dict[str, Any]:
        from baselines.deepjscc_task import init_cpu_hours

        out: dict[str, Any] = {"description": model.cfg.describe(), "cbr": model.cfg.cbr,
                               "parameters": sum(p.numel() for p in model.parameters()),
                               "af_parameters": sum(p.numel() for n, p in model.named_parameters() if ".af." in n),
                               "architecture": asdict(model.cfg),
                               "validation_psnr": "mean over the validation SNRs (psnr_<S>dB: each SNR)",
                               "decoder_snr": "effective SNR of the unbiased equalised symbols, "
                                              "-10 log10(mean noise_var / gain^2) per image"}
        if stage.init not in (None, "previous"):
            out["warm_start"] = {"path": stage.init, "cpu_hours": round(init_cpu_hours(stage.init), 4)}
        return out


def warm_start(model: AdaptiveDeepJSCC, path: str | Path, log=print) -> list[str]:
    """Load every tensor of model file ``path`` (a DeepJSCC or a deepjscc-adaptive model) whose name and shape
    match ``model``'s: from a DeepJSCC of the same architecture that is the whole trunk (``encoder.net.*``,
    ``decoder.net.*``), and the AF modules keep their fresh values, the identity, so the model starts as that
    DeepJSCC exactly. Return the names not loaded; one-line :class:`AdaptiveJSCCError` for another kind of file
    or one that shares no tensor with the model."""
    from safetensors.torch import load_file

    from lrisc_sim.model_io import header

    path = Path(path)
    if not path.is_file():
        raise AdaptiveJSCCError(f"init {path}: no such model file")
    tag, _ = header(path)  # a one-line error for a pickle or garbage
    if tag not in WARM_TAGS:
        raise AdaptiveJSCCError(f"init {path} is a {tag} model; {TAG} starts from a deepjscc or {TAG} model file")
    src = load_file(str(path))
    own = model.state_dict()
    fit = {k: src[k] for k in own if k in src and src[k].shape == own[k].shape}
    if not fit:
        raise AdaptiveJSCCError(f"init {path} shares no tensor of matching shape with this {TAG} model; give a "
                                "model of the same architecture (cbr, levels, widths)")
    model.load_state_dict(fit, strict=False)
    kept = [k for k in own if k not in fit]
    trunk_new = [k for k in kept if ".af." not in k]
    log(f"warm start from {path} ({tag}): {len(fit)} of {len(own)} tensors loaded"
        + (f"; trunk tensors not loaded: {', '.join(trunk_new)}" if trunk_new else "")
        + (f"; {len(kept) - len(trunk_new)} AF-module tensors start as the identity" if len(kept) > len(trunk_new)
           else ""))
    return kept


__all__ = ["AdaptiveDeepJSCCTask", "AdaptiveConfig", "warm_start"]
