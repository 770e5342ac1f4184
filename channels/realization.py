"""Common random numbers: per-image random streams seeded by (seed, image id, trial).

Every random quantity a channel draws (noise, fading gains, phases) comes from a generator that depends only on
the global seed, the image id, the trial index and a named stream, never on the batch size, the codec or the
device. Draws are sequential, so a codec that sends k symbols sees the first k entries of the same unit-variance
sequence as a codec that sends more: comparisons between codecs use identical channel realizations.
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Sequence

import numpy as np
import torch

STREAMS = {"noise": 0, "fading": 1, "phase": 2, "aux": 3}

SEED_MAX = 2**32 - 1  #: seeds are the integers 0 .. 2^32 - 1 (one 32-bit word of the SeedSequence)
SEED_RULE = f"must be an integer in 0..{SEED_MAX} (0..2^32-1)"


class SeedError(ValueError):
    """A seed outside 0 .. 2^32 - 1 (or not an integer); ``problem`` is the rule and the value, for front-ends
    that name the input their own way (``--seed``, a TOML key)."""

    def __init__(self, name: str, seed: object):
        self.seed = seed
        self.problem = f"{SEED_RULE}, got {seed!r}"
        super().__init__(f"{name} {seed!r}: {SEED_RULE}")


def check_seed(seed: object, name: str = "seed") -> int:
    """The one definition of a valid seed, used by every front-end (sweep configuration, ``send``/``transmit``,
    the CLI, the trainers): an integer (Python or numpy, not bool) in 0 .. 2^32 - 1, returned as ``int``.
    Anything else raises :class:`SeedError` (a ``ValueError``) naming ``name`` and the range: seeds are never
    reduced modulo 2^32, so two different seeds never give the same realizations.

    >>> check_seed(7)
    7
    >>> check_seed(-1)
    Traceback (most recent call last):
    ...
    channels.realization.SeedError: seed -1: must be an integer in 0..4294967295 (0..2^32-1)
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) <= SEED_MAX:
        raise SeedError(name, seed)
    return int(seed)


def image_key(image_id: str) -> tuple[int, int]:
    """Stable 64-bit key of an image id (split in two 32-bit words for SeedSequence)."""
    d = hashlib.blake2b(image_id.encode("utf-8"), digest_size=8).digest()
    v = int.from_bytes(d, "little")
    return v & 0xFFFFFFFF, v >> 32


def generator(seed: int, image_id: str, trial: int, stream: str) -> np.random.Generator:
    """The numpy generator of one (seed, image, trial, stream)."""
    lo, hi = image_key(image_id)
    ss = np.random.SeedSequence([check_seed(seed), lo, hi, int(trial), STREAMS[stream]])
    return np.random.Generator(np.random.PCG64(ss))


class Realization:
    """The random state of one trial for a batch of images.

    Parameters
    ----------
    seed : int, global seed of the sweep, 0 .. 2^32 - 1 (:func:`check_seed`; anything else is a ``SeedError``).
    image_ids : sequence of str, length B, one id per image of the batch.
    trial : int, Monte Carlo trial index.
    device : torch device the draws are returned on.

    ``cn(stream, n)`` returns a ``B x n`` complex64 tensor of i.i.d. CN(0, 1) draws; row b is the first n entries
    of the sequence of image b, whatever n and whatever the batch. ``uniform(stream, n)`` does the same with
    U(0, 1) (float32). Draws are cached, so asking for the same stream at several SNRs costs nothing.

    Example
    -------
    >>> r = Realization(0, ["kodim01", "kodim02"], trial=0)
    >>> r.cn("noise", 4).shape
    torch.Size([2, 4])
    """

    def __init__(self, seed: int, image_ids: Sequence[str], trial: int, device: str | torch.device = "cpu"):
        self.seed = check_seed(seed)
        self.image_ids = list(image_ids)
        self.trial = int(trial)
        self.device = torch.device(device)
        self._cache: dict[tuple, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.image_ids)

    def _draw(self, kind: str, stream: str, n: int) -> torch.Tensor:
        key = (kind, stream)
        have = self._cache.get(key)
        if have is not None and have.shape[1] >= n:
            return have[:, :n]
        rows = []
        for img in self.image_ids:
            g = generator(self.seed, img, self.trial, stream)
            if kind == "cn":
                # interleaved (re, im) pairs so that the prefix property holds for complex draws too
                v = g.standard_normal(2 * n, dtype=np.float32).reshape(n, 2) * np.float32(np.sqrt(0.5))
                rows.append(v[:, 0] + 1j * v[:, 1])
            else:
                rows.append(g.random(n, dtype=np.float32))
        arr = np.stack(rows).astype(np.complex64 if kind == "cn" else np.float32)
        t = torch.from_numpy(arr).to(self.device)
        self._cache[key] = t
        return t

    def cn(self, stream: str, n: int) -> torch.Tensor:
        """``B x n`` complex64 CN(0, 1) draws of a stream."""
        return self._draw("cn", stream, n)

    def uniform(self, stream: str, n: int) -> torch.Tensor:
        """``B x n`` float32 U(0, 1) draws of a stream."""
        return self._draw("u", stream, n)

    def memo(self, key: tuple, compute):
        """Cache a value derived from this realization (e.g. a channel's gains for k symbols)."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def subset(self, index: Sequence[int]) -> Realization:
        """The realization of a sub-batch (same per-image streams)."""
        return Realization(self.seed, [self.image_ids[i] for i in index], self.trial, self.device)
