"""Ray marching through the occupancy grid as Triton kernels (count, then fill): the "triton"
backend of `nerf.sampling.march`.

Same signature as the PyTorch reference `nerf.sampling.march_reference.march`, same step rule
(`nerf.sampling.steps`) and occupancy test (`nerf.sampling.occupancy`). One program walks a
block of `BLOCK_RAYS` rays, one lane per ray, with the reference's closed-form step positions

    t_i = t0 + i * step                                  for i < n_uniform
    t_i = t_geo * (1 + cone_angle)^(i - n_uniform)       after, t_geo = t0 + n_uniform * step
    dt_i = step (uniform part) or t_i * cone_angle,      n_uniform = ceil(max(t_switch - t0, 0) / step)

and keeps interval [t_i, min(t_i + dt_i, t1)] when t_i < t1 and its midpoint lies in an
occupied cell of the finest cascade containing it (the cascade rule of `OccupancyGrid.cell_of`).
The grid is read as a bitfield, 8 cells per byte (`OccupancyGrid.bitfield`), so a 128^3 cascade
is 256 KiB and stays in L2.

Two launches of one kernel: the first counts each ray's samples, an exclusive prefix sum gives
each ray's offset into the packed output, the second repeats the walk and writes t_starts,
t_ends and ray_indices there. Output is packed ray by ray, t ascending (nerf/conventions.py).

Agreement with the reference. Uniform steps and cell indices use the same float32 operations
in the same order, with IEEE division (`div_rn`) and FMA contraction off
(`enable_fp_fusion=False`), so they round exactly as torch does. The geometric part differs by
rounding: the kernel evaluates (1 + c)^e as exp2(e * log2(1 + c)) (log2 taken in float64 on
the host), torch calls pow; the relative difference of t stays below 1e-5 for
exponents up to a few thousand steps. So with cone_angle > 0 a midpoint lying within rounding
distance of a cell face can land in the neighbouring cell in one implementation and not the
other (likewise a point on a cascade boundary, below); everywhere else the two sample sets are
identical. Tests therefore match samples by t with a tolerance and accept an unmatched sample
only where its midpoint is that close to a face.

The cascade is found by comparison, max|x - centre| <= base_half * 2^k for the smallest k,
rather than by the reference's ceil(log2(.)): the same number except where log2 rounds.

`march` adds the reference's early stop for `sigma_fn` (`prune_by_transmittance` of
`nerf.sampling.packed`, torch code): the kernel's candidates are evaluated `MARCH_BLOCK` samples
per ray at a time and a ray retires once its transmittance falls below `early_stop_eps`. A sample is kept when the transmittance in
front of it is >= eps, which does not depend on how samples are grouped into blocks, so the
result is the reference's (up to summation order of the optical depth).

Under `TRITON_INTERPRET=1` the kernel runs on CPU tensors in Triton's interpreter (slow, for
tests).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import triton
import triton.language as tl
from torch import Tensor

from nerf.sampling.occupancy import OccupancyGrid
from nerf.sampling.packed import PackedSamples, prune_by_transmittance
from nerf.sampling.steps import step_counts

# Rays per program, one lane each: 128 rays keep four warps busy. Lanes of a block loop until
# the block's longest ray is done, so neighbouring rays (adjacent pixels) should share blocks.
BLOCK_RAYS = 128
NUM_WARPS = 4


@triton.jit
def _is_occupied(
    px, py, pz,  # [BLOCK] sample midpoints
    live,  # [BLOCK] lanes that test a sample
    bitfield_ptr,  # [L, BYTES] uint8
    cx, cy, cz,  # grid centre
    base_half,  # half-size of cascade 0
    RES: tl.constexpr,
    CASCADES: tl.constexpr,
    BYTES: tl.constexpr,
):
    """Occupancy of each point in the finest cascade that contains it (`OccupancyGrid.cell_of`)."""
    rx = px - cx
    ry = py - cy
    rz = pz - cz
    max_abs = tl.maximum(tl.maximum(tl.abs(rx), tl.abs(ry)), tl.abs(rz))
    scale = tl.zeros_like(max_abs) + base_half
    level = tl.zeros(max_abs.shape, dtype=tl.int32)
    for _ in tl.static_range(CASCADES - 1):
        grow = max_abs > scale  # ceil(log2(max_abs / base_half)) > current level
        scale = tl.where(grow, scale * 2.0, scale)
        level += grow.to(tl.int32)
    inside = max_abs <= scale
    # Clamping before the integer conversion equals the reference's truncate-then-clamp.
    ux = tl.minimum(tl.maximum((tl.math.div_rn(rx, scale) + 1.0) * 0.5 * RES, 0.0), RES - 1.0).to(tl.int32)
    uy = tl.minimum(tl.maximum((tl.math.div_rn(ry, scale) + 1.0) * 0.5 * RES, 0.0), RES - 1.0).to(tl.int32)
    uz = tl.minimum(tl.maximum((tl.math.div_rn(rz, scale) + 1.0) * 0.5 * RES, 0.0), RES - 1.0).to(tl.int32)
    cell = ux * (RES * RES) + uy * RES + uz
    test = live & inside
    byte = tl.load(bitfield_ptr + level * BYTES + (cell >> 3), mask=test, other=0).to(tl.int32)
    return test & (((byte >> (cell & 7)) & 1) != 0)


@triton.jit
def _march_kernel(
    origins_ptr,  # [N, 3] float32
    directions_ptr,  # [N, 3] float32
    t0_ptr,  # [N] float32
    t1_ptr,  # [N] float32
    n_steps_ptr,  # [N] int32 steps to try per ray
    bitfield_ptr,  # [L, BYTES] uint8
    counts_ptr,  # [N] int32 out (count pass)
    offsets_ptr,  # [N] int64 exclusive prefix sum of counts (fill pass)
    t_starts_ptr,  # [S] float32 out (fill pass)
    t_ends_ptr,  # [S] float32 out (fill pass)
    ray_indices_ptr,  # [S] int64 out (fill pass)
    n_rays,
    step,
    cone_angle,
    t_switch,  # step / cone_angle: where steps start to grow
    log2_growth,  # log2(1 + cone_angle)
    cx, cy, cz,
    base_half,
    RES: tl.constexpr,
    CASCADES: tl.constexpr,
    BYTES: tl.constexpr,
    GEOMETRIC: tl.constexpr,
    FILL: tl.constexpr,
    BLOCK: tl.constexpr,
):
    rays = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    in_range = rays < n_rays
    ox = tl.load(origins_ptr + rays * 3, mask=in_range, other=0.0)
    oy = tl.load(origins_ptr + rays * 3 + 1, mask=in_range, other=0.0)
    oz = tl.load(origins_ptr + rays * 3 + 2, mask=in_range, other=0.0)
    dx = tl.load(directions_ptr + rays * 3, mask=in_range, other=0.0)
    dy = tl.load(directions_ptr + rays * 3 + 1, mask=in_range, other=0.0)
    dz = tl.load(directions_ptr + rays * 3 + 2, mask=in_range, other=0.0)
    t0 = tl.load(t0_ptr + rays, mask=in_range, other=0.0)
    t1 = tl.load(t1_ptr + rays, mask=in_range, other=0.0)
    n_steps = tl.load(n_steps_ptr + rays, mask=in_range, other=0)
    if FILL:
        out = tl.load(offsets_ptr + rays, mask=in_range, other=0)
    count = tl.zeros([BLOCK], dtype=tl.int32)
    n_uniform = tl.zeros_like(t0)
    if GEOMETRIC:
        n_uniform = tl.ceil(tl.math.div_rn(tl.maximum(t_switch - t0, 0.0), tl.zeros_like(t0) + step))
    t_geo = t0 + n_uniform * step

    for i in range(0, tl.max(n_steps, axis=0)):
        fi = tl.zeros_like(t0) + i
        start = t0 + fi * step
        dt = tl.zeros_like(t0) + step
        if GEOMETRIC:
            geometric = t_geo * tl.exp2(tl.maximum(fi - n_uniform, 0.0) * log2_growth)
            uniform = fi < n_uniform
            start = tl.where(uniform, start, geometric)
            dt = tl.where(uniform, dt, geometric * cone_angle)
        end = tl.minimum(start + dt, t1)
        live = (i < n_steps) & (start < t1)
        mid = 0.5 * (start + end)
        keep = _is_occupied(ox + dx * mid, oy + dy * mid, oz + dz * mid, live, bitfield_ptr, cx, cy, cz, base_half,
                            RES, CASCADES, BYTES)
        if FILL:
            slot = out + count
            tl.store(t_starts_ptr + slot, start, mask=keep)
            tl.store(t_ends_ptr + slot, end, mask=keep)
            tl.store(ray_indices_ptr + slot, rays.to(tl.int64), mask=keep)
        count += keep.to(tl.int32)

    if not FILL:
        tl.store(counts_ptr + rays, count, mask=in_range)


def _check_inputs(grid, origins, directions, t0, t1, step) -> None:
    """Raise ValueError naming the first argument that breaks the contract of `march_triton`."""
    n = origins.shape[0]
    for name, tensor, shape in (
        ("origins", origins, (n, 3)), ("directions", directions, (n, 3)), ("t0", t0, (n,)), ("t1", t1, (n,))
    ):
        if tuple(tensor.shape) != shape:
            raise ValueError(f"march_triton: {name} must have shape {list(shape)} (N={n}), got {list(tensor.shape)}")
        if tensor.device != grid.binaries.device:
            raise ValueError(f"march_triton: {name} is on {tensor.device} but the grid is on {grid.binaries.device}")
        if not tensor.is_floating_point():
            raise ValueError(f"march_triton: {name} must be floating point, got {tensor.dtype}")
    if not step > 0:
        raise ValueError(f"march_triton: step must be positive, got {step}")


def march_triton(
    grid: OccupancyGrid,
    origins: Tensor,  # [N, 3]
    directions: Tensor,  # [N, 3] unit
    t0: Tensor,  # [N]
    t1: Tensor,  # [N]
    step: float,
    cone_angle: float = 0.0,
    bitfield: Tensor | None = None,  # [L, ceil(R^3 / 8)] uint8
) -> tuple[Tensor, Tensor, Tensor]:  # t_starts [S], t_ends [S], ray_indices [S]
    """Occupied samples along each ray from t0 to t1, packed ray by ray (Triton kernels).

    Args:
        grid: the occupancy grid; its `binaries` are tested (cascades as in `cell_of`).
        origins: [N, 3] ray origins.
        directions: [N, 3] unit ray directions.
        t0: [N] where marching starts (rays with t1 <= t0 get no samples).
        t1: [N] where it ends; the last interval is clipped to t1.
        step: the constant step near the origin.
        cone_angle: steps grow as t * cone_angle once that exceeds `step`; 0 keeps them constant.
        bitfield: `grid.bitfield()`, when the caller already has it.

    Returns:
        t_starts [S], t_ends [S] float32 and ray_indices [S] int64 (sorted; t ascending within a
        ray): the intervals whose midpoint is in an occupied cell, as the reference backend
        without `sigma_fn` gives them for the same t0 and t1.
    """
    _check_inputs(grid, origins, directions, t0, t1, step)
    dev, n = origins.device, origins.shape[0]
    origins, directions, t0, t1 = (x.float().contiguous() for x in (origins, directions, t0, t1))
    if bitfield is None:
        bitfield = grid.bitfield()
    expected = (grid.cascades, (grid.resolution**3 + 7) // 8)
    if tuple(bitfield.shape) != expected or bitfield.dtype != torch.uint8:
        raise ValueError(f"march_triton: bitfield must be uint8 {list(expected)}, got {bitfield.dtype} "
                         f"{list(bitfield.shape)}; build it with grid.bitfield()")
    bitfield = bitfield.contiguous()
    # One step beyond the reference's count, so a count rounded down still reaches t1.
    n_steps = (step_counts(t0, t1, step, cone_angle) + 1).where(t1 > t0, 0).to(torch.int32)
    counts = torch.zeros(n, dtype=torch.int32, device=dev)
    centre = [float(c) for c in grid.center.tolist()]
    geometric = cone_angle > 0
    scalars = (
        n, float(step), float(cone_angle),
        float(step / cone_angle) if geometric else 0.0, math.log2(1.0 + cone_angle) if geometric else 0.0,
        *centre, float(grid.base_half),
    )
    meta = dict(
        RES=grid.resolution, CASCADES=grid.cascades, BYTES=bitfield.shape[1], GEOMETRIC=geometric,
        BLOCK=BLOCK_RAYS, num_warps=NUM_WARPS, enable_fp_fusion=False,
    )
    launch = (triton.cdiv(n, BLOCK_RAYS),)
    empty_f = torch.empty(0, dtype=torch.float32, device=dev)
    empty_i = torch.empty(0, dtype=torch.int64, device=dev)
    if n > 0:
        _march_kernel[launch](
            origins, directions, t0, t1, n_steps, bitfield, counts, empty_i, empty_f, empty_f, empty_i,
            *scalars, FILL=False, **meta,
        )
    ends = torch.cumsum(counts, dim=0, dtype=torch.int64)
    total = int(ends[-1]) if n > 0 else 0
    t_starts = torch.empty(total, dtype=torch.float32, device=dev)
    t_ends = torch.empty(total, dtype=torch.float32, device=dev)
    ray_indices = torch.empty(total, dtype=torch.int64, device=dev)
    if total > 0:
        _march_kernel[launch](
            origins, directions, t0, t1, n_steps, bitfield, counts, ends - counts, t_starts, t_ends, ray_indices,
            *scalars, FILL=True, **meta,
        )
    return t_starts, t_ends, ray_indices


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
    """The "triton" backend of `nerf.sampling.march`: kernel candidates, then the early stop.

    Args:
        grid, origins, directions, t0, t1, step, cone_angle: as for `march_triton`.
        sigma_fn: None keeps every occupied candidate; otherwise see
            `nerf.sampling.packed.prune_by_transmittance`.
        early_stop_eps: transmittance threshold used with `sigma_fn`.

    Returns:
        PackedSamples, as the reference backend `nerf.sampling.march_reference.march` returns them.
    """
    t_starts, t_ends, ray_indices = march_triton(grid, origins, directions, t0, t1, step, cone_angle)
    n = origins.shape[0]
    if sigma_fn is None:
        return PackedSamples(t_starts, t_ends, ray_indices, n)
    return prune_by_transmittance(t_starts, t_ends, ray_indices, n, sigma_fn, early_stop_eps)
