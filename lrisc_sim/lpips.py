"""LPIPS (Zhang et al., CVPR 2018), AlexNet trunk with the v0.1 linear heads, weight-compatible with the reference.

    d(x, y) = sum_l  mean_{h,w}  w_l . (f_l(x) / |f_l(x)| - f_l(y) / |f_l(y)|)^2

with f_l the AlexNet activations relu1..relu5 (unit-normalised along channels) and w_l >= 0 the learned 1x1
heads. Inputs in [0, 1] are mapped to [-1, 1] and through the reference ScalingLayer (shift, scale) first.
The reference heads' dropout is omitted: it is inactive in eval mode, the only mode used here.
Differentiable in its inputs (use it as a perceptual loss); needs images of at least ``MIN_SIDE`` px.

Example::

    d = get_lpips(x.device)(x, x_hat)   # x, x_hat: B x 3 x H x W in [0, 1]  ->  d: B
"""

from __future__ import annotations

import threading

import torch
from torch import nn

from lrisc_sim.weights import load_lpips_state_dict

MIN_SIDE = 32
_CHANNELS = (64, 192, 384, 256, 256)
_TAPS = (1, 4, 7, 9, 11)  # indices of relu1..relu5 in ``features``


class LPIPS(nn.Module):
    """LPIPS distance, AlexNet v0.1.

    Input: x, y (B x 3 x H x W, float, [0, 1], H, W >= ``MIN_SIDE``). Output: B distances (float32).
    Built with random weights unless ``state_dict`` (from ``weights.load_lpips_state_dict``) is given.
    """

    def __init__(self, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        )
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        if state_dict is not None:
            self.load_state_dict(state_dict)

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """relu1..relu5 activations of the scaled input x (N x 3 x H x W)."""
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                out.append(x)
        return out

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS needs B x 3 x H x W images, got {tuple(x.shape)}")
        if min(x.shape[-2:]) < MIN_SIDE:
            from lrisc_sim.codec import ImageTooSmall

            raise ImageTooSmall(f"LPIPS needs images of at least {MIN_SIDE}x{MIN_SIDE} px, got "
                                f"{x.shape[-1]}x{x.shape[-2]}; use larger images or leave lpips out of the metrics")

    def embed(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised relu1..relu5 features of x (B x 3 x H x W in [0, 1]); ``distance`` compares two."""
        self._check(x)
        z = x.to(self.shift.dtype) * 2 - 1
        return [f / ((f.pow(2).sum(dim=1, keepdim=True) + 1e-20).sqrt() + 1e-10)  # +1e-20: finite grad at 0
                for f in self.taps((z - self.shift) / self.scale)]

    def distance(self, fx: list[torch.Tensor], fy: list[torch.Tensor]) -> torch.Tensor:
        """B distances between two ``embed`` outputs (a reference's features can be reused across outputs)."""
        d = fx[0].new_zeros(fx[0].shape[0])
        for a, b, lin in zip(fx, fy, self.lins):
            d = d + lin((a - b).pow(2)).mean(dim=(1, 2, 3))
        return d

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape:
            raise ValueError(f"LPIPS needs two B x 3 x H x W images of equal shape, got {tuple(x.shape)} "
                             f"and {tuple(y.shape)}")
        b = x.shape[0]
        feats = self.embed(torch.cat([x, y]))
        return self.distance([f[:b] for f in feats], [f[b:] for f in feats])


_CACHE: dict[torch.device, LPIPS] = {}
_LOCK = threading.Lock()


def get_lpips(device: torch.device | str = "cpu") -> LPIPS:
    """The pretrained LPIPS on ``device``, loaded once per device (eval mode, parameters frozen).

    Raises ``weights.WeightsUnavailable`` when the weights cannot be obtained.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    with _LOCK:
        if device not in _CACHE:
            model = LPIPS(load_lpips_state_dict()).eval().to(device)
            model.requires_grad_(False)
            _CACHE[device] = model
        return _CACHE[device]
