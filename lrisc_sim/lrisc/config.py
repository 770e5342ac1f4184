"""Configuration of the LRISC model (paper Section III-A) as dataclasses, and the named presets.

The model config is split by module, diffusers style (the diffusion schedule lives apart from the networks):

* ``AnalysisConfig``   g_e: image -> latent z (C channels at H/16 x W/16).
* ``HyperConfig``      h_e / h_d and the factorized prior of the hyper-latent y (eq. 2).
* ``JSCCConfig``       f_e / f_d (eq. 3-4): token width, transformer depth, the 2^n allowed lengths V.
* ``SNRAdaptConfig``   the SNR adaptation module of Fig. 3 (8 FC layers, 7 SM modules).
* ``UNetConfig``       the conditional U-Net of g_d (widths 64 j, j = 1..6 in the paper).
* ``DiffusionConfig``  the noise schedule and sampler of g_d (eq. 5-8).

Presets: ``paper`` (the paper's sizes, for GPUs), ``small`` (trains on a 2-core CPU; the shipped default),
``tiny`` (unit tests only).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any


@dataclass
class AnalysisConfig:
    """g_e: four stride-2 5x5 convolutions with GDN in between (3 -> widths -> C), output at H/16 x W/16."""

    widths: tuple[int, ...] = (48, 64, 96)
    latent_channels: int = 64  # C, the length of each token z_i


@dataclass
class HyperConfig:
    """h_e: z -> y (two stride-2 convs, H/64); h_d: y -> (mu, sigma) of p(z|y) (eq. 2). ReLU, fully conv."""

    width: int = 64
    hyper_channels: int = 48  # channels of y, modelled by the factorized prior
    prior_filters: tuple[int, ...] = (3, 3, 3)  # hidden sizes of the factorized prior's density network
    sigma_min: float = 0.11  # lower bound on sigma (as in learned compression)


@dataclass
class JSCCConfig:
    """f_e / f_d (eq. 3-4). ``levels`` is V = {v_1 .. v_2^n}: allowed complex channel uses per token."""

    dim: int = 128  # transformer width D
    depth: int = 2  # N_e transformer blocks (f_e; f_d uses the same)
    heads: int = 4
    mlp_ratio: float = 2.0
    levels: tuple[int, ...] = (2, 4, 8, 12, 16, 24, 32, 48)  # V, complex symbols per token; 2^n of them
    # how the rate indices are sent (``rate_index``; not architecture, the rate-control rule the model was trained
    # and is evaluated with): one index per rate_block x rate_block tokens, coded by the cheapest of side_codes.
    # These defaults are those of checkpoints written before the fields existed; the presets set the new ones.
    rate_block: int = 1
    side_codes: tuple[str, ...] = ("fixed", "enumerative")

    @property
    def index_bits(self) -> int:
        """n = log2 |V| bits of one fixed-length rate index."""
        n = len(self.levels)
        if n & (n - 1):
            raise ValueError(f"JSCC needs 2^n rate levels, got {n}")
        return max(n.bit_length() - 1, 0)


@dataclass
class SNRAdaptConfig:
    """Fig. 3: ``fc_layers`` FC layers interleaved with ``fc_layers - 1`` SM modules (3-layer MLPs of the SNR)."""

    fc_layers: int = 8
    sm_hidden: int = 64
    snr_scale: float = 20.0  # the SNR in dB is divided by this before the SM MLPs


@dataclass
class UNetConfig:
    """g_d's denoiser X_theta(x_n, z_hat, n/N): a U-Net with one entry per level in ``widths``.

    Each level has ``res_blocks`` ResNet blocks, optionally an attention block (``attention[j]``), and a
    stride-2 down-sampling (mirrored on the way up). z_hat enters through ResNet blocks + transposed convolutions
    that produce a context map for each of the first four levels (``context_channels[j]`` channels,
    concatenated to that level's input).
    """

    widths: tuple[int, ...] = (48, 96, 144, 192)
    res_blocks: int = 1
    attention: tuple[bool, ...] = (False, False, True, True)
    context_channels: tuple[int, ...] = (32, 48, 64, 96)
    time_dim: int = 128
    patch: int = 2  # p: levels run at H/p, H/2p, ... (pixel unshuffle in, pixel shuffle out)
    attention_kind: str = "linear"  # "linear" (memory O(HW)) or "full" (softmax)
    dropout: float = 0.0


@dataclass
class DiffusionConfig:
    """Noise schedule (eq. 5) and sampler (eq. 8) of g_d; the network predicts x0 (prediction_type "sample")."""

    num_train_timesteps: int = 1000  # N_train
    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    sampler: str = "ddim"  # "ddim" (eq. 8) or "dpm" (DPMSolverMultistep, 2nd order)
    steps: int = 6  # sampling steps at inference
    loss_weighting: str = "clipped_snr"  # eq. (7) factor alpha_n / (1 - alpha_n): "clipped_snr", "snr", "none"
    snr_clip: float = 5.0  # max weight for "clipped_snr" (min weight 1: truncated SNR, Salimans & Ho)


@dataclass
class LRISCConfig:
    """The whole model: modules + the preset name it came from."""

    preset: str = "small"
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    hyper: HyperConfig = field(default_factory=HyperConfig)
    jscc: JSCCConfig = field(default_factory=JSCCConfig)
    snr: SNRAdaptConfig = field(default_factory=SNRAdaptConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)

    @property
    def multiple(self) -> int:
        """H and W must be multiples of this: 16 for g_e, p 2^(levels-1) for the U-Net."""
        return max(16, self.unet.patch * 2 ** (len(self.unet.widths) - 1))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @staticmethod
    def from_dict(d: dict[str, Any]) -> LRISCConfig:
        return _from_dict(LRISCConfig, d)


def _from_dict(cls: type, d: dict[str, Any]) -> Any:
    kw = {}
    for f in fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        if is_dataclass(default):
            v = _from_dict(type(default), v)
        elif isinstance(v, list):
            v = tuple(v)
        kw[f.name] = v
    return cls(**kw)


# side information of newly trained models: one rate index per 2 x 2 tokens, context-coded when that is cheapest
# (benchmarks/lrisc_side_info.py: 16% -> 3% of the CBR-1/48 budget on Kodak)
SIDE_INFO = {"rate_block": 2, "side_codes": ("fixed", "enumerative", "context")}


def preset(name: str) -> LRISCConfig:
    """The model config of a named preset: ``small`` (default, CPU), ``paper`` (GPU), ``tiny`` (tests)."""
    if name == "small":
        return LRISCConfig(preset="small", jscc=JSCCConfig(**SIDE_INFO), unet=UNetConfig(patch=4))
    if name == "paper":
        return LRISCConfig(
            preset="paper",
            analysis=AnalysisConfig(widths=(128, 192, 256), latent_channels=256),
            hyper=HyperConfig(width=192, hyper_channels=192),
            jscc=JSCCConfig(dim=256, depth=4, heads=8, mlp_ratio=4.0,
                            levels=(4, 8, 16, 24, 32, 48, 64, 96), **SIDE_INFO),
            snr=SNRAdaptConfig(sm_hidden=128),
            unet=UNetConfig(widths=(64, 128, 192, 256, 320, 384), res_blocks=2,
                            attention=(True,) * 6, context_channels=(64, 128, 192, 256), time_dim=256,
                            patch=1),
            diffusion=DiffusionConfig(steps=20),
        )
    if name == "tiny":
        return LRISCConfig(
            preset="tiny",
            analysis=AnalysisConfig(widths=(8, 8, 8), latent_channels=8),
            hyper=HyperConfig(width=8, hyper_channels=4, prior_filters=(3,)),
            jscc=JSCCConfig(dim=16, depth=1, heads=2, levels=(1, 2, 3, 4), **SIDE_INFO),
            snr=SNRAdaptConfig(sm_hidden=8),
            unet=UNetConfig(widths=(8, 16), attention=(False, True), context_channels=(4, 8), time_dim=16, patch=2),
            diffusion=DiffusionConfig(num_train_timesteps=100, steps=3),
        )
    raise ValueError(f"unknown LRISC preset '{name}': use 'small', 'paper' or 'tiny'")
