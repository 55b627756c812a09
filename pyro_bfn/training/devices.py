"""Where a run computes: the device and the autocast precision."""

from __future__ import annotations

import torch

from .config import ConfigError

__all__ = ["cpu_has_native_bf16", "resolve_autocast", "resolve_device"]


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU.

    :param str name: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:<index>"``.
    :raises ConfigError: if CUDA is requested but not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return device


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX units) and oneDNN uses it.

    oneDNN alone also reports bf16 support on AVX512 CPUs without those units, where it
    emulates bf16; there, and on CPUs without AVX512 (where bf16 convolutions fall back to
    generic kernels), bf16 is slower than float32 (``benchmarks/results/speed.md``), so
    ``autocast: auto`` picks bf16 only when this is true.
    """
    try:
        onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        native = bool(torch.cpu._is_avx512_bf16_supported()) or bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False
    return onednn and native


def resolve_autocast(name: str, device: torch.device) -> tuple:
    """The autocast dtype (or ``None``) and whether a gradient scaler is needed.

    ``"auto"`` is bf16 on a CUDA device that supports it (fp16 with a gradient scaler
    otherwise), bf16 on a CPU where :func:`cpu_has_native_bf16`, and no autocast on other
    CPUs.

    :param str name: ``"auto"``, ``"bf16"``, ``"fp16"`` or ``"none"``.
    :param torch.device device: the training device.
    :returns: ``(dtype or None, use_grad_scaler)``.
    :raises ConfigError: for ``"fp16"`` on a CPU.
    """
    if name == "none":
        return None, False
    if device.type == "cuda":
        if name == "bf16" or (name == "auto" and torch.cuda.is_bf16_supported()):
            return torch.bfloat16, False
        return torch.float16, True
    if name == "fp16":
        raise ConfigError("autocast fp16 is only supported on CUDA (it needs a gradient scaler); use bf16 or none on CPU")
    if name == "bf16" or cpu_has_native_bf16():
        return torch.bfloat16, False
    return None, False
