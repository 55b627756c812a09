"""Where a benchmark result came from: the CPU model, its vector features and the git revision, recorded beside
every table in ``benchmarks/results/`` (shared by the benchmark scripts)."""

from __future__ import annotations

import json
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


#: The CPU features that decide which kernels torch can use for the backbone: bf16 autocast is
#: fast only with AVX512-BF16 or AMX (on an AVX2-only CPU it falls back to slow generic
#: convolutions), so a speed table means little without them.
_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_features() -> str:
    """The flags of :data:`_FEATURES` that ``/proc/cpuinfo`` lists, e.g. ``"avx2 avx512f"``, or
    ``"unknown"``."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return " ".join(f for f in _FEATURES if f in flags) or "none of " + ", ".join(_FEATURES)
    except OSError:
        pass
    return "unknown"


def demo_test_bound(checkpoint, step: int):
    """The test bound (nats/image) that ``make demo`` wrote to ``test_bound.json`` beside
    ``checkpoint``, if it was computed for the checkpoint's ``step``; else ``None``."""
    path = pathlib.Path(checkpoint).parent / "test_bound.json"
    try:
        bound = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return bound.get("nats") if bound.get("checkpoint_step") == step else None


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
