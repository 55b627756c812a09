"""When a run stops: stop conditions that the :class:`~pyro_bfn.training.Trainer` is given.

Before every update the trainer asks each condition, in order, for a :meth:`~StopCondition.reason`
to stop; the first one given ends the training loop (the final checkpoint, validation and
samples follow). :class:`MaxSteps` (the configuration's ``max_steps``) always applies;
:class:`TimeBudget` (``time_budget_minutes``) stops against the wall clock while keeping the
time that the evaluation after training will take.
"""

from __future__ import annotations

import statistics
import time

import torch

from .checkpoint import fork_rng

__all__ = ["BOUND_SPEEDUP", "MaxSteps", "StopCondition", "TimeBudget", "time_bound"]

#: The ratio of the likelihood bound's examples/s (two network passes per example, no
#: backward, inference mode) to the training examples/s (forward and backward) that
#: :class:`TimeBudget` assumes until it has measured the ratio on the run's own model and
#: machine. The ratio depends on the backbone, the precision and the CPU, which is why it is
#: measured; this is a round figure for the first log rows only.
BOUND_SPEEDUP = 3.0


class StopCondition:
    """A reason to stop training, checked before every update.

    :meth:`begin` is called when a training session starts (:meth:`Trainer.train
    <pyro_bfn.training.Trainer.train>`, also after a resume), :meth:`after_log_row` after each
    row of ``train_log.csv`` with the examples/s of the steps it covers.
    """

    def begin(self, trainer) -> None:
        """A training session starts."""

    def after_log_row(self, trainer, rate: float) -> None:
        """A log row was written; ``rate`` is its training examples/s."""

    def reason(self, trainer) -> str | None:
        """Why to stop before the next update (for ``summary.json``), or ``None``."""
        raise NotImplementedError

    def describe(self) -> str:
        """The condition in a few words, for the line that starts a session."""
        return type(self).__name__


class MaxSteps(StopCondition):
    """Stop after ``max_steps`` updates.

    :param int max_steps: the last update.
    """

    def __init__(self, max_steps: int):
        self.max_steps = max_steps

    def reason(self, trainer) -> str | None:
        return "max_steps" if trainer.step >= self.max_steps else None

    def describe(self) -> str:
        return f"max_steps {self.max_steps}"


#: examples scored by :func:`time_bound` (at most)
TIMING_EXAMPLES = 128


@torch.inference_mode()
def _bound_seconds(model, x: torch.Tensor, batch_size: int, device: torch.device) -> float:
    model.loss(x[: min(8, len(x))], reconstruction=True)  # warm-up
    start = time.perf_counter()
    for first in range(0, len(x), batch_size):
        model.loss(x[first : first + batch_size], reconstruction=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def time_bound(trainer) -> float:
    """Examples/s of the bound (``L^inf + L^r``, inference mode, as
    :func:`~pyro_bfn.evaluation.evaluate_bound` computes it) of the trainer's EMA model on its
    first :data:`TIMING_EXAMPLES` training examples, in batches of ``eval_batch_size`` after one
    small warm-up call. The examples are prepared with their own generator and every random
    state is restored, so that the run stays bit-for-bit reproducible.

    :raises RuntimeError: e.g. when the device runs out of memory.
    """
    x = trainer.data.head(TIMING_EXAMPLES).to(trainer.device)
    count = x.shape[0]
    batch_size = min(trainer.config.eval_batch_size, count)
    model = trainer.ema_model
    was_training = model.training
    model.eval()
    try:
        with fork_rng(trainer.device):
            seconds = _bound_seconds(model, x, batch_size, trainer.device)
    finally:
        model.train(was_training)
    return count / max(seconds, 1e-9)


class TimeBudget(StopCondition):
    """Stop once the run's wall time (``trainer.wall_seconds``, accumulated over resumes)
    plus the reserve for the evaluation after training reaches ``minutes``.

    The reserve is the time to score ``reserve_examples`` examples with the likelihood bound:
    :math:`N / (s\\,r)` for :math:`N` = ``reserve_examples``, :math:`r` the median training
    examples/s of the last :attr:`RATE_WINDOW` log rows of this session and :math:`s` the
    ratio of bound to training examples/s. That ratio is measured once per session by
    ``measure_bound_rate(trainer)`` (bound examples/s; :func:`time_bound`) after log row
    :attr:`MEASURE_AFTER_ROW`, against the median training rate of the rows so far; until then
    (or if the timing fails) it is :data:`BOUND_SPEEDUP`. The reserve is ``0`` before the
    first log row of a session.

    :param float minutes: the budget.
    :param int reserve_examples: examples to keep time for (``0``: none).
    :param measure_bound_rate: callable ``trainer -> bound examples/s``.
    """

    #: log rows of the median training rate
    RATE_WINDOW = 5
    #: the log row after which the bound is timed (the first includes the warm-up steps)
    MEASURE_AFTER_ROW = 2

    def __init__(self, minutes: float, reserve_examples: int = 0, measure_bound_rate=time_bound):
        self.minutes = minutes
        self.seconds = 60.0 * minutes
        self.reserve_examples = reserve_examples
        self.measure_bound_rate = measure_bound_rate
        self.begin(None)

    def begin(self, trainer) -> None:
        self.rates: list[float] = []
        self.speedup: float | None = None  # measured this session

    def after_log_row(self, trainer, rate: float) -> None:
        self.rates.append(rate)
        if self.reserve_examples and self.speedup is None and len(self.rates) >= self.MEASURE_AFTER_ROW:
            train_rate = statistics.median(self.rates)
            try:
                bound_rate = self.measure_bound_rate(trainer)
            except (RuntimeError, MemoryError) as error:  # e.g. out of memory: keep the default
                trainer.log(f"could not time the bound ({error}); reserving with the default ratio {BOUND_SPEEDUP}")
                self.speedup = BOUND_SPEEDUP
                return
            self.speedup = bound_rate / train_rate
            trainer.log(f"bound / training examples/s measured: {self.speedup:.2f} ({bound_rate:.0f} vs "
                        f"{train_rate:.0f}), reserving {self.reserve_examples / bound_rate:.0f} s for evaluation")

    def reserve_seconds(self) -> float:
        """Predicted seconds of the evaluation after training."""
        if not self.reserve_examples or not self.rates:
            return 0.0
        rate = statistics.median(self.rates[-self.RATE_WINDOW:])
        speedup = BOUND_SPEEDUP if self.speedup is None else self.speedup
        return self.reserve_examples / (speedup * rate)

    def reason(self, trainer) -> str | None:
        reserve = self.reserve_seconds()
        if trainer.wall_seconds + reserve < self.seconds:
            return None
        return f"time budget (reserving {reserve:.0f} s for evaluation)" if self.reserve_examples else "time budget"

    def describe(self) -> str:
        return f"budget {self.minutes:g} min"
