"""Where a benchmark result came from: the CPU model and the git revision, recorded beside
every table in ``benchmarks/results/`` (shared by the benchmark scripts)."""

from __future__ import annotations

import pathlib
import platform
import subprocess

_REPOSITORY = pathlib.Path(__file__).resolve().parent


def cpu_model() -> str:
    """The ``model name`` of ``/proc/cpuinfo``, else :func:`platform.processor`, else ``"unknown"``."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_revision() -> str:
    """The short HEAD commit, with ``" (working tree modified)"`` when tracked files differ."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=_REPOSITORY, capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_REPOSITORY,
                               capture_output=True, text=True).stdout.strip()
        return head + (" (working tree modified)" if dirty else "")
    except OSError:
        return "unknown"
