"""Source coders of the separation baseline and rate matching by bisection over their quality scale.

A :class:`SourceCoder` turns an ``H x W x 3`` uint8 image into bytes at a quality index and back:

* :class:`BPGCoder`: Fabrice Bellard's ``bpgenc``/``bpgdec`` binaries (found via option, environment variable
  ``LRISC_BPGENC``/``LRISC_BPGDEC`` or ``PATH``), 4:4:4 chroma (``-f 444``), quantiser ``-q`` 0-51. The reference
  ``bpgenc`` 0.9.8 (x265 inside) crashes on images below 64 x 64: such images are edge-padded to 64 x 64, the
  padded file is what is sent and counted, and the receiver crops the decoded image back to its known size.
* :class:`HEVCCoder`: HEVC-intra with x265 through pillow-heif, set up like bpgenc: 4:4:4 chroma, constant QP
  (``x265:qp``, the 0-51 scale of ``bpgenc -q``), psy-rd, psy-rdoq and adaptive quantisation off (libheif's
  defaults cost about 0.5 dB; its 4:2:0 path uses nearest-neighbour chroma). The default when ``bpgenc`` is
  absent. **Container accounting**: a HEIF file is the HEVC stream plus about 377 bytes of boxes (ftyp, meta
  with hvcC/ispe/colr/pixi/iloc, the mdat header). What is counted and transmitted is the *bare HEVC stream*:
  the VPS, SPS and PPS and the slice NAL units, each preceded by a 4-byte length (the size of an Annex-B start
  code), i.e. about 292 bytes less than the HEIF file. The receiver rebuilds the container around it from the
  image size, which it knows (as for every codec of the simulator), by encoding a flat template image of that
  size with the same settings (the boxes depend only on size and settings; :func:`split_heif`,
  :func:`join_heif`).
* :class:`JPEG2000Coder`: OpenJPEG through Pillow, raw codestream (no JP2 box), irreversible 9/7 wavelet,
  ``mct=1`` (Pillow's default costs 2.4 dB), rate mode (``quality_layers=[3HW / target_bytes]``).

:func:`rate_match` finds the highest quality whose bytes fit a budget (bisection; sizes are assumed to grow
with quality, which holds for these coders up to rare one-step exceptions) and caches encodings per image.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BPG_INSTALL_HINT = (
    "install libbpg (https://bellard.org/bpg/: build libbpg-0.9.8 with 'make' and put bpgenc and bpgdec on "
    "PATH; macOS: 'brew install libbpg'; no Debian/Ubuntu package exists), or give the paths with the codec "
    "options bpgenc=/bpgdec= or the environment variables LRISC_BPGENC/LRISC_BPGDEC, or use source=hevc "
    "(HEVC-intra through pillow-heif, the same codec core, used by default when bpgenc is absent)"
)


class MissingBinaryError(RuntimeError):
    """An external encoder/decoder binary is not installed."""


class CoderFailed(ValueError):
    """A configured external coder binary that does not work (non-zero exit, no output, cannot be run)."""


class SourceCoder(ABC):
    """An image coder with an integer quality scale.

    ``name`` labels results (``info['source_coder']``); ``key`` identifies the coder and its settings (cache).

    :input image: [H, W, 3] `np.uint8`.
    :output (``encode_at``): `bytes`, the coded image at quality ``q``.
    :output (``decode``): [H, W, 3] `np.uint8`, or None when the bytes cannot be decoded.
    """

    name: str = "source"
    key: str = "source"

    @abstractmethod
    def qualities(self, max_bytes: int) -> Sequence[int]:
        """Quality values to search for a budget of ``max_bytes``, lowest quality (smallest output) first."""

    def first_guess(self, max_bytes: int) -> int | None:
        """Index into ``qualities(max_bytes)`` to probe first (None: the middle)."""
        return None

    @abstractmethod
    def encode_at(self, image: np.ndarray, q: int) -> bytes:
        """Encode at quality value ``q``."""

    @abstractmethod
    def decode(self, data: bytes, size: tuple[int, int]) -> np.ndarray | None:
        """Decode ``data`` of an image of ``size`` = (H, W); None on failure."""

    def encode(self, image: np.ndarray, max_bytes: int) -> bytes | None:
        """The highest-quality encoding of at most ``max_bytes`` bytes, or None if none fits."""
        fit = rate_match(self, image, max_bytes)
        return None if fit is None else fit.data

    def describe(self) -> str:
        return self.name


# ---------------------------------------------------------------------------------------------------- caching
class _EncodeCache:
    """LRU cache (coder key, image digest, quality) -> bytes, bounded in total bytes."""

    def __init__(self, max_bytes: int = 256 << 20):
        self.max_bytes = max_bytes
        self._d: OrderedDict[tuple, bytes] = OrderedDict()
        self._size = 0

    def get(self, key: tuple) -> bytes | None:
        v = self._d.get(key)
        if v is not None:
            self._d.move_to_end(key)
        return v

    def put(self, key: tuple, v: bytes) -> None:
        if key in self._d:
            return
        self._d[key] = v
        self._size += len(v)
        while self._size > self.max_bytes and self._d:
            _, old = self._d.popitem(last=False)
            self._size -= len(old)

    def clear(self) -> None:
        self._d.clear()
        self._size = 0


ENCODE_CACHE = _EncodeCache()
_BPG_TESTED: set[tuple] = set()  # (bpgenc, bpgdec, level) pairs that passed BPGCoder.self_test


def image_digest(image: np.ndarray) -> str:
    data = np.ascontiguousarray(image).tobytes() + str(image.shape).encode()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass(frozen=True)
class RateMatch:
    """Result of :func:`rate_match`: the bytes, the quality value used and the number of encoder calls."""

    data: bytes
    quality: int
    encodes: int


def rate_match(coder: SourceCoder, image: np.ndarray, max_bytes: int) -> RateMatch | None:
    r"""Highest quality whose encoding fits ``max_bytes`` bytes, by bisection over ``coder.qualities``.

    Finds :math:`q^* = \max\{q : |\mathrm{enc}(x, q)| \le B\}` assuming sizes grow with quality; encodings
    are cached per (coder, image, quality), so the budgets of several MCS share encoder calls; those of BPG
    and HEVC also on disk, across runs (:mod:`baselines.digital.encode_cache`).

    :input coder: the :class:`SourceCoder`.
    :input image: [H, W, 3] `np.uint8`.
    :input max_bytes: the budget :math:`B` in bytes.
    :output: :class:`RateMatch` or None if even the lowest quality does not fit.

    .. rubric:: Examples

    >>> img = np.full((16, 16, 3), 128, np.uint8)
    >>> fit = rate_match(JPEG2000Coder(), img, 400)
    >>> len(fit.data) <= 400
    True
    """
    if max_bytes <= 0:
        return None
    qs = coder.qualities(max_bytes)
    if len(qs) == 0:
        return None
    from baselines.digital import encode_cache

    digest = image_digest(image)
    calls = 0

    def size_of(i: int) -> bytes:
        nonlocal calls
        key = (coder.key, digest, qs[i])
        d = ENCODE_CACHE.get(key)
        if d is None:
            d = encode_cache.load(coder, digest, qs[i])  # BPG/HEVC: kept on disk across runs
            if d is None:
                d = coder.encode_at(image, qs[i])
                calls += 1
                encode_cache.store(coder, digest, qs[i], d)
            ENCODE_CACHE.put(key, d)
        return d

    lo, hi = 0, len(qs) - 1  # invariant: the answer, if any, lies in [lo, hi]
    best: int | None = None
    g = coder.first_guess(max_bytes)
    if g is not None and lo <= g <= hi:
        if len(size_of(g)) <= max_bytes:
            best, lo = g, g + 1
        else:
            hi = g - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if len(size_of(mid)) <= max_bytes:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    if best is None:
        return None
    return RateMatch(size_of(best), int(qs[best]), calls)


# ---------------------------------------------------------------------------------------------------- BPG
def find_binary(name: str, explicit: str | None, env: str) -> str | None:
    """Path of an executable: the explicit option, else the environment variable ``env``, else ``PATH``."""
    for cand in (explicit, os.environ.get(env)):
        if cand:
            p = shutil.which(cand) or (cand if os.path.isfile(cand) and os.access(cand, os.X_OK) else None)
            if p is None:
                raise MissingBinaryError(f"{name} given as '{cand}' is not an executable file; " + BPG_INSTALL_HINT)
            return p
    return shutil.which(name)


#: the smallest width and height the reference ``bpgenc`` 0.9.8 (x265 inside) encodes: it crashes with SIGSEGV
#: below 64 x 64 (one x265 CTU); smaller images are padded to this size (:meth:`BPGCoder.encode_at`)
BPG_MIN_SIDE = 64


def pad_to_min(image: np.ndarray, min_side: int) -> np.ndarray:
    """``H x W x 3`` uint8 padded at the bottom and right, by repeating the last row and column (edge padding),
    to at least ``min_side`` x ``min_side``; unchanged if both sides are large enough.

    >>> pad_to_min(np.arange(6, dtype=np.uint8).reshape(1, 2, 3), 3)[:, :, 0].tolist()
    [[0, 3, 3], [0, 3, 3], [0, 3, 3]]
    """
    h, w = image.shape[:2]
    ph, pw = max(0, min_side - h), max(0, min_side - w)
    if ph == 0 and pw == 0:
        return image
    return np.ascontiguousarray(np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge"))


def _exit_text(code: int) -> str:
    """``exit status N``, or ``killed by SIGNAME (a crash)`` for a negative status (a signal, as Python reports
    it) or a shell's 128 + signal convention for SIGSEGV/SIGABRT/SIGBUS."""
    import signal

    sig = -code if code < 0 else (code - 128 if code in (134, 135, 139) else 0)
    if sig:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"exit status {code}: killed by {name}, a crash"
    return f"exit status {code}"


class BPGCoder(SourceCoder):
    """BPG through the external ``bpgenc``/``bpgdec`` binaries, 4:4:4 chroma, ``-q`` 0 (best) to 51.

    :param bpgenc: path of ``bpgenc`` (default: ``$LRISC_BPGENC`` or ``PATH``).
    :param bpgdec: path of ``bpgdec`` (default: ``$LRISC_BPGDEC`` or ``PATH``).
    :param level: ``bpgenc -m`` compression level 1-9 (default 8, bpgenc's default).
    :param timeout: seconds allowed per binary call.
    :param min_side: images narrower or lower than this are edge-padded to it before encoding (default
        :data:`BPG_MIN_SIDE` = 64, below which the reference ``bpgenc`` crashes); 1 turns padding off.

    Raises :class:`MissingBinaryError` with installation hints when a binary is missing. The bytes counted
    are the whole ``.bpg`` file (its header is a few bytes); for a padded image, the file of the *padded* image,
    which is what is sent (the receiver decodes it and crops the known size ``H x W``).
    """

    def __init__(self, bpgenc: str | None = None, bpgdec: str | None = None, level: int = 8, timeout: float = 120,
                 min_side: int = BPG_MIN_SIDE):
        self.bpgenc = find_binary("bpgenc", bpgenc, "LRISC_BPGENC")
        self.bpgdec = find_binary("bpgdec", bpgdec, "LRISC_BPGDEC")
        missing = [n for n, p in (("bpgenc", self.bpgenc), ("bpgdec", self.bpgdec)) if p is None]
        if missing:
            raise MissingBinaryError(f"{' and '.join(missing)} not found on PATH; " + BPG_INSTALL_HINT)
        if not 1 <= int(level) <= 9:
            raise ValueError("bpgenc compression level must be in 1..9")
        if int(min_side) < 1:
            raise ValueError("BPGCoder min_side must be >= 1")
        self.level = int(level)
        self.timeout = timeout
        self.min_side = int(min_side)
        self.name = "bpg"
        self.key = f"bpg:{self.bpgenc}:444:m{self.level}" + (f":pad{self.min_side}" if self.min_side > 1 else "")
        self.self_test()

    def describe(self) -> str:
        if self.min_side <= 1:
            return self.name
        return (f"{self.name} (images below {self.min_side}x{self.min_side} edge-padded to it, padded file's bytes "
                "counted)")

    def qualities(self, max_bytes: int) -> Sequence[int]:
        return range(51, -1, -1)

    def _run(self, args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(args, capture_output=True, timeout=self.timeout, check=False)

    def _call(self, args: list[str], dst: str, what: str) -> None:
        """Run a binary that must write ``dst``; :class:`CoderFailed` naming it and its exit status otherwise."""
        try:
            r = self._run(args)
        except subprocess.TimeoutExpired:
            raise CoderFailed(f"{args[0]} did not finish {what} within {self.timeout:g} s; check that binary or "
                              "unset LRISC_BPGENC/LRISC_BPGDEC to use HEVC-intra through pillow-heif") from None
        except OSError as e:
            raise CoderFailed(f"{args[0]} cannot be run ({e.strerror or e}); check that binary or unset "
                              "LRISC_BPGENC/LRISC_BPGDEC to use HEVC-intra through pillow-heif") from None
        if r.returncode != 0 or not os.path.exists(dst):
            msg = " ".join((r.stderr or r.stdout or b"").decode(errors="replace").split())[-300:]
            status = _exit_text(r.returncode) if r.returncode != 0 else "exit status 0 but no output file"
            raise CoderFailed(f"{args[0]} failed {what} ({status}; it said: {msg or 'nothing'}); check that "
                              "binary or unset LRISC_BPGENC/LRISC_BPGDEC to use HEVC-intra through pillow-heif")

    def self_test(self) -> None:
        """Encode and decode a test image once per process and binary pair, so that a configured binary that
        does not work is an error before a sweep starts (never a silent loss of every image). The image is
        :data:`BPG_MIN_SIDE` x :data:`BPG_MIN_SIDE` (a gradient), the smallest the reference ``bpgenc`` takes."""
        key = (self.bpgenc, self.bpgdec, self.level, self.min_side)
        if key in _BPG_TESTED:
            return
        from PIL import Image

        n = BPG_MIN_SIDE
        ramp = np.linspace(0, 255, n).round().astype(np.uint8)
        img = np.ascontiguousarray(np.stack([np.tile(ramp[None, :], (n, 1)), np.tile(ramp[:, None], (1, n)),
                                             np.full((n, n), 128, np.uint8)], axis=2))
        data = self._encode_file(img, 30)
        with tempfile.TemporaryDirectory(prefix="lrisc-bpg-") as d:
            src, dst = os.path.join(d, "in.bpg"), os.path.join(d, "out.png")
            with open(src, "wb") as f:
                f.write(data)
            self._call([self.bpgdec, "-o", dst, src], dst, f"decoding a {n}x{n} test image")
            try:
                with Image.open(dst) as im:
                    shape = np.asarray(im.convert("RGB")).shape
            except Exception:  # noqa: BLE001 - any unreadable output
                shape = None
        if shape != (n, n, 3):
            raise CoderFailed(f"{self.bpgdec} wrote no {n}x{n} image when decoding a test image of {self.bpgenc}; "
                              "check those binaries or unset LRISC_BPGENC/LRISC_BPGDEC")
        _BPG_TESTED.add(key)

    def _encode_file(self, image: np.ndarray, q: int) -> bytes:
        """The ``.bpg`` file of ``image`` (as given, no padding) at ``-q q``."""
        from PIL import Image

        with tempfile.TemporaryDirectory(prefix="lrisc-bpg-") as d:
            src, dst = os.path.join(d, "in.png"), os.path.join(d, "out.bpg")
            Image.fromarray(np.ascontiguousarray(image)).save(src)
            h, w = image.shape[:2]
            self._call([self.bpgenc, "-f", "444", "-q", str(int(q)), "-m", str(self.level), "-o", dst, src], dst,
                       f"encoding a {w}x{h} image at -q {int(q)}")
            with open(dst, "rb") as f:
                return f.read()

    def encode_at(self, image: np.ndarray, q: int) -> bytes:
        """The ``.bpg`` file at ``-q q`` of ``image`` edge-padded to ``min_side`` x ``min_side`` where smaller
        (:func:`pad_to_min`): these are the bytes sent and counted."""
        return self._encode_file(pad_to_min(image, self.min_side), q)

    def decode(self, data: bytes, size: tuple[int, int]) -> np.ndarray | None:
        """``H x W x 3`` uint8 of ``size`` = (H, W): the decoded file, cropped from the padded size where the
        image was padded; None when it cannot be decoded or has another size."""
        from PIL import Image

        with tempfile.TemporaryDirectory(prefix="lrisc-bpg-") as d:
            src, dst = os.path.join(d, "in.bpg"), os.path.join(d, "out.png")
            with open(src, "wb") as f:
                f.write(data)
            try:
                r = self._run([self.bpgdec, "-o", dst, src])
            except subprocess.TimeoutExpired:
                return None
            if r.returncode != 0 or not os.path.exists(dst):
                return None
            try:
                out = np.asarray(Image.open(dst).convert("RGB"))
            except Exception:  # noqa: BLE001 - any unreadable output is a failed decode
                return None
        h, w = (int(v) for v in size)
        sent = (max(h, self.min_side), max(w, self.min_side))
        if out.shape[:2] != sent:
            return None
        return np.ascontiguousarray(out[:h, :w])


# ---------------------------------------------------------------------------------------------------- HEVC (HEIF)
def _boxes(buf: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, offset, size) of the ISO-BMFF boxes in ``buf[start:end]``."""
    out = []
    off = start
    while off + 8 <= end:
        size, typ = struct.unpack(">I4s", buf[off: off + 8])
        if size < 8 or off + size > end:
            raise ValueError("malformed HEIF box")
        out.append((typ, off, size))
        off += size
    return out


_CONTAINERS = {b"meta": 12, b"iprp": 8, b"ipco": 8}  # header bytes before children (meta is a FullBox)


def _replace_box(buf: bytes, path: Sequence[bytes], payload: bytes, start: int = 0, end: int | None = None) -> bytes:
    """``buf[start:end]`` with the box at ``path`` given the new ``payload`` (box sizes along the path fixed)."""
    end = len(buf) if end is None else end
    out = b""
    for typ, off, size in _boxes(buf, start, end):
        if typ != path[0]:
            out += buf[off: off + size]
        elif len(path) == 1:
            out += struct.pack(">I4s", 8 + len(payload), typ) + payload
        else:
            h = _CONTAINERS[typ]
            inner = _replace_box(buf, path[1:], payload, off + h, off + size)
            out += struct.pack(">I4s", h + len(inner), typ) + buf[off + 8: off + h] + inner
    return out


def _find(buf: bytes, path: Sequence[bytes]) -> tuple[int, int]:
    """(offset, size) of the box at ``path``."""
    start, end = 0, len(buf)
    for i, name in enumerate(path):
        hit = [b for b in _boxes(buf, start, end) if b[0] == name]
        if not hit:
            raise ValueError(f"HEIF box {b'/'.join(path[: i + 1]).decode()} not found")
        _, off, size = hit[0]
        if i == len(path) - 1:
            return off, size
        start, end = off + _CONTAINERS[name], off + size
    raise AssertionError


_HVCC = (b"meta", b"iprp", b"ipco", b"hvcC")
_PARAM_SETS = (32, 33, 34)  # VPS, SPS, PPS NAL unit types


def _nal_type(nal: bytes) -> int:
    return (nal[0] >> 1) & 0x3F


def _split_nals(data: bytes) -> list[bytes]:
    """NAL units of a 4-byte-length-prefixed stream."""
    nals, off = [], 0
    while off < len(data):
        if off + 4 > len(data):
            raise ValueError("truncated NAL length")
        (n,) = struct.unpack(">I", data[off: off + 4])
        if n == 0 or off + 4 + n > len(data):
            raise ValueError("bad NAL length")
        nals.append(data[off + 4: off + 4 + n])
        off += 4 + n
    return nals


def _prefixed(nals: Sequence[bytes]) -> bytes:
    return b"".join(struct.pack(">I", len(n)) + n for n in nals)


def split_heif(heif: bytes) -> bytes:
    """A single-image HEIF file -> bare HEVC stream: VPS, SPS, PPS (from hvcC) then the slice NAL units of
    the mdat box, each with a 4-byte big-endian length."""
    off, size = _find(heif, _HVCC)
    rec = heif[off + 8: off + size]
    if rec[21] & 3 != 3:
        raise ValueError("HEIF hvcC must use 4-byte NAL lengths")
    n_arrays, p = rec[22], 23
    params = []
    for _ in range(n_arrays):
        (cnt,) = struct.unpack(">H", rec[p + 1: p + 3])
        p += 3
        for _ in range(cnt):
            (n,) = struct.unpack(">H", rec[p: p + 2])
            params.append(rec[p + 2: p + 2 + n])
            p += 2 + n
    moff, msize = _find(heif, (b"mdat",))
    return _prefixed(params) + heif[moff + 8: moff + msize]


def _iloc_patch(buf: bytes, data_offset: int, data_length: int) -> bytes:
    """Set the single extent of the single item of the iloc box to (offset, length)."""
    off, size = _find(buf, (b"meta", b"iloc"))
    b = bytearray(buf)
    p = off + 8
    version = b[p]
    p += 4
    offset_size, length_size = b[p] >> 4, b[p] & 15
    base_size = b[p + 1] >> 4
    index_size = (b[p + 1] & 15) if version in (1, 2) else 0
    p += 2
    if version < 2:
        (count,) = struct.unpack(">H", b[p: p + 2])
        p += 2
    else:
        (count,) = struct.unpack(">I", b[p: p + 4])
        p += 4
    if count != 1:
        raise ValueError("HEIF template must hold one item")
    p += 2 if version < 2 else 4  # item_ID
    if version in (1, 2):
        p += 2  # construction_method
    p += 2  # data_reference_index
    base = int.from_bytes(b[p: p + base_size], "big") if base_size else 0
    p += base_size
    (extents,) = struct.unpack(">H", b[p: p + 2])
    p += 2
    if extents != 1:
        raise ValueError("HEIF template must hold one extent")
    p += index_size
    b[p: p + offset_size] = (data_offset - base).to_bytes(offset_size, "big")
    p += offset_size
    b[p: p + length_size] = data_length.to_bytes(length_size, "big")
    return bytes(b)


def join_heif(stream: bytes, template: bytes) -> bytes:
    """Inverse of :func:`split_heif`: the bare stream inside the boxes of ``template`` (a HEIF file of the
    same size and settings): hvcC gets the received parameter sets, mdat the slice NAL units."""
    nals = _split_nals(stream)
    params = [n for n in nals if _nal_type(n) in _PARAM_SETS]
    slices = [n for n in nals if _nal_type(n) not in _PARAM_SETS]
    off, size = _find(template, _HVCC)
    rec = template[off + 8: off + size]
    flags = rec[23] & 0xC0 if len(rec) > 23 else 0  # array_completeness / reserved bits as the encoder writes them
    arrays = b""
    for t in _PARAM_SETS:
        group = [n for n in params if _nal_type(n) == t]
        if group:
            arrays += bytes([flags | t]) + struct.pack(">H", len(group))
            arrays += b"".join(struct.pack(">H", len(n)) + n for n in group)
    n_arrays = sum(1 for t in _PARAM_SETS if any(_nal_type(n) == t for n in params))
    head = _replace_box(template, _HVCC, rec[:22] + bytes([n_arrays]) + arrays)
    moff, _ = _find(head, (b"mdat",))
    head = head[:moff]
    body = _prefixed(slices)
    head = _iloc_patch(head, len(head) + 8, len(body))
    return head + struct.pack(">I4s", 8 + len(body), b"mdat") + body


class HEVCCoder(SourceCoder):
    """HEVC-intra (x265) through pillow-heif, configured like ``bpgenc -f 444 -q QP``.

    :param preset: x265 preset (default ``"slow"``, libheif's; bpgenc's default ``-m 8`` is ``"veryslow"``).
    :param params: extra x265 parameters (``{"x265:NAME": "VALUE"}``).

    Quality scale: QP 51 (worst) .. 0; bytes counted = the bare HEVC stream (see the module docstring).
    """

    def __init__(self, preset: str = "slow", params: dict[str, str] | None = None):
        import pillow_heif

        self.preset = preset
        self.params = {"x265:psy-rd": "0", "x265:psy-rdoq": "0", "x265:aq-mode": "0", "preset": preset,
                       **(params or {})}
        lib = pillow_heif.libheif_info()
        enc = lib.get("HEIF", "") or "x265"
        self.name = "hevc-intra (x265 via pillow-heif)"
        settings = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        self.key = f"hevc:{lib.get('libheif')}:{enc}:444:{settings}"
        self._templates: dict[tuple[int, int], bytes] = {}

    def qualities(self, max_bytes: int) -> Sequence[int]:
        return range(51, -1, -1)

    def heif_at(self, image: np.ndarray, q: int) -> bytes:
        """The full HEIF file at QP ``q`` (container included)."""
        import pillow_heif

        h, w = image.shape[:2]
        hf = pillow_heif.from_bytes(mode="RGB", size=(w, h), data=np.ascontiguousarray(image).tobytes())
        buf = io.BytesIO()
        hf.save(buf, chroma=444, enc_params={**self.params, "x265:qp": str(int(q))})
        return buf.getvalue()

    def encode_at(self, image: np.ndarray, q: int) -> bytes:
        return split_heif(self.heif_at(image, q))

    def template(self, size: tuple[int, int]) -> bytes:
        if size not in self._templates:
            self._templates[size] = self.heif_at(np.full((*size, 3), 128, np.uint8), 51)
        return self._templates[size]

    def decode(self, data: bytes, size: tuple[int, int]) -> np.ndarray | None:
        import pillow_heif

        try:
            heif = join_heif(data, self.template(tuple(size)))
            hf = pillow_heif.open_heif(io.BytesIO(heif), convert_hdr_to_8bit=True)
            out = np.asarray(hf.to_pillow().convert("RGB"))
        except Exception:  # noqa: BLE001 - any failure to parse or decode is a lost image
            return None
        return out if out.shape[:2] == tuple(size) else None


# ---------------------------------------------------------------------------------------------------- JPEG2000
class JPEG2000Coder(SourceCoder):
    """JPEG2000 (OpenJPEG through Pillow): raw codestream, 9/7 irreversible wavelet, ``mct=1``, rate mode.

    Quality scale: the target size in bytes (``quality_layers=[3HW / target]``); OpenJPEG lands close to the
    target, and :func:`rate_match` searches targets up to 5 % above the budget for the largest that fits.
    """

    name = "jpeg2000 (openjpeg via pillow)"

    def __init__(self):
        from PIL import features

        self.key = f"j2k:{features.version('jpg_2000')}:mct1:irr"

    def qualities(self, max_bytes: int) -> Sequence[int]:
        return range(16, max_bytes + max_bytes // 20 + 64)

    def first_guess(self, max_bytes: int) -> int | None:
        return max_bytes - 16

    def encode_at(self, image: np.ndarray, q: int) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image)).save(
            buf, format="JPEG2000", no_jp2=True, irreversible=True, mct=1, quality_mode="rates",
            quality_layers=[image.size / float(q)])
        return buf.getvalue()

    def decode(self, data: bytes, size: tuple[int, int]) -> np.ndarray | None:
        from PIL import Image

        try:
            im = Image.open(io.BytesIO(data))
            im.load()
            out = np.asarray(im.convert("RGB"))
        except Exception:  # noqa: BLE001
            return None
        return out if out.shape[:2] == tuple(size) else None


# ---------------------------------------------------------------------------------------------------- selection
_FALLBACK_NOTED: list[str] = []  # the HEVC fallback is announced once per process


def make_source_coder(kind: str = "auto", *, bpgenc: str | None = None, bpgdec: str | None = None,
                      hevc_preset: str = "slow", bpg_level: int = 8) -> SourceCoder:
    """``bpg`` (binaries, error if missing), ``hevc`` (pillow-heif), ``auto`` or ``jpeg2000``.

    ``auto``: BPG when its binaries are configured (options ``bpgenc``/``bpgdec``, ``$LRISC_BPGENC``/
    ``$LRISC_BPGDEC``: then a missing or failing binary is an error, never replaced) or found on PATH; HEVC-intra
    only when nothing is configured and nothing is on PATH, announced once on stderr."""
    if kind == "auto":
        configured = [v for v in (bpgenc, bpgdec, os.environ.get("LRISC_BPGENC"), os.environ.get("LRISC_BPGDEC"))
                      if v]
        if configured:
            try:
                return BPGCoder(bpgenc, bpgdec, level=bpg_level)
            except MissingBinaryError as e:
                names = [n for n, v in (("bpgenc=", bpgenc), ("bpgdec=", bpgdec), ("LRISC_BPGENC", os.environ.get(
                    "LRISC_BPGENC")), ("LRISC_BPGDEC", os.environ.get("LRISC_BPGDEC"))) if v]
                raise MissingBinaryError(f"BPG is configured ({', '.join(names)}) but {str(e).split(';')[0]}; give "
                                         "both bpgenc and bpgdec as working binaries, or unset them to use "
                                         "HEVC-intra through pillow-heif") from None
        try:
            return BPGCoder(bpgenc, bpgdec, level=bpg_level)
        except MissingBinaryError as e:
            coder = HEVCCoder(preset=hevc_preset)
            if not _FALLBACK_NOTED:
                import sys

                _FALLBACK_NOTED.append(str(e))
                missing = str(e).split(";")[0]
                print(f"lrisc-sim: note: {missing}: the digital codecs use HEVC-intra through pillow-heif (the same "
                      "codec core; rows say so in info.source_coder); install libbpg or set LRISC_BPGENC/"
                      "LRISC_BPGDEC to use BPG", file=sys.stderr)
            return coder
    if kind == "bpg":
        return BPGCoder(bpgenc, bpgdec, level=bpg_level)
    if kind == "hevc":
        return HEVCCoder(preset=hevc_preset)
    if kind in ("jpeg2000", "j2k"):
        return JPEG2000Coder()
    raise ValueError(f"unknown source coder '{kind}': use auto, bpg, hevc or jpeg2000")
