"""LDPC decoding throughput of the digital baseline, before and after the fast decoder, and pyldpc on the same code.

Prints information bits per second of the two decoders of :class:`baselines.digital.link.LDPCLink` for a few
code-block sizes and decoder batch sizes, with and without the CRC early stop:

* *before*: Sionna's ``LDPC5GDecoder`` (flooding boxplus-phi, 20 iterations), resumed every 2 iterations for the
  early stop (``LDPCLink(decoder="sionna")``);
* *after*: :class:`baselines.digital.bp.FloodingBP` (``LDPCLink(decoder="fast")``, the default), the same
  arithmetic bit for bit on a degree-grouped layout, with a refilled pool of code words; the benchmark checks
  that both give the same bits and CRC outcomes on every word.

For the k = 1024 code it also measures pyldpc (its numba log-BP kernel, stops at a valid code word, at most 20
iterations; see :func:`pyldpc_decode`) on the *same* parity-check matrix and the same channel LLRs (the
rate-matched 5G code word is expanded to the full mother code word as ``LDPC5GDecoder`` does: punctured bits get
LLR 0, filler bits a certain 0). pyldpc keeps dense ``m x n`` message arrays per code word, so larger codes do
not fit in memory. The run ends with a table of the k = 1024 figures and their ratios to pyldpc.

``--clock cpu`` times with the process CPU time instead of the wall clock (steadier on a shared machine; both
decoders and pyldpc run on one thread with ``--threads 1``).

Usage::

    python benchmarks/ldpc_throughput.py [--threads 1] [--ebno 1.5,3] [--blocks 64] [--pyldpc-blocks 4]
        [--sizes 1024,8192] [--batches 4,16,32] [--clock wall|cpu] [--no-before]
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


_CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def sionna_throughput(link: LDPCLink, llr: torch.Tensor, u: torch.Tensor, batch: int, early: bool,
                      decoder: str = "sionna") -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """(info bits per second, BLER, bits, CRC ok) of ``link.decode_llrs`` with ``decoder``."""
    link.decode_batch, link.early_stop, link.decoder = batch, early, decoder
    link.decode_llrs(llr[:batch])  # warm-up
    t = clock()
    bits, ok = link.decode_llrs(llr)
    dt = clock() - t
    bler = float(((bits != u[:, : bits.shape[1]]).any(1)).float().mean())
    return llr.shape[0] * link.layout.k_cb / dt, bler, bits, ok


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
    t = clock()
    errors = 0
    for i in range(y.shape[0]):
        x = pyldpc_decode(h, y[i], maxiter)
        errors += int(not np.array_equal(x[: link.layout.k_cb], u[i].numpy().astype(int)))
    dt = clock() - t
    return y.shape[0] * link.layout.k_cb / dt, errors / y.shape[0]


def main(argv: list[str] | None = None) -> None:
    global clock
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--ebno", default="1.5,3", help="Eb/N0 values in dB (default 1.5,3: near the waterfall, "
                    "where every word needs all iterations, and above it)")
    ap.add_argument("--blocks", type=int, default=64, help="code words per Sionna measurement")
    ap.add_argument("--pyldpc-blocks", type=int, default=4, help="code words for pyldpc (slow)")
    ap.add_argument("--batches", default="4,16,32", help="decoder batch sizes to try")
    ap.add_argument("--sizes", default="1024,8192", help="information bits per code block (CRC included)")
    ap.add_argument("--clock", choices=sorted(_CLOCKS), default="wall",
                    help="wall clock (default) or process CPU time")
    ap.add_argument("--no-before", action="store_true", help="skip the old decoder (Sionna's LDPC5GDecoder)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = _CLOCKS[args.clock]
    mcs = parse_mcs("qpsk-1/2")
    ebnos = [float(v) for v in args.ebno.split(",")]
    decoders = ("fast",) if args.no_before else ("sionna", "fast")
    print(f"5G LDPC rate 1/2, QPSK, AWGN, 20 BP iterations max, torch {torch.__version__} with "
          f"{args.threads} thread(s), {args.clock} clock; before = Sionna LDPC5GDecoder, after = FloodingBP")
    summary = []
    for ebno in ebnos:
        print(f"Eb/N0 = {ebno} dB")
        for k in [int(v) for v in args.sizes.split(",")]:
            link = LDPCLink(plan_blocks(mcs, k), num_iter=20)
            llr, u = channel_llrs(link, ebno, args.blocks)
            best: dict[tuple[str, bool], float] = {}
            for b in [int(v) for v in args.batches.split(",")]:
                for early in (False, True):
                    res = {d: sionna_throughput(link, llr, u, b, early, d) for d in decoders}
                    for d, (tp, *_rest) in res.items():
                        best[d, early] = max(best.get((d, early), 0.0), tp)
                    mode = "CRC early stop" if early else "20 iterations "
                    tp_f, bler_f, bits_f, ok_f = res["fast"]
                    line = f"  k={k:5d} n={link.layout.n_cb:5d} batch={b:3d} {mode}:"
                    if "sionna" in res:
                        tp_s, bler_s, bits_s, ok_s = res["sionna"]
                        same = torch.equal(bits_s, bits_f) and torch.equal(ok_s, ok_f)
                        line += (f" before {tp_s / 1e3:8.1f} kbit/s, after {tp_f / 1e3:8.1f} kbit/s "
                                 f"(x{tp_f / tp_s:4.1f}); BLER {bler_s:.3f} / {bler_f:.3f}, "
                                 f"same bits and CRC flags: {'yes' if same else 'NO'}")
                    else:
                        line += f" after {tp_f / 1e3:8.1f} kbit/s (BLER {bler_f:.3f})"
                    print(line, flush=True)
            if k == 1024 and args.pyldpc_blocks > 0:
                try:
                    tp_py, bler_py = pyldpc_throughput(link, llr[: args.pyldpc_blocks], u[: args.pyldpc_blocks])
                except ImportError:
                    print("  pyldpc not installed (`make bench-ldpc` installs it): no comparison")
                    continue
                print(f"  pyldpc  k={k:5d} n={link.layout.n_cb:5d} one word per call, max 20 iterations, stops at "
                      f"a valid code word: {tp_py / 1e3:8.2f} kbit/s (BLER {bler_py:.3f} on {args.pyldpc_blocks} "
                      f"words)")
                for d in decoders:
                    name = "before" if d == "sionna" else "after "
                    print(f"  ratio {name} / pyldpc (best batch): {best[d, False] / tp_py:5.0f} with 20 iterations, "
                          f"{best[d, True] / tp_py:5.0f} with early stop on both", flush=True)
                summary.append((ebno, tp_py, best))
    if summary:
        print("\nk = 1024, rate 1/2, QPSK: kbit/s at the best batch (ratio to pyldpc with its early stop)")
        head = f"{'Eb/N0':>6} {'pyldpc':>8}"
        for d in decoders:
            name = "before" if d == "sionna" else "after"
            head += f" | {name + ' 20 it':>16} {name + ' early stop':>19}"
        print(head)
        for ebno, tp_py, best in summary:
            row = f"{ebno:6.2f} {tp_py / 1e3:8.2f}"
            for d in decoders:
                a, e = best[d, False], best[d, True]
                row += f" | {a / 1e3:9.1f} ({a / tp_py:4.0f}x) {e / 1e3:12.1f} ({e / tp_py:4.0f}x)"
            print(row)


if __name__ == "__main__":
    main()
