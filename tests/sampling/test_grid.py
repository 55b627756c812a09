"""The n-step time grid and the random times and steps of the losses (pyro_bfn.sampling.grid)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from pyro_bfn.data_types import ContinuousData, DiscreteData, DiscretisedData
from pyro_bfn.sampling import TimeGrid, draw_times

DATA_TYPES = [ContinuousData(0.02), DiscretisedData(16), DiscreteData(2, 3.0), DiscreteData(27, 0.5625)]
IDS = ["continuous", "discretised", "binary", "text"]


@pytest.mark.parametrize("n", [1, 2, 7, 10, 100, 784])
def test_times_are_i_over_n(n):
    grid = TimeGrid(n)
    times = grid.times(dtype=torch.float64)
    assert times.shape == (n + 1,) and times[0] == 0 and times[-1] == 1
    np.testing.assert_array_equal(times.numpy(), np.arange(n + 1) / n)
    i = torch.arange(1, n + 1)
    np.testing.assert_array_equal(grid.start_time(i, torch.float64).numpy(), (np.arange(1, n + 1) - 1) / n)
    # float32: the correctly rounded (i - 1)/n
    np.testing.assert_array_equal(grid.times(dtype=torch.float32).numpy(), (np.arange(n + 1) / n).astype(np.float32))
    assert list(grid.steps()) == list(range(1, n + 1))


@pytest.mark.parametrize("data_type", DATA_TYPES, ids=IDS)
@pytest.mark.parametrize("n", [1, 3, 25, 256])
def test_accuracies_are_beta_differences_summing_to_beta_1(data_type, n):
    """alpha_i = beta(t_i) - beta(t_{i-1}) on the grid, broadcast over the data; sum = beta(1)."""
    grid = TimeGrid(n)
    i = torch.arange(1, n + 1)
    alpha = grid.accuracy(data_type, i, (n, 2, 3), torch.float64)
    assert alpha.shape == (n, 1, 1) and alpha.dtype == torch.float64
    beta = data_type.schedule.beta(grid.times(dtype=torch.float64))
    torch.testing.assert_close(alpha.reshape(-1), beta[1:] - beta[:-1], rtol=1e-9, atol=1e-12)
    beta_1 = float(data_type.schedule.beta(torch.tensor(1.0, dtype=torch.float64)))
    assert alpha.sum().item() == pytest.approx(beta_1, rel=1e-10)
    # data or its shape: the same broadcast
    torch.testing.assert_close(grid.accuracy(data_type, i, torch.zeros(n, 2, 3), torch.float64), alpha, rtol=0, atol=0)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None, "4"])
def test_a_bad_number_of_steps_is_named(bad):
    with pytest.raises(ValueError, match="n_steps must be a positive integer"):
        TimeGrid(bad)


def test_uniform_draws_have_the_right_range_and_distribution():
    torch.manual_seed(0)
    t = draw_times(20000, dtype=torch.float64)
    assert t.shape == (20000,) and t.dtype == torch.float64
    assert ((t >= 0) & (t < 1)).all()
    assert stats.kstest(t.numpy(), "uniform").pvalue > 1e-4
    grid = TimeGrid(5)
    steps = grid.draw_steps(20000)
    assert steps.dtype == torch.long and steps.min() == 1 and steps.max() == 5
    counts = torch.bincount(steps, minlength=6)[1:].numpy()
    assert stats.chisquare(counts).pvalue > 1e-4


@pytest.mark.parametrize("strata", [2, 4, 7])
def test_stratified_draws_stay_in_their_stratum_and_are_uniform_within_it(strata):
    """Stratum r of R: t ~ U(r/R, (r+1)/R); with n = R steps the step is r + 1 exactly, and the
    union of the strata is uniform on [0, 1)."""
    torch.manual_seed(1)
    per = 3000
    stratum = torch.arange(strata).repeat_interleave(per)
    t = draw_times(strata * per, dtype=torch.float64, stratum=stratum, strata=strata)
    assert ((t >= stratum / strata) & (t < (stratum + 1) / strata)).all()
    within = (t * strata - stratum).numpy()  # uniform on [0, 1) in each stratum
    assert stats.kstest(within, "uniform").pvalue > 1e-4
    assert torch.equal(TimeGrid(strata).draw_steps(strata * per, stratum=stratum, strata=strata), stratum + 1)
    # n steps in R strata: steps of stratum r lie in its share of 1..n, and together all appear
    n = 3 * strata + 1
    steps = TimeGrid(n).draw_steps(strata * per, stratum=stratum, strata=strata)
    assert ((steps >= 1) & (steps <= n)).all()
    assert ((steps - 1) >= torch.floor(stratum * n / strata)).all()
    assert ((steps - 1) <= torch.floor((stratum + 1) * n / strata)).all()
    assert set(steps.tolist()) == set(range(1, n + 1))
    # an int stratum
    t = draw_times(50, dtype=torch.float32, stratum=1, strata=strata)
    assert t.dtype == torch.float32 and ((t >= 1 / strata) & (t <= 2 / strata)).all()


def test_the_draws_consume_the_random_stream_as_plain_torch_draws():
    """Bit-exact resume and seeded results rely on the draws being the plain torch ones."""
    torch.manual_seed(2)
    a = draw_times(7, dtype=torch.float32)
    b = TimeGrid(9).draw_steps(7)
    torch.manual_seed(2)
    assert torch.equal(a, torch.rand(7, dtype=torch.float32))
    assert torch.equal(b, torch.randint(1, 10, (7,)))
    assert math.isclose(float(TimeGrid(4).start_time(torch.tensor(3))), 0.5)
