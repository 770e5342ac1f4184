"""The channel a model is trained over: the evaluation channel itself, differentiable in the transmitted symbols.

Training draws its randomness from the same per-image streams as evaluation (``channels.realization``), with
image ids that name the training step and the position in the global batch (``train/<step>/<i>``), so the
training path has the evaluation path's N0/SNR convention, fading statistics and equalisers by construction:
there is one channel layer. ``y = h s + n`` is computed with real arithmetic on ``s`` (``Channel.__call__``) and
the equaliser is a per-symbol product, so gradients flow from the received symbols back to the encoder.

Every built-in channel (AWGN, Rayleigh and Rician, block and fast, TDL over OFDM) gives one gain per symbol that
does not depend on ``s``, so all of them train this way; a plugin channel does as long as its ``gains`` are drawn
from the realization (the channel contract).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from channels.base import Channel, Received, equalize
from channels.realization import Realization


def parse_snr_range(value: float | str | Sequence[float]) -> tuple[float, float]:
    """A training SNR: a number (dB), ``"LO:HI"`` or ``(LO, HI)`` (uniform per image). One-line ``ValueError``."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            lo = hi = float(value)
        elif isinstance(value, str):
            parts = [float(v) for v in value.split(":")]
            if len(parts) not in (1, 2):
                raise ValueError
            lo, hi = parts[0], parts[-1]
        else:
            lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"bad training SNR {value!r}: give a number in dB (10) or a range LO:HI (0:20)") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi or not -50 <= lo <= hi <= 60:
        raise ValueError(f"bad training SNR {value!r}: give finite dB values with LO <= HI within -50..60")
    return lo, hi


@dataclass
class TrainingLink:
    """A channel, its equaliser and the SNR distribution of training.

    Parameters
    ----------
    channel : the ``Channel`` (any built-in or plugin channel, as built by ``channels.make_channel``).
    snr_db : ``(LO, HI)`` in dB; each image of a batch gets its own SNR uniform in [LO, HI] (LO = HI: fixed).
    equalizer : ``mmse`` or ``zf`` (perfect CSI), as in the sweeps.
    seed : the run's seed (0 .. 2^32 - 1); with the step it fixes every draw.

    ``draw(step, b)`` gives the SNRs (``b`` float32, dB) and the ``Realization`` of one training step's global
    batch; ``send(s, snr, realization)`` the ``Received`` of ``s`` (``b x k`` complex64 with unit power per
    image), differentiable in ``s``. With DDP every rank draws the same global batch and takes its slice
    (``Realization.subset``), so the processes see the channel of one process with the global batch.

    >>> from channels.awgn import AWGN
    >>> link = TrainingLink(AWGN(), (0.0, 20.0))
    >>> snr, r = link.draw(step=0, b=2)
    >>> link.send(torch.ones(2, 8, dtype=torch.complex64), snr, r).s_hat.shape
    torch.Size([2, 8])
    """

    channel: Channel
    snr_db: tuple[float, float] = (10.0, 10.0)
    equalizer: str = "mmse"
    seed: int = 0

    def __post_init__(self) -> None:
        self.snr_db = parse_snr_range(self.snr_db)
        if self.equalizer not in ("mmse", "zf"):
            raise ValueError(f"unknown equaliser {self.equalizer!r}: use mmse or zf")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ValueError(f"seed {self.seed!r}: give an integer in 0 .. 2^32 - 1")

    def ids(self, step: int, b: int) -> list[str]:
        """The image ids of step ``step``'s global batch of ``b`` images."""
        return [f"train/{int(step)}/{i}" for i in range(b)]

    def draw(self, step: int, b: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, Realization]:
        """SNRs (``b``, dB, uniform in the range) and the realization of one step's global batch."""
        lo, hi = self.snr_db
        if hi > lo:
            g = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, int(step), 7])))
            snr = torch.from_numpy(g.uniform(lo, hi, b).astype(np.float32))
        else:
            snr = torch.full((b,), lo, dtype=torch.float32)
        # trial 0 of the ids above; the training ids never equal a dataset's (they contain '/')
        return snr.to(device), Realization(self.seed, self.ids(step, b), 0, device)

    def send(self, s: torch.Tensor, snr_db: torch.Tensor, realization: Realization) -> Received:
        """The channel and the equaliser on ``s`` (``B x k`` complex), gradients flowing into ``s``."""
        return equalize(self.channel(s, snr_db, realization), self.equalizer)

    def describe(self) -> str:
        lo, hi = self.snr_db
        snr = f"{lo:g} dB" if lo == hi else f"SNR uniform in [{lo:g}, {hi:g}] dB per image"
        return f"{self.channel.describe()}, {snr}, {self.equalizer.upper()} equaliser"
