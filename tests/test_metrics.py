"""Metrics: LPIPS against the reference distances, PSNR closed form, MS-SSIM, input validation, weights checks."""

from __future__ import annotations

import io
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lrisc_sim import metrics, weights
from lrisc_sim.lpips import LPIPS, get_lpips

LPIPS_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lpips"


@pytest.fixture(scope="module")
def lpips_net() -> LPIPS:
    try:
        return get_lpips("cpu")
    except weights.WeightsUnavailable as e:
        pytest.skip(f"LPIPS weights unavailable: {e}")


def _load(name: str) -> torch.Tensor:
    from PIL import Image

    a = np.array(Image.open(LPIPS_DATA / f"{name}.png").convert("RGB"))
    return torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255


def _smooth(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images (B x 3 x H x W in [0, 1]), natural-ish for SSIM."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(b, 3, h // 8, w // 8, generator=g)
    return torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)


@pytest.mark.skipif(not LPIPS_DATA.is_dir(), reason=f"LPIPS reference images not found in {LPIPS_DATA}")
def test_lpips_reference_distances(lpips_net: LPIPS) -> None:
    ref, p0, p1 = _load("ex_ref"), _load("ex_p0"), _load("ex_p1")
    d = metrics.lpips(torch.cat([ref, ref]), torch.cat([p0, p1]))
    assert d[0].item() == pytest.approx(0.7219, abs=5e-4)
    assert d[1].item() == pytest.approx(0.1376, abs=5e-4)


def test_lpips_differentiable_and_zero_on_identity(lpips_net: LPIPS) -> None:
    x = _smooth(2, 48, 64)
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    y.requires_grad_(True)
    d = lpips_net(x, y)
    d.sum().backward()
    assert d.shape == (2,) and (d > 0).all()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    assert torch.equal(metrics.lpips(x, x), torch.zeros(2))
    black = torch.zeros(1, 3, 32, 32, requires_grad=True)  # constant input: gradient still finite
    lpips_net(black, torch.ones(1, 3, 32, 32)).sum().backward()
    assert torch.isfinite(black.grad).all()
    with pytest.raises(ValueError, match="at least 32"):
        lpips_net(torch.zeros(1, 3, 16, 64), torch.zeros(1, 3, 16, 64))


def test_psnr_closed_form() -> None:
    x = torch.full((2, 3, 40, 48), 128 / 255)
    sign = torch.ones(40, 48)
    sign[::2, 1::2] = sign[1::2, ::2] = -1  # checkerboard of +/- d levels
    y = x.clone()
    d = 3
    y[0] += sign * d / 255  # every pixel off by d levels
    y[1, :, :20] += sign[:20] * d / 255  # half of the pixels
    expected = torch.tensor([20 * math.log10(255 / d), 20 * math.log10(255 / d) + 10 * math.log10(2)])
    assert torch.allclose(metrics.psnr(x, y), expected, atol=1e-4)


def test_psnr_uses_uint8_levels() -> None:
    x = torch.full((1, 3, 32, 32), 100 / 255)
    assert metrics.psnr(x, x + 0.4 / 255).item() == metrics.PSNR_CAP_DB  # below half a level: same uint8 image
    assert metrics.psnr(x, x + 0.6 / 255).item() == pytest.approx(20 * math.log10(255), abs=1e-4)
    assert (metrics.quantize(torch.tensor([-0.2, 0.5 / 255 + 1e-4, 1.3])) * 255).tolist() == [0.0, 1.0, 255.0]


def test_ms_ssim_identity_noise_and_small_images() -> None:
    x = _smooth(1, 192, 192)
    g = torch.Generator().manual_seed(2)
    noisy = [(x + s * torch.randn(x.shape, generator=g)).clamp(0, 1) for s in (0.02, 0.1)]
    assert metrics.ms_ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    s1, s2 = (metrics.ms_ssim(x, n).item() for n in noisy)
    assert 1.0 > s1 > s2 > 0
    assert torch.isnan(metrics.ms_ssim(x[..., :160, :], x[..., :160, :])).all()


def test_compute_metrics_validation() -> None:
    x = _smooth(3, 32, 32)
    out = metrics.compute_metrics(x, x, names=("psnr", "ms_ssim"))
    assert set(out) == {"psnr", "ms_ssim"} and out["psnr"].shape == (3,) and torch.isnan(out["ms_ssim"]).all()
    bad = x.clone()
    bad[1, 0, 3, 4] = float("nan")
    with pytest.raises(ValueError, match=r"^x_hat has 1 non-finite values \(NaN/inf\) in image\(s\) \[1\]"):
        metrics.compute_metrics(x, bad)
    with pytest.raises(ValueError, match="equal shape"):
        metrics.compute_metrics(x, x[:, :, :16])
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.compute_metrics(x, x, names=("ssim",))


def test_compute_metrics_all(lpips_net: LPIPS) -> None:
    x = _smooth(2, 192, 176)
    y = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    out = metrics.compute_metrics(x, y)
    assert list(out) == list(metrics.METRIC_NAMES)
    for v in out.values():
        assert v.shape == (2,) and v.dtype == torch.float32 and torch.isfinite(v).all()


def test_weights_hash_rejects_tampered_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "alexnet.ckpt"
    fake.write_bytes(pickle.dumps({"AlexNet_0": {}}, protocol=3))
    monkeypatch.setenv(weights.ENV_WEIGHTS, str(fake))
    monkeypatch.setenv(weights.ENV_CACHE, str(tmp_path / "cache"))
    with pytest.raises(weights.WeightsHashMismatch, match="sha256"):
        weights.lpips_weights_path()
    assert not (tmp_path / "cache" / weights.CONVERTED_NAME).exists()


class _Evil:
    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned",))


def test_safe_unpickler_reads_arrays_only() -> None:
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    data = pickle.dumps({"k": {"w": a, "f": np.asfortranarray(a)}}, protocol=3)
    tree = weights._SafeUnpickler(io.BytesIO(data)).load()
    assert np.array_equal(tree["k"]["w"].array, a) and np.array_equal(tree["k"]["f"].array, a)
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        weights._SafeUnpickler(io.BytesIO(pickle.dumps({"x": _Evil()}, protocol=3))).load()
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        weights._SafeUnpickler(io.BytesIO(pickle.dumps(np.arange(3, dtype=np.int64), protocol=3))).load()


def test_reference_features_reused_give_same_lpips(lpips_net: LPIPS) -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.rand(3, 3, 48, 64, generator=g)
    ref = metrics.Reference(x)
    for sigma in (0.05, 0.2):
        y = (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)
        a = metrics.compute_metrics(x, y, ("lpips",))["lpips"]
        b = metrics.compute_metrics(x, y, ("lpips",), ref=ref)["lpips"]
        assert torch.allclose(a, b, atol=1e-5) and (a > 0).all()
