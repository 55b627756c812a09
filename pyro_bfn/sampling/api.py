"""What :meth:`BFN.sample <pyro_bfn.bfn.BFN.sample>` does with its arguments: check them, wrap the
BFN in the views that guidance asks for (:class:`~pyro_bfn.sampling.guidance.ClassifierFreeGuidance`,
:class:`~pyro_bfn.sampling.gradient_guidance.GradientGuidance`), choose replacement or SMC
inpainting (:mod:`pyro_bfn.sampling.conditioning`), and run the registered sampler under
``torch.inference_mode`` with the caller's generator. The arguments are documented on
:meth:`BFN.sample <pyro_bfn.bfn.BFN.sample>`.
"""

from __future__ import annotations

import contextlib

import torch

from ..checks import check_finite_number, check_integer
from .conditioning import Replacement, check_known, smc_inpaint
from .gradient_guidance import GradientGuidance
from .grid import TimeGrid
from .guidance import ClassifierFreeGuidance
from .registry import get_sampler
from .temperature import check_temperature

__all__ = ["random_numbers_from", "sample", "sampling_context"]


def sample(
    bfn, num_samples: int, n_steps: int, mode: bool = False, device=None, progress=None, context=None,
    sampler: str = "ancestral", *, final: str | None = None, guidance_scale: float | None = None, log_score=None,
    log_score_scale: float = 1.0, generator: torch.Generator | None = None, callback=None, known=None, mask=None,
    num_particles: int | None = None, temperature: float = 1.0,
) -> torch.Tensor:
    """:meth:`BFN.sample <pyro_bfn.bfn.BFN.sample>` of ``bfn`` (the same arguments)."""
    check_integer("num_samples", num_samples)
    grid = TimeGrid(n_steps)
    run_sampler = get_sampler(sampler)
    mode = _final_is_mode(final, mode)
    temperature = check_temperature(temperature)
    if device is None:
        device = next(bfn.parameters()).device
    device = torch.device(device)
    context = sampling_context(bfn, context, num_samples, device)
    model = bfn
    if guidance_scale is not None:
        model = _guided(bfn, guidance_scale, context)
    if log_score is not None:
        model = GradientGuidance(model, log_score, log_score_scale)
    options = {} if callback is None else {"callback": callback}
    if temperature != 1:  # passed only when it tempers, so the T = 1 path is the untempered one
        options["temperature"] = temperature
    replacement = None
    if known is not None or mask is not None:
        known, mask = check_known(bfn, known, mask, num_samples, device)
        if num_particles is not None:
            if sampler != "ancestral":
                raise ValueError(f"SMC inpainting (num_particles) runs ancestral steps, got sampler={sampler!r}")
            with torch.inference_mode(), random_numbers_from(generator, device):
                result = smc_inpaint(model, known, mask, n_steps, num_particles=num_particles, context=context,
                                     mode=mode, device=device, progress=progress, temperature=temperature)
            return result.samples.clone()
        replacement = options["condition"] = Replacement(bfn, known, mask)
    elif num_particles is not None:
        raise ValueError("num_particles is for SMC inpainting: give known and mask too")
    with torch.inference_mode(), random_numbers_from(generator, device):
        result = run_sampler(model, num_samples, grid, context=context, mode=mode, progress=progress, device=device, **options)
        samples = result.samples if replacement is None else replacement.finish(result.samples)
    return samples.clone()


def sampling_context(bfn, context, num_samples: int, device):
    """The ``context`` argument of :meth:`BFN.sample <pyro_bfn.bfn.BFN.sample>` as conditioning of
    leading dimension ``num_samples`` on ``device`` (one label or vector repeated), or ``None``."""
    if context is None:
        return None
    if isinstance(context, bool):
        raise ValueError("context must be an int, a tensor or None, got a bool")
    if isinstance(context, int):
        context = torch.tensor(context)
    if not isinstance(context, torch.Tensor):
        raise ValueError(f"context must be an int, a tensor or None, got {type(context).__name__}")
    context = context.to(device)
    if context.dim() == 0:
        return context.expand(num_samples)
    if context.is_floating_point() and context.dim() == 1:
        return context.expand(num_samples, context.shape[0])
    return bfn.check_context(context, num_samples)


def _final_is_mode(final, mode) -> bool:
    """``final`` (``"sample"``, ``"mode"`` or ``None``) and ``mode`` as one flag."""
    if final is None:
        return bool(mode)
    if final not in ("sample", "mode"):
        raise ValueError(f"final must be 'sample' or 'mode', got {final!r}")
    if mode and final == "sample":
        raise ValueError("mode=True contradicts final='sample'; pass one of them")
    return final == "mode"


def _guided(bfn, guidance_scale, context):
    """The classifier-free-guided view of ``bfn`` (:mod:`pyro_bfn.sampling.guidance`)."""
    check_finite_number("guidance_scale", guidance_scale)
    if context is None:
        raise ValueError(
            "guidance_scale needs a context: classifier-free guidance steers a conditional model towards it "
            "(an unconditional model cannot be guided)"
        )
    return ClassifierFreeGuidance(bfn, guidance_scale)


@contextlib.contextmanager
def random_numbers_from(generator, device: torch.device):
    """Within the block, torch's global generator of ``device`` starts from ``generator``'s state;
    afterwards ``generator`` holds the advanced state and the global generator its old one
    (``generator=None``: the global generator as it is). Used by :meth:`BFN.sample
    <pyro_bfn.bfn.BFN.sample>` and :meth:`BFN.loss_draws <pyro_bfn.bfn.BFN.loss_draws>`."""
    if generator is None:
        yield
        return
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != device.type:
        raise ValueError(f"generator is on {generator.device}, but the samples are drawn on {device}")
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else []):
        if cuda:
            torch.cuda.set_rng_state(generator.get_state(), device)
        else:
            torch.set_rng_state(generator.get_state())
        yield
        generator.set_state(torch.cuda.get_rng_state(device) if cuda else torch.get_rng_state())
