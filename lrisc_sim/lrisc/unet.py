"""The denoiser X_theta(x_n, z_hat, n / N_train) of g_d: a conditional U-Net predicting x0 directly.

Paper Section III-A-4: every U-Net unit has ResNet blocks, an attention block and a convolutional down- (or
up-) sampling; the widths grow as 64 j for levels j = 1..6 (``UNetConfig.widths``). The latent z_hat
(``B x C x H/16 x W/16``) is enlarged by ResNet blocks and transposed convolutions (``ContextNet``) into a
context map for each of the first four down-sampling levels (H, H/2, H/4, H/8), concatenated to that level's
input. The time input is the continuous n / N_train (sinusoidal embedding of 1000 n / N_train).

``patch`` > 1 (the small CPU preset uses 4) folds p x p pixel blocks into channels before the first level
(pixel unshuffle, as in patch-based diffusion backbones) and unfolds them at the output, so the levels run at
H/p, H/2p, ...: about p^2 times less compute; the paper preset uses p = 1. Only the levels at least as fine as
the latent (H/16) get a context map (``context_levels``).

The context maps depend on z_hat only, so a sampler computes them once and reuses them at every step
(``ConditionalUNet.context``). ``ContextNet`` also has a 1x1 auxiliary head giving a direct estimate of x0 from
z_hat alone, used during the stage-1 warm-up against the collapse to grey images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lrisc_sim.lrisc.config import UNetConfig

N_CONTEXT_LEVELS = 4


def _groups(ch: int) -> int:
    for g in (8, 4, 2, 1):
        if ch % g == 0:
            return g
    return 1


def timestep_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal embedding of continuous times t (B, in (0, 1]) -> ``B x dim``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = scale * t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv x 2 with an optional time embedding added in between; 1x1 skip if widths differ.
    ``B x c_in x H x W`` (+ temb ``B x T``) -> ``B x c_out x H x W``."""

    def __init__(self, c_in: int, c_out: int, temb: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.n1 = nn.GroupNorm(_groups(c_in), c_in)
        self.c1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.t = nn.Linear(temb, c_out) if temb else None
        self.n2 = nn.GroupNorm(_groups(c_out), c_out)
        self.drop = nn.Dropout(dropout)
        self.c2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        if self.t is not None and temb is not None:
            h = h + self.t(F.silu(temb))[:, :, None, None]
        h = self.c2(self.drop(F.silu(self.n2(h))))
        return h + self.skip(x)


class Attention(nn.Module):
    """Self-attention over the H W positions, residual. ``kind``: ``full`` (softmax, O((HW)^2) memory) or
    ``linear`` (softmax over channels for queries and over positions for keys, O(HW)). ``B x c x H x W``."""

    def __init__(self, ch: int, kind: str = "linear", heads: int = 4, dim_head: int = 32):
        super().__init__()
        if kind not in ("linear", "full"):
            raise ValueError(f"unknown attention kind '{kind}': use 'linear' or 'full'")
        self.kind, self.heads, self.dh = kind, heads, dim_head
        inner = heads * dim_head
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * inner, 1, bias=False)
        self.out = nn.Conv2d(inner, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, self.dh, h * w).unbind(1)
        if self.kind == "full":
            o = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
            o = o.transpose(-1, -2)
        else:
            q = q.softmax(dim=-2) * self.dh**-0.5
            k = k.softmax(dim=-1)
            ctx = torch.einsum("bhdn,bhen->bhde", k, v)
            o = torch.einsum("bhde,bhdn->bhen", ctx, q)
        return x + self.out(o.reshape(b, -1, h, w))


def context_levels(cfg: UNetConfig) -> int:
    """How many U-Net levels get a context map: the first (at most four) whose resolution H/(p 2^j) is at
    least the latent's H/16."""
    fits = sum(1 for j in range(len(cfg.widths)) if cfg.patch * 2**j <= 16)
    return min(N_CONTEXT_LEVELS, len(cfg.widths), fits)


class ContextNet(nn.Module):
    """z_hat ``B x C x h x w`` (h = H/16) -> context maps for U-Net levels 0..min(4, levels)-1, level j at
    H/(p 2^j) (p the U-Net's patch size) with ``context_channels[j]`` channels, made by a ResNet block at the
    latent resolution and one transposed convolution + ResNet block per factor 2 up to the finest level; plus
    ``aux(maps)``: a direct x0 estimate ``B x 3 x H x W`` from the finest map (warm-up loss)."""

    def __init__(self, latent_channels: int, cfg: UNetConfig):
        super().__init__()
        self.n_out = context_levels(cfg)
        self.patch = cfg.patch
        ch = [cfg.context_channels[min(j, len(cfg.context_channels) - 1)] for j in range(self.n_out)]
        # resolution of level j is H / (patch 2^j) = latent resolution * 2^(s_j), s_j = log2(16 / (patch 2^j))
        self.up_factor = [int(math.log2(16 // (cfg.patch * 2**j))) for j in range(self.n_out)]
        if min(self.up_factor) < 0 or any(16 % (cfg.patch * 2**j) for j in range(self.n_out)):
            raise ValueError(f"U-Net patch {cfg.patch} with {self.n_out} context levels does not fit the H/16 latent")
        top = self.up_factor[0]
        chan_at = {self.up_factor[j]: ch[j] for j in range(self.n_out)}
        c_at = [chan_at.get(u, ch[-1] if u < self.up_factor[-1] else ch[0]) for u in range(top + 1)]
        self.stem = nn.Conv2d(latent_channels, c_at[0], 3, padding=1)
        self.res0 = ResBlock(c_at[0], c_at[0])
        self.ups = nn.ModuleList(nn.ConvTranspose2d(c_at[u - 1], c_at[u], 4, stride=2, padding=1)
                                 for u in range(1, top + 1))
        self.res = nn.ModuleList(ResBlock(c_at[u], c_at[u]) for u in range(1, top + 1))
        self.aux_head = nn.Conv2d(c_at[top], 3 * cfg.patch**2, 1)

    def forward(self, z_hat: torch.Tensor) -> list[torch.Tensor]:
        h = self.res0(self.stem(z_hat))
        at = [h]
        for up, res in zip(self.ups, self.res):
            h = res(up(h))
            at.append(h)
        return [at[u] for u in self.up_factor]

    def aux(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Direct estimate of x0 in [-1, 1] from the finest context map (warm-up loss only)."""
        return F.pixel_shuffle(self.aux_head(F.silu(maps[0])), self.patch)


class ConditionalUNet(nn.Module):
    """X_theta(x_n, z_hat, t): x_n ``B x 3 x H x W`` (data scale [-1, 1]), t ``B`` in (0, 1] (= n / N_train),
    z_hat ``B x C x H/16 x W/16`` (or precomputed ``context``) -> x0 estimate ``B x 3 x H x W``.

    >>> cfg = UNetConfig(widths=(8, 16), attention=(False, True), context_channels=(4, 8), time_dim=16, patch=1)
    >>> net = ConditionalUNet(8, cfg)
    >>> net(torch.randn(1, 3, 32, 32), torch.tensor([0.5]), torch.randn(1, 8, 2, 2)).shape
    torch.Size([1, 3, 32, 32])
    """

    def __init__(self, latent_channels: int, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        L = len(cfg.widths)
        if len(cfg.attention) != L:
            raise ValueError("UNetConfig.attention needs one flag per level")
        self.context_net = ContextNet(latent_channels, cfg)
        n_ctx = self.context_net.n_out
        ctx_ch = [cfg.context_channels[min(j, len(cfg.context_channels) - 1)] for j in range(L)]
        td = cfg.time_dim
        self.time_mlp = nn.Sequential(nn.Linear(td, 4 * td), nn.SiLU(), nn.Linear(4 * td, 4 * td))
        temb = 4 * td
        self.conv_in = nn.Conv2d(3 * cfg.patch**2, cfg.widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c = cfg.widths[0]
        skips = []
        for j, w in enumerate(cfg.widths):
            blocks = nn.ModuleList()
            for r in range(cfg.res_blocks):
                extra = ctx_ch[j] if (r == 0 and j < n_ctx) else 0
                blocks.append(ResBlock(c + extra, w, temb, cfg.dropout))
                c = w
                if cfg.attention[j]:
                    blocks.append(Attention(c, cfg.attention_kind))
            self.down.append(blocks)
            skips.append(c)
            self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if j < L - 1 else nn.Identity())
        self.mid1 = ResBlock(c, c, temb, cfg.dropout)
        self.mid_attn = Attention(c, cfg.attention_kind)
        self.mid2 = ResBlock(c, c, temb, cfg.dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for j in reversed(range(L)):
            w = cfg.widths[j]
            blocks = nn.ModuleList()
            for r in range(cfg.res_blocks):
                blocks.append(ResBlock(c + (skips[j] if r == 0 else 0), w, temb, cfg.dropout))
                c = w
                if cfg.attention[j]:
                    blocks.append(Attention(c, cfg.attention_kind))
            self.up.append(blocks)
            if j > 0:
                self.upsample.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                   nn.Conv2d(c, cfg.widths[j - 1], 3, padding=1)))
                c = cfg.widths[j - 1]
            else:
                self.upsample.append(nn.Identity())
        self.norm_out = nn.GroupNorm(_groups(c), c)
        self.conv_out = nn.Conv2d(c, 3 * cfg.patch**2, 3, padding=1)

    def context(self, z_hat: torch.Tensor) -> list[torch.Tensor]:
        """Context maps of z_hat (computed once per image, reused at every denoising step)."""
        return self.context_net(z_hat)

    @staticmethod
    def _run(blocks: nn.ModuleList, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        for blk in blocks:
            h = blk(h, temb) if isinstance(blk, ResBlock) else blk(h)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor, z_hat: torch.Tensor | None = None,
                context: list[torch.Tensor] | None = None) -> torch.Tensor:
        if context is None:
            if z_hat is None:
                raise ValueError("ConditionalUNet needs z_hat or its precomputed context")
            context = self.context(z_hat)
        t = torch.as_tensor(t, device=x.device, dtype=torch.float32).reshape(-1).expand(x.shape[0])
        temb = self.time_mlp(timestep_embedding(t, self.cfg.time_dim))
        h = self.conv_in(F.pixel_unshuffle(x, self.cfg.patch) if self.cfg.patch > 1 else x)
        skips = []
        for j, (blocks, down) in enumerate(zip(self.down, self.downsample)):
            if j < len(context):
                h = torch.cat([h, context[j]], dim=1)
            h = self._run(blocks, h, temb)
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        for blocks, up, skip in zip(self.up, self.upsample, reversed(skips)):
            h = self._run(blocks, torch.cat([h, skip], dim=1), temb)
            h = up(h)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return F.pixel_shuffle(out, self.cfg.patch) if self.cfg.patch > 1 else out
