"""Source encodings of the slow coders kept on disk across runs, and computed in parallel over the images.

BPG and HEVC-intra encodings cost about 8 s per 768 x 512 Kodak image for the six budgets of the best-MCS
envelope (several QPs each, found by :func:`~baselines.digital.source.rate_match`). Two things make them cheap
after the first time:

* **Disk cache.** Every encoding of a coder whose key starts with ``bpg:`` or ``hevc:`` (the external and the
  x265 coders; JPEG2000 is fast and not cached) is stored as a plain bytes file::

      <cache_dir()>/encodings/<coder>-<hash of coder.key>/<image digest>/q<quality>.bin

  ``cache_dir()`` is :func:`lrisc_sim.data.cache_dir` (``$LRISC_SIM_CACHE`` or ``~/.cache/lrisc-sim``), the
  coder folder holds ``key.txt`` (the full key: coder, library versions, settings) and the image digest is the
  BLAKE2b hash of the pixels and shape (:func:`~baselines.digital.source.image_digest`). Files are written
  atomically (temporary file + rename), so concurrent runs can share the folder. ``LRISC_SIM_ENCODE_CACHE=0``
  turns the disk cache off.

  **Checked reads.** Beside each ``q<quality>.bin`` lies ``q<quality>.sum``: the BLAKE2b digest of the coder key,
  the image digest, the quality and the bytes (:func:`entry_digest`). An entry is used only when its bytes match
  it, so a file overwritten with garbage or with another entry's bytes (another quality, image or coder) is never
  trusted: it is encoded again, rewritten, and the first such entry of a process is named in a note on stderr.
  An entry without its ``.sum`` (written by an older version, or cut short) is recomputed without a note.
* **Parallel encoding.** :func:`prefetch` runs the rate matching of the images of a batch (and, for the
  envelope, of all its MCS budgets at once) in a pool of worker processes, one image per task, and fills the
  in-memory :data:`~baselines.digital.source.ENCODE_CACHE` with what the workers encoded; the rate matching that
  follows in the calling process then finds every encoding it needs. The pool has
  ``len(os.sched_getaffinity(0))`` workers (the cores this process may run on) unless
  ``LRISC_SIM_ENCODE_WORKERS`` says otherwise (1: no pool). Workers are started once (``spawn``, without
  re-running the caller's ``__main__``) and reused. Images below :data:`MIN_PIXELS` are encoded in the calling
  process. x265 itself runs a few threads per image, so the pool pays off with more cores than images need.

The encodings are deterministic, so neither the cache nor the parallelism changes any result.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: coder key prefixes whose encodings are cached on disk
DISK_CACHED = ("bpg:", "hevc:")
ENV_CACHE = "LRISC_SIM_ENCODE_CACHE"
ENV_WORKERS = "LRISC_SIM_ENCODE_WORKERS"

_POOL = None
_POOL_SIZE = 0
_ROOT: Path | None = None  # the cache folder, set in the workers (spares them importing torch for cache_dir)


# ---------------------------------------------------------------------------------------------------- disk cache
def slow(coder) -> bool:
    """Is ``coder`` one of the slow coders (BPG, HEVC) whose encodings are cached on disk and run in parallel?"""
    return str(getattr(coder, "key", "")).startswith(DISK_CACHED)


def enabled(coder) -> bool:
    """Are ``coder``'s encodings kept on disk?"""
    if os.environ.get(ENV_CACHE, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return slow(coder)


def root() -> Path:
    """``<cache_dir()>/encodings``."""
    if _ROOT is not None:
        return _ROOT
    from lrisc_sim.data import cache_dir

    return cache_dir() / "encodings"


def coder_dir(coder) -> Path:
    """The cache folder of ``coder`` (its settings hashed into the name, the full key in ``key.txt``)."""
    key = str(coder.key)
    kind = re.sub(r"[^a-z0-9]+", "-", key.split(":", 1)[0].lower()).strip("-") or "coder"
    return root() / f"{kind}-{hashlib.blake2b(key.encode(), digest_size=10).hexdigest()}"


def _path(coder, digest: str, q: int) -> Path:
    return coder_dir(coder) / digest / f"q{int(q)}.bin"


def entry_digest(key: str, digest: str, q: int, data: bytes) -> str:
    """Hex BLAKE2b (16 bytes) of a cache entry: coder ``key``, image ``digest``, quality ``q`` and the bytes
    ``data``, so that bytes moved from another entry do not match."""
    h = hashlib.blake2b(digest_size=16)
    for part in (str(key).encode(), str(digest).encode(), str(int(q)).encode()):
        h.update(len(part).to_bytes(8, "big") + part)
    h.update(bytes(data))
    return h.hexdigest()


_BAD_NOTED: list[Path] = []  # the first damaged entry of the process (one note on stderr)


def _note_bad(p: Path) -> None:
    if _BAD_NOTED:
        return
    _BAD_NOTED.append(p)
    print(f"lrisc-sim: note: encode cache entry {p} does not match its checksum (garbage, or the bytes of another "
          f"quality or image); it is encoded again and rewritten (further bad entries are replaced without a note; "
          f"to drop the cache delete {root()})", file=sys.stderr)


def load(coder, digest: str, q: int) -> bytes | None:
    """The cached encoding of the image ``digest`` at quality ``q``, or None when there is none or it fails its
    check against the ``.sum`` beside it (then a note on stderr, once per process; the caller encodes again and
    :func:`store` replaces the entry)."""
    if not enabled(coder):
        return None
    p = _path(coder, digest, q)
    try:
        data = p.read_bytes()
    except OSError:
        return None
    try:
        want = p.with_suffix(".sum").read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None  # no checksum (older version, or an interrupted write): recomputed silently
    if want != entry_digest(coder.key, digest, q, data):
        _note_bad(p)
        return None
    return data


def store(coder, digest: str, q: int, data: bytes) -> None:
    """Keep an encoding on disk with its checksum (each file atomically, bytes first; an unwritable cache folder
    is skipped silently)."""
    if not enabled(coder):
        return
    p = _path(coder, digest, q)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        key_file = p.parent.parent / "key.txt"
        if not key_file.exists():
            _write(key_file, (str(coder.key) + "\n").encode())
        _write(p, bytes(data))
        _write(p.with_suffix(".sum"), (entry_digest(coder.key, digest, q, data) + "\n").encode())
    except OSError:
        pass


def _write(p: Path, data: bytes) -> None:
    """Write ``p`` through a temporary file in its folder and a rename (readers never see a partial file);
    permissions follow the umask, as for any file the user creates."""
    tmp = p.parent / f".tmp-{os.getpid()}-{secrets.token_hex(6)}{p.suffix}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---------------------------------------------------------------------------------------------------- parallel
def encode_workers() -> int:
    """Worker processes for :func:`prefetch`: ``$LRISC_SIM_ENCODE_WORKERS`` or the cores this process may use."""
    v = os.environ.get(ENV_WORKERS, "").strip()
    if v:
        try:
            return max(1, int(v))
        except ValueError:
            raise ValueError(f"{ENV_WORKERS}={v!r}: give a number of worker processes (1: no pool)") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class _Miss(Exception):
    pass


class _CacheOnly:
    """A coder stand-in whose encoder refuses to run: :func:`rate_match` with it succeeds only from the caches."""

    def __init__(self, coder):
        self._coder = coder
        self.key = coder.key
        self.name = coder.name

    def qualities(self, max_bytes):
        return self._coder.qualities(max_bytes)

    def first_guess(self, max_bytes):
        return self._coder.first_guess(max_bytes)

    def encode_at(self, image, q):
        raise _Miss


def _needs_encoding(coder, image: np.ndarray, budgets: Sequence[int]) -> bool:
    from baselines.digital.source import rate_match

    try:
        for b in budgets:
            rate_match(_CacheOnly(coder), image, b)
    except _Miss:
        return True
    return False


def _job(coder, image: np.ndarray, budgets: Sequence[int], folder: Path, cache_on: bool
         ) -> tuple[str, dict[int, bytes]]:
    """Worker: rate-match one image for every budget; returns its digest and every encoding it has."""
    global _ROOT
    from baselines.digital.source import ENCODE_CACHE, image_digest, rate_match

    _ROOT = folder
    os.environ[ENV_CACHE] = "1" if cache_on else "0"
    digest = image_digest(image)
    for b in budgets:
        rate_match(coder, image, b)
    key = coder.key
    return digest, {k[2]: v for k, v in list(ENCODE_CACHE._d.items()) if k[0] == key and k[1] == digest}


@contextlib.contextmanager
def _main_hidden():
    """Start worker processes without ``spawn`` running the caller's ``__main__`` again in each of them (a
    script without an ``if __name__ == "__main__"`` guard would otherwise run whole in every worker): the
    workers need only this package."""
    main = sys.modules.get("__main__")
    saved = {a: getattr(main, a) for a in ("__spec__", "__file__") if main is not None and hasattr(main, a)}
    try:
        if main is not None:
            main.__spec__ = None
            if "__file__" in saved:
                del main.__file__
        yield
    finally:
        for a, v in saved.items():
            setattr(main, a, v)


def _pool(n: int):
    global _POOL, _POOL_SIZE
    if _POOL is None or _POOL_SIZE != n:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if _POOL is not None:
            _POOL.shutdown(wait=False, cancel_futures=True)
        _POOL = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"))
        _POOL_SIZE = n
    return _POOL


def shutdown() -> None:
    """Stop the worker processes (they are started again when needed)."""
    global _POOL, _POOL_SIZE
    if _POOL is not None:
        _POOL.shutdown(wait=True, cancel_futures=True)
    _POOL, _POOL_SIZE = None, 0


#: images smaller than this (pixels) are encoded in the calling process: the pool's overhead exceeds their time
MIN_PIXELS = 1 << 16


def prefetch(coder, images: Sequence[np.ndarray], budgets: Sequence[Sequence[int]], workers: int | None = None,
             min_pixels: int = MIN_PIXELS) -> int:
    """Compute, in parallel over the images, the encodings that ``rate_match(coder, images[i], b)`` needs for
    every budget ``b`` of ``budgets[i]``, and put them in the in-memory encode cache (slow coders only, see
    :func:`slow`).

    Images whose encodings are all cached already (memory or disk) are skipped; with fewer than two images
    left, one worker, or images of fewer than ``min_pixels`` pixels, nothing is done here (the caller's rate
    matching encodes them itself). Returns the number of images encoded by the pool.
    """
    from baselines.digital.source import ENCODE_CACHE

    n = encode_workers() if workers is None else max(1, int(workers))
    if n <= 1 or len(images) <= 1 or not slow(coder):
        return 0
    jobs = []
    for img, bs in zip(images, budgets):
        if img.shape[0] * img.shape[1] < min_pixels:
            continue
        bs = sorted({int(b) for b in bs if int(b) > 0})
        if bs and _needs_encoding(coder, img, bs):
            jobs.append((img, bs))
    if len(jobs) <= 1:
        return 0
    try:
        pool = _pool(n)  # workers start on demand, at most n
        with _main_hidden():  # workers are started on submit
            futures = [pool.submit(_job, coder, img, bs, root(), enabled(coder)) for img, bs in jobs]
        results = [f.result() for f in futures]
    except Exception:  # noqa: BLE001 - a coder that cannot be pickled or fails: the caller encodes inline
        return 0
    for digest, encs in results:
        for q, data in encs.items():
            ENCODE_CACHE.put((coder.key, digest, q), data)
    return len(jobs)
