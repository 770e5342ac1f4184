"""Rate-index side information: the context code decodes exactly, is never longer than what rate control
charges, and beats n bits per token on spatially smooth maps; ``auto`` picks the cheapest code."""

import math

import pytest
import torch

from lrisc_sim.lrisc.rate_index import (RateIndexCoding, context_bits, contexts, decode_context,
                                        encode_context)


def smooth_map(h: int, w: int, k: int, seed: int) -> torch.Tensor:
    """A rate map like LRISC's: a smooth field quantised to k levels, with some noise (1 x h w)."""
    g = torch.Generator().manual_seed(seed)
    f = torch.nn.functional.interpolate(torch.rand(1, 1, h // 4 + 1, w // 4 + 1, generator=g), size=(h, w),
                                        mode="bilinear", align_corners=False)[0, 0]
    f = f + 0.08 * torch.randn(h, w, generator=g)
    return (f.clamp(0, 0.999) * k).long().reshape(1, h * w)


def test_contexts_follow_the_neighbours():
    q = torch.tensor([[0, 2, 3, 1, 1, 0]])  # 2 x 3
    # first token: K; top row: left; first column: up; else ceil((left + up) / 2)
    assert contexts(q, (2, 3), 4).tolist() == [[4, 0, 2, 0, 2, 2]]


@pytest.mark.parametrize("h,w,k,seed", [(1, 1, 8, 0), (3, 5, 2, 1), (8, 12, 8, 2), (32, 48, 8, 3), (5, 7, 4, 4)])
def test_context_code_round_trip_and_length(h, w, k, seed):
    q = smooth_map(h, w, k, seed).clamp(max=k - 1)
    value, nbits = encode_context(q[0].tolist(), (h, w), k)
    assert 0 <= value < 2**nbits
    assert decode_context(value, nbits, (h, w), k) == q[0].tolist()
    charged = float(context_bits(q, k, (h, w))[0])
    assert nbits <= charged <= nbits + 1  # the closed form is the coder's length (at most one bit over)


def test_random_maps_round_trip():
    g = torch.Generator().manual_seed(5)
    for _ in range(20):
        h, w = int(torch.randint(1, 9, (1,), generator=g)), int(torch.randint(1, 9, (1,), generator=g))
        q = torch.randint(0, 8, (1, h * w), generator=g)
        value, nbits = encode_context(q[0].tolist(), (h, w), 8)
        assert decode_context(value, nbits, (h, w), 8) == q[0].tolist()
        assert nbits <= float(context_bits(q, 8, (h, w))[0])


def test_context_code_exploits_smoothness():
    q = smooth_map(32, 48, 8, 7)
    codes = RateIndexCoding().all_bits(q, 8, (32, 48))
    assert float(codes["context"]) < 0.8 * float(codes["enumerative"])
    # KT redundancy: at most (K - 1)/2 log2 n + K bits per context over its empirical conditional entropy
    ctx = contexts(q, (32, 48), 8)[0]
    bound = 1.0
    for c in ctx.unique():
        sym = q[0][ctx == c]
        n = sym.numel()
        p = torch.bincount(sym, minlength=8).double() / n
        bound += float(-(p[p > 0] * p[p > 0].log2()).sum()) * n + 3.5 * math.log2(n) + 8
    assert float(codes["context"]) <= bound + 1
    # an i.i.d. uniform map has no structure to exploit: the context code pays for learning 9 contexts
    u = torch.randint(0, 8, (1, 1536), generator=torch.Generator().manual_seed(8))
    cu = RateIndexCoding().all_bits(u, 8, (32, 48))
    assert float(cu["context"]) > float(cu["fixed"])
    assert float(RateIndexCoding().bits(u, 8, (32, 48))) == 2 + min(float(v) for v in cu.values())


def test_auto_is_the_cheapest_plus_flag_and_names_it():
    q = torch.cat([smooth_map(16, 16, 8, 9), torch.zeros(1, 256, dtype=torch.long),
                   torch.randint(0, 8, (1, 256), generator=torch.Generator().manual_seed(1))])
    c = RateIndexCoding("auto")
    codes = c.all_bits(q, 8, (16, 16))
    best = torch.minimum(torch.minimum(codes["fixed"], codes["enumerative"]), codes["context"])
    assert torch.equal(c.bits(q, 8, (16, 16)), 2 + best)
    chosen = c.chosen(q, 8, (16, 16))
    for i, name in enumerate(chosen):
        assert float(codes[name][i]) == float(best[i])
    assert chosen[2] == "fixed"
    # a constant map costs a few bits with the context code: -log2 of the KT probabilities of one symbol
    const = float(codes["context"][1])
    kt = sum(math.log2((2 * n + 8) / (2 * n + 1)) for n in range(255)) + math.log2(8)
    assert const == math.ceil(kt + 1e-6) + 1


def test_unknown_mode_and_bad_grid():
    with pytest.raises(ValueError, match="use one of auto, fixed, enumerative, context"):
        RateIndexCoding("huffman")
    with pytest.raises(ValueError, match="does not hold 10 tokens"):
        context_bits(torch.zeros(1, 10, dtype=torch.long), 8, (3, 3))


@pytest.mark.parametrize("block", [1, 2, 3])
def test_coarser_rate_grid(block):
    from lrisc_sim.lrisc.jscc import RateQuantizer, rate_control

    quant = RateQuantizer((2, 4, 8, 12, 16, 24, 32, 48))
    g = torch.Generator().manual_seed(3)
    h, w = 7, 10  # edge blocks are smaller when block does not divide the grid
    e = torch.rand(2, h * w, generator=g) ** 2 * 200
    for budget in (400, 900, 2000):
        rd = rate_control(e, budget, quant, grid=(h, w), block=block)
        assert bool((rd.payload.double() + rd.side_uses <= budget).all())
        assert torch.equal(rd.payload, quant.lengths(rd.q).sum(1))
        qm = rd.q.reshape(2, h, w)
        hb, wb = -(-h // block), -(-w // block)
        blocks = torch.stack([qm[:, i * block, j * block] for i in range(hb) for j in range(wb)], 1)
        up = blocks.reshape(2, hb, wb).repeat_interleave(block, 1).repeat_interleave(block, 2)[:, :h, :w]
        assert torch.equal(qm, up)  # one index per block
        assert torch.equal(rd.side_bits, RateIndexCoding().bits(blocks, 8, (hb, wb)))
    with pytest.raises(ValueError, match="needs the latent grid"):
        rate_control(e, 900, quant, block=2)


def test_codec_takes_the_side_information_rule_from_the_model():
    from lrisc_sim.codec import Context
    from lrisc_sim.lrisc.codec import LRISCCodec, LRISCError
    from lrisc_sim.lrisc.config import LRISCConfig, preset
    from lrisc_sim.lrisc.model import LRISC

    torch.manual_seed(0)
    cfg = preset("tiny")
    assert (cfg.jscc.rate_block, cfg.jscc.side_codes) == (2, ("fixed", "enumerative", "context"))
    # a checkpoint written before these fields existed keeps the rule it was evaluated with
    d = cfg.to_dict()
    del d["jscc"]["rate_block"], d["jscc"]["side_codes"]
    old = LRISCConfig.from_dict(d).jscc
    assert (old.rate_block, old.side_codes) == (1, ("fixed", "enumerative"))
    model = LRISC(cfg).eval()
    x = torch.rand(1, 3, 128, 96)
    ctx = Context((128, 96))
    new = LRISCCodec(model)
    enc = new.encode(x, 1 / 16, ctx)
    q = enc.state["q"].reshape(8, 6)
    assert torch.equal(q, q[::2, ::2].repeat_interleave(2, 0).repeat_interleave(2, 1))
    blocks = q[::2, ::2].reshape(1, 12)
    assert float(enc.side_bits[0]) == float(RateIndexCoding().bits(blocks, 4, (4, 3))[0])
    per_token = LRISCCodec(model, rate_block=1, coding="fixed").encode(x, 1 / 16, ctx)
    assert float(per_token.side_bits[0]) == 48 * 2  # n = 2 bits for each of 48 tokens
    assert float(enc.side_bits[0]) < 48 * 2 / 4 + 3
    assert "one per 2x2 tokens" in new.describe()
    with pytest.raises(LRISCError, match="rate_block must be a positive integer"):
        LRISCCodec(model, rate_block=0)
