"""The SNR adaptation module of LRISC (paper Section III-A-3, Fig. 3; after SwinJSCC).

``fc_layers`` (8) fully connected layers interleaved with ``fc_layers - 1`` (7) SNR modulation (SM) modules.
Each SM module is a 3-layer MLP taking the SNR (dB) of a token, SNR_i, and producing a channel-wise vector sm_i
in (0, 1) (sigmoid) that scales the features element-wise; the SM modules are cascaded coarse to fine, each
acting on the features the previous one modulated. The last FC layer gives a gate 2 sigmoid(.) that multiplies
the input features (the "⊙" of Fig. 3), so the module rescales channels as a function of the SNR. The last FC
starts at zero, so a freshly enabled module is the identity (stage 2 switches it on after a fixed-SNR phase).

Inserted at the end of f_e (before the rate heads) and at the start of f_d (after the symbol heads).
"""

from __future__ import annotations

import torch
from torch import nn

from lrisc_sim.lrisc.config import SNRAdaptConfig


class SMModule(nn.Module):
    """SNR modulation: SNR ``... x 1`` (dB / scale) -> channel scales ``... x dim`` in (0, 1)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, dim), nn.Sigmoid())

    def forward(self, snr: torch.Tensor) -> torch.Tensor:
        return self.net(snr)


class SNRAdapter(nn.Module):
    """Fig. 3: x ``B x L x D``, SNR ``B`` (per image) or ``B x L`` (per token, SNR_i) in dB -> ``B x L x D``.

    ``enabled = False`` makes the module the identity (stage 2, first part: fixed SNR without SNR modules).

    >>> a = SNRAdapter(16, SNRAdaptConfig(sm_hidden=8))
    >>> a(torch.randn(2, 5, 16), torch.tensor([0.0, 10.0])).shape
    torch.Size([2, 5, 16])
    """

    def __init__(self, dim: int, cfg: SNRAdaptConfig):
        super().__init__()
        self.scale = cfg.snr_scale
        self.fcs = nn.ModuleList(nn.Linear(dim, dim) for _ in range(cfg.fc_layers))
        self.sms = nn.ModuleList(SMModule(dim, cfg.sm_hidden) for _ in range(cfg.fc_layers - 1))
        nn.init.zeros_(self.fcs[-1].weight)
        nn.init.zeros_(self.fcs[-1].bias)
        self.enabled = True

    def forward(self, x: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        b, n, _ = x.shape
        snr = torch.as_tensor(snr_db, dtype=x.dtype, device=x.device)
        if snr.dim() == 0:
            snr = snr.expand(b)
        if snr.dim() == 1:
            snr = snr[:, None].expand(b, n)
        s = (snr / self.scale)[..., None]  # B x L x 1
        h = x
        for fc, sm in zip(self.fcs[:-1], self.sms):
            h = fc(h) * sm(s)
        gate = 2 * torch.sigmoid(self.fcs[-1](h))  # = 1 at initialisation (last FC starts at zero)
        return x * gate
