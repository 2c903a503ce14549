"""Ray marching through the occupancy grid in PyTorch: the reference backend of `nerf.sampling.march`.

Same signature as the Triton backend `nerf.sampling.march_triton.march`; the dispatcher
`nerf.sampling.march.march` has already computed where each ray enters and leaves the box of
occupied cells. Steps follow `nerf.sampling.steps`; a sample is the interval
[t_i, min(t_i + dt_i, t1)] whose midpoint lies in an occupied cell (`OccupancyGrid.is_occupied`).

Rays advance together `MARCH_BLOCK` steps at a time; with `sigma_fn`, a ray retires as soon as
its transmittance falls below `early_stop_eps`, so densities are evaluated only up to the first
opaque surface (instant-ngp's compaction loop).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from nerf.sampling.occupancy import OccupancyGrid
from nerf.sampling.packed import PackedSamples, empty_samples
from nerf.sampling.steps import MARCH_BLOCK, MAX_CANDIDATES_PER_CHUNK, step_counts, step_positions


@torch.no_grad()
def march(
    grid: OccupancyGrid,
    origins: Tensor,  # [N, 3]
    directions: Tensor,  # [N, 3] unit
    t0: Tensor,  # [N] where marching starts
    t1: Tensor,  # [N] where it ends (t1 <= t0: no samples)
    step: float,
    cone_angle: float,
    sigma_fn: Callable | None,  # (t_starts, t_ends, ray_ids) -> sigmas [P] or (sigmas, payload [P, D])
    early_stop_eps: float,
) -> PackedSamples:
    """Packed samples in occupied cells from t0 to t1, pruned by transmittance when `sigma_fn` is given.

    Args:
        grid: the occupancy grid.
        origins, directions: [N, 3] rays (unit directions).
        t0, t1: [N] the marched interval of each ray.
        step, cone_angle: the step rule of `nerf.sampling.steps`.
        sigma_fn: None keeps every occupied sample; otherwise densities of a subset of samples,
            and with (sigmas, payload) the kept samples' payload rows come back in
            `PackedSamples.payload`.
        early_stop_eps: transmittance threshold used with `sigma_fn`.

    Returns:
        PackedSamples, sorted by ray, t ascending within a ray.
    """
    n, dev = origins.shape[0], origins.device
    counts = step_counts(t0, t1, step, cone_angle)
    active = torch.nonzero(counts > 0).squeeze(-1)
    tau_acc = torch.zeros(n, device=dev)
    parts: list[tuple[Tensor, ...]] = []
    k = 0
    while len(active):
        block = max(1, min(MARCH_BLOCK, MAX_CANDIDATES_PER_CHUNK // len(active)))
        starts, dts = step_positions(t0[active], block, step, cone_angle, first=k)  # [n, B]
        ends = torch.minimum(starts + dts, t1[active, None])
        keep = starts < t1[active, None]
        mid = 0.5 * (starts + ends)
        pts = origins[active, None, :] + directions[active, None, :] * mid[..., None]
        keep[keep.clone()] = grid.is_occupied(pts[keep])
        payload = None
        if sigma_fn is not None and bool(keep.any()):
            ray_ids = active[:, None].expand_as(keep)[keep]
            out = sigma_fn(starts[keep], ends[keep], ray_ids)
            sig, extra = out if isinstance(out, tuple) else (out, None)
            tau = torch.zeros_like(starts)
            tau[keep] = sig.float() * (ends - starts)[keep]
            excl = tau_acc[active, None] + torch.cumsum(tau, dim=1) - tau
            survive = torch.exp(-excl) >= early_stop_eps
            if extra is not None:
                payload = extra[survive[keep]]
            keep &= survive
            tau_acc[active] += tau.sum(dim=1)
        parts.append((starts[keep], ends[keep], active[:, None].expand_as(keep)[keep], payload))
        k += block
        alive = counts[active] > k
        if sigma_fn is not None:
            alive &= torch.exp(-tau_acc[active]) >= early_stop_eps
        active = active[alive]
    if not parts:
        return empty_samples(n, origins)
    t_starts, t_ends, ray_ids = (torch.cat([p[i] for p in parts]) for i in range(3))
    order = torch.argsort(ray_ids, stable=True)  # blocks arrive in t order within each ray
    payloads = [p[3] for p in parts if p[3] is not None]
    payload = None
    if payloads:  # blocks that kept nothing returned no payload: they contribute no rows
        payload = torch.cat(payloads)[order]
        assert len(payload) == len(order), "payload rows must match the kept samples"
    return PackedSamples(t_starts[order], t_ends[order], ray_ids[order], n, payload)
