"""The fast LDPC decoder (baselines.digital.bp.FloodingBP) against Sionna's LDPC5GDecoder: same messages, same
bits, same CRC outcomes and so the same BLER, the same link and envelope results."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from baselines.digital import codecs as digital_codecs
from baselines.digital.bp import FloodingBP, _pick_trees, _trees_match, sum_tree
from baselines.digital.link import CRC_BITS, LDPCLink, plan_blocks
from baselines.digital.mcs import parse_mcs
from channels.awgn import AWGN
from channels.fading import RayleighFading
from lrisc_sim.transmission import send


pytestmark = pytest.mark.usefixtures("one_thread")


def _llrs(link: LDPCLink, ebno_db: float, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Descrambled LLRs [n, N] of ``n`` random code words over AWGN at Eb/N0 and their CRC-coded info bits."""
    g = torch.Generator().manual_seed(seed)
    lay = link.layout
    u = link.crc_enc(torch.randint(0, 2, (n, lay.k_cb - CRC_BITS), generator=g).float())
    s = link.mapper(link.scrambler(link.enc(u), binary=True))
    n0 = 10 ** (-ebno_db / 10) / float(lay.mcs.efficiency)
    w = torch.complex(torch.randn(s.shape, generator=g), torch.randn(s.shape, generator=g)) * math.sqrt(n0 / 2)
    return link.scrambler(link.demapper(s + w, torch.full(s.shape, n0)), binary=False), u


def test_sum_order_reproduces_torch_sum():
    """The symbolic ATen summation order matches torch.sum on padded rows, for every padded width up to 40."""
    slots = [np.arange(d) for d in range(1, 41)]
    vec = _pick_trees(slots, torch.device("cpu"))
    if vec is None:
        pytest.skip("this build's torch.sum order is not ATen's CPU cascade_sum (the decoder uses its fallback)")
    for padded in range(1, 41):
        trees = {d: sum_tree(d, padded, vec) for d in range(1, padded + 1)}
        assert _trees_match(trees, padded, torch.device("cpu"), trials=16), padded
    assert sum_tree(3, 5, 8) == ((0, 1), 2)  # short rows: a running sum
    if vec == 8:  # AVX2: a row of 10 adds its last 2 values first, then the 8 lanes of its vector part
        tree = (8, 9)
        for j in range(8):
            tree = (tree, j)
        assert sum_tree(10, 10, 8) == tree


# layouts: base graph 2 (k = 1024 rate 1/2 QPSK, k = 682 rate 1/3), base graph 1 with filler bits and 16-QAM
# interleaving (k = 6144 rate 1/2, 16-QAM 2/3), and rate 1/3 with VN degrees up to 30
_LAYOUTS = [("qpsk-1/2", 1024, 1.3), ("qpsk-1/3", 1024, 0.6), ("16qam-2/3", 6144, 4.6), ("qpsk-1/3", 6144, 0.4)]


@pytest.mark.parametrize("mcs,uses,ebno", _LAYOUTS)
def test_messages_and_bits_equal_sionna(mcs, uses, ebno):
    link = LDPCLink(plan_blocks(parse_mcs(mcs), uses))
    llr, _ = _llrs(link, ebno, 6, seed=1)
    bp = link.bp
    assert bp.exact == "ordered"
    v2c = bp.channel_llrs(llr).index_select(0, bp._vn_of_cn_row)
    lch = bp.channel_llrs(llr)
    done = 0
    for it in (1, 2, 4):  # resumed in chunks, as the early stop does
        ref_bits, ref_state = link.dec(llr, num_iter=done + it)
        v2c, x_tot = bp.iterate(v2c, lch, it)
        done += it
        assert torch.equal(bp.info_bits(x_tot), ref_bits)
        assert torch.equal(v2c.t(), -ref_state[:, bp.edges])  # every message, bit for bit


@pytest.mark.parametrize("exact_sums", ["auto", "padded"])
def test_fixed_iterations_equal_sionna_on_failures_too(exact_sums):
    """20 iterations, no early stop, at the waterfall: identical bits for every word, decoded or not."""
    link = LDPCLink(plan_blocks(parse_mcs("qpsk-1/2"), 1024))
    llr, u = _llrs(link, 1.0, 24, seed=2)
    ref, _ = link.dec(llr, num_iter=20)
    bits, ok = FloodingBP(link.dec, exact_sums=exact_sums).decode(llr, 20, pool=7)
    assert ok is None and torch.equal(bits, ref)
    assert 0 < int((ref != u).any(1).sum()) < 24  # some words fail, some not: the comparison covers both


def test_pool_size_does_not_change_the_result():
    link = LDPCLink(plan_blocks(parse_mcs("qpsk-1/2"), 1024))
    llr, _ = _llrs(link, 1.2, 20, seed=4)

    def crc_ok(b):
        return link.crc_dec(b)[1][..., 0]

    outs = [link.bp.decode(llr, 20, pool=p, check_every=2, accept=crc_ok) for p in (1, 3, 20, 64)]
    for bits, ok in outs[1:]:
        assert torch.equal(bits, outs[0][0]) and torch.equal(ok, outs[0][1])


def test_bler_unchanged_on_the_waterfall():
    """k = 1024, rate 1/2, QPSK, CRC early stop: the old decoding (Sionna, resumed every 2 iterations) and the
    new one give the same bits and CRC outcome for every word at Eb/N0 1.0-1.6 dB, hence the same BLER."""
    lay = plan_blocks(parse_mcs("qpsk-1/2"), 1024)
    old = LDPCLink(lay, decoder="sionna", decode_batch=32)
    new = LDPCLink(lay, decoder="fast", decode_batch=32)
    bler = {}
    for i, ebno in enumerate((1.0, 1.2, 1.4, 1.6)):
        llr, u = _llrs(old, ebno, 48, seed=10 + i)
        b_old, ok_old = old.decode_llrs(llr)
        b_new, ok_new = new.decode_llrs(llr)
        assert torch.equal(ok_old, ok_new) and torch.equal(b_old, b_new)
        assert torch.equal(~ok_new, (b_new != u[:, : b_new.shape[1]]).any(1))  # the CRC flags the failures
        bler[ebno] = float((~ok_new).float().mean())
    assert bler[1.0] > 0.3 and bler[1.6] < 0.15 and bler[1.0] > bler[1.6]  # the waterfall


def test_link_receive_equal_sionna():
    """Whole receiver with stop_on_failure: the same payloads, CRC flags and decoded blocks, at SNRs where
    images are lost whole, in part (the rounds stop at a failed block) or not at all."""
    lay = plan_blocks(parse_mcs("16qam-1/2"), 9000)  # 3 blocks per image
    rng = np.random.default_rng(0)
    old = LDPCLink(lay, decoder="sionna")
    new = LDPCLink(lay, decoder="fast")
    payloads = [rng.bytes(lay.max_bytes) for _ in range(5)]
    s = old.transmit(payloads)
    seen = set()
    for snr_db in (6.3,):
        n0 = 10 ** (-snr_db / 10)
        g = torch.Generator().manual_seed(3)
        y = s + torch.complex(torch.randn(s.shape, generator=g), torch.randn(s.shape, generator=g)) * math.sqrt(n0 / 2)
        a, b = old.receive(y, torch.full(s.shape, n0)), new.receive(y, torch.full(s.shape, n0))
        assert a.payloads == b.payloads
        assert torch.equal(a.block_ok, b.block_ok) and torch.equal(a.decoded, b.decoded)
        seen |= {p is None for p in b.payloads}
        seen |= {"partly decoded" for d in b.decoded if 0 < int(d.sum()) < lay.num_blocks}
    assert seen == {True, False, "partly decoded"}


@pytest.mark.slow
def test_envelope_rows_equal_sionna(monkeypatch):
    """The envelope's decisions (MCS, blocks failed, images) do not depend on the decoder."""
    from skimage.data import astronaut

    x = torch.from_numpy(np.ascontiguousarray(astronaut()[40:136, 150:278])).permute(2, 0, 1)[None].float() / 255

    def run(decoder: str):
        digital_codecs._LINKS.clear()
        monkeypatch.setattr(digital_codecs, "LDPCLink", functools.partial(LDPCLink, decoder=decoder))
        codec = digital_codecs.make_j2k_ldpc(mcs="qpsk-1/2,16qam-1/2")
        rows = []
        for channel, snr in ((AWGN(), 4.0), (AWGN(), 7.5), (RayleighFading(), 10.0)):
            t = send(codec, x, 1 / 4, snr, channel, ["a"], 0, 0)
            rows.append((t.decoded.info, t.encoded.info, t.output))
        return rows

    try:
        ref, new = run("sionna"), run("fast")
    finally:
        digital_codecs._LINKS.clear()
    for (di, ei, im), (di2, ei2, im2) in zip(ref, new):
        assert di == di2 and ei == ei2 and torch.equal(im, im2)
