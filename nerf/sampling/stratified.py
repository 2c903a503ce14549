"""Samples along rays between per-ray bounds: stratified positions, their intervals, box clipping.

Vocabulary: t is a distance along a unit direction, in world units. A ray's K sample positions
`t [N, K]` are sorted. Each sample owns the interval between the midpoints to its neighbours;
the first interval opens at `near` and the last closes at `far`, so the K intervals of a ray
tile [near, far] exactly (`sample_edges`). `to_packed` flattens those intervals into the packed
layout of nerf/conventions.py (S = N * K, ray_indices sorted).

Stratified sampling (NeRF, Mildenhall et al. 2020, eq. 2) splits [near, far] into K equal bins
and draws one position per bin: uniformly inside it when `perturb`, at its centre otherwise.
With `lindisp` the bins are equal in disparity 1/t instead (LLFF forward-facing scenes), which
spends more samples close to the camera.
"""

from __future__ import annotations

import torch
from torch import Tensor


def stratified_samples(
    near: Tensor,  # [N]
    far: Tensor,  # [N]
    n_samples: int,
    perturb: bool,
    generator: torch.Generator | None = None,
    lindisp: bool = False,
) -> Tensor:  # [N, K] sorted, in [near, far]
    """Draw K stratified sample positions per ray in [near, far].

    Bin k of a ray covers s in [k / K, (k + 1) / K) of the unit parameter s, mapped to
    t = near + (far - near) s, or to 1 / t = (1 - s) / near + s / far with `lindisp`.

    Args:
        near: [N] start distance of each ray (> 0 when `lindisp`).
        far: [N] end distance of each ray (>= near).
        n_samples: K, samples per ray (>= 1).
        perturb: jitter each sample uniformly inside its bin; otherwise take the bin centre.
        generator: random generator on near's device, for reproducible jitter.
        lindisp: bins equal in disparity instead of distance.

    Returns:
        t: [N, K] sorted sample distances, near <= t <= far.
    """
    if near.dim() != 1 or far.shape != near.shape:
        raise ValueError(
            f"stratified_samples: near and far must both be [N], got {tuple(near.shape)} and {tuple(far.shape)}"
        )
    if n_samples < 1:
        raise ValueError(f"stratified_samples: n_samples must be >= 1, got {n_samples}")
    if lindisp and not bool((near > 0).all()):
        raise ValueError("stratified_samples: lindisp=True needs near > 0 on every ray")
    n_rays = near.shape[0]
    if perturb:
        offset = torch.rand((n_rays, n_samples), generator=generator, dtype=near.dtype, device=near.device)
    else:
        offset = torch.full((n_rays, n_samples), 0.5, dtype=near.dtype, device=near.device)
    s = (torch.arange(n_samples, dtype=near.dtype, device=near.device) + offset) / n_samples
    near_, far_ = near[:, None], far[:, None]
    if lindisp:
        t = 1.0 / ((1.0 - s) / near_ + s / far_)
    else:
        t = near_ + (far_ - near_) * s
    # Rounding may step a jittered sample a hair past a bound; the bounds are the contract.
    return torch.minimum(torch.maximum(t, near_), far_)


def sample_edges(
    t: Tensor,  # [N, K] sorted sample distances
    near: Tensor,  # [N]
    far: Tensor,  # [N]
) -> Tensor:  # [N, K + 1]
    """Interval edges around sorted samples: near, midpoints between neighbours, far.

    Args:
        t: [N, K] sorted sample distances inside [near, far].
        near: [N] first edge of each ray.
        far: [N] last edge of each ray.

    Returns:
        t_edges: [N, K + 1]; sample k owns [t_edges[:, k], t_edges[:, k + 1]].
    """
    mids = 0.5 * (t[:, 1:] + t[:, :-1])
    return torch.cat([near[:, None].to(t), mids, far[:, None].to(t)], dim=-1)


def to_packed(
    t_edges: Tensor,  # [N, K + 1]
) -> tuple[Tensor, Tensor, Tensor]:  # t_starts [S], t_ends [S], ray_indices [S]
    """Flatten per-ray interval edges into packed samples (S = N * K, rays in order).

    Args:
        t_edges: [N, K + 1] sorted interval edges of each ray.

    Returns:
        t_starts: [S] interval starts.
        t_ends: [S] interval ends.
        ray_indices: [S] int64, sorted ascending; sample s belongs to ray ray_indices[s].
    """
    if t_edges.dim() != 2 or t_edges.shape[1] < 2:
        raise ValueError(f"to_packed: t_edges must be [N, K + 1] with K >= 1, got {tuple(t_edges.shape)}")
    n_rays, k = t_edges.shape[0], t_edges.shape[1] - 1
    t_starts = t_edges[:, :-1].reshape(-1)
    t_ends = t_edges[:, 1:].reshape(-1)
    ray_indices = torch.arange(n_rays, device=t_edges.device).repeat_interleave(k)
    return t_starts, t_ends, ray_indices


def ray_aabb_intersect(
    origins: Tensor,  # [N, 3]
    directions: Tensor,  # [N, 3]
    aabb: Tensor,  # [2, 3] min row, max row
) -> tuple[Tensor, Tensor, Tensor]:  # t_near [N], t_far [N], hit [N] bool
    """Clip rays to an axis-aligned box with the slab method.

    Per axis the ray is inside the slab for t between (lo - o) / d and (hi - o) / d; the box
    is the intersection of the three slabs. A zero direction component (either sign) means the
    ray never crosses that slab: it is inside for every t if lo <= o <= hi, else for none.
    The part of the ray behind the origin is cut off, so an origin inside the box gives
    t_near = 0. A ray hits when the remaining segment has positive length (t_far > t_near);
    rays that only graze an edge or corner, or whose box lies behind them, miss.

    Args:
        origins: [N, 3] ray origins.
        directions: [N, 3] ray directions (need not be unit; t is in units of |d|).
        aabb: [2, 3] box corners (min row, max row).

    Returns:
        t_near: [N] entry distance, >= 0; 0 for rays that miss.
        t_far: [N] exit distance; 0 for rays that miss.
        hit: [N] bool, whether the ray crosses the box in front of its origin.
    """
    if origins.dim() != 2 or origins.shape[-1] != 3 or directions.shape != origins.shape:
        raise ValueError(
            f"ray_aabb_intersect: origins and directions must both be [N, 3], "
            f"got {tuple(origins.shape)} and {tuple(directions.shape)}"
        )
    if aabb.shape != (2, 3):
        raise ValueError(f"ray_aabb_intersect: aabb must be [2, 3], got {tuple(aabb.shape)}")
    aabb = aabb.to(origins)
    lo, hi = aabb[0], aabb[1]
    parallel = directions == 0
    safe_d = torch.where(parallel, torch.ones_like(directions), directions)
    t0 = (lo - origins) / safe_d
    t1 = (hi - origins) / safe_d
    t_enter = torch.minimum(t0, t1)
    t_exit = torch.maximum(t0, t1)
    inside_slab = (origins >= lo) & (origins <= hi)
    inf = torch.full_like(t_enter, float("inf"))
    t_enter = torch.where(parallel, torch.where(inside_slab, -inf, inf), t_enter)
    t_exit = torch.where(parallel, torch.where(inside_slab, inf, -inf), t_exit)
    t_near = t_enter.amax(dim=-1).clamp_min(0.0)
    t_far = t_exit.amin(dim=-1)
    hit = t_far > t_near
    zero = torch.zeros_like(t_near)
    return torch.where(hit, t_near, zero), torch.where(hit, t_far, zero), hit
