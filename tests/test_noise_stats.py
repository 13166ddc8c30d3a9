"""Is the noise the right distribution? Statistics on >= 10^6 draws with fixed seeds.

Every check is a function that returns its failures, so each test shows both that our sampler passes and that a
deliberately wrong sampler fails the same check. Draws come from the C++ CPU kernel when it is built (else the
reference); test_noise.py proves Triton and the reference agree with it element for element.

False-failure probabilities: mean/variance/rate/correlation checks use 6-sigma bounds (two-sided normal tail
2e-9 each); chi-square goodness-of-fit checks reject at p < 1e-6. With about 30 checks in this file, a correct
sampler fails the file with probability below 4e-5 -- and the seeds are fixed, so it either always passes or never.
"""
import math

import numpy as np
import pytest
import torch

import n2n_fast
from n2n_fast import _ext
from n2n_fast import noise as nz

scipy_stats = pytest.importorskip("scipy.stats")

N = 10**6
SIGMAS = 6.0  # bound for z-tests
P_MIN = 1e-6  # chi-square rejection level
BACKEND = "extension" if _ext.has_op("noisy_pair") else "reference"


def pair(clean, noise, seed):
    return n2n_fast.noisy_pair(clean, noise, seed=seed, step=3, index=17, backend=BACKEND)


def z_failures(name, estimate, expected, std_error):
    z = abs(float(estimate) - expected) / std_error
    return [f"{name}: {float(estimate):.6g} vs {expected:.6g} ({z:.1f} standard errors)"] if z > SIGMAS else []


def chi_square_failures(name, observed, probabilities):
    """Goodness of fit of integer `observed` draws to `probabilities` (array over 0..len-1, the rest lumped into
    the last bin); bins are merged from both ends until every expected count is at least 5."""
    counts = np.bincount(np.clip(observed, 0, len(probabilities) - 1), minlength=len(probabilities)).astype(float)
    expected = probabilities * len(observed)
    obs_bins, exp_bins, acc_o, acc_e = [], [], 0.0, 0.0
    for o, e in zip(counts, expected):
        acc_o, acc_e = acc_o + o, acc_e + e
        if acc_e >= 5:
            obs_bins.append(acc_o)
            exp_bins.append(acc_e)
            acc_o = acc_e = 0.0
    obs_bins[-1] += acc_o
    exp_bins[-1] += acc_e
    obs_bins, exp_bins = np.array(obs_bins), np.array(exp_bins)
    stat = float(((obs_bins - exp_bins) ** 2 / exp_bins).sum())
    p = float(scipy_stats.chi2.sf(stat, len(obs_bins) - 1))
    return [f"{name}: chi-square {stat:.1f} on {len(obs_bins) - 1} dof, p = {p:.2g}"] if p < P_MIN else []


# ----------------------------------------------------------------------------------------------------------------
# Gaussian: mean, variance, independence of the copies; E[y] = x for the zero-mean models


def gaussian_failures(y0, y1, x, sigma):
    z0, z1 = ((y0 - x) / sigma).double().flatten(), ((y1 - x) / sigma).double().flatten()
    n = z0.numel()
    out = []
    for name, z in (("copy 0", z0), ("copy 1", z1)):
        out += z_failures(f"{name} mean", z.mean(), 0.0, 1 / math.sqrt(n))
        out += z_failures(f"{name} variance", z.var(), 1.0, math.sqrt(2 / n))
        out += z_failures(f"{name} kurtosis", (z**4).mean(), 3.0, math.sqrt(96 / n))
    out += z_failures("correlation of the copies", torch.corrcoef(torch.stack([z0, z1]))[0, 1], 0.0, 1 / math.sqrt(n))
    return out


@pytest.mark.parametrize("level", [0.0, 1.0])
def test_gaussian_moments_and_independence(level):
    sigma = 0.1
    x = torch.full((1, 1, 1000, 1000), level)
    y0, y1 = pair(x, nz.Gaussian(sigma), seed=101)
    assert gaussian_failures(y0, y1, x, sigma) == []
    # the wrong sampler: the same draws clipped to [0, 1] (what an image pipeline does by reflex)
    assert gaussian_failures(y0.clamp(0, 1), y1.clamp(0, 1), x, sigma) != []


def zero_mean_failures(y, x, std):
    return z_failures(f"E[y] at x = {x}", y.double().mean(), x, std / math.sqrt(y.numel()))


@pytest.mark.parametrize("noise,std", [
    (nz.Gaussian(0.1), lambda x: 0.1),
    (nz.Poisson(30.0), lambda x: math.sqrt(x / 30.0)),
    (nz.PoissonGaussian(30.0, 0.05), lambda x: math.sqrt(x / 30.0 + 0.05**2)),
])
def test_zero_mean_models_have_expectation_x(noise, std):
    for x in (0.0, 0.25, 1.0):
        y0, y1 = pair(torch.full((1, 1, 1000, 1000), x), noise, seed=202)
        if std(x) == 0.0:  # Poisson at x = 0: exactly zero
            assert not y0.any() and not y1.any()
            continue
        assert zero_mean_failures(y0, x, std(x)) == [] and zero_mean_failures(y1, x, std(x)) == []
        if x in (0.0, 1.0):
            assert zero_mean_failures(y0.clamp(0, 1), x, std(x)) != []  # clipping breaks E[y] = x


# ----------------------------------------------------------------------------------------------------------------
# Poisson: chi-square against the exact pmf; mean and variance where the normal approximation takes over


def poisson_counts(mean, seed):
    peak = float(np.float32(mean))
    y0, y1 = pair(torch.ones(1, 1, 1000, 1000), nz.Poisson(peak), seed=seed)
    return [torch.round(y.double() * peak).long().flatten().numpy() for y in (y0, y1)], peak


@pytest.mark.parametrize("mean", [0.1, 3.0, 9.9, 10.0, 30.0, 500.0])
def test_poisson_counts_fit_the_exact_pmf(mean):
    (k0, k1), lam = poisson_counts(mean, seed=303)
    support = np.arange(int(lam + 12 * math.sqrt(lam) + 20))
    pmf = scipy_stats.poisson.pmf(support, lam)
    pmf[-1] += scipy_stats.poisson.sf(support[-1], lam)
    assert chi_square_failures(f"copy 0 at mean {mean}", k0, pmf) == []
    assert chi_square_failures(f"copy 1 at mean {mean}", k1, pmf) == []
    assert z_failures("copies' correlation", np.corrcoef(k0, k1)[0, 1], 0.0, 1 / math.sqrt(N)) == []
    if mean == 30.0:  # the wrong sampler: a rounded normal with the right mean and variance
        rng = np.random.default_rng(7)
        wrong = np.clip(np.round(lam + math.sqrt(lam) * rng.standard_normal(N)), 0, None).astype(np.int64)
        assert chi_square_failures("rounded normal", wrong, pmf) != []


def test_poisson_normal_approximation_mean_and_variance():
    lam = 2000.0  # above 1000: floor(lam + sqrt(lam) z + 1/2)
    (k0, k1), _ = poisson_counts(lam, seed=404)
    for k in (k0, k1):
        assert z_failures("mean", k.mean(), lam, math.sqrt(lam / N)) == []
        assert z_failures("variance", k.var(), lam, lam * math.sqrt(2 / N)) == []
    assert z_failures("variance", (1.02 * k0).var(), lam, lam * math.sqrt(2 / N)) != []  # 2% too wide is caught


# ----------------------------------------------------------------------------------------------------------------
# Bernoulli drop rate per pixel; impulse rate and colour uniformity


def rate_failures(name, hits, p):
    n = hits.numel()
    return z_failures(name, hits.double().mean(), p, math.sqrt(p * (1 - p) / n))


def test_bernoulli_drop_rate_per_pixel():
    p = 0.3
    x = torch.full((4, 3, 500, 500), 0.5)  # 10^6 pixels
    y0, y1, keep = n2n_fast.noisy_pair(x, nz.Bernoulli(p), seed=505, backend=BACKEND)
    dropped0, dropped1 = y0[:, 0] == 0, ~keep[:, 0]
    assert torch.equal(dropped1, y1[:, 0] == 0)
    assert rate_failures("copy 0 drop rate", dropped0, p) == []
    assert rate_failures("target drop rate", dropped1, p) == []
    assert rate_failures("both dropped", dropped0 & dropped1, p * p) == []  # the copies drop independently
    wrong = torch.rand(dropped1.shape, generator=torch.Generator().manual_seed(5)) < p + 0.01
    assert rate_failures("wrong sampler", wrong, p) != []  # a sampler 0.01 off in p is caught


def colour_failures(colours, bins=64):
    """Uniformity of colours in [0, 1) over equal bins (chi-square)."""
    observed = np.floor(colours.double().numpy() * bins).astype(np.int64)
    return chi_square_failures("colour uniformity", observed, np.full(bins, 1.0 / bins))


def test_impulse_rate_and_colour_uniformity():
    p = 0.25
    x = torch.full((4, 3, 500, 500), 2.0)  # outside [0, 1): a replaced value is recognisable
    y0, y1 = n2n_fast.noisy_pair(x, nz.Impulse(p), seed=606, backend=BACKEND)
    for y in (y0, y1):
        hit = y[:, 0] != 2.0
        assert torch.equal(hit[:, None].expand_as(y), y != 2.0)  # whole pixels
        assert rate_failures("impulse rate", hit, p) == []
        colours = y.permute(1, 0, 2, 3)[:, hit]  # (channels, hits)
        assert colour_failures(colours.flatten()) == []
        assert z_failures("channel correlation", torch.corrcoef(colours.double())[0, 1], 0.0,
                          1 / math.sqrt(colours.shape[1])) == []
    wrong = y1[y1 != 2.0]
    assert colour_failures(wrong * 0.99) != []  # colours in [0, 0.99) instead of [0, 1)
    assert colour_failures(wrong**1.02) != []  # slightly non-uniform
