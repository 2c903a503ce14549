"""Tests of inverse-CDF importance sampling (nerf/sampling/pdf.py) against an analytic histogram CDF."""

import numpy as np
import pytest
import torch

from nerf.sampling.pdf import PDF_PADDING, merge_samples, sample_pdf

INVERSE_TOL = dict(rtol=1e-5, atol=1e-5)  # float32 on distances of order 1-5
# Kolmogorov-Smirnov critical value at alpha = 1e-3 is 1.95 / sqrt(n) for independent samples;
# the stratified quantiles make the real deviation far smaller, so this bound is generous.
KS_ALPHA_COEF = 1.95


def _histogram(seed: int, k: int, zero_bins: bool):
    """Random unequal bins on [1, 5] with random weights (optionally some exactly zero)."""
    g = torch.Generator().manual_seed(seed)
    inner = torch.sort(torch.rand(k - 1, generator=g) * 4 + 1).values
    edges = torch.cat([torch.tensor([1.0]), inner, torch.tensor([5.0])])
    weights = torch.rand(k, generator=g)
    if zero_bins:
        weights[torch.rand(k, generator=g) < 0.3] = 0.0
    return edges, weights


def _analytic_cdf(edges: np.ndarray, weights: np.ndarray):
    """CDF values at the edges of a piecewise-constant pdf (float64, independent of the code)."""
    w = weights.astype(np.float64)
    return np.concatenate([[0.0], np.cumsum(w) / w.sum()])


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("padding", [0.0, PDF_PADDING])
def test_all_weight_in_one_bin(deterministic, padding):
    k, n = 64, 128
    edges = torch.linspace(2.0, 6.0, k + 1).expand(3, k + 1)
    weights = torch.zeros(3, k)
    hot = torch.tensor([0, 17, 63])
    weights[torch.arange(3), hot] = 1.0
    t = sample_pdf(edges, weights, n, deterministic, torch.Generator().manual_seed(0), padding=padding)
    assert t.shape == (3, n)
    lo, hi = edges[0, hot][:, None], edges[0, hot + 1][:, None]
    if padding == 0.0 or deterministic:
        # With padding, the mass outside the hot bin (k * padding ~ 6e-4) stays below the
        # first and last quantile centres 1 / (2n) ~ 4e-3, so no centre falls outside it.
        assert bool((t >= lo).all()) and bool((t <= hi).all())
    else:
        # Random quantiles may land in the padding mass; expected outside count = n * 6e-4 each.
        outside = ((t < lo) | (t > hi)).float().mean()
        assert float(outside) < 0.02


def test_deterministic_is_exact_inverse_cdf_at_quantile_centres():
    edges, weights = _histogram(1, 20, zero_bins=False)
    n = 50
    t = sample_pdf(edges[None], weights[None], n, deterministic=True, padding=0.0)[0]
    u = (np.arange(n) + 0.5) / n
    cdf = _analytic_cdf(edges.numpy(), weights.numpy())
    expected = np.interp(u, cdf, edges.numpy().astype(np.float64))
    torch.testing.assert_close(t, torch.from_numpy(expected).float(), **INVERSE_TOL)


@pytest.mark.parametrize("zero_bins", [False, True])
def test_random_samples_follow_the_pdf(zero_bins):
    """Kolmogorov-Smirnov distance between the samples and the analytic CDF."""
    edges, weights = _histogram(2, 24, zero_bins)
    n_rays, n = 400, 64
    t = sample_pdf(
        edges.expand(n_rays, -1), weights.expand(n_rays, -1), n, False,
        torch.Generator().manual_seed(3), padding=0.0,
    )
    samples = np.sort(t.numpy().astype(np.float64).reshape(-1))
    cdf = _analytic_cdf(edges.numpy(), weights.numpy())
    model = np.interp(samples, edges.numpy().astype(np.float64), cdf)
    m = samples.size
    ks = max(np.max(np.arange(1, m + 1) / m - model), np.max(model - np.arange(m) / m))
    assert ks < KS_ALPHA_COEF / np.sqrt(m)
    if zero_bins:
        # No sample strictly inside an interval of zero weight.
        idx = np.clip(np.searchsorted(edges.numpy(), samples, side="right") - 1, 0, len(weights) - 1)
        interior = (samples > edges.numpy()[idx]) & (samples < edges.numpy()[idx + 1])
        assert not np.any(interior & (weights.numpy()[idx] == 0))


def test_samples_sorted_within_bounds_and_detached():
    edges, weights = _histogram(4, 16, zero_bins=True)
    edges = edges.expand(5, -1).clone()
    weights = weights.expand(5, -1).clone().requires_grad_(True)
    t = sample_pdf(edges, weights, 33, False, torch.Generator().manual_seed(5))
    assert not t.requires_grad
    assert bool((t[:, 1:] >= t[:, :-1]).all())
    assert bool((t >= edges[:, :1]).all()) and bool((t <= edges[:, -1:]).all())


def test_zero_weights_without_padding_sample_uniformly():
    k, n = 10, 20
    edges = torch.linspace(0.0, 2.0, k + 1)[None]
    t = sample_pdf(edges, torch.zeros(1, k), n, deterministic=True, padding=0.0)
    expected = 2.0 * (torch.arange(n) + 0.5) / n
    torch.testing.assert_close(t[0], expected, **INVERSE_TOL)
    assert sample_pdf(edges, torch.zeros(1, k), 0, deterministic=True).shape == (1, 0)


def test_generator_makes_samples_reproducible():
    edges, weights = _histogram(6, 8, zero_bins=False)
    a = sample_pdf(edges[None], weights[None], 9, False, torch.Generator().manual_seed(7))
    b = sample_pdf(edges[None], weights[None], 9, False, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_merge_samples_sorts_the_union():
    a = torch.tensor([[1.0, 3.0, 5.0], [0.0, 0.5, 0.9]])
    b = torch.tensor([[2.0, 6.0], [0.5, 0.1]])
    merged = merge_samples(a, b)
    assert torch.equal(merged, torch.tensor([[1.0, 2.0, 3.0, 5.0, 6.0], [0.0, 0.1, 0.5, 0.5, 0.9]]))


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="t_edges"):
        sample_pdf(torch.zeros(2, 5), torch.zeros(2, 5), 4, True)
