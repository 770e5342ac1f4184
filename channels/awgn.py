"""Additive white Gaussian noise channel: y = s + n, n ~ CN(0, N0) (paper eq. (1) with h = 1)."""

from __future__ import annotations

import torch

from channels.base import Channel, PilotStructure
from channels.realization import Realization


class AWGN(Channel):
    """AWGN channel.

    Input: ``s`` B x k complex64 with unit mean power per image; ``snr_db`` B (Es/N0 in dB);
    ``realization`` (common random numbers). Output: ``ChannelOutput`` with y = s + sqrt(N0) w, w the first k
    CN(0, 1) draws of stream "noise" of each image, h = 1.

    >>> from channels.realization import Realization
    >>> out = AWGN()(torch.ones(1, 8, dtype=torch.complex64), 10.0, Realization(0, ["a"], 0))
    >>> out.y.shape
    torch.Size([1, 8])
    """

    name = "awgn"

    def describe(self) -> str:
        return "AWGN, y = s + n (h = 1)"

    def gains(self, realization: Realization, k: int) -> torch.Tensor:
        return torch.ones(len(realization), k, dtype=torch.complex64, device=realization.device)

    def pilot_structure(self) -> PilotStructure:
        """One block per image (h = 1 throughout)."""
        return PilotStructure("block", None)
