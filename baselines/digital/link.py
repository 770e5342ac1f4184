"""The digital link of the separation baseline: bytes -> 5G LDPC code blocks -> QAM symbols, and back.

Transmitter, per image (TS 38.212 / 38.211 where they apply):

1. an in-band length header (the payload byte count in ``L`` bits, ``L`` fixed by the block layout) followed
   by the payload bits and zero padding fill ``C`` code blocks of ``K - 24`` bits;
2. each block gets a CRC24B (38.212 5.1), so that the receiver detects a failed block;
3. 5G LDPC encoding with rate matching to ``N`` coded bits per block and the QAM bit interleaver
   (``LDPC5GEncoder(K, N, num_bits_per_symbol=m)``, 38.212 5.3.2 / 5.4.2);
4. the ``C N`` coded bits are scrambled with the 38.211 7.3.1.1 Gold sequence (``TB5GScrambler``) so that
   zero padding does not bias the constellation, and mapped to ``C N / m`` unit-energy QAM symbols (Gray).

Receiver: the equalised symbols are made unbiased, :math:`\\tilde s = \\hat s / g`, with per-symbol noise
variance :math:`\\sigma^2 / g^2` (``Received.noise_var / gain^2``). For both equalisers this is the matched
observation :math:`y / h` with variance :math:`N_0 / |h|^2`, so the LLRs are the exact per-symbol APP LLRs
(ZF and MMSE give identical decisions). Then: APP demapping (``Demapper("app")``), descrambling, LDPC BP
decoding (``LDPC5GDecoder``, flooding boxplus-phi, at most ``num_iter`` iterations; a code word stops once its
CRC passes, see :meth:`LDPCLink.decode_llrs`), CRC check per block.

Code blocks of all images of a batch are decoded together, ``decode_batch`` code words per decoder call.
Sionna is imported lazily (it costs about 2.5 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

from baselines.digital.mcs import MCS

#: CRC24B length, attached to every code block (38.212 5.1)
CRC_BITS = 24
#: largest code block, CRC included, for base graph 1 (38.212 5.2.2)
MAX_CB_BITS = 8448
#: largest code block Sionna's encoder puts on base graph 2 (needed for rates below 1/3)
MAX_CB_BITS_BG2 = 3824


@dataclass(frozen=True)
class BlockLayout:
    r"""How ``uses`` complex channel uses are filled with 5G LDPC code blocks of one MCS.

    With :math:`m` bits per symbol and code rate :math:`R`, the :math:`G = \lfloor k m \rfloor` coded bits
    of a budget of :math:`k` channel uses carry at most :math:`\lfloor G R \rfloor` information bits. They
    are split into :math:`C = \lceil G R / 8448 \rceil` equal blocks of :math:`N = m \lfloor G / (C m)
    \rfloor` coded bits and :math:`K = \lfloor N R \rfloor` information bits (CRC included). The source can
    use :math:`C (K - 24) - L` bits, :math:`L` being the length header.

    :param mcs: the modulation and coding scheme.
    :param num_blocks: :math:`C`.
    :param k_cb: :math:`K`, information bits per block including the CRC.
    :param n_cb: :math:`N`, coded bits per block (a multiple of :math:`m`).

    .. rubric:: Examples

    >>> from baselines.digital.mcs import parse_mcs
    >>> lay = plan_blocks(parse_mcs("qpsk-1/2"), 24576)
    >>> lay.num_blocks, lay.k_cb, lay.n_cb, lay.uses, lay.max_bytes
    (3, 8192, 16384, 24576, 3061)
    """

    mcs: MCS
    num_blocks: int
    k_cb: int
    n_cb: int

    @property
    def data_bits(self) -> int:
        """Information bits left after the CRCs: :math:`C (K - 24)`."""
        return self.num_blocks * (self.k_cb - CRC_BITS)

    @property
    def header_bits(self) -> int:
        """:math:`L`: bits of the in-band byte-count header (enough for any count that fits)."""
        return max(1, (self.data_bits // 8).bit_length())

    @property
    def max_bytes(self) -> int:
        """Largest source payload (bytes) that fits: :math:`\\lfloor (C (K - 24) - L) / 8 \\rfloor`."""
        return max(0, (self.data_bits - self.header_bits) // 8)

    @property
    def uses(self) -> int:
        """Complex channel uses actually sent: :math:`C N / m`."""
        return self.num_blocks * self.n_cb // self.mcs.bits_per_symbol

    @property
    def coded_bits(self) -> int:
        return self.num_blocks * self.n_cb


def plan_blocks(mcs: MCS, uses: int) -> BlockLayout | None:
    r"""The block layout of ``mcs`` for a budget of ``uses`` channel uses; None if not even one block of at
    least 12 information bits plus the CRC and a byte of payload fits.

    Blocks hold at most 8448 information bits (base graph 1), or 3824 for rates below 1/3, which only base
    graph 2 supports; :math:`N` is trimmed so that :math:`K / N \ge R` (base graph 1 refuses rates below 1/3).
    """
    m, r = mcs.bits_per_symbol, mcs.rate
    g = int(uses) * m
    info = math.floor(g * r)
    if info <= 0:
        return None
    max_cb = MAX_CB_BITS if r >= Fraction(1, 3) else MAX_CB_BITS_BG2
    c = max(1, -(-info // max_cb))
    while True:
        n_cb = (g // c) // m * m
        k_cb = math.floor(n_cb * r)
        n_cb = min(n_cb, math.floor(k_cb / r) // m * m)  # K / N >= R despite the rounding of K
        if k_cb <= max_cb:
            break
        c += 1
    if k_cb < max(12, CRC_BITS + 1) or n_cb <= 0:
        return None
    lay = BlockLayout(mcs, c, k_cb, n_cb)
    return lay if lay.max_bytes > 0 else None


def bytes_to_bits(data: bytes, n: int) -> np.ndarray:
    """The first ``n`` bits (MSB first) of ``data`` zero-padded to ``n``: uint8 array of 0/1."""
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8)) if data else np.zeros(0, np.uint8)
    out = np.zeros(n, dtype=np.uint8)
    out[: min(n, bits.size)] = bits[:n]
    return out


def bits_to_bytes(bits: np.ndarray) -> bytes:
    """Inverse of :func:`bytes_to_bits` (length a multiple of 8)."""
    return np.packbits(bits.astype(np.uint8)).tobytes()


def uint_to_bits(v: int, n: int) -> np.ndarray:
    return np.array([(v >> (n - 1 - i)) & 1 for i in range(n)], dtype=np.uint8)


def bits_to_uint(bits: np.ndarray) -> int:
    v = 0
    for b in bits.tolist():
        v = (v << 1) | int(b)
    return v


@dataclass
class LinkResult:
    """Receiver output of :meth:`LDPCLink.receive` for a batch of B images.

    payloads : list of B ``bytes`` (the recovered source payload) or None (a block failed its CRC, the
        header is invalid, or the image was not decoded because it was inactive).
    block_ok : B x C bool, CRC result per code block (False where not decoded).
    decoded : B x C bool, blocks that were decoded (all of them, unless the image was inactive or
        ``stop_on_failure`` skipped the blocks after a failed one).
    """

    payloads: list[bytes | None]
    block_ok: torch.Tensor
    decoded: torch.Tensor

    @property
    def blocks_failed(self) -> torch.Tensor:
        """B int: decoded blocks whose CRC failed (>= 1 means the image is lost)."""
        return (self.decoded & ~self.block_ok).sum(1)


class LDPCLink:
    r"""Segmentation + CRC24B + 5G LDPC + scrambling + QAM for one :class:`BlockLayout`.

    :param layout: the block layout (MCS, :math:`C`, :math:`K`, :math:`N`).
    :param num_iter: maximum BP iterations of the LDPC decoder (default 20).
    :param decode_batch: code words per decoder call; None (default): :math:`\min(64, \max(1, 2^{16} / N))`,
        about 64 k coded bits per call, which keeps the decoder's working set in cache (measured on one core:
        N = 16384 runs fastest with 2-4 words per call and slows down by 40 % at 16; N = 4096 with 16).
    :param demapping: ``"app"`` (exact, default) or ``"maxlog"``.
    :param early_stop: stop decoding a code word once its CRC passes (checked every ``check_every``
        iterations; default True). False: always ``num_iter`` iterations, as Sionna's decoder alone.
    :param stop_on_failure: decode an image's blocks in rounds and stop at its first failed block (the image
        is lost whatever the other blocks give; default True). False: decode every block (for BLER counts).
    :param device: torch device of the Sionna blocks.

    :input payloads (``transmit``): list of B ``bytes``, each at most ``layout.max_bytes`` long.
    :output symbols: [B, C N / m], `torch.complex64`, unit average energy constellation.

    :input s (``receive``): [B, C N / m], `torch.complex64`, unbiased equalised symbols :math:`\hat s / g`.
    :input noise_var: [B, C N / m], `torch.float32`, per-symbol noise variance of ``s``.
    :input active: [B] bool or None; rows set False are not decoded (payload None).
    :output: :class:`LinkResult`.

    .. rubric:: Examples

    >>> from baselines.digital.mcs import parse_mcs
    >>> link = LDPCLink(plan_blocks(parse_mcs("qpsk-1/2"), 600))
    >>> s = link.transmit([b"hello"])
    >>> res = link.receive(s, torch.full(s.shape, 1e-3))
    >>> res.payloads[0]
    b'hello'
    """

    def __init__(self, layout: BlockLayout, num_iter: int = 20, decode_batch: int | None = None,
                 demapping: str = "app", early_stop: bool = True, check_every: int = 2, stop_on_failure: bool = True,
                 device: str | torch.device = "cpu", decoder: str = "fast"):
        from sionna.phy.fec.crc import CRCDecoder, CRCEncoder
        from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
        from sionna.phy.fec.scrambling import TB5GScrambler
        from sionna.phy.mapping import Demapper, Mapper

        if decode_batch is not None and decode_batch < 1:
            raise ValueError("decode_batch must be >= 1")
        if decoder not in ("fast", "sionna"):
            raise ValueError("decoder must be 'fast' or 'sionna'")
        self.decoder = decoder
        self.layout = layout
        self.num_iter = int(num_iter)
        self.decode_batch = None if decode_batch is None else int(decode_batch)
        self.stop_on_failure = bool(stop_on_failure)
        self.early_stop = bool(early_stop)
        self.check_every = max(1, int(check_every))
        self.device = torch.device(device)
        dev = str(self.device)
        m = layout.mcs.bits_per_symbol
        self.crc_enc = CRCEncoder("CRC24B", k=layout.k_cb - CRC_BITS, device=dev)
        self.crc_dec = CRCDecoder(self.crc_enc, device=dev)
        self.enc = LDPC5GEncoder(layout.k_cb, layout.n_cb, num_bits_per_symbol=m, device=dev, check_input=False)
        self.dec = LDPC5GDecoder(self.enc, num_iter=self.num_iter, hard_out=True, return_infobits=True,
                                 return_state=True, device=dev)
        self._bp = None  # FloodingBP, built on first use
        self.scrambler = TB5GScrambler(n_rnti=1, n_id=1, channel_type="PDSCH", device=dev)
        self.mapper = Mapper("qam", m, device=dev)
        self.demapper = Demapper(demapping, "qam", m, device=dev)

    # ------------------------------------------------------------------ transmitter
    def info_bits(self, payloads: list[bytes]) -> torch.Tensor:
        """[B, C, K - 24] float32 bits: length header, payload, zero padding."""
        lay = self.layout
        rows = []
        for p in payloads:
            if len(p) > lay.max_bytes:
                raise ValueError(f"payload of {len(p)} bytes exceeds the {lay.max_bytes} bytes of {lay.mcs.name}")
            bits = np.concatenate([uint_to_bits(len(p), lay.header_bits),
                                   bytes_to_bits(p, lay.data_bits - lay.header_bits)])
            rows.append(bits.reshape(lay.num_blocks, lay.k_cb - CRC_BITS))
        return torch.from_numpy(np.stack(rows).astype(np.float32)).to(self.device)

    def transmit(self, payloads: list[bytes]) -> torch.Tensor:
        """B payloads -> [B, C N / m] complex64 QAM symbols."""
        lay = self.layout
        b = len(payloads)
        u = self.crc_enc(self.info_bits(payloads).reshape(b * lay.num_blocks, -1))
        c = self.enc(u).reshape(b, lay.coded_bits)
        c = self.scrambler(c, binary=True)
        return self.mapper(c).to(torch.complex64).reshape(b, lay.uses)

    # ------------------------------------------------------------------ receiver
    @property
    def batch(self) -> int:
        """Code words per decoder call (``decode_batch`` or its default for this block length)."""
        if self.decode_batch is not None:
            return self.decode_batch
        return min(64, max(1, (1 << 16) // self.layout.n_cb))

    def llrs(self, s: torch.Tensor, noise_var: torch.Tensor) -> torch.Tensor:
        """[B, C N / m] symbols and noise variances -> [B, C, N] descrambled LLRs, ln P(1)/P(0)."""
        lay = self.layout
        out = []
        for i in range(s.shape[0]):  # one image at a time bounds the demapper's [N/m, M] working set
            llr = self.demapper(s[i: i + 1], noise_var[i: i + 1].clamp(min=1e-10))
            out.append(self.scrambler(llr, binary=False))
        return torch.cat(out).reshape(s.shape[0], lay.num_blocks, lay.n_cb)

    def decode_llrs(self, llr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[R, N] LLRs of R code words -> ([R, K - 24] bits, [R] CRC ok), ``decode_batch`` words per call.

        With ``early_stop`` the decoder runs ``check_every`` iterations at a time (resuming from its message
        state, which is bit-identical to running them in one call) and a code word leaves the batch once
        its CRC passes; words that never pass get all ``num_iter`` iterations.
        """
        if self.decoder == "fast":
            return self._decode_fast(llr)
        k = self.layout.k_cb - CRC_BITS
        bits = torch.zeros(llr.shape[0], k, device=llr.device)
        ok = torch.zeros(llr.shape[0], dtype=torch.bool, device=llr.device)
        step = self.check_every if self.early_stop else self.num_iter
        batch = self.batch
        for i in range(0, llr.shape[0], batch):
            rows = torch.arange(i, min(i + batch, llr.shape[0]), device=llr.device)
            x, state, done = llr[rows], None, 0
            while done < self.num_iter and rows.numel():
                it = min(step, self.num_iter - done)
                u_hat, state = self.dec(x, num_iter=it, msg_v2c=state)
                done += it
                u, valid = self.crc_dec(u_hat)
                valid = valid[..., 0]
                bits[rows] = u
                ok[rows] = valid
                if done < self.num_iter and bool(valid.any()):
                    keep = ~valid
                    rows, x, state = rows[keep], x[keep], state[keep]
        return bits, ok

    @property
    def bp(self):
        """The :class:`~baselines.digital.bp.FloodingBP` decoder of ``dec`` (built on first use)."""
        if self._bp is None:
            from baselines.digital.bp import FloodingBP

            self._bp = FloodingBP(self.dec)
        return self._bp

    def crc_ok(self, u: torch.Tensor) -> torch.Tensor:
        """[R, K] hard decisions (float 0/1, CRC last) -> [R] bool, CRC24B valid: the result of ``crc_dec`` in
        one matrix product (its per-word batched product is slow; the parity sums are integers below
        :math:`2^{24}`, exact in float32 whatever the order of additions)."""
        par = torch.matmul(u[:, :-CRC_BITS], self.crc_enc._g_mat_crc.to(u.device))
        return (torch.remainder(par, 2) == u[:, -CRC_BITS:]).all(dim=-1)

    def _decode_fast(self, llr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u_hat, ok = self.bp.decode(llr, self.num_iter, pool=self.batch, check_every=self.check_every,
                                   accept=self.crc_ok if self.early_stop else None)
        if ok is None:
            ok = self.crc_ok(u_hat)
        return u_hat[:, :-CRC_BITS].to(llr.device), ok.to(llr.device)

    def receive(self, s: torch.Tensor, noise_var: torch.Tensor, active: torch.Tensor | None = None) -> LinkResult:
        lay = self.layout
        b, c = s.shape[0], lay.num_blocks
        s = s[:, : lay.uses].to(self.device)
        noise_var = noise_var[:, : lay.uses].to(self.device).float()
        act = torch.ones(b, dtype=torch.bool) if active is None else active.detach().cpu().bool()
        idx = torch.nonzero(act).flatten().tolist()
        block_ok = torch.zeros(b, c, dtype=torch.bool)
        decoded = torch.zeros(b, c, dtype=torch.bool)
        payloads: list[bytes | None] = [None] * b
        if not idx:
            return LinkResult(payloads, block_ok, decoded)
        llr = self.llrs(s[idx], noise_var[idx])  # [n, C, N]
        n = len(idx)
        bits = torch.zeros(n, c, lay.k_cb - CRC_BITS)
        ok = torch.zeros(n, c, dtype=torch.bool)
        done = torch.zeros(n, c, dtype=torch.bool)
        alive = torch.arange(n)
        start = 0
        while start < c and alive.numel():
            # rounds of g blocks per image, about one decoder call per round (all blocks at once without
            # stop_on_failure); an image leaves after a failed block
            g = max(1, self.batch // alive.numel()) if self.stop_on_failure else c
            cols = torch.arange(start, min(c, start + g))
            ii = alive.repeat_interleave(cols.numel())
            jj = cols.repeat(alive.numel())
            u, v = self.decode_llrs(llr[ii, jj])
            bits[ii, jj] = u.detach().cpu()
            ok[ii, jj] = v.detach().cpu()
            done[ii, jj] = True
            alive = alive[ok[alive][:, cols].all(1)]
            start += cols.numel()
        bits_np = bits.reshape(n, -1).numpy().round().astype(np.uint8)
        for j, i in enumerate(idx):
            block_ok[i], decoded[i] = ok[j], done[j]
            if not bool(ok[j].all()):
                continue
            nb = bits_to_uint(bits_np[j, : lay.header_bits])
            if nb > lay.max_bytes:
                continue  # corrupt header (undetected error): treat as lost
            payloads[i] = bits_to_bytes(bits_np[j, lay.header_bits: lay.header_bits + 8 * nb])
        return LinkResult(payloads, block_ok, decoded)


def unbiased(s_hat: torch.Tensor, noise_var: torch.Tensor, gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Undo the equaliser's bias: :math:`\tilde s = \hat s / g`, :math:`\tilde\sigma^2 = \sigma^2 / g^2`.

    For ZF (:math:`g = 1`) nothing changes; for MMSE this gives :math:`y / h` and :math:`N_0 / |h|^2`, the
    observation the APP demapper expects (its constellation is not scaled by :math:`g`).
    """
    g = gain.clamp(min=1e-12)
    return s_hat / g, noise_var / (g * g)
