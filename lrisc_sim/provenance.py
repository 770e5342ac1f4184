"""Where a trained model came from: the commit and machine, for model cards (read-only git calls)."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git_commit(code: Sequence[str]) -> dict:
    """``{"commit": HEAD, "uncommitted_changes": [paths]}``: the files among ``code`` (paths relative to the
    repository, files or folders) that differ from HEAD or are not yet tracked. ``{"commit": None}`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *code], cwd=ROOT, capture_output=True,
                               text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}
    return {"commit": head or None, "uncommitted_changes": [line[3:] for line in dirty]}


def cpu_name() -> str:
    """The processor's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
