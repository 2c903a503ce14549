"""Ray marching through the occupancy grid as numba CPU kernels: the "numba" backend of
`nerf.sampling.march`, compiled at first use (cached on disk).

Same signature and the same samples as the PyTorch reference `nerf.sampling.march_reference.march`
(read its docstring first): bit for bit, because every float32 operation of the reference is
repeated in the same order, one ray at a time instead of one [rays, steps] tensor at a time:

    steps (`nerf.sampling.steps.step_positions`)   t_i = t0 + i * step  (uniform part), or
                                                   t_geo * g[i - n_uniform], dt_i = t_i * cone_angle,
                                                   n_uniform = ceil(max(t_switch - t0, 0) / step)
    interval                                       [t_i, min(t_i + dt_i, t1)], tried when t_i < t1
    occupancy (`OccupancyGrid.cell_of`)            level = ceil(log2(max(|p - c|_inf / base_half,
                                                   1e-12))) clamped to the cascades, cell =
                                                   trunc((r / scale + 1) * 0.5 * R), occupied when
                                                   inside that cascade and `binaries[level, cell]`

The step counts are `nerf.sampling.steps.step_counts`, computed by torch. Like the reference,
a ray tries steps up to the end of the block in which its count is reached (`_tried_steps`; only
a count rounded down makes this differ from stopping at the count). The grid is read as the
boolean `binaries` (zero-copy), one byte per cell; `ceil(log2)` is libm's float32 log2, which
rounds as torch's does where it matters (16 * (1 + 2^-23) is level 4, as in the reference).

The geometric factors g[e] = (1 + cone_angle)^e are one table computed by `torch.pow` on its
vectorised path (`_growth_table`). torch finishes a pow range that is not a multiple of its
vector block with scalar pow, which differs in the last bit for a few percent of exponents. The
reference's [rays, 32] blocks are such multiples, but with several torch threads a block of
more than 1024 rays is split between threads, and at an odd row count the split falls inside a
vector block: there the reference's own t of a geometric step changes by an ulp or two with
torch's thread count (seen: 2 of 1.8M samples, 50k rays, cone_angle 1/256, 2 threads). This
backend gives the reference's single-threaded result; that is the only known difference.

Without `sigma_fn` (every occupied sample kept) two parallel passes over rays (`numba.prange`)
do the whole march: the first counts each ray's samples, an exclusive prefix sum gives each
ray's offset, the second repeats the walk and writes t_starts, t_ends and ray_indices there
(the Triton backend's structure).

With `sigma_fn` the reference's block loop runs in Python (`_march_early_stop`): `MARCH_BLOCK`
steps per live ray, one numba kernel for their positions and occupancy, `sigma_fn` on the
block's occupied samples, the early stop by transmittance and payload rows in numpy on the
reference's [active rays, block] layout (torch's own cumsum and sum for the two reductions whose
rounding depends on order). So `sigma_fn` is asked for exactly the densities the reference asks
for, and the kept samples and payload are the reference's. Marching every ray to t1 first and
pruning the packed candidates (`nerf.sampling.packed.prune_by_transmittance`, the Triton
backend's structure) was measured and is slower on a CPU: on an opaque sphere (16k rays, 64^3
grid, `tools/time_march_cpu.py`, 2 cores) it took 61 ms against 25 ms (torch's reference: 80 ms)
and asked for 5% more densities, and its blocks of 32 candidates group the optical depth sums
differently from the reference, so a transmittance within rounding of eps can decide otherwise.

Dtypes: the arithmetic is float32 (other float dtypes are cast, as the Triton backend does; "auto"
picks this backend only for float32 rays). Inputs must be CPU tensors; they reach the kernels as
zero-copy numpy views.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import numba
import numpy as np
import torch
from torch import Tensor

from nerf.sampling.occupancy import OccupancyGrid
from nerf.sampling.packed import PackedSamples, empty_samples
from nerf.sampling.steps import MARCH_BLOCK, MAX_CANDIDATES_PER_CHUNK, step_counts

_F32 = np.float32


@numba.njit(cache=True, inline="always")
def _occupied(px, py, pz, binaries, cx, cy, cz, base_half, pow2, res):
    """`OccupancyGrid.is_occupied` of one point, in the reference's float32 operations."""
    rx, ry, rz = px - cx, py - cy, pz - cz
    max_abs = max(max(abs(rx), abs(ry)), abs(rz))
    if max_abs != max_abs:  # NaN: outside every cascade
        return False
    x = max_abs / base_half
    lv = 0  # x <= 1: log2(x) <= 0, the finest cascade (the clamp of 1e-12 changes nothing)
    if x > _F32(1.0):  # ceil(log2) as torch rounds it: 16 * (1 + 2^-23) gives 4, not 5 (tested)
        level, top = np.ceil(np.log2(x)), binaries.shape[0] - 1
        lv = np.int64(level) if level < _F32(top) else top  # also x = inf
    scale = base_half * pow2[lv]
    if not max_abs <= scale:
        return False
    half, one, fres = _F32(0.5), _F32(1.0), _F32(res)
    ix = min(max(np.int64((rx / scale + one) * half * fres), 0), res - 1)
    iy = min(max(np.int64((ry / scale + one) * half * fres), 0), res - 1)
    iz = min(max(np.int64((rz / scale + one) * half * fres), 0), res - 1)
    return binaries[lv, ix * res * res + iy * res + iz]


@numba.njit(cache=True, inline="always")
def _step(i, t0, n_uniform, t_geo, step, cone_angle, growth, geometric):
    """Start and size of step i (`nerf.sampling.steps.step_positions`, float32)."""
    fi = _F32(i)
    if geometric and not fi < n_uniform:
        start = t_geo * growth[np.int64(fi - n_uniform)]
        return start, start * cone_angle
    return t0 + fi * step, step


@numba.njit(cache=True, inline="always")
def _uniform_part(t0, step, t_switch, geometric):
    """n_uniform and t_geo of a ray (0 and t0 without cone angle)."""
    if not geometric:
        return _F32(0.0), t0
    n_uniform = np.ceil(max(t_switch - t0, _F32(0.0)) / step)
    return n_uniform, t0 + n_uniform * step


@numba.njit(parallel=True, cache=True)
def _march_kernel(origins, directions, t0, t1, limits, step, cone_angle, t_switch, growth, geometric, monotone,
                  binaries, center, base_half, pow2, res, fill, offsets, counts, t_starts, t_ends, ray_indices):
    """Count (fill=False: counts[r]) or write (fill=True: from offsets[r]) each ray's occupied samples."""
    cx, cy, cz = center[0], center[1], center[2]
    half = _F32(0.5)
    for r in numba.prange(origins.shape[0]):
        ox, oy, oz = origins[r, 0], origins[r, 1], origins[r, 2]
        dx, dy, dz = directions[r, 0], directions[r, 1], directions[r, 2]
        a, b = t0[r], t1[r]
        n_uniform, t_geo = _uniform_part(a, step, t_switch, geometric)
        slot = offsets[r] if fill else 0
        found = 0
        for i in range(limits[r]):
            start, dt = _step(i, a, n_uniform, t_geo, step, cone_angle, growth, geometric)
            if not start < b:
                if monotone:  # starts never decrease: no later step starts before t1
                    break
                continue
            end = min(start + dt, b)
            mid = half * (start + end)
            if _occupied(ox + dx * mid, oy + dy * mid, oz + dz * mid, binaries, cx, cy, cz, base_half, pow2, res):
                if fill:
                    t_starts[slot + found] = start
                    t_ends[slot + found] = end
                    ray_indices[slot + found] = r
                found += 1
        if not fill:
            counts[r] = found


@numba.njit(parallel=True, cache=True)
def _block_kernel(active, first, origins, directions, t0, t1, step, cone_angle, t_switch, growth, geometric,
                  binaries, center, base_half, pow2, res, starts, ends, keep):
    """Steps first .. first+B-1 of each active ray: starts, ends [A, B] and keep (t < t1 and occupied)."""
    cx, cy, cz = center[0], center[1], center[2]
    half = _F32(0.5)
    block = starts.shape[1]
    for j in numba.prange(active.shape[0]):
        r = active[j]
        ox, oy, oz = origins[r, 0], origins[r, 1], origins[r, 2]
        dx, dy, dz = directions[r, 0], directions[r, 1], directions[r, 2]
        a, b = t0[r], t1[r]
        n_uniform, t_geo = _uniform_part(a, step, t_switch, geometric)
        for k in range(block):
            start, dt = _step(first + k, a, n_uniform, t_geo, step, cone_angle, growth, geometric)
            end = min(start + dt, b)
            starts[j, k] = start
            ends[j, k] = end
            if start < b:
                mid = half * (start + end)
                keep[j, k] = _occupied(ox + dx * mid, oy + dy * mid, oz + dz * mid, binaries, cx, cy, cz,
                                       base_half, pow2, res)
            else:
                keep[j, k] = False


def _tried_steps(counts: Tensor) -> Tensor:  # [N] int64 -> [N] int64
    """How many steps the reference's block loop tries per ray without `sigma_fn`.

    A ray stays active while its count exceeds the steps done, and each round advances all
    active rays by max(1, min(MARCH_BLOCK, MAX_CANDIDATES_PER_CHUNK // active)) steps, so a ray
    tries the steps up to the first block end at or after its count (steps past the count start
    at or after t1 unless the count was rounded down).
    """
    live = np.sort(counts[counts > 0].numpy())
    if len(live) <= MAX_CANDIDATES_PER_CHUNK // MARCH_BLOCK:  # every block is MARCH_BLOCK steps
        return (counts + MARCH_BLOCK - 1) // MARCH_BLOCK * MARCH_BLOCK
    block_ends, k = [], 0
    while n_active := len(live) - int(np.searchsorted(live, k, side="right")):
        k += max(1, min(MARCH_BLOCK, MAX_CANDIDATES_PER_CHUNK // n_active))
        block_ends.append(k)
    ends = torch.tensor(block_ends, dtype=torch.int64)
    tried = ends[torch.searchsorted(ends, counts.clamp_min(1)).clamp_max(len(ends) - 1)]
    return torch.where(counts > 0, tried, torch.zeros_like(counts))


def _growth_table(cone_angle: float, size: int) -> np.ndarray:  # [>= size] float32
    """(1 + cone_angle)^e for e = 0, 1, ...: the reference's `torch.pow` call, vectorised path only.

    torch's CPU pow runs a vectorised (SLEEF) loop and finishes a range whose length is not a
    multiple of the vector block with scalar `std::pow`; the two differ in the last bit for a few
    percent of exponents. Pieces of 4096 (single-threaded, a multiple of any vector block) get
    every entry from the vectorised loop, as the reference's [rays, MARCH_BLOCK] blocks do.
    """
    size = max(64, -(-size // 64) * 64)
    exponents = torch.arange(size, dtype=torch.float32)
    return torch.cat([torch.pow(1.0 + cone_angle, part) for part in exponents.split(4096)]).numpy()


class _Setup:
    """The numpy views and float32 scalars the kernels read."""

    def __init__(self, grid, origins, directions, t0, t1, step, cone_angle, max_steps):
        as_np = lambda x: x.detach().to(torch.float32).contiguous().numpy()  # noqa: E731
        self.origins, self.directions, self.t0, self.t1 = (as_np(x) for x in (origins, directions, t0, t1))
        self.step = _F32(step)
        self.cone_angle = _F32(cone_angle) if cone_angle > 0 else _F32(0.0)
        self.geometric = bool(cone_angle > 0)
        self.t_switch = _F32(step / cone_angle) if self.geometric else _F32(0.0)
        self.growth = _growth_table(cone_angle, max_steps) if self.geometric else np.ones(1, dtype=np.float32)
        self.monotone = bool(np.all(np.diff(self.growth) >= 0))
        self.binaries = grid.binaries.detach().cpu().contiguous().numpy()
        self.center = grid.center.detach().cpu().to(torch.float32).contiguous().numpy()
        self.base_half = _F32(grid.base_half)
        self.pow2 = torch.pow(2.0, torch.arange(grid.cascades, dtype=torch.float32)).numpy()
        self.res = int(grid.resolution)

    def steps(self):
        return self.step, self.cone_angle, self.t_switch, self.growth, self.geometric

    def grid(self):
        return self.binaries, self.center, self.base_half, self.pow2, self.res


def march_numba(
    grid: OccupancyGrid,
    origins: Tensor,  # [N, 3]
    directions: Tensor,  # [N, 3] unit
    t0: Tensor,  # [N]
    t1: Tensor,  # [N]
    step: float,
    cone_angle: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:  # t_starts [S], t_ends [S], ray_indices [S]
    """Every occupied sample of each ray from t0 to t1, packed ray by ray (count, prefix sum, fill).

    Args:
        grid: the occupancy grid (CPU); its `binaries` are tested as `is_occupied` does.
        origins, directions: [N, 3] rays (unit directions), CPU.
        t0, t1: [N] the marched interval of each ray (t1 <= t0: no samples).
        step, cone_angle: the step rule of `nerf.sampling.steps`.

    Returns:
        t_starts [S], t_ends [S] float32 and ray_indices [S] int64, as the reference backend
        without `sigma_fn` returns them.
    """
    n = origins.shape[0]
    counts = step_counts(t0, t1, step, cone_angle)
    limits = _tried_steps(counts)
    max_steps = int(limits.max()) if n > 0 else 0
    if max_steps == 0:
        empty = torch.zeros(0, dtype=torch.float32)
        return empty, empty.clone(), torch.zeros(0, dtype=torch.int64)
    s = _Setup(grid, origins, directions, t0, t1, step, cone_angle, max_steps)
    limits_np = limits.contiguous().numpy()
    found = np.zeros(n, dtype=np.int64)
    no_f, no_i = np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
    args = (s.origins, s.directions, s.t0, s.t1, limits_np, *s.steps(), s.monotone, *s.grid())
    _march_kernel(*args, False, no_i, found, no_f, no_f, no_i)
    ends = np.cumsum(found)
    total = int(ends[-1])
    t_starts = np.empty(total, dtype=np.float32)
    t_ends = np.empty(total, dtype=np.float32)
    ray_indices = np.empty(total, dtype=np.int64)
    if total > 0:
        _march_kernel(*args, True, ends - found, found, t_starts, t_ends, ray_indices)
    return torch.from_numpy(t_starts), torch.from_numpy(t_ends), torch.from_numpy(ray_indices)


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
    """The "numba" backend of `nerf.sampling.march`: the reference's samples, from numba kernels.

    Args:
        grid, origins, directions, t0, t1, step, cone_angle: as for `march_numba` (CPU tensors).
        sigma_fn: None keeps every occupied sample; otherwise densities of the samples the
            reference evaluates, block by block, with the reference's early stop by transmittance.
        early_stop_eps: transmittance threshold used with `sigma_fn`.

    Returns:
        PackedSamples, as the reference backend `nerf.sampling.march_reference.march` returns them.
    """
    n = origins.shape[0]
    if sigma_fn is None:
        t_starts, t_ends, ray_indices = march_numba(grid, origins, directions, t0, t1, step, cone_angle)
        if len(t_starts) == 0:
            return empty_samples(n, origins)
        return PackedSamples(t_starts, t_ends, ray_indices, n)
    return _march_early_stop(grid, origins, directions, t0, t1, step, cone_angle, sigma_fn, early_stop_eps)


def _march_early_stop(grid, origins, directions, t0, t1, step, cone_angle, sigma_fn, early_stop_eps):
    """The reference's block loop: steps and occupancy from `_block_kernel`, bookkeeping in numpy.

    Every array operation below is the reference's, on the same [active rays, block] layout and
    in float32, so it rounds as the reference does; the two reductions whose order matters
    (the cumulative and the total optical depth along a block row) are torch's own `cumsum` and
    `sum` on that layout, and the transmittance test exp(-x) >= eps is x <= `_survival_threshold`.
    """
    n = origins.shape[0]
    counts = step_counts(t0, t1, step, cone_angle).numpy()
    active = np.nonzero(counts > 0)[0]
    if len(active) == 0:
        return empty_samples(n, origins)
    # Steps reach at most k + block - 1 < max(counts) + MARCH_BLOCK: the size of the growth table.
    s = _Setup(grid, origins, directions, t0, t1, step, cone_angle, int(counts.max()) + MARCH_BLOCK)
    threshold = _survival_threshold(float(early_stop_eps))

    def survives(depth: np.ndarray) -> np.ndarray:  # torch.exp(-depth) >= early_stop_eps
        if threshold is not None:
            return depth <= np.float32(threshold)
        return (torch.exp(-torch.from_numpy(depth)) >= early_stop_eps).numpy()

    tau_acc = np.zeros(n, dtype=np.float32)
    parts: list[tuple] = []
    k = 0
    while len(active):
        block = max(1, min(MARCH_BLOCK, MAX_CANDIDATES_PER_CHUNK // len(active)))
        starts = np.empty((len(active), block), dtype=np.float32)
        ends, keep = np.empty_like(starts), np.empty(starts.shape, dtype=np.bool_)
        _block_kernel(active, k, s.origins, s.directions, s.t0, s.t1, *s.steps(), *s.grid(), starts, ends, keep)
        if keep.any():
            kept_starts, kept_ends = starts[keep], ends[keep]
            ray_ids = np.repeat(active, keep.sum(axis=1))  # the reference's active[:, None].expand_as(keep)[keep]
            out = sigma_fn(torch.from_numpy(kept_starts), torch.from_numpy(kept_ends), torch.from_numpy(ray_ids))
            sig, extra = out if isinstance(out, tuple) else (out, None)
            tau = np.zeros_like(starts)
            tau[keep] = sig.detach().float().cpu().numpy() * (ends - starts)[keep]
            tau_t = torch.from_numpy(tau)
            excl = tau_acc[active][:, None] + torch.cumsum(tau_t, dim=1).numpy() - tau
            survive = survives(excl)[keep]
            payload = None if extra is None else extra[torch.from_numpy(survive)]
            tau_acc[active] += tau_t.sum(dim=1).numpy()
            parts.append((kept_starts[survive], kept_ends[survive], ray_ids[survive], payload))
        k += block
        active = active[(counts[active] > k) & survives(tau_acc[active])]
    if not parts:  # sigma_fn was never called: nothing occupied
        empty = np.zeros(0, dtype=np.float32)
        parts.append((empty, empty, np.zeros(0, dtype=np.int64), None))
    t_starts, t_ends, ray_ids = (np.concatenate([p[i] for p in parts]) for i in range(3))
    order = np.argsort(ray_ids, kind="stable")  # blocks arrive in t order within each ray
    payloads = [p[3] for p in parts if p[3] is not None]
    payload = None
    if payloads:
        payload = torch.cat(payloads)[torch.from_numpy(order)]
        assert len(payload) == len(order), "payload rows must match the kept samples"
    return PackedSamples(*(torch.from_numpy(x[order]) for x in (t_starts, t_ends, ray_ids)), n, payload)


def _float32_keys(values: np.ndarray) -> np.ndarray:  # float32 -> int64, same order
    bits = values.astype(np.float32).view(np.int32).astype(np.int64)
    return np.where(bits >= 0, bits, -(bits & 0x7FFFFFFF))


def _from_float32_keys(keys: np.ndarray) -> np.ndarray:  # inverse of _float32_keys (-0 -> +0)
    bits = np.where(keys >= 0, keys, (-keys) | 0x80000000)
    return bits.astype(np.uint32).view(np.float32)


@functools.lru_cache(maxsize=16)
def _survival_threshold(eps: float) -> float | None:
    """The largest float32 x with torch's `torch.exp(-x) >= eps` true, or None.

    The reference keeps a sample (and a ray) while `torch.exp(-depth) >= eps` on float32
    depths. exp is monotone, so that is depth <= x. x is found by bisection over the float32
    values with torch's own test, then checked on the 8192 values around it, once as one tensor
    and once in pieces of 7 (torch's exp finishes a range with the same vectorised code today;
    a build whose short ranges rounded differently would make the reference's result depend on
    where a depth sits in its tensor). None when the two disagree there or the test is not
    monotone: the caller then runs torch's test itself. NaN depths fail both tests.
    """
    if not eps > 0:
        return math.inf  # exp(-x) >= 0 >= eps for every x but NaN

    def test(keys: np.ndarray, piece: int | None = None) -> np.ndarray:
        depths = torch.from_numpy(_from_float32_keys(keys))
        parts = [depths] if piece is None else depths.split(piece)
        return np.concatenate([(torch.exp(-part) >= eps).numpy() for part in parts])

    lo, hi = _float32_keys(np.array([-np.inf, np.inf], dtype=np.float32))  # test true at -inf, false at inf
    bottom, top = lo, hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if test(np.array([mid]))[0] else (lo, mid)
    window = np.arange(max(lo - 4096, bottom), min(lo + 4096, top) + 1)
    vector, pieces = test(window), test(window, piece=7)
    expected = window <= lo
    if not (np.array_equal(vector, expected) and np.array_equal(pieces, expected)):
        return None
    return float(_from_float32_keys(np.array([lo]))[0])
