"""The BFN module: losses recomputed independently from the paper's formulas (numpy/scipy),
L^n approaching L^inf, perfect predictors, the sampler, evaluation."""

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from scipy import integrate, special, stats
from torch import nn

from pyro_bfn.bfn import BFN
from pyro_bfn.data_types import ContinuousData, DiscreteData, DiscretisedData
from pyro_bfn.distributions import CategoricalInput, NormalInput, PointMassOutput, bin_centres

SHAPE = (1, 3, 3)


class Linear(nn.Module):
    """A fixed random per-variable network: features (B, *S, F_in), t -> (B, *S, F_out)."""

    def __init__(self, f_in, f_out, seed=0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(f_in + 1, f_out, generator=generator, dtype=torch.float64) * 0.7)

    def forward(self, features, t):
        t = t.reshape(t.shape + (1,) * (features.dim() - 1)).expand(features.shape[:-1] + (1,))
        return torch.cat([features, t.to(features.dtype)], -1) @ self.weight.to(features.dtype)


class Constant(nn.Module):
    """A network whose output ignores its input."""

    def __init__(self, value):
        super().__init__()
        self.value = nn.Parameter(torch.as_tensor(value, dtype=torch.float64))

    def forward(self, features, t):
        return self.value.expand(features.shape[:-1] + self.value.shape[-1:])


def _fixed_input(bfn, monkeypatch, input_distribution):
    monkeypatch.setattr(bfn.data_type, "sample_input", lambda x, t, validate_args=None: input_distribution)


def _network_output(bfn, features, t):
    return bfn.network(features, t).detach().double().numpy()


def test_continuous_losses_match_formulas(monkeypatch):
    torch.manual_seed(0)
    data_type = ContinuousData(sigma_1=0.02)
    bfn = BFN(data_type, Linear(1, 1), SHAPE)
    x = torch.rand(4, *SHAPE, dtype=torch.float64) * 2 - 1
    t = torch.tensor([0.0, 1e-7, 0.3, 0.9], dtype=torch.float64)
    mu = torch.randn(4, *SHAPE, dtype=torch.float64)
    precision = torch.ones_like(mu)
    _fixed_input(bfn, monkeypatch, NormalInput(mu, precision))
    eps = _network_output(bfn, mu[..., None], t)[..., 0]
    sigma_1 = 0.02
    t_np = t.numpy().reshape(4, 1, 1, 1)
    gamma = 1 - sigma_1 ** (2 * np.maximum(t_np, 1e-6))
    x_hat = mu.numpy() / gamma - np.sqrt((1 - gamma) / gamma) * eps
    x_hat = np.where(t_np < 1e-6, 0.0, np.clip(x_hat, -1, 1))
    squared = ((x.numpy() - x_hat) ** 2).reshape(4, -1).sum(-1)
    expected_inf = -math.log(sigma_1) * sigma_1 ** (-2 * t.numpy()) * squared
    np.testing.assert_allclose(bfn.continuous_time_loss(x, t).detach().numpy(), expected_inf, rtol=1e-10)
    # n-step: t_{i-1} = (i-1)/n, alpha_i = sigma^(-2i/n)(1 - sigma^(2/n))
    n = 4
    i = torch.tensor([1, 2, 3, 4])
    t_prev = (i - 1).double() / n
    eps = _network_output(bfn, mu[..., None], t_prev)[..., 0]
    tp = t_prev.numpy().reshape(4, 1, 1, 1)
    gamma = 1 - sigma_1 ** (2 * np.maximum(tp, 1e-6))
    x_hat = np.where(tp < 1e-6, 0.0, np.clip(mu.numpy() / gamma - np.sqrt((1 - gamma) / gamma) * eps, -1, 1))
    alpha = sigma_1 ** (-2 * i.numpy() / n) * (1 - sigma_1 ** (2 / n))
    expected_n = n / 2 * alpha * ((x.numpy() - x_hat) ** 2).reshape(4, -1).sum(-1)
    np.testing.assert_allclose(bfn.discrete_time_loss(x, n, i).detach().numpy(), expected_n, rtol=1e-10)


def _log_interval_mass_scipy(a, b):
    """log(Phi(b) - Phi(a)) from scipy's log-CDF / log-survival functions, on the tail away from
    the mean so that the far tails (data many standard deviations out) stay finite."""
    upper = a > 0
    log_far = np.where(upper, stats.norm.logsf(a), stats.norm.logcdf(b))
    log_near = np.where(upper, stats.norm.logsf(b), stats.norm.logcdf(a))
    return log_far + np.log1p(-np.exp(log_near - log_far))


def test_discretised_losses_match_formulas(monkeypatch):
    torch.manual_seed(1)
    num_bins = 16
    data_type = DiscretisedData(num_bins)
    bfn = BFN(data_type, Linear(1, 2, seed=3), SHAPE)
    levels = torch.randint(0, num_bins, (3, *SHAPE))
    x = data_type.from_integers(levels, dtype=torch.float64)
    t = torch.tensor([0.2, 0.7, 1.0], dtype=torch.float64)
    mu = torch.randn(3, *SHAPE, dtype=torch.float64) * 0.5
    _fixed_input(bfn, monkeypatch, NormalInput(mu, torch.ones_like(mu)))
    out = _network_output(bfn, mu[..., None], t)
    sigma_1 = data_type.schedule.sigma_1
    gamma = 1 - sigma_1 ** (2 * t.numpy().reshape(3, 1, 1, 1))
    noise_scale = np.sqrt((1 - gamma) / gamma)
    mean = mu.numpy() / gamma - noise_scale * out[..., 0]
    std = noise_scale * np.exp(out[..., 1])
    centres = (2 * np.arange(num_bins) + 1) / num_bins - 1
    upper = stats.norm.cdf(np.where(np.arange(num_bins) == num_bins - 1, np.inf, centres + 1 / num_bins), mean[..., None], std[..., None])
    lower = stats.norm.cdf(np.where(np.arange(num_bins) == 0, -np.inf, centres - 1 / num_bins), mean[..., None], std[..., None])
    probs = upper - lower
    k_hat = (probs * centres).sum(-1)
    expected = -math.log(sigma_1) * sigma_1 ** (-2 * t.numpy()) * ((x.numpy() - k_hat) ** 2).reshape(3, -1).sum(-1)
    np.testing.assert_allclose(bfn.continuous_time_loss(x, t).detach().numpy(), expected, rtol=1e-8)
    # reconstruction at t = 1: -sum log p_O(x)
    recon_probs = np.take_along_axis(probs, levels.numpy()[..., None], -1)[..., 0]
    out1 = _network_output(bfn, mu[..., None], torch.ones(3, dtype=torch.float64))
    gamma1 = 1 - sigma_1**2
    scale1 = math.sqrt((1 - gamma1) / gamma1)
    mean1 = mu.numpy() / gamma1 - scale1 * out1[..., 0]
    std1 = scale1 * np.exp(out1[..., 1])
    idx = levels.numpy()
    hi = np.where(idx == num_bins - 1, np.inf, centres[idx] + 1 / num_bins)
    lo = np.where(idx == 0, -np.inf, centres[idx] - 1 / num_bins)
    recon = -_log_interval_mass_scipy((lo - mean1) / std1, (hi - mean1) / std1).reshape(3, -1).sum(-1)
    np.testing.assert_allclose(bfn.reconstruction_loss(x).detach().numpy(), recon, rtol=1e-8)
    del recon_probs


@pytest.mark.parametrize("num_classes", [2, 5])
def test_discrete_losses_match_formulas(monkeypatch, num_classes):
    torch.manual_seed(2)
    beta_1 = 3.0
    data_type = DiscreteData(num_classes, beta_1)
    features = data_type.num_input_features
    bfn = BFN(data_type, Linear(features, data_type.num_output_features, seed=5), SHAPE)
    x = torch.randint(0, num_classes, (3, *SHAPE))
    t = torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64)
    theta = torch.softmax(torch.randn(3, *SHAPE, num_classes, dtype=torch.float64), -1)
    _fixed_input(bfn, monkeypatch, CategoricalInput(probs=theta))
    feats = (2 * theta - 1)[..., 1:] if num_classes == 2 else 2 * theta - 1
    logits = _network_output(bfn, feats, t)
    if num_classes == 2:
        logits = np.concatenate([np.zeros_like(logits), logits], -1)
    p = special.softmax(logits, -1)
    e_x = np.eye(num_classes)[x.numpy()]
    expected = num_classes * beta_1 * t.numpy() * ((e_x - p) ** 2).reshape(3, -1).sum(-1)
    np.testing.assert_allclose(bfn.continuous_time_loss(x, t).detach().numpy(), expected, rtol=1e-10)
    # reconstruction: -sum log p_O(x | theta; 1)
    logits1 = _network_output(bfn, feats, torch.ones(3, dtype=torch.float64))
    if num_classes == 2:
        logits1 = np.concatenate([np.zeros_like(logits1), logits1], -1)
    log_p1 = special.log_softmax(logits1, -1)
    recon = -np.take_along_axis(log_p1, x.numpy()[..., None], -1)[..., 0].reshape(3, -1).sum(-1)
    np.testing.assert_allclose(bfn.reconstruction_loss(x).detach().numpy(), recon, rtol=1e-10)


def _binary_kl_scipy(p_true, alpha):
    """KL(sender || joint receiver) for K = 2 by quadrature over d = y_other - y_true ~ N(-2a, 4a)."""

    def integrand(d):
        return -np.logaddexp(np.log(p_true), np.log1p(-p_true) + d) * stats.norm.pdf(d, -2 * alpha, 2 * math.sqrt(alpha))

    return integrate.quad(integrand, -2 * alpha - 40 * math.sqrt(alpha) - 40, -2 * alpha + 40 * math.sqrt(alpha) + 40, limit=400)[0]


def test_discrete_n_step_loss_matches_scipy_and_approaches_continuous_time():
    """With an output that ignores theta, E_i[L^n] = sum_i KL(alpha_i) exactly; it must match
    scipy's quadrature, and approach L^inf = beta_1 K/2 ||e_x - p||^2 as n grows."""
    beta_1 = 4.0
    data_type = DiscreteData(2, beta_1)
    logit = 0.4
    bfn = BFN(data_type, Constant([logit]), (1,))
    p1 = 1 / (1 + math.exp(-logit))
    x = torch.ones(1, 1, dtype=torch.long)  # true class 1, output probability p1 on it
    rate = 2 / 2 * 2 * (1 - p1) ** 2  # K/2 ||e_x - p||^2 with K = 2
    l_inf = beta_1 * rate
    t = torch.rand(7, dtype=torch.float64)
    np.testing.assert_allclose(bfn.continuous_time_loss(x.expand(7, 1), t).detach().numpy(), 2 * beta_1 * t.numpy() * rate, rtol=1e-10)
    gaps = []
    for n in (1, 2, 5, 20, 100):
        i = torch.arange(1, n + 1)
        per_step = bfn.discrete_time_loss(x.expand(n, 1), n, i).detach().numpy() / n  # KL(alpha_i)
        alphas = beta_1 * (2 * i.numpy() - 1) / n**2
        oracle = np.array([_binary_kl_scipy(p1, a) for a in alphas])
        np.testing.assert_allclose(per_step, oracle, rtol=1e-6, atol=1e-9)
        gaps.append(abs(per_step.sum() - l_inf))
    assert all(b < a for a, b in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] < 0.02 * l_inf


def test_perfect_predictor_gives_zero_loss():
    """A network that recovers the true noise predicts x exactly: L^n and L^inf vanish."""
    torch.manual_seed(3)
    data_type = ContinuousData(sigma_1=0.02)
    x = torch.rand(6, *SHAPE, dtype=torch.float64) * 1.8 - 0.9

    class Oracle(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(()))

        def forward(self, features, t):
            gamma = data_type.schedule.gamma(t).reshape(-1, 1, 1, 1)
            mu = features[..., 0]
            return ((mu - gamma * x) / (gamma * (1 - gamma)).sqrt())[..., None]

    bfn = BFN(data_type, Oracle(), SHAPE)
    t = torch.rand(6, dtype=torch.float64) * 0.98 + 0.01
    assert bfn.continuous_time_loss(x, t).abs().max() < 1e-8
    i = torch.randint(2, 11, (6,))
    assert bfn.discrete_time_loss(x, 10, i).abs().max() < 1e-8
    # discrete data: an output one-hot on the truth gives exactly zero KL
    discrete = DiscreteData(3, 2.0)
    labels = torch.randint(0, 3, (4, 2))

    class OneHot(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(()))

        def forward(self, features, t):
            return torch.nn.functional.one_hot(labels, 3).to(features.dtype) * 1e4

    bfn = BFN(discrete, OneHot(), (2,))
    assert bfn.discrete_time_loss(labels, 5).abs().max() == 0
    assert bfn.continuous_time_loss(labels).abs().max() == 0


class Counting(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls, self.times = inner, 0, []

    def forward(self, features, t):
        self.calls += 1
        self.times.append(float(t[0]))
        return self.inner(features, t)


@pytest.mark.parametrize(
    "data_type",
    [ContinuousData(0.02), DiscretisedData(16), DiscreteData(2, 3.0), DiscreteData(27, 0.5)],
    ids=["continuous", "discretised", "binary", "text"],
)
def test_sampler_makes_every_update_and_stays_in_support(data_type, monkeypatch):
    torch.manual_seed(4)
    n = 7
    network = Counting(Linear(data_type.num_input_features, data_type.num_output_features).float())
    bfn = BFN(data_type, network, SHAPE)
    updates = []
    original = type(data_type.prior((1,) + SHAPE)).update

    def counting_update(self, y, accuracy):
        updates.append(float(accuracy.reshape(-1)[0]))
        return original(self, y, accuracy)

    monkeypatch.setattr(type(data_type.prior((1,) + SHAPE)), "update", counting_update)
    samples = bfn.sample(5, n)
    assert network.calls == n + 1
    assert network.times == pytest.approx([i / n for i in range(n)] + [1.0])
    assert len(updates) == n
    np.testing.assert_allclose(updates, data_type.schedule.step_accuracies(n, dtype=torch.float64).numpy(), rtol=1e-5)
    assert samples.shape == (5,) + SHAPE
    if isinstance(data_type, DiscreteData):
        assert samples.dtype == torch.long and samples.min() >= 0 and samples.max() < data_type.num_classes
    elif isinstance(data_type, DiscretisedData):
        data_type.check_data(samples)
    else:
        assert torch.isfinite(samples).all() and samples.abs().max() <= 1
    modes = bfn.sample(2, 3, mode=True)
    assert modes.shape == (2,) + SHAPE


def test_continuous_sampler_accumulates_the_whole_schedule():
    """After n updates the input precision is 1 + beta(1): no update was skipped."""
    data_type = ContinuousData(0.05)
    bfn = BFN(data_type, Linear(1, 1).float(), SHAPE)
    captured = {}
    original = bfn.output_distribution

    def spy(input_distribution, t, context=None):
        captured["precision"] = input_distribution.precision
        return original(input_distribution, t, context)

    bfn.output_distribution = spy
    bfn.sample(2, 9)
    expected = 1 + float(data_type.schedule.beta(torch.tensor(1.0, dtype=torch.float64)))
    assert torch.allclose(captured["precision"].double(), torch.full((2,) + SHAPE, expected, dtype=torch.float64), rtol=1e-5)


def test_autocast_keeps_the_loss_in_float32():
    torch.manual_seed(5)
    data_type = DiscreteData(2, 3.0)
    network = nn.Linear(1, 1)

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = network

        def forward(self, features, t):
            return self.net(features)

    bfn = BFN(data_type, Wrap(), SHAPE, autocast_dtype=torch.bfloat16)
    x = torch.randint(0, 2, (4, *SHAPE))
    terms = bfn.loss(x, n_steps=10)
    assert terms.transmission.dtype == torch.float32 and terms.reconstruction.dtype == torch.float32
    assert torch.isfinite(terms.total).all()
    terms.total.mean().backward()
    assert torch.isfinite(network.weight.grad).all()


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.zeros(2, 1, 3, 4, dtype=torch.long), "shape"),
        (torch.zeros(2, *SHAPE), "integer class indices"),
        (torch.full((2, *SHAPE), 2, dtype=torch.long), "class indices in 0..1"),
    ],
)
def test_bad_batches_are_rejected(x, message):
    bfn = BFN(DiscreteData(2, 3.0), Constant([0.0]), SHAPE)
    with pytest.raises(ValueError, match=message):
        bfn.loss(x)


def test_bad_arguments_are_rejected():
    bfn = BFN(DiscreteData(2, 3.0), Constant([0.0]), SHAPE)
    x = torch.zeros(2, *SHAPE, dtype=torch.long)
    with pytest.raises(ValueError, match="n_steps"):
        bfn.loss(x, n_steps=0)
    with pytest.raises(ValueError, match="n_steps"):
        bfn.sample(2, n_steps=1.5)
    with pytest.raises(TypeError, match="data_type"):
        BFN("discrete", Constant([0.0]), SHAPE)
    bad = BFN(DiscreteData(2, 3.0), Constant([0.0, 1.0]), SHAPE)
    with pytest.raises(ValueError, match="network returned shape"):
        bad.loss(x)
    with pytest.raises(ValueError, match="discretised data must hold"):
        BFN(DiscretisedData(4), Constant([0.0, 0.0]), SHAPE).loss(torch.full((2, *SHAPE), 0.1))


@given(
    x_hat=st.lists(st.floats(-1.5, 1.5), min_size=1, max_size=6),
    K=st.sampled_from([2, 3, 16, 256]),
    sigma_1=st.sampled_from([1e-3, math.sqrt(1e-3), 0.2]),
    level=st.integers(0, 255),
)
@example(x_hat=[1.0], K=256, sigma_1=1e-3, level=0)
def test_continuous_loss_on_binned_data_reconstructs_a_bin_probability(x_hat, K, sigma_1, level):
    """ContinuousData(num_bins=K): L^r = -log of the mass of N(x_hat, sigma_1^2) over the bin of x
    (outer bins take the tails), against scipy; the masses of all K bins sum to one."""
    data_type = ContinuousData(sigma_1, num_bins=K)
    x_hat = torch.tensor(x_hat, dtype=torch.float64)
    level = level % K
    x = DiscretisedData(K).from_integers(torch.full(x_hat.shape, level), dtype=torch.float64)
    reconstruction = data_type.reconstruction_distribution(PointMassOutput(x_hat))
    lower = -np.inf if level == 0 else 2 * level / K - 1
    upper = np.inf if level == K - 1 else 2 * (level + 1) / K - 1
    mu = x_hat.numpy()
    # log of the mass in the tail away from mu, where cdf differences would cancel (np.where
    # evaluates both branches; the unused one may take log(0))
    with np.errstate(divide="ignore"):
        log_mass = np.where(
        upper <= mu,
            stats.norm.logcdf((upper - mu) / sigma_1)
            + np.log1p(-np.exp(stats.norm.logcdf((lower - mu) / sigma_1) - stats.norm.logcdf((upper - mu) / sigma_1))),
            stats.norm.logsf((lower - mu) / sigma_1)
            + np.log1p(-np.exp(stats.norm.logsf((upper - mu) / sigma_1) - stats.norm.logsf((lower - mu) / sigma_1))),
        )
    finite = np.isfinite(log_mass)
    got = reconstruction.log_prob(x).numpy()
    np.testing.assert_allclose(got[finite], log_mass[finite], rtol=1e-6, atol=1e-9)
    masses = torch.stack([reconstruction.log_prob(torch.full_like(x_hat, c)).exp() for c in bin_centres(K, dtype=torch.float64)])
    np.testing.assert_allclose(masses.sum(0).numpy(), 1.0, rtol=0, atol=1e-12)


def test_continuous_loss_on_binned_data_bounds_a_probability():
    """With num_bins the bound is on a probability (every L^r >= 0, every total finite); without,
    on a density, whose L^r is negative when sigma_1 is small and x_hat close to x."""
    torch.manual_seed(0)
    x = DiscretisedData(16).from_integers(torch.randint(0, 16, (8, *SHAPE)), dtype=torch.float64)
    binned = BFN(ContinuousData(1e-3, num_bins=16), Linear(1, 1), SHAPE).double()
    density = BFN(ContinuousData(1e-3), Linear(1, 1), SHAPE).double()
    with torch.no_grad():
        terms = binned.loss(x, reconstruction=True)
        assert (terms.reconstruction >= 0).all() and torch.isfinite(terms.total).all()
        x_hat = torch.zeros(8, *SHAPE, dtype=torch.float64) + x
        assert (density.data_type.reconstruction_distribution(PointMassOutput(x_hat)).log_prob(x) > 0).all()
    with pytest.raises(ValueError, match="16 bin centres"):
        binned.loss(x + 0.01)
    assert repr(ContinuousData(1e-3, num_bins=16)) == "ContinuousData(sigma_1=0.001, num_bins=16)"
    with pytest.raises(ValueError, match="num_bins"):
        ContinuousData(1e-3, num_bins=1)


def test_samples_leave_inference_mode_and_feed_a_training_loss():
    """Sampling runs under inference_mode, but what it returns is an ordinary tensor: it can be
    fed back into a loss that is differentiated (a self-training / distillation pattern)."""
    torch.manual_seed(0)
    bfn = BFN(DiscretisedData(16), Linear(1, 2), SHAPE).double()
    samples = bfn.sample(3, 4)
    assert not samples.is_inference() and samples.shape == (3, *SHAPE)
    bfn.loss(samples).total.mean().backward()
    assert bfn.network.weight.grad is not None and torch.isfinite(bfn.network.weight.grad).all()


def test_every_public_loss_checks_its_batch():
    """BFN builds its internal distributions unvalidated, so each public loss checks x itself."""
    bfn = BFN(DiscreteData(2, 3.0), Constant([0.0]), SHAPE)
    bad = torch.full((2, *SHAPE), 2, dtype=torch.long)
    for loss in (bfn.continuous_time_loss, bfn.reconstruction_loss, lambda x: bfn.discrete_time_loss(x, 4)):
        with pytest.raises(ValueError, match="class indices in 0..1"):
            loss(bad)


def test_a_network_returning_nan_is_named():
    """BFN checks the network's output itself (its output distribution is built unvalidated)."""
    bfn = BFN(DiscreteData(2, 3.0), Constant([float("nan")]), SHAPE)
    x = torch.zeros(2, *SHAPE, dtype=torch.long)
    with pytest.raises(ValueError, match="network returned NaN"):
        bfn.loss(x)
    with pytest.raises(ValueError, match="network returned NaN"):
        bfn.sample(2, n_steps=2)


def test_int32_class_indices_work_in_every_loss():
    """Any integer dtype of class indices is data (the n-step KL gathers with int64)."""
    bfn = BFN(DiscreteData(2, 3.0), Constant([0.5]), SHAPE)
    x = torch.randint(0, 2, (3, *SHAPE))
    for n_steps in (None, 4):
        torch.manual_seed(0)
        expected = bfn.loss(x, n_steps=n_steps).total
        torch.manual_seed(0)
        torch.testing.assert_close(bfn.loss(x.int(), n_steps=n_steps).total, expected)


def test_a_zero_dimensional_batch_is_named():
    bfn = BFN(DiscreteData(2, 3.0), Constant([0.0]), SHAPE)
    with pytest.raises(ValueError, match="x must have shape"):
        bfn.loss(torch.tensor(1))


def test_an_overflowing_log_scale_output_is_named():
    """A finite but huge ln sigma_eps gives exp() = inf: named, not a NaN loss."""
    bfn = BFN(DiscretisedData(16), Constant([0.0, 200.0]), SHAPE)
    x = DiscretisedData(16).from_integers(torch.randint(0, 16, (2, *SHAPE)))
    with pytest.raises(ValueError, match="output scale of 0 or inf"):
        bfn.loss(x)


def test_an_empty_batch_is_named():
    bfn = BFN(DiscreteData(2, 3.0), Constant([0.0]), SHAPE)
    empty = torch.zeros((0, *SHAPE), dtype=torch.long)
    for n_steps in (None, 4):
        with pytest.raises(ValueError, match="x must hold at least one example"):
            bfn.loss(empty, n_steps=n_steps)
    with pytest.raises(ValueError, match="x must hold at least one example"):
        bfn.check_data(empty)


def test_zero_samples_are_named():
    bfn = BFN(DiscreteData(2, 3.0), Constant([0.0]), SHAPE)
    with pytest.raises(ValueError, match="num_samples must be a positive integer, got 0"):
        bfn.sample(0, 4)


def test_a_negative_number_of_samples_is_named():
    bfn = BFN(DiscreteData(2, 3.0), Constant([0.0]), SHAPE)
    with pytest.raises(ValueError, match="num_samples must be a positive integer, got -1"):
        bfn.sample(-1, 4)
    with pytest.raises(ValueError, match="num_samples must be a positive integer, got -1"):
        bfn.sample(-1, 4, context=torch.tensor([0]))


def test_the_public_checks_name_the_problem():
    """check_data and check_context are BFN's public checks (used by pyro_bfn.infer)."""
    bfn = BFN(DiscreteData(2, 3.0), Constant([0.0]), SHAPE)
    x = torch.zeros(2, *SHAPE, dtype=torch.long)
    bfn.check_data(x)
    with pytest.raises(ValueError, match="x must be a tensor"):
        bfn.check_data([0, 1])
    with pytest.raises(ValueError, match="x must have shape"):
        bfn.check_data(x[0])
    labels = torch.tensor([0, 1])
    assert bfn.check_context(None, 2) is None and bfn.check_context(labels, 2) is labels
    with pytest.raises(ValueError, match="leading dimension 3"):
        bfn.check_context(labels, 3)
    with pytest.raises(ValueError, match="context must be a tensor or None"):
        bfn.check_context([0, 1], 2)
