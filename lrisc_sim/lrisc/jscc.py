"""Entropy-driven variable-length JSCC of LRISC: f_e, f_d, the rate quantiser Q and the rate control.

    K_z = sum_i Q(k_{z_i}) = sum_i Q(-beta log p_{z_i|y}(z_i | y))                       (3)
    s   = f_e(z, p_{z_i|y}(z_i | y); theta_f)                                              (4)

z (``B x C x h x w``) is split into L = h w tokens z_i of length C. Each token's information content
-log2 p(z_i | y) (bits, summed over its C elements) times beta is quantised by Q to the nearest of the 2^n
allowed lengths V = {v_1 .. v_2^n} (complex channel uses); the index q_i of the chosen length is the token's
rate index (side information, sent error-free and charged in channel uses, see ``RateIndexCoding``).

f_e: a linear embedding of each token plus the learned rate-token embedding r_{q_i}, a convolutional position
encoding, N_e transformer blocks, the SNR adaptation module, and one FC head per level emitting 2 v_q reals
(applied only to the tokens of that level); the reals are paired into complex symbols, the tokens' symbols
concatenated in raster order and normalised to unit mean power per image.
f_d mirrors it: per-level input heads, rate tokens, SNR adaptation (per-token SNR_i), transformer blocks,
linear projection back to C channels.

Rate control: given a target total CBR, ``rate_control`` picks beta per image by bisection so that payload
uses + side uses (rate indices) <= floor(CBR * 3 H W); beta = 0 (every token at v_1) is the fallback, and an
error is raised if even that does not fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from channels.power import normalize_power
from lrisc_sim.codec import ImageTooSmall, SideInfoCharge
from lrisc_sim.lrisc.config import JSCCConfig, SNRAdaptConfig
from lrisc_sim.lrisc.rate_index import RateIndexCoding
from lrisc_sim.lrisc.snr_adapt import SNRAdapter


class RateControlError(ImageTooSmall):
    """The target CBR cannot be met even with every token at the shortest length (a ``ValueError``; the engine
    adds which images)."""


class RateQuantizer:
    """Q of eq. (3): real lengths -> index of the nearest allowed length in V (``levels``, increasing).

    ``index(k)``: k (any shape, channel uses) -> long indices in [0, 2^n); ``lengths(q)``: indices -> v_q.
    """

    def __init__(self, levels: tuple[int, ...]):
        if list(levels) != sorted(set(levels)) or levels[0] < 1:
            raise ValueError(f"rate levels must be increasing positive integers, got {levels}")
        self.levels = tuple(int(v) for v in levels)

    def table(self, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.tensor(self.levels, dtype=torch.int64, device=device)

    def index(self, k: torch.Tensor) -> torch.Tensor:
        v = self.table(k.device).to(k.dtype)
        mids = (v[1:] + v[:-1]) / 2
        return torch.bucketize(k, mids, right=True) if len(self.levels) > 1 else torch.zeros_like(k, dtype=torch.int64)

    def lengths(self, q: torch.Tensor) -> torch.Tensor:
        return self.table(q.device)[q]


@dataclass
class RateDecision:
    """Output of ``rate_control``: per image beta (B), rate indices q (B x L), payload uses (B, int64),
    side bits (B) and side uses (B) under the given charge."""

    beta: torch.Tensor
    q: torch.Tensor
    payload: torch.Tensor
    side_bits: torch.Tensor
    side_uses: torch.Tensor


def rate_control(entropy_bits: torch.Tensor, budget: torch.Tensor | int, quantizer: RateQuantizer,
                 charge: SideInfoCharge | None = None, coding: RateIndexCoding | None = None,
                 snr_db: torch.Tensor | float | None = None, iters: int = 40,
                 grid: tuple[int, int] | None = None, block: int = 1) -> RateDecision:
    """Largest beta per image with payload + side uses <= budget (bisection on log beta).

    entropy_bits : ``B x L`` information content -log2 p(z_i | y) of each token (bits).
    budget : total complex channel uses allowed per image (B or scalar): floor(CBR * 3 H W).
    grid : the latent grid h x w (L = h w) for the rate-index code's spatial context (default one row).
    block : a coarser rate grid: one rate index per ``block x block`` tokens (edge blocks smaller), chosen by
        Q(beta x the block's mean entropy per token); side bits are those of the block map, the returned q is
        per token. 1 (default) is eq. (3) as written.
    Raises ``RateControlError`` if even beta = 0 (all tokens at v_1) exceeds the budget of some image.
    """
    charge = charge or SideInfoCharge()
    coding = coding or RateIndexCoding()
    e = entropy_bits.detach().to(torch.float64).clamp(min=0)
    b, L = e.shape
    expand, weight, code_grid = None, None, grid
    if block > 1:
        if grid is None:
            raise ValueError("rate_control with block > 1 needs the latent grid")
        h, w = grid
        wb = -(-w // block)
        rows = torch.arange(L, device=e.device) // w
        expand = (rows // block) * wb + (torch.arange(L, device=e.device) % w) // block  # token -> block
        code_grid = (-(-h // block), wb)
        weight = torch.bincount(expand, minlength=code_grid[0] * wb).to(torch.float64)  # tokens per block
        e = torch.zeros(b, len(weight), dtype=torch.float64, device=e.device).index_add_(1, expand, e) / weight
    budget_t = torch.as_tensor(budget, dtype=torch.float64, device=e.device).expand(b)
    n_levels = len(quantizer.levels)

    snr = snr_db.to(e.device, torch.float64) if torch.is_tensor(snr_db) else snr_db

    def evaluate(beta: torch.Tensor) -> tuple[torch.Tensor, ...]:
        q = quantizer.index(beta[:, None] * e)
        v = quantizer.lengths(q)
        payload = v.sum(1) if weight is None else (v * weight.to(torch.int64)).sum(1)
        sb = coding.bits(q, n_levels, code_grid)
        su = charge.uses(sb, snr).to(e.device)
        return q, payload, sb, su

    def feasible(beta: torch.Tensor) -> torch.Tensor:
        _, p, _, su = evaluate(beta)
        return (p.to(torch.float64) + su) <= budget_t

    zero = torch.zeros(b, dtype=torch.float64, device=e.device)
    _, p0, _, su0 = evaluate(zero)
    total0 = p0.to(torch.float64) + su0
    if bool((total0 > budget_t).any()):
        i = int(torch.nonzero(total0 > budget_t)[0])
        raise RateControlError(
            f"target CBR too low: the shortest code (every one of {L} tokens at {quantizer.levels[0]} channel "
            f"uses, plus {int(su0[i])} uses of rate indices) needs {int(total0[i])} channel uses, the budget is "
            f"{int(budget_t[i])}; raise the CBR or use larger images")
    # beyond hi all tokens with positive entropy sit at v_max; geometric bisection below it
    emin = torch.where(e > 0, e, torch.full_like(e, float("inf"))).amin(1).clamp(min=1e-6, max=1e6)
    hi = (quantizer.levels[-1] + 1) / emin
    lo = torch.where(feasible(hi), hi, zero)
    for _ in range(iters):
        mid = torch.where(lo > 0, torch.sqrt(lo * hi), hi / 1024)
        ok = feasible(mid)
        lo = torch.where(ok, mid, lo)
        hi = torch.where(ok, hi, mid)
    q, p, sb, su = evaluate(lo)
    if expand is not None:
        q = q[:, expand]
    return RateDecision(beta=lo.float(), q=q, payload=p, side_bits=sb, side_uses=su)


def token_mask(q: torch.Tensor, quantizer: RateQuantizer) -> torch.Tensor:
    """``B x L x v_max`` bool: symbol slot j of token i is used iff j < v_{q_i}."""
    v = quantizer.lengths(q)
    return torch.arange(quantizer.levels[-1], device=q.device)[None, None, :] < v[..., None]


def pack(full: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate the used slots of each token in raster order: ``B x L x v_max`` complex -> ``B x k_max``
    (zeros after length[b]) and length (B, int64). Differentiable."""
    b = full.shape[0]
    flat_mask = mask.reshape(b, -1)
    length = flat_mask.sum(1)
    k_max = int(length.max()) if b else 0
    pos = flat_mask.cumsum(1) - 1
    bi, si = torch.nonzero(flat_mask, as_tuple=True)
    out = full.new_zeros(b, k_max)
    out = out.index_put((bi, pos[bi, si]), full.reshape(b, -1)[bi, si])
    return out, length


def unpack(s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Inverse of ``pack``: ``B x k`` -> ``B x L x v_max`` with zeros in the unused slots."""
    b, L, vmax = mask.shape
    flat_mask = mask.reshape(b, -1)
    pos = flat_mask.cumsum(1) - 1
    bi, si = torch.nonzero(flat_mask, as_tuple=True)
    out = s.new_zeros(b, L * vmax)
    out = out.index_put((bi, si), s[bi, pos[bi, si]])
    return out.reshape(b, L, vmax)


def token_snr(noise_var: torch.Tensor, q: torch.Tensor, quantizer: RateQuantizer) -> torch.Tensor:
    """SNR_i (dB, ``B x L``) of each received token: -10 log10 of its symbols' mean effective noise variance
    (``noise_var`` ``B x k`` for unit-power, unbiased symbols)."""
    mask = token_mask(q, quantizer)
    nv = unpack(noise_var.to(torch.float32), mask)
    mean = nv.sum(-1) / mask.sum(-1).clamp(min=1)
    return -10 * torch.log10(mean.clamp(min=1e-10))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + MHSA(LN(x)); x + MLP(LN(x)). ``B x L x D`` -> ``B x L x D``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.n1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.n2 = nn.LayerNorm(dim)
        hid = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hid), nn.GELU(), nn.Linear(hid, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.n1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.n2(x))


class _Trunk(nn.Module):
    """Rate tokens + convolutional position encoding + N_e transformer blocks (shared by f_e and f_d)."""

    def __init__(self, cfg: JSCCConfig):
        super().__init__()
        d = cfg.dim
        self.rate_tokens = nn.Embedding(len(cfg.levels), d)
        nn.init.normal_(self.rate_tokens.weight, std=0.02)
        self.pos = nn.Conv2d(d, d, 3, padding=1, groups=d)
        self.blocks = nn.ModuleList(TransformerBlock(d, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(d)

    def forward(self, t: torch.Tensor, q: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        b, L, d = t.shape
        t = t + self.rate_tokens(q)
        t = t + self.pos(t.transpose(1, 2).reshape(b, d, *grid)).flatten(2).transpose(1, 2)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)


class JSCCEncoder(nn.Module):
    """f_e (eq. 4, Fig. 2).

    Inputs: z ``B x C x h x w`` (quantised latent), q ``B x L`` rate indices (L = h w, raster order), snr_db
    ``B`` (the transmitter's channel SNR, used by the SNR adaptation module).
    Outputs: symbols ``B x k_max`` complex64, unit mean power over the first length[b] entries, zeros after;
    length ``B`` int64 = sum_i v_{q_i}.

    The per-level heads run on the tokens of their level only (no per-token weight gathering).
    """

    def __init__(self, latent_channels: int, cfg: JSCCConfig, snr_cfg: SNRAdaptConfig):
        super().__init__()
        self.quantizer = RateQuantizer(cfg.levels)
        self.embed = nn.Linear(latent_channels, cfg.dim)
        self.trunk = _Trunk(cfg)
        self.snr = SNRAdapter(cfg.dim, snr_cfg)
        self.heads = nn.ModuleList(nn.Linear(cfg.dim, 2 * v) for v in cfg.levels)

    def forward(self, z: torch.Tensor, q: torch.Tensor, snr_db: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = z.shape
        t = self.embed(z.flatten(2).transpose(1, 2))
        t = self.trunk(t, q, (h, w))
        t = self.snr(t, snr_db)
        vmax = self.quantizer.levels[-1]
        flat = t.reshape(b * h * w, -1)
        qf = q.reshape(-1)
        out = flat.new_zeros(b * h * w, 2 * vmax)
        for j, head in enumerate(self.heads):
            sel = torch.nonzero(qf == j).squeeze(1)
            if sel.numel():
                out = out.index_copy(0, sel, F.pad(head(flat[sel]), (0, 2 * (vmax - self.quantizer.levels[j]))))
        full = torch.view_as_complex(out.reshape(b, h * w, vmax, 2).contiguous())
        s, length = pack(full, token_mask(q, self.quantizer))
        return normalize_power(s, length).to(torch.complex64), length


class JSCCDecoder(nn.Module):
    """f_d: received symbols -> z_hat.

    Inputs: s_hat ``B x k`` complex (equalised, unbiased), q ``B x L`` rate indices (side information),
    grid (h, w), snr_db ``B`` or ``B x L`` (SNR_i of each token). Output: z_hat ``B x C x h x w``.
    """

    def __init__(self, latent_channels: int, cfg: JSCCConfig, snr_cfg: SNRAdaptConfig):
        super().__init__()
        self.quantizer = RateQuantizer(cfg.levels)
        self.heads = nn.ModuleList(nn.Linear(2 * v, cfg.dim) for v in cfg.levels)
        self.snr = SNRAdapter(cfg.dim, snr_cfg)
        self.trunk = _Trunk(cfg)
        self.out = nn.Linear(cfg.dim, latent_channels)

    def forward(self, s_hat: torch.Tensor, q: torch.Tensor, grid: tuple[int, int],
                snr_db: torch.Tensor) -> torch.Tensor:
        b = s_hat.shape[0]
        h, w = grid
        mask = token_mask(q, self.quantizer)
        full = torch.view_as_real(unpack(s_hat.to(torch.complex64), mask)).reshape(b * h * w, -1)
        qf = q.reshape(-1)
        d = self.out.in_features
        t = full.new_zeros(b * h * w, d)
        for j, head in enumerate(self.heads):
            sel = torch.nonzero(qf == j).squeeze(1)
            if sel.numel():
                t = t.index_copy(0, sel, head(full[sel, : 2 * self.quantizer.levels[j]]))
        t = t.reshape(b, h * w, d)
        t = self.snr(t, snr_db)
        t = self.trunk(t, q, grid)
        return self.out(t).transpose(1, 2).reshape(b, -1, h, w)
