"""Where results and trained models came from: version, commit, libraries, machine, time (read-only git calls)."""

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


# --- provenance of a results folder (config.json) and `lrisc-sim --version` ---------------------------------------

#: distributions whose versions a run records: (key in the record, distribution names to try in turn)
LIBRARIES = (("python", ()), ("torch", ("torch",)), ("numpy", ("numpy",)), ("sionna", ("sionna", "sionna-no-rt")),
             ("pandas", ("pandas",)))


def package_version() -> str:
    """The installed lrisc-sim version (``importlib.metadata``), else the package's ``__version__``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lrisc-sim")
    except PackageNotFoundError:
        from lrisc_sim import __version__

        return __version__


def library_versions() -> dict[str, str | None]:
    """``{"python": "3.11.9", "torch": ..., "numpy": ..., "sionna": ..., "pandas": ...}`` from the installed
    distributions' metadata (nothing is imported); None for one that is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for key, dists in LIBRARIES[1:]:
        out[key] = None
        for d in dists:
            try:
                out[key] = version(d)
                break
            except PackageNotFoundError:
                continue
    return out


def checkout() -> dict | None:
    """``{"commit": HEAD, "dirty": bool}`` when lrisc-sim runs from a git checkout (``dirty``: tracked files differ
    from HEAD), else None (an installed copy, or git missing)."""
    if not (ROOT / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": bool(dirty)} if head else None


def utc_now() -> str:
    """The current time, UTC, ISO 8601 to the second (``2026-12-03T14:05:09Z``)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_record(device: str) -> dict:
    """What a results folder records about the run that wrote it: lrisc-sim version, git commit (and whether the
    tree was dirty) or None, library versions, ``device`` (e.g. ``cpu``, ``cuda:0 (NVIDIA H200)``), CPU, host
    OS, ``start`` (UTC ISO) and ``end`` (None until the run finishes; ``finish_record`` sets it). Never part of
    a folder's identity (a resume on another machine or version adds a record, it is not refused)."""
    return {"lrisc_sim": package_version(), "git": checkout(), "libraries": library_versions(), "device": device,
            "cpu": cpu_name(), "platform": platform.platform(), "start": utc_now(), "end": None}


def version_line() -> str:
    """``lrisc-sim 0.1.0`` plus ``(git abc1234, uncommitted changes)`` when run from a checkout."""
    line = f"lrisc-sim {package_version()}"
    co = checkout()
    if co:
        line += f" (git {co['commit'][:12]}{', uncommitted changes' if co['dirty'] else ''})"
    return line
