"""Per-image power normalisation (ARCHITECTURE.md section 3.2: every image's symbols have average power P)."""

from __future__ import annotations

import torch


def normalize_power(s: torch.Tensor, length: torch.Tensor | None = None, power: float = 1.0) -> torch.Tensor:
    """Scale each row so that its first ``length[b]`` symbols have mean power ``power``; the rest are zeroed.

    Inputs: ``s`` B x k complex (or real, then pairs are not formed), ``length`` B int (default: k for all rows).
    Output: B x k, same dtype, with (1/k_b) sum_i |s_bi|^2 = P for i < k_b (paper: (1/k) sum |s_i|^2 <= P).
    Differentiable, so JSCC encoders use it as their last layer.
    """
    b, k = s.shape
    if length is None:
        mask = torch.ones(b, k, dtype=torch.bool, device=s.device)
        n = torch.full((b,), k, device=s.device, dtype=torch.float32)
    else:
        length = length.to(s.device)
        mask = torch.arange(k, device=s.device)[None, :] < length[:, None]
        n = length.to(torch.float32).clamp(min=1)
    s = s * mask
    p = (s.abs() ** 2).sum(dim=1) / n
    scale = torch.sqrt(power / p.clamp(min=1e-12))
    return s * scale[:, None].to(s.real.dtype)


def average_power(s: torch.Tensor, length: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row mean power of the first ``length[b]`` symbols (B)."""
    b, k = s.shape
    if length is None:
        return (s.abs() ** 2).mean(dim=1)
    mask = torch.arange(k, device=s.device)[None, :] < length.to(s.device)[:, None]
    return ((s.abs() ** 2) * mask).sum(dim=1) / length.to(s.device).clamp(min=1)


def real_to_complex(v: torch.Tensor) -> torch.Tensor:
    """``B x 2k`` reals -> ``B x k`` complex64, pairing consecutive reals (re, im)."""
    b, n = v.shape
    if n % 2:
        raise ValueError(f"need an even number of reals per row, got {n}")
    return torch.view_as_complex(v.float().reshape(b, n // 2, 2).contiguous())


def complex_to_real(s: torch.Tensor) -> torch.Tensor:
    """``B x k`` complex -> ``B x 2k`` reals (inverse of ``real_to_complex``)."""
    return torch.view_as_real(s).reshape(s.shape[0], -1)
