"""A trainable example codec: ``linear-jscc``, a learned linear analog JSCC (one matrix each way per patch).

It shows the three pieces a plugin needs for a codec that ``lrisc-sim train RECIPE.toml`` can train over any
channel of the simulator:

* the model, registered with ``lrisc_sim.model_io.register_model`` (its class tag and config travel in the
  weights file, so ``load_model`` rebuilds it);
* the codec (``Codec``) that runs the model in sweeps, with its options declared;
* the ``TrainTask`` (loss and validation), declared under the entry point group ``lrisc_sim.train_tasks``.

Each ``p x p`` patch (3 p^2 pixel values, centred at 0.5) is mapped by a learned matrix to ``reals`` real values,
i.e. ``reals / 2`` complex symbols; CBR = reals / (6 p^2). The decoder is a learned affine map of the received
(unbiased) values. Trained by MSE, it learns a PCA-like projection with noise-aware scaling.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lrisc_sim import Codec, Context, Decoded, Encoded, Received
from lrisc_sim.codec import Option
from lrisc_sim.model_io import load_model, register_model
from lrisc_sim.plugins import codec_factory
from lrisc_sim.trainer import Batch, LossOutput, StageConfig, TrainTask

TAG = "example-linear-jscc"


@register_model(TAG)
class LinearJSCC(nn.Module):
    """``B x 3 x H x W`` (H, W multiples of ``patch``) <-> ``B x k`` complex64, k = (H W / patch^2) reals / 2."""

    def __init__(self, patch: int = 4, reals: int = 8):
        super().__init__()
        if reals % 2 or not 2 <= reals <= 3 * patch * patch:
            raise ValueError(f"linear-jscc: reals must be even, in 2..{3 * patch * patch}; got {reals}")
        self.patch, self.reals = patch, reals
        self.enc = nn.Linear(3 * patch * patch, reals, bias=False)
        self.dec = nn.Linear(reals, 3 * patch * patch)

    @property
    def multiple(self) -> int:
        return self.patch

    @property
    def cbr(self) -> float:
        return self.reals / (6 * self.patch**2)

    def config_dict(self) -> dict:
        return {"patch": self.patch, "reals": self.reals}

    @classmethod
    def from_config(cls, d: dict) -> LinearJSCC:
        return cls(int(d["patch"]), int(d["reals"]))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        p = F.unfold(x - 0.5, self.patch, stride=self.patch).transpose(1, 2)  # B x L x 3p^2
        v = self.enc(p).flatten(1)  # B x (L reals)
        s = torch.complex(v[:, 0::2], v[:, 1::2])
        return s / s.abs().pow(2).mean(1, keepdim=True).clamp(min=1e-12).sqrt()  # unit power per image

    def decode(self, s: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        b = s.shape[0]
        v = torch.stack([s.real, s.imag], -1).reshape(b, -1, self.reals)  # B x L x reals
        p = self.dec(v).transpose(1, 2)
        return (F.fold(p, hw, self.patch, stride=self.patch) + 0.5).clamp(0, 1)


class LinearJSCCCodec(Codec):
    """The trained model in sweeps: ``checkpoint`` (required) is a file written by ``lrisc-sim train``."""

    name = "linear-jscc"
    options = (Option("checkpoint", "path", None, "the trained model (lrisc-sim train with codec linear-jscc)"),)

    def __init__(self, checkpoint: str | None = None, device: str | None = None):
        if not checkpoint:
            raise ValueError("linear-jscc needs checkpoint=PATH (train one: lrisc-sim train RECIPE.toml)")
        self.checkpoint = Path(checkpoint)
        self.model = load_model(self.checkpoint, expect=TAG)
        self.multiple = self.model.patch

    def weight_files(self) -> list[Path]:
        return [self.checkpoint]

    def describe(self) -> str:
        return f"linear-jscc (example plugin): learned linear patches, CBR {self.model.cbr:.4g}, {self.checkpoint}"

    @torch.no_grad()
    def encode(self, x: torch.Tensor, cbr: float, ctx: Context | None = None) -> Encoded:
        ctx = ctx or Context.of(x)
        s = self.model.encode(x)
        b, k = s.shape
        if k > ctx.budget(cbr):
            raise ValueError(f"linear-jscc: this model sends CBR {self.model.cbr:.4g}, above the target {cbr:.4g}; "
                             "train one for the target CBR")
        return Encoded(symbols=s.to(torch.complex64), length=torch.full((b,), k), side_bits=torch.zeros(b),
                       state={"hw": tuple(x.shape[-2:])})

    @torch.no_grad()
    def decode(self, rx: Received, enc: Encoded, ctx: Context | None = None) -> Decoded:
        k = enc.symbols.shape[1]
        s = rx.s_hat[:, :k] / rx.gain[:, :k].clamp(min=1e-12)
        out = self.model.decode(s, enc.state["hw"])
        return Decoded(images=out, ok=torch.ones(out.shape[0], dtype=torch.bool))


@codec_factory(LinearJSCCCodec.options)
def make_linear_jscc(arg: str | None = None, device: str | None = None, checkpoint: str | None = None
                     ) -> LinearJSCCCodec:
    """``linear-jscc:checkpoint=PATH``."""
    return LinearJSCCCodec(arg or checkpoint, device)


class LinearJSCCTask(TrainTask):
    """Training of ``linear-jscc`` (recipe ``codec = "linear-jscc"``; ``[model]`` ``patch``, ``reals``): MSE of
    the decoded image through the stage's channel and equaliser."""

    tag = TAG

    def __init__(self, patch: int = 4, reals: int = 8):
        LinearJSCC(patch, reals)  # checks the options
        self.patch, self.reals = patch, reals

    def build(self, stage: StageConfig, init: Path | None, device: torch.device, log=print) -> LinearJSCC:
        return (load_model(init, expect=TAG) if init else LinearJSCC(self.patch, self.reals)).to(device)

    def loss(self, model: LinearJSCC, batch: Batch, link, stage: StageConfig) -> LossOutput:
        s = model.encode(batch.x)
        rx = link.send(s, batch.snr_db, batch.realization)
        y = model.decode(rx.s_hat / rx.gain.clamp(min=1e-12), tuple(batch.x.shape[-2:]))
        mse = (y - batch.x).pow(2).mean()
        return LossOutput(mse, {"mse": float(mse.detach())})

    @torch.no_grad()
    def validate(self, model: LinearJSCC, val, link, stage: StageConfig, device: torch.device) -> dict:
        from lrisc_sim import Realization

        out = []
        for vid, im in val:
            x = im[None].to(device)
            rx = link.send(model.encode(x), torch.tensor([10.0]), Realization(0, [vid], 0, device))
            y = model.decode(rx.s_hat / rx.gain.clamp(min=1e-12), tuple(x.shape[-2:]))
            out.append(float(10 * torch.log10(1 / (y - x).pow(2).mean().clamp(min=1e-10))))
        return {"psnr": round(sum(out) / max(len(out), 1), 4), "snr_db": 10.0}
