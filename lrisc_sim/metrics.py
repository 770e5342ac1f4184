"""Image quality metrics of the simulator: PSNR, MS-SSIM, LPIPS, per image.

Convention (ARCHITECTURE.md section 3.1): both images are clamped to [0, 1] and rounded to uint8 levels (``quantize``)
before any metric, and every metric is computed per image on the size it is given (callers crop padded outputs
to the original size first). Averaging and confidence intervals are the engine's job.

* PSNR (dB, peak 1.0) is capped at ``PSNR_CAP_DB`` = 100 dB, so identical images give 100, not inf, and means
  over images stay finite.
* MS-SSIM (5 scales, ``pytorch_msssim``, data range 1) is NaN for images whose smaller side is <= 160 px,
  too small for 5 scales with the 11-tap window.
* LPIPS is AlexNet v0.1 (``lrisc_sim.lpips``), evaluated without gradients, one image per forward pass in batch
  order, so that an image's value is the same to the bit whatever batch it came in (batched convolutions may
  sum in another order with several threads); use ``get_lpips`` directly for a loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from lrisc_sim.lpips import get_lpips

METRIC_NAMES = ("psnr", "ms_ssim", "lpips")  # every metric the simulator knows, in results-table order
PSNR_CAP_DB = 100.0
MS_SSIM_MIN_SIDE = 161  # pytorch_msssim needs smaller side > (11 - 1) * 2**4
LPIPS_CHUNK = 1  # images per LPIPS forward pass: one, so that an image's LPIPS does not depend on the batch


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the 256 uint8 levels (half to even); float32, same shape, in [0, 1]."""
    return torch.round(x.to(torch.float32).clamp(0, 1) * 255) / 255


def psnr_from_mse(mse: torch.Tensor | float) -> torch.Tensor:
    """PSNR in dB (peak 1.0) of a mean squared error, capped at ``PSNR_CAP_DB``: -10 log10(max(MSE, 10^-10)).

    mse: any shape (a Python float becomes a float32 scalar); returns the same shape and dtype.
    """
    return -10 * torch.log10(torch.as_tensor(mse).clamp_min(10 ** (-PSNR_CAP_DB / 10)))


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of uint8-rounded images, peak 1.0, capped at ``PSNR_CAP_DB``; the simulator's only PSNR (the
    trainers validate with it too).

    x, y: B x 3 x H x W in [0, 1]. Returns B (float32): 10 log10(1 / MSE), MSE over C x H x W in float64.
    """
    d = quantize(x).to(torch.float64) - quantize(y).to(torch.float64)
    return psnr_from_mse(d.pow(2).flatten(1).mean(dim=1)).to(torch.float32)


def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MS-SSIM of uint8-rounded images (5 scales, data range 1).

    x, y: B x 3 x H x W in [0, 1]. Returns B (float32), computed per image; all NaN when min(H, W) <
    ``MS_SSIM_MIN_SIDE``.
    """
    from pytorch_msssim import ms_ssim as _ms_ssim

    if min(x.shape[-2:]) < MS_SSIM_MIN_SIDE:
        return torch.full((x.shape[0],), math.nan, device=x.device)
    qx, qy = quantize(x), quantize(y)  # one image at a time: the value does not depend on the batch
    return torch.cat([_ms_ssim(qx[i : i + 1], qy[i : i + 1], data_range=1.0, size_average=False)
                      for i in range(x.shape[0])]).to(torch.float32)


def lpips(x: torch.Tensor, y: torch.Tensor, ref: Reference | None = None) -> torch.Tensor:
    """LPIPS (AlexNet v0.1) of uint8-rounded images, no gradients.

    x, y: B x 3 x H x W in [0, 1], H, W >= 32. Returns B (float32), 0 for identical images. ``ref`` (a
    ``Reference`` of x) reuses the source's features, computed once for all outputs compared with it.
    """
    net = get_lpips(x.device)
    with torch.no_grad():
        fx = ref.lpips_features() if ref is not None else None
        parts = []
        for i, (a, b) in enumerate(zip(x.split(LPIPS_CHUNK), y.split(LPIPS_CHUNK))):
            fa = fx[i] if fx is not None else net.embed(quantize(a))
            parts.append(net.distance(fa, net.embed(quantize(b))))
    return torch.cat(parts)


class Reference:
    """A batch of source images whose SNR-independent metric work (LPIPS features) is done once and reused
    for every output compared with it (all SNRs and trials of a sweep point)."""

    def __init__(self, x: torch.Tensor):
        self.x = x
        self._feats: list[list[torch.Tensor]] | None = None

    def lpips_features(self) -> list[list[torch.Tensor]]:
        if self._feats is None:
            net = get_lpips(self.x.device)
            with torch.no_grad():
                self._feats = [net.embed(quantize(a)) for a in self.x.split(LPIPS_CHUNK)]
        return self._feats


_METRICS = {"psnr": psnr, "ms_ssim": ms_ssim, "lpips": lpips}


def compute_metrics(x: torch.Tensor, x_hat: torch.Tensor, names: Sequence[str] = METRIC_NAMES,
                    ref: Reference | None = None) -> dict[str, torch.Tensor]:
    """Per-image metrics of the reconstruction ``x_hat`` against the source ``x``.

    x, x_hat: B x 3 x H x W in [0, 1] (same shape; values outside [0, 1] are clamped by ``quantize``).
    Returns {name: B float32 tensor on the CPU} for each of ``names`` (a subset of ``METRIC_NAMES``).
    ``ref``: a ``Reference`` of ``x`` to reuse its LPIPS features across calls.
    Raises a one-line ValueError on unknown names, shape mismatch or non-finite (NaN/inf) values.
    """
    unknown = [n for n in names if n not in _METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}: choose from {list(METRIC_NAMES)}")
    if x.shape != x_hat.shape or x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"metrics need x and x_hat of equal shape B x 3 x H x W, got {tuple(x.shape)} "
                         f"and {tuple(x_hat.shape)}")
    for label, t in (("x", x), ("x_hat", x_hat)):
        bad = ~torch.isfinite(t)
        if bad.any():
            images = bad.flatten(1).any(dim=1).nonzero().flatten().tolist()
            raise ValueError(f"{label} has {int(bad.sum())} non-finite values (NaN/inf) in image(s) "
                             f"{images[:5]}{'...' if len(images) > 5 else ''}; metrics need finite images")
    return {n: (lpips(x, x_hat, ref) if n == "lpips" else _METRICS[n](x, x_hat)).detach().cpu() for n in names}
