"""The public ray-marching op: input checks, the shared ray/box set-up, and backend choice.

`march` walks each ray through the occupancy grid and returns packed samples (intervals whose
midpoint lies in an occupied cell), optionally pruned by transmittance. It does the set-up every
backend shares once: where each ray enters and leaves the box of occupied cells, clipped to
[near, far], and the stratified jitter of the start. Backends share one signature,
`march(grid, origins, directions, t0, t1, step, cone_angle, sigma_fn, early_stop_eps)`:

    "torch"   nerf.sampling.march_reference   the PyTorch loop; the CPU path, the specification
    "triton"  nerf.sampling.march_triton      count/fill kernels, then the same early stop;
                                              CUDA, or the CPU under TRITON_INTERPRET=1 (tests)
    "numba"   nerf.sampling.march_numba       CPU kernels, parallel over rays, skipping empty
                                              blocks of cells: count/fill, or with sigma_fn
                                              batches of occupied candidates and the early stop
                                              in numba (compiled at first use)

"auto" picks Triton for CUDA tensors when it is usable, numba for float32 CPU tensors when numba
imports, PyTorch otherwise (`nerf.backends`). numba gives the reference's samples bit for bit
without sigma_fn; with it the kept samples too, except one whose optical depth lies within
rounding of -log(eps), and it asks sigma_fn in other batches (see `nerf.sampling.march_numba`);
Triton gives them up to float rounding of
the geometric steps (see the docstring of `nerf.sampling.march_triton`). Backends are imported
on first use, so importing this module needs neither Triton, numba nor a GPU.

The step rule is `nerf.sampling.steps`; the grid and its cascades are `nerf.sampling.occupancy`.
"""

from __future__ import annotations

import importlib
from typing import Callable

import torch
from torch import Tensor

from nerf import backends
from nerf.sampling.occupancy import OccupancyGrid
from nerf.sampling.packed import PackedSamples
from nerf.sampling.stratified import ray_aabb_intersect

BACKENDS = ("torch", "triton", "numba")
MODULES = {
    "torch": "nerf.sampling.march_reference",
    "triton": "nerf.sampling.march_triton",
    "numba": "nerf.sampling.march_numba",
}


def pick_backend(backend: str, device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """The marching backend for rays on `device`: "auto" resolved, an unusable one refused.

    Args:
        backend: "torch", "triton" (CUDA, or the CPU under TRITON_INTERPRET=1), "numba" (CPU
            tensors, numba installed) or "auto" (triton for CUDA tensors when it is usable, numba
            for float32 CPU tensors when it is usable, else torch).
        device: where the rays live.
        dtype: the rays' dtype; "auto" picks numba only for float32 (its arithmetic is float32).

    Returns:
        "torch", "triton" or "numba".

    Raises:
        nerf.backends.BackendError (a ValueError): the name is unknown or cannot run on `device`.
    """
    auto = ("triton", "numba") if dtype == torch.float32 else ("triton",)
    return backends.resolve(backend, BACKENDS, device, "march", auto=auto)


def _check_inputs(grid: OccupancyGrid, origins: Tensor, directions: Tensor, step: float) -> None:
    """Raise ValueError naming the first argument that breaks the contract of `march`."""
    n = origins.shape[0] if origins.dim() == 2 else -1
    for name, tensor in (("origins", origins), ("directions", directions)):
        if tensor.dim() != 2 or tensor.shape[1] != 3 or tensor.shape[0] != n:
            raise ValueError(f"march: {name} must have shape [N, 3] (N from origins), got {list(tensor.shape)}")
        if not tensor.is_floating_point():
            raise ValueError(f"march: {name} must be floating point, got {tensor.dtype}")
        if tensor.device != grid.binaries.device:
            raise ValueError(f"march: {name} is on {tensor.device} but the grid is on {grid.binaries.device}")
    if not step > 0:
        raise ValueError(f"march: step must be positive, got {step}")


@torch.no_grad()
def march(
    grid: OccupancyGrid,
    origins: Tensor,  # [N, 3]
    directions: Tensor,  # [N, 3] unit
    step: float,
    cone_angle: float = 0.0,
    near: float | None = None,
    far: float | None = None,
    sigma_fn: Callable | None = None,  # (t_starts, t_ends, ray_ids) [P] -> sigmas [P] or (sigmas, payload [P, D])
    early_stop_eps: float = 1e-4,
    stratified: bool = False,
    generator: torch.Generator | None = None,
    backend: str = "torch",
) -> PackedSamples:  # t_starts [S], t_ends [S], ray_indices [S], payload [S, D] or None
    """Packed samples along each ray inside occupied cells of `grid`.

    A ray is marched from where it enters `grid.occupied_box` (no earlier than `near`, and no
    earlier than 0) to where it leaves it (no later than `far`); with `stratified` the start moves
    forward by a uniform random fraction of `step`. Steps follow `nerf.sampling.steps`.

    Args:
        grid: the occupancy grid (its `binaries`, cascades and occupied box are read).
        origins: [N, 3] ray origins, on the grid's device.
        directions: [N, 3] unit ray directions.
        step: the constant step near the origin (> 0).
        cone_angle: steps grow as t * cone_angle once that exceeds `step`; 0 keeps them constant.
        near, far: optional bounds on t.
        sigma_fn: None keeps every occupied sample. Otherwise densities are evaluated without
            gradient, a block of candidates per live ray at a time, and samples behind a
            transmittance below `early_stop_eps` are dropped, so training back-propagates only
            through samples that matter. When it returns (sigmas, payload) (e.g. colours at
            inference), the kept samples' rows come back in `PackedSamples.payload`, so nothing
            is evaluated twice.
        early_stop_eps: transmittance threshold used with `sigma_fn`.
        stratified: jitter each ray's start (training).
        generator: random generator on the rays' device, for reproducible jitter.
        backend: "torch" (default), "triton", "numba" or "auto" (see the module docstring).

    Returns:
        PackedSamples: sorted by ray, t ascending within a ray, `n_rays` = N.

    Raises:
        ValueError: a shape, dtype, device or step breaks the contract above, or the backend is
            unknown or cannot run on the rays' device.
    """
    _check_inputs(grid, origins, directions, step)
    chosen = pick_backend(backend, origins.device, origins.dtype)
    n, dev = origins.shape[0], origins.device
    t0, t1, hit = ray_aabb_intersect(origins, directions, grid.occupied_box)
    t0 = t0.clamp_min(0.0 if near is None else near)
    if far is not None:
        t1 = t1.clamp_max(far)
    hit = hit & (t1 > t0)
    t0 = torch.where(hit, t0, torch.zeros_like(t0))
    t1 = torch.where(hit, t1, torch.zeros_like(t1))
    if stratified:
        t0 = t0 + torch.rand(n, device=dev, generator=generator) * step
    impl = importlib.import_module(MODULES[chosen]).march
    return impl(grid, origins, directions, t0, t1, step, cone_angle, sigma_fn, early_stop_eps)
