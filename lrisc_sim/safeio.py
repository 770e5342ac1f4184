"""Files read and written safely: atomic text writes, the output folder's run lock, checkpoint headers.

* :func:`atomic_write_text`: temp file + fsync + rename, so a kill never leaves a torn file (``config.json``).
* :func:`folder_lock`: an advisory ``fcntl.flock`` on ``FOLDER/.lock`` held for a whole run, so that a second
  process writing into the same output folder is refused. The kernel drops the lock when its process dies, so a
  lock left by a killed run never blocks a resume (the file stays; only the lock on it counts).
* :class:`DiskFull`: a full disk during a run, worded with the folder and the rows kept.
* :func:`safetensors_metadata`: the header of a ``.safetensors`` checkpoint; pickles (``torch.save`` files)
  are refused before anything parses them, and any unreadable file is a one-line :class:`CheckpointError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".lock"


class CheckpointError(ValueError):
    """A weights file that cannot be used, with a one-line message saying what to give instead."""


class FolderBusy(ValueError):
    """Another process holds the run lock of an output folder."""


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder, fsync'ed, then renamed over ``path``:
    readers see the old or the new content, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


_HELD: dict[str, list] = {}  # resolved folder -> [file object, depth]: the lock is re-entrant within a process


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive run lock of ``folder`` (created if missing) for the ``with`` block.

    Raises :class:`FolderBusy` at once (no waiting) when another process holds it; the message names that
    process. Nested use in one process is allowed."""
    import fcntl

    folder = Path(folder)
    key = str(folder.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield folder
        finally:
            _HELD[key][1] -= 1
        return
    path = folder / LOCK_NAME
    f = open(path, "a+")  # noqa: SIM115 - held open for the block
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise FolderBusy(f"{folder} is in use by another lrisc-sim run ({holder}); wait for it to finish, "
                             "or choose another output folder") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        _HELD[key] = [f, 1]
        try:
            yield folder
        finally:
            del _HELD[key]
    finally:
        f.close()  # closing the file releases the lock


HEAD_BYTES = 9  # what ``is_pickle`` needs to see


def is_pickle(head: bytes) -> bool:
    """True for the first ``HEAD_BYTES`` bytes of a pickle (protocol 2+) or of a ``torch.save`` zip archive.

    A ``.safetensors`` file starts with its header's length (8 bytes, little-endian) and then the JSON header's
    ``{``; its first byte is 0x80 whenever that length is 128 mod 256, so the ``{`` at offset 8 decides (such a
    file goes on to the safetensors parser, which never runs code)."""
    if len(head) >= 9 and head[8:9] == b"{":
        return False
    return head[:1] == b"\x80" or head[:2] == b"PK"


def safetensors_metadata(path: str | os.PathLike, what: str, fix: str) -> dict[str, str]:
    """The metadata of the ``.safetensors`` file ``path`` (header only). ``what`` names the expected file (e.g.
    'LRISC checkpoint'); ``fix`` ends the message. A pickle is refused without being parsed; a missing or
    corrupt file is a :class:`CheckpointError`."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except FileNotFoundError:
        raise CheckpointError(f"{what} {path} not found; {fix}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {what} {path} ({e.strerror}); {fix}") from None
    if is_pickle(head):
        raise CheckpointError(f"{path} is a pickle/torch.save file, which could run code and is never loaded; "
                              f"{fix}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for corrupt files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable {what} (not a .safetensors file: {reason}); {fix}") from None


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # no space left on device, disk quota exceeded


class DiskFull(ValueError):
    """The disk of an output folder filled up during a run: a one-line message naming the folder, how many rows
    are kept and how to resume."""

    def __init__(self, out: str | os.PathLike, rows: int):
        self.out = Path(out)
        self.rows = rows
        super().__init__(f"{out}: no space left on device; the {rows} rows so far are kept in "
                         f"{Path(out) / 'results.csv'}; free space and rerun the same command to resume")


def count_rows(path: str | os.PathLike) -> int:
    """Complete data lines of a CSV table (newline-terminated, non-blank, after the header); 0 if it is absent."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return 0
    lines = data.split(b"\n")[1:-1]  # the header, and what follows the last newline (a torn line), do not count
    return sum(1 for line in lines if line.strip())
