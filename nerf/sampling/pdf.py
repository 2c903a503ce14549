"""Importance sampling along rays by inverting a piecewise-constant CDF (NeRF's fine pass).

Vocabulary: a ray's coarse pass gives interval edges `t_edges [N, K + 1]` and compositing
weights `weights [N, K]`. Read as a histogram, they define a pdf constant on each interval,
p(t) proportional to (w_k + padding) / (t_{k+1} - t_k) on [t_k, t_{k+1}], whose CDF is
piecewise linear and rises by the normalised w_k + padding across interval k. Fine samples are
that CDF inverted at quantiles u in [0, 1). The padding keeps every interval reachable (NeRF
adds 1e-5) and guards against rays whose weights are all zero. No gradient flows through the
sample positions: they are where to look, not something to optimise.
"""

from __future__ import annotations

import torch
from torch import Tensor

PDF_PADDING = 1e-5  # added to every weight before normalising, as in NeRF's sample_pdf


def sample_pdf(
    t_edges: Tensor,  # [N, K + 1] sorted
    weights: Tensor,  # [N, K]
    n_samples: int,
    deterministic: bool,
    generator: torch.Generator | None = None,
    padding: float = PDF_PADDING,
) -> Tensor:  # [N, n_samples] sorted, detached
    """Draw samples from the piecewise-constant pdf given by weights on intervals.

    Quantiles are stratified: u_i = (i + xi_i) / n with xi_i ~ U[0, 1), or xi_i = 1/2 when
    `deterministic` (the centres of n equal quantile bins, so the result is the exact inverse
    CDF at those quantiles). For u with CDF(t_k) <= u < CDF(t_{k+1}):
        t = t_k + (u - CDF(t_k)) / (CDF(t_{k+1}) - CDF(t_k)) * (t_{k+1} - t_k).

    Args:
        t_edges: [N, K + 1] sorted interval edges of each ray.
        weights: [N, K] non-negative weight of each interval (e.g. coarse compositing weights);
            negative values are treated as zero.
        n_samples: samples to draw per ray (0 gives an empty [N, 0]).
        deterministic: use the centres of equal quantile bins instead of jittered quantiles.
        generator: random generator on t_edges' device, for reproducible jitter.
        padding: added to every weight before normalising; rays whose padded weights sum to
            zero are sampled uniformly.

    Returns:
        t: [N, n_samples] sorted sample distances inside [t_edges[:, 0], t_edges[:, -1]].
    """
    if t_edges.dim() != 2 or weights.dim() != 2 or t_edges.shape != (weights.shape[0], weights.shape[1] + 1):
        raise ValueError(
            f"sample_pdf: need t_edges [N, K + 1] and weights [N, K], "
            f"got {tuple(t_edges.shape)} and {tuple(weights.shape)}"
        )
    if n_samples < 0:
        raise ValueError(f"sample_pdf: n_samples must be >= 0, got {n_samples}")
    t_edges = t_edges.detach()
    n_rays, k = weights.shape
    dtype, device = t_edges.dtype, t_edges.device
    w = weights.detach().to(dtype).clamp_min(0.0) + padding
    cum = torch.cumsum(w, dim=-1)
    total = cum[:, -1:]
    uniform = torch.arange(1, k + 1, dtype=dtype, device=device).expand(n_rays, k)
    cum = torch.where(total > 0, cum, uniform)
    cdf = torch.cat([torch.zeros_like(cum[:, :1]), cum / cum[:, -1:]], dim=-1).contiguous()  # [N, K + 1]

    if deterministic:
        xi = torch.full((n_rays, n_samples), 0.5, dtype=dtype, device=device)
    else:
        xi = torch.rand((n_rays, n_samples), generator=generator, dtype=dtype, device=device)
    u = (torch.arange(n_samples, dtype=dtype, device=device) + xi) / n_samples
    u = u.clamp(max=1.0 - torch.finfo(dtype).eps / 2).contiguous()  # largest float below 1

    # right=True picks the interval with cdf[k] <= u < cdf[k + 1], skipping zero-mass intervals.
    k_idx = (torch.searchsorted(cdf, u, right=True) - 1).clamp(0, k - 1)
    cdf_lo = torch.gather(cdf, -1, k_idx)
    cdf_hi = torch.gather(cdf, -1, k_idx + 1)
    t_lo = torch.gather(t_edges, -1, k_idx)
    t_hi = torch.gather(t_edges, -1, k_idx + 1)
    mass = cdf_hi - cdf_lo
    frac = torch.where(mass > 0, (u - cdf_lo) / torch.where(mass > 0, mass, torch.ones_like(mass)), torch.zeros_like(u))
    return t_lo + frac.clamp(0.0, 1.0) * (t_hi - t_lo)


def merge_samples(
    t_a: Tensor,  # [N, A]
    t_b: Tensor,  # [N, B]
) -> Tensor:  # [N, A + B] sorted
    """Merge two sets of per-ray sample distances into one sorted set (coarse + fine samples).

    Args:
        t_a: [N, A] sample distances.
        t_b: [N, B] sample distances.

    Returns:
        t: [N, A + B] the union, sorted along each ray.
    """
    if t_a.dim() != 2 or t_b.dim() != 2 or t_a.shape[0] != t_b.shape[0]:
        raise ValueError(f"merge_samples: need [N, A] and [N, B], got {tuple(t_a.shape)} and {tuple(t_b.shape)}")
    return torch.sort(torch.cat([t_a, t_b.to(t_a)], dim=-1), dim=-1).values
