"""A real entropy coder for LRISC's latents: rANS with 16-bit frequency tables from the eq. (2) models.

The rate term of training, -log2 p(z|y) - log2 p(y), is an ideal code length. ``encode_latent`` turns the
rounded latents into bytes that ``decode_latent`` reads back exactly, so a benchmark can report actual bits next
to the model's estimate (the difference is the cost of 16-bit tables, the escape symbol and 4 flush bytes per
stream):

* y (hyper-latent): y_hat = round(y), one table per channel from the factorized prior, values in [-64, 64];
* z (latent): symbols s = round(z - mu) (the mean-shifted rounding of ``quantize``), one table per element from
  N(0, sigma) convolved with U(-1/2, 1/2), values in [-32, 32]; mu and sigma come from h_d(y_hat), which the
  decoder recomputes from the decoded y_hat.

A value outside its range is sent as an escape symbol (probability: the tail mass, at least 1 / 2^16) followed
by its zigzag code in 16 raw bits. The coder is rANS with byte-wise renormalisation (state in [2^23, 2^31),
after F. Giesen's rans_byte); it runs in Python, about a second per Kodak image.

    >>> f = freq_table(np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    >>> data = rans_encode(np.array([0, 2]), f)
    >>> rans_decode(data, f).tolist()
    [0, 2]
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np
import torch

PRECISION = 16
TOTAL = 1 << PRECISION
RANS_L = 1 << 23
Z_RANGE = 32
Y_RANGE = 64
ESCAPE_BITS = 16


def freq_table(probs: np.ndarray) -> np.ndarray:
    """Integer frequencies (``n x K`` int64, each >= 1, rows summing to 2^16) approximating ``probs`` (``n x K``)."""
    p = np.asarray(probs, dtype=np.float64)
    p = np.clip(p, 0, None)
    p = p / np.maximum(p.sum(1, keepdims=True), 1e-300)
    n, k = p.shape
    if k > TOTAL:
        raise ValueError(f"{k} symbols do not fit {PRECISION}-bit frequencies")
    f = np.floor(p * (TOTAL - k)).astype(np.int64) + 1
    f[np.arange(n), p.argmax(1)] += TOTAL - f.sum(1)
    return f


def _zigzag(v: int) -> int:
    return 2 * v if v >= 0 else -2 * v - 1


def _unzigzag(u: int) -> int:
    return u // 2 if u % 2 == 0 else -(u + 1) // 2


def rans_encode(symbols: np.ndarray, freqs: np.ndarray, escapes: dict[int, int] | None = None) -> bytes:
    """rANS-code ``symbols`` (n ints, symbol i from row i of ``freqs``). ``escapes`` maps a position (whose symbol
    is the escape index) to the raw value (``|v| < 2^15``) sent after it in ``ESCAPE_BITS`` bits."""
    symbols = np.asarray(symbols, dtype=np.int64)
    n = symbols.shape[0]
    if n == 0:
        return b""
    rows = np.arange(n)
    fs = freqs[rows, symbols].tolist()
    st = (np.cumsum(freqs, 1) - freqs)[rows, symbols].tolist()
    ops: list[tuple[int, int]] = []  # (start, freq) in decoding order
    escapes = escapes or {}
    for i in range(n):
        ops.append((st[i], fs[i]))
        if i in escapes:
            u = _zigzag(int(escapes[i]))
            if u >= 1 << ESCAPE_BITS:
                raise ValueError(f"escaped value {escapes[i]} needs more than {ESCAPE_BITS} bits")
            ops.append((u, 1))  # uniform: frequency 1 of 2^16
    x = RANS_L
    out = bytearray()
    shift = (RANS_L >> PRECISION) << 8
    for s, f in reversed(ops):
        x_max = shift * f
        while x >= x_max:
            out.append(x & 0xFF)
            x >>= 8
        x = ((x // f) << PRECISION) + (x % f) + s
    out.extend(x.to_bytes(4, "little")[::-1])
    return bytes(out[::-1])


def rans_decode(data: bytes, freqs: np.ndarray, escape: int | None = None) -> np.ndarray:
    """Inverse of ``rans_encode``: n symbols (n = rows of ``freqs``). With ``escape`` (the escape index), a decoded
    escape is replaced by the raw value that follows it (as ``escape + 1 + value``, so callers can tell it apart:
    see ``decode_values``)."""
    n = freqs.shape[0]
    out = np.zeros(n, dtype=np.int64)
    if n == 0:
        return out
    cum = np.cumsum(freqs, 1)
    x = int.from_bytes(data[:4], "little")
    p = 4
    mask = TOTAL - 1
    for i in range(n):
        slot = x & mask
        row = cum[i].tolist()
        s = bisect_right(row, slot)
        lo = row[s - 1] if s else 0
        x = (row[s] - lo) * (x >> PRECISION) + slot - lo
        while x < RANS_L:
            x = (x << 8) | data[p]
            p += 1
        if escape is not None and s == escape:
            u = x & mask
            x >>= PRECISION  # frequency 1, start u: x = 1 * (x >> 16) + slot - u
            while x < RANS_L:
                x = (x << 8) | data[p]
                p += 1
            out[i] = escape + 1 + _unzigzag(u) + (1 << ESCAPE_BITS)  # marker: beyond every table index
            continue
        out[i] = s
    return out


def _encode_values(values: np.ndarray, probs: np.ndarray, rng: int) -> bytes:
    """Integer ``values`` (n) with tables ``probs`` (``n x (2 rng + 1)`` over -rng..rng); escape = last index."""
    tail = np.clip(1 - probs.sum(1, keepdims=True), 0, None)
    f = freq_table(np.concatenate([probs, np.maximum(tail, 1.0 / TOTAL)], 1))
    sym = values + rng
    out = (sym < 0) | (sym > 2 * rng)
    esc_index = 2 * rng + 1
    sym = np.where(out, esc_index, sym)
    return rans_encode(sym, f, {int(i): int(values[i]) for i in np.flatnonzero(out)})


def _decode_values(data: bytes, probs: np.ndarray, rng: int) -> np.ndarray:
    tail = np.clip(1 - probs.sum(1, keepdims=True), 0, None)
    f = freq_table(np.concatenate([probs, np.maximum(tail, 1.0 / TOTAL)], 1))
    esc_index = 2 * rng + 1
    sym = rans_decode(data, f, escape=esc_index)
    raw = sym > esc_index
    return np.where(raw, sym - esc_index - 1 - (1 << ESCAPE_BITS), sym - rng)


def _gaussian_probs(sigma: torch.Tensor, rng: int) -> np.ndarray:
    """``n x (2 rng + 1)``: mass of N(0, sigma) convolved with U(-1/2, 1/2) at -rng..rng (as ``GaussianConditional``)."""
    s = sigma.double().reshape(-1, 1)
    k = torch.arange(0, rng + 2, dtype=torch.float64)[None]
    edge = 0.5 * torch.erfc((k - 0.5) / (s * math.sqrt(2.0)))  # Phi((0.5 - k) / sigma), lower tail: accurate
    half = (edge[:, :-1] - edge[:, 1:]).clamp(min=0)  # mass at |v| = 0..rng
    return torch.cat([half.flip(1)[:, :-1], half], 1).numpy()


def _prior_probs(model, rng: int) -> np.ndarray:
    """``M x (2 rng + 1)``: the factorized prior's mass of each channel of y at -rng..rng."""
    m = model.prior_y.channels
    v = torch.arange(-rng, rng + 1, dtype=torch.float32)
    y = v.view(1, 1, -1, 1).expand(1, m, -1, 1).contiguous()
    with torch.no_grad():
        return model.prior_y.likelihood(y)[0, :, :, 0].double().clamp(min=0).numpy()


@dataclass
class LatentBitstream:
    """The coded latents of one image: ``y_bytes`` (hyper-latent), ``z_bytes`` (latent), the grid sizes."""

    y_bytes: bytes
    z_bytes: bytes
    y_shape: tuple[int, ...]
    z_shape: tuple[int, ...]

    @property
    def bits(self) -> int:
        return 8 * (len(self.y_bytes) + len(self.z_bytes))


@torch.no_grad()
def encode_latent(model, x: torch.Tensor) -> LatentBitstream:
    """Code the rounded latents of one image ``1 x 3 x H x W`` in [0, 1] (``model`` an ``LRISC``, on CPU)."""
    if x.shape[0] != 1:
        raise ValueError("encode_latent codes one image at a time")
    z = model.g_e(x)
    y_hat = torch.round(model.h_e(z))
    mu, sigma = model.h_d(y_hat, z.shape[-2:])
    s = torch.round(z - mu)
    m = y_hat.shape[1]
    yv = y_hat[0].reshape(m, -1).long().numpy()  # channel-major: one table per channel
    py = _prior_probs(model, Y_RANGE)
    y_probs = np.repeat(py, yv.shape[1], axis=0)
    y_bytes = _encode_values(yv.reshape(-1), y_probs, Y_RANGE)
    z_bytes = _encode_values(s.reshape(-1).long().numpy(), _gaussian_probs(sigma.clamp(min=model.cond_z.sigma_min),
                                                                         Z_RANGE), Z_RANGE)
    return LatentBitstream(y_bytes, z_bytes, tuple(y_hat.shape), tuple(z.shape))


@torch.no_grad()
def decode_latent(model, bs: LatentBitstream) -> torch.Tensor:
    """Inverse of ``encode_latent``: z_tilde ``1 x C x h x w`` = s + mu, with mu from h_d(decoded y_hat)."""
    m = bs.y_shape[1]
    per = int(np.prod(bs.y_shape[2:]))
    py = _prior_probs(model, Y_RANGE)
    yv = _decode_values(bs.y_bytes, np.repeat(py, per, axis=0), Y_RANGE)
    y_hat = torch.from_numpy(yv.reshape(m, *bs.y_shape[2:])).float()[None]
    mu, sigma = model.h_d(y_hat, bs.z_shape[-2:])
    s = _decode_values(bs.z_bytes, _gaussian_probs(sigma.clamp(min=model.cond_z.sigma_min), Z_RANGE), Z_RANGE)
    return torch.from_numpy(s.reshape(bs.z_shape)).float() + mu
