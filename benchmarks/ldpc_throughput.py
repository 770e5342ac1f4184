"""LDPC decoding throughput of the digital baseline, and pyldpc on the same code for comparison.

Prints information bits per second of Sionna's ``LDPC5GDecoder`` (flooding boxplus-phi, 20 iterations) for a
few code-block sizes and decoder batch sizes, with and without the CRC early stop of
:class:`baselines.digital.link.LDPCLink`, and, for the k = 1024 code, the throughput of pyldpc (its numba
log-BP kernel, stops at a valid code word, at most 20 iterations; see :func:`pyldpc_decode`) on the *same*
parity-check matrix and the same channel LLRs (the rate-matched 5G code word is expanded to the full mother
code word as ``LDPC5GDecoder`` does: punctured bits get LLR 0, filler bits a certain 0). pyldpc keeps dense
``m x n`` message arrays per code word, so larger codes do not fit in memory.

Usage::

    python benchmarks/ldpc_throughput.py [--threads 1] [--ebno 1.5,3] [--blocks 64] [--pyldpc-blocks 4]
        [--sizes 1024,8192] [--batches 4,16,32]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from baselines.digital.link import CRC_BITS, LDPCLink, plan_blocks  # noqa: E402
from baselines.digital.mcs import parse_mcs  # noqa: E402


def channel_llrs(link: LDPCLink, ebno_db: float, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random code words of ``link`` over AWGN at Eb/N0 (info bits per channel use m R): descrambled
    LLRs [n, N] (ln P(1)/P(0)) and the transmitted information bits (CRC included) [n, K]."""
    g = torch.Generator().manual_seed(seed)
    lay = link.layout
    u = link.crc_enc(torch.randint(0, 2, (n, lay.k_cb - CRC_BITS), generator=g).float())
    s = link.mapper(link.scrambler(link.enc(u), binary=True))
    n0 = 10 ** (-ebno_db / 10) / float(lay.mcs.efficiency)  # Es/N0 = m R Eb/N0, Es = 1
    w = torch.complex(torch.randn(s.shape, generator=g), torch.randn(s.shape, generator=g)) * math.sqrt(n0 / 2)
    llr = link.scrambler(link.demapper(s + w, torch.full(s.shape, n0)), binary=False)
    return llr, u


def sionna_throughput(link: LDPCLink, llr: torch.Tensor, u: torch.Tensor, batch: int, early: bool
                      ) -> tuple[float, float]:
    """(info bits per second, BLER) of ``link.decode_llrs``."""
    link.decode_batch, link.early_stop = batch, early
    link.decode_llrs(llr[:batch])  # warm-up
    t = time.perf_counter()
    bits, ok = link.decode_llrs(llr)
    dt = time.perf_counter() - t
    bler = float(((bits != u[:, : bits.shape[1]]).any(1)).float().mean())
    return llr.shape[0] * link.layout.k_cb / dt, bler


def mother_llrs(link: LDPCLink, llr: torch.Tensor) -> np.ndarray:
    """Rate-matched LLRs [n, N] -> LLRs of the full mother code word [n, n_ldpc] in pyldpc's convention
    (ln P(0)/P(1)), as ``LDPC5GDecoder.call`` builds them."""
    enc = link.enc
    k, z, n = enc.k, enc.z, enc.n
    x = llr[:, enc.out_int_inv] if enc.num_bits_per_symbol is not None else llr
    n_ldpc = enc.pcm.shape[1]
    if n + 2 * z + enc.k_filler > n_ldpc:
        raise ValueError("the pyldpc comparison needs a code word without repetition")
    cols = [torch.zeros(x.shape[0], 2 * z), x[:, : k - 2 * z], torch.full((x.shape[0], enc.k_filler), -20.0),
            x[:, k - 2 * z:]]
    full = torch.cat(cols, 1)
    full = torch.nn.functional.pad(full, (0, n_ldpc - full.shape[1]))  # punctured parity: LLR 0
    return (-full).double().numpy()


def pyldpc_decode(h, llr: np.ndarray, maxiter: int) -> np.ndarray:
    """pyldpc's log-BP for irregular codes (``pyldpc.decoder._logbp_numba``) driven by the loop of
    ``pyldpc.decode``: stop at a valid code word or after ``maxiter`` iterations. (``pyldpc.decode`` itself
    fails on the 5G codes: its regular-code test multiplies the arrays of distinct VN and CN degrees, which
    have different lengths.) ``llr``: [n] LLRs ln P(0)/P(1). Returns the hard decisions [n]."""
    from pyldpc import utils
    from pyldpc.decoder import _logbp_numba

    bits_hist, bits_values, nodes_hist, nodes_values = (a.astype(np.int64) for a in utils._bitsandnodes(h))
    m, n = h.shape
    lc = np.ascontiguousarray(llr.reshape(n, 1), dtype=np.float64)
    lq = np.zeros((m, n, 1))
    lr = np.zeros((m, n, 1))
    x = (lc <= 0).astype(int)
    for it in range(maxiter):
        lq, lr, post = _logbp_numba(bits_hist, bits_values, nodes_hist, nodes_values, lc, lq, lr, it)
        x = (post <= 0).astype(int)
        if utils.incode(h, x):
            break
    return x[:, 0]


def pyldpc_throughput(link: LDPCLink, llr: torch.Tensor, u: torch.Tensor, maxiter: int = 20) -> tuple[float, float]:
    import scipy.sparse as sp

    h = sp.csr_matrix(link.enc.pcm)
    y = mother_llrs(link, llr)
    pyldpc_decode(h, y[0], 2)  # numba compilation
    t = time.perf_counter()
    errors = 0
    for i in range(y.shape[0]):
        x = pyldpc_decode(h, y[i], maxiter)
        errors += int(not np.array_equal(x[: link.layout.k_cb], u[i].numpy().astype(int)))
    dt = time.perf_counter() - t
    return y.shape[0] * link.layout.k_cb / dt, errors / y.shape[0]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--ebno", default="1.5,3", help="Eb/N0 values in dB (default 1.5,3: near the waterfall, "
                    "where every word needs all iterations, and above it)")
    ap.add_argument("--blocks", type=int, default=64, help="code words per Sionna measurement")
    ap.add_argument("--pyldpc-blocks", type=int, default=4, help="code words for pyldpc (slow)")
    ap.add_argument("--batches", default="4,16,32", help="decoder batch sizes to try")
    ap.add_argument("--sizes", default="1024,8192", help="information bits per code block (CRC included)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    mcs = parse_mcs("qpsk-1/2")
    ebnos = [float(v) for v in args.ebno.split(",")]
    print(f"5G LDPC rate 1/2, QPSK, AWGN, 20 BP iterations max, torch {torch.__version__} with "
          f"{args.threads} thread(s)")
    for ebno in ebnos:
        print(f"Eb/N0 = {ebno} dB")
        best_1024, best_1024_early = None, None
        for k in [int(v) for v in args.sizes.split(",")]:
            link = LDPCLink(plan_blocks(mcs, k), num_iter=20)
            llr, u = channel_llrs(link, ebno, args.blocks)
            for b in [int(v) for v in args.batches.split(",")]:
                for early in (False, True):
                    tp, bler = sionna_throughput(link, llr, u, b, early)
                    mode = "CRC early stop" if early else "20 iterations "
                    print(f"  sionna  k={k:5d} n={link.layout.n_cb:5d} batch={b:3d} {mode}: {tp / 1e3:8.1f} kbit/s "
                          f"(BLER {bler:.3f})", flush=True)
                    if k == 1024 and not early:
                        best_1024 = max(best_1024 or 0.0, tp)
                    if k == 1024 and early:
                        best_1024_early = max(best_1024_early or 0.0, tp)
            if k == 1024 and args.pyldpc_blocks > 0:
                try:
                    tp_py, bler_py = pyldpc_throughput(link, llr[: args.pyldpc_blocks], u[: args.pyldpc_blocks])
                except ImportError:
                    print("  pyldpc not installed (`make bench-ldpc` installs it): no comparison")
                    continue
                print(f"  pyldpc  k={k:5d} n={link.layout.n_cb:5d} one word per call, max 20 iterations, stops at "
                      f"a valid code word: {tp_py / 1e3:8.2f} kbit/s (BLER {bler_py:.3f} on {args.pyldpc_blocks} "
                      f"words)")
                print(f"  ratio sionna / pyldpc (best batch): {best_1024 / tp_py:.0f} with 20 iterations, "
                      f"{best_1024_early / tp_py:.0f} with early stop on both", flush=True)


if __name__ == "__main__":
    main()
