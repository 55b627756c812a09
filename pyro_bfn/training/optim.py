"""The optimisation of a run: the paper's recipe, shared by its three experiments (Graves et
al. 2023, section 7): AdamW and an exponential moving average (EMA) of the weights, the model
used for validation, testing and sampling; plus a linear learning-rate warm-up, which the paper
does not use (``warmup_steps: 0``, the default, turns it off)."""

from __future__ import annotations

import torch

__all__ = ["ema_decay", "make_optimizer", "make_warmup_scheduler", "update_ema"]


def make_optimizer(parameters, lr: float, betas=(0.9, 0.98), weight_decay: float = 0.01) -> torch.optim.AdamW:
    """AdamW over ``parameters``, with the fused implementation (one kernel for all parameters
    instead of a Python loop over them) where torch has it for the parameters' device, the
    plain one otherwise. Both run the same algorithm, up to floating-point rounding; their
    speeds are compared in ``benchmarks/results/speed.md``.

    :param parameters: an iterable of tensors.
    :param float lr: learning rate.
    :param betas: the two AdamW betas.
    :param float weight_decay: decoupled weight decay.
    """
    parameters = list(parameters)
    devices = {p.device.type for p in parameters}
    fused = len(devices) == 1 and devices <= {"cpu", "cuda"} and all(p.is_floating_point() for p in parameters)
    kwargs = dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    if fused:
        try:
            return torch.optim.AdamW(parameters, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):  # a torch without fused AdamW for this device
            pass
    return torch.optim.AdamW(parameters, **kwargs)


def make_warmup_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate times :math:`\\min(1, (k + 1) / w)` at update ``k`` (0-based) for
    ``w = warmup_steps``: a linear warm-up from ``lr / w`` to ``lr``; constant when ``w = 0``."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    )


def ema_decay(decay: float, updates: int) -> float:
    """The EMA decay used after ``updates`` updates: :math:`\\min(d, (1 + n) / (10 + n))`, so
    that the average of a short run is not dominated by the initial weights.

    :param float decay: the configured decay ``d``.
    :param int updates: ``n``, the number of updates so far (this one included).
    """
    return min(decay, (1 + updates) / (10 + updates))


@torch.no_grad()
def update_ema(ema_model: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """:math:`\\bar\\theta \\leftarrow d\\,\\bar\\theta + (1 - d)\\,\\theta` for every parameter
    of ``ema_model`` (in place); buffers are copied.

    :param ema_model: the average, with the same parameters and buffers as ``model``.
    :param model: the trained model.
    :param float decay: ``d``, see :func:`ema_decay`.
    """
    ema_parameters = list(ema_model.parameters())
    parameters = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(ema_parameters, parameters, 1.0 - decay)
    for ema_buffer, buffer in zip(ema_model.buffers(), model.buffers()):
        ema_buffer.copy_(buffer)
