"""A stand-in for libbpg 0.9.8's ``bpgenc``/``bpgdec`` that behaves like the real binaries where the simulator
depends on it (used by tests/test_bpg_real_path.py; never by the product).

* ``bpgenc [-f 444] [-q QP] [-m LEVEL] -o OUT IN.png``: like the reference encoder (x265 inside), it *crashes
  with SIGSEGV* on an image narrower or lower than 64 pixels; otherwise a real lossy encode: every sample is
  quantised with step ``QP + 1`` (QP 0 = lossless ... 51 = coarsest) and the indices are deflated (zlib level 9).
  File: ``b"FBPG"``, QP (1 byte), height and width (2 bytes each, big-endian), then the zlib stream.
* ``bpgdec -o OUT.png IN.bpg``: the inverse, reconstructing each index ``i`` as ``min(255, i * step + step // 2)``
  (``i * step`` for QP 0); exit status 1 on a file that is not such a stream.

The file format is documented here so that tests can compute the expected bytes by hand (:func:`expected_file`).
"""

from __future__ import annotations

import os
import signal
import sys
import zlib

import numpy as np

MIN_SIDE = 64
MAGIC = b"FBPG"


def expected_file(image: np.ndarray, q: int) -> bytes:
    """The bytes the stand-in writes for ``image`` (``H x W x 3`` uint8, at least 64 x 64) at QP ``q``."""
    step = q + 1
    h, w = image.shape[:2]
    idx = (image.astype(np.int32) // step).astype(np.uint8)
    return MAGIC + bytes([q]) + h.to_bytes(2, "big") + w.to_bytes(2, "big") + zlib.compress(idx.tobytes(), 9)


def decode_file(data: bytes) -> np.ndarray:
    """``H x W x 3`` uint8 of a stand-in file; ValueError when it is not one."""
    if data[:4] != MAGIC or len(data) < 9:
        raise ValueError("not a stand-in BPG file")
    q = data[4]
    h, w = int.from_bytes(data[5:7], "big"), int.from_bytes(data[7:9], "big")
    idx = np.frombuffer(zlib.decompress(data[9:]), np.uint8).reshape(h, w, 3).astype(np.int32)
    step = q + 1
    rec = idx * step + (step // 2 if q > 0 else 0)
    return np.minimum(rec, 255).astype(np.uint8)


def _opts(argv: list[str]) -> tuple[dict[str, str], str]:
    """``-X value`` pairs and the last (input) argument."""
    opts, i = {}, 0
    while i < len(argv) - 1:
        if argv[i].startswith("-"):
            opts[argv[i]] = argv[i + 1]
            i += 2
        else:
            i += 1
    return opts, argv[-1]


def bpgenc(argv: list[str]) -> int:
    from PIL import Image

    opts, src = _opts(argv)
    if opts.get("-f", "444") != "444":
        print("stand-in bpgenc supports -f 444 only", file=sys.stderr)
        return 1
    q = int(opts.get("-q", "28"))
    if not 0 <= q <= 51:
        print("qp must be between 0 and 51", file=sys.stderr)
        return 1
    with Image.open(src) as im:
        img = np.asarray(im.convert("RGB"))
    if img.shape[0] < MIN_SIDE or img.shape[1] < MIN_SIDE:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGSEGV)  # what x265 inside libbpg 0.9.8 does below 64 x 64
    with open(opts["-o"], "wb") as f:
        f.write(expected_file(img, q))
    return 0


def bpgdec(argv: list[str]) -> int:
    from PIL import Image

    opts, src = _opts(argv)
    with open(src, "rb") as f:
        data = f.read()
    try:
        img = decode_file(data)
    except (ValueError, zlib.error):
        print("could not decode image", file=sys.stderr)
        return 1
    Image.fromarray(img).save(opts["-o"])
    return 0


if __name__ == "__main__":
    tool = os.path.basename(sys.argv[0]) if len(sys.argv) < 2 or sys.argv[1] not in ("enc", "dec") else sys.argv[1]
    args = sys.argv[2:] if tool in ("enc", "dec") else sys.argv[1:]
    sys.exit(bpgenc(args) if tool in ("enc", "bpgenc") else bpgdec(args))
