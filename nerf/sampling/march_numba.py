"""Ray marching through the occupancy grid as numba CPU kernels: the "numba" backend of
`nerf.sampling.march`, compiled at first use (about 15 s once, then cached on disk).

Same signature as the PyTorch reference `nerf.sampling.march_reference.march` (read its
docstring first). What is bit-identical to the reference, and what is not:

  * Without `sigma_fn`: the samples are the reference's, bit for bit (t_starts, t_ends and
    ray_indices, in the same order), empty-space skipping included. Exception: the reference's
    own geometric steps change by an ulp or two with torch's thread count (below); this backend
    gives its single-threaded result.
  * With `sigma_fn`: the candidates (occupied samples) are the reference's, bit for bit, and so
    is the rule that prunes them, a sample being kept when exp(-optical depth in front of it) >=
    early_stop_eps; but that depth is summed in another order (float64, sample by sample, where
    the reference sums float32 by 32-step blocks). A sample whose depth in front lies within
    rounding of -log(early_stop_eps) may therefore be kept by one backend and not the other
    (tests/test_march.py allows this only within 8 float32 ulps of -log(eps)); in millions of
    random samples none did, a constructed tie shows it. All other kept samples are the
    reference's, bit for bit, and the payload rows are the rows `sigma_fn` returned for exactly
    the kept samples, in their order (hence the reference's rows wherever `sigma_fn` gives a
    sample the same row whatever its batch).
  * Not the reference's: what `sigma_fn` is asked for. The batches differ (up to K occupied
    candidates of every live ray per call, instead of the occupied steps of the next 32 steps),
    there are fewer calls, and densities are evaluated for up to K - 1 candidates after a ray's
    last kept sample, where the reference evaluates up to the end of its 32-step block (a few
    percent more or fewer densities in all).
  * Edge cases where the two differ: with `sigma_fn` and more than MAX_CANDIDATES_PER_CHUNK /
    MARCH_BLOCK (131072) live rays the reference's blocks shrink with the number of rays still
    live, which its early stop changes; this backend tries the steps of the schedule without
    early stop (`_tried_steps`), which differs only for a ray whose float32 step count was
    rounded down, by its one step past the count (starting within rounding of t1). A sample
    with a NaN or infinite density is kept here when the depth in front of it passes, while the
    reference, which subtracts the sample's own depth from a running sum, drops it; both drop
    every later sample of that ray. With negative densities the reference may keep a sample
    after one that failed; this backend stops a ray at its first failing sample.

Every float32 operation of the reference that decides a sample is repeated in the same order,
one ray at a time instead of one [rays, steps] tensor at a time:

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
boolean `binaries` (zero-copy), one byte per cell. The level is decided by comparing x with
powers of two, and just above a power of two by libm's float32 log2 (`_level`), which rounds as
torch's log2 does there (16 * (1 + 2^-23) is level 4, as in the reference; tested on every float
within 2^14 ulps of 2^0 .. 2^9).

The geometric factors g[e] = (1 + cone_angle)^e are one table computed by `torch.pow` on its
vectorised path (`_growth_table`). torch finishes a pow range that is not a multiple of its
vector block with scalar pow, which differs in the last bit for a few percent of exponents. The
reference's [rays, 32] blocks are such multiples, but with several torch threads a block of
more than 1024 rays is split between threads, and at an odd row count the split falls inside a
vector block: there the reference's own t of a geometric step changes by an ulp or two with
torch's thread count (seen: 2 of 1.8M samples, 50k rays, cone_angle 1/256, 2 threads). This
backend gives the reference's single-threaded result. (numba's OpenMP threading layer sets the
OpenMP thread count, which torch shares, when it runs a parallel kernel: a torch.set_num_threads(1)
made before does not survive a call of this backend.)

Empty-space skipping (instant-ngp's `advance_to_next_voxel`, `_skip`). When a step's midpoint
tests empty, the ray jumps over the empty cell, or over the largest empty aligned block of 2^m
cells per axis around it (an OR pyramid of each cascade, `_build_mips`, m <= MAX_MIPS, cached per
grid tensor and version), to the first step whose midpoint may lie outside it. Steps stay on
their lattice t0 + i * step (and on the geometric sequence): only step indices are skipped, and
the next step tested is computed by the same float32 operations as without skipping. A step is
skipped only when its midpoint provably tests empty:

  * the block is shrunk by MARGIN (2^-16 of the cascade's half-size: ~40 times the float32 error
    of the cell index, and far more than the error of the level and inside tests, libm's log2
    being faithful), and above the finest cascade it is clipped to the side of the next finer
    cascade's cube that the midpoint is on (cells wholly inside that cube are left out of the
    pyramid): every point in the box tests in that cascade, in a cell of the block;
  * the float32 midpoints of the first and the last skipped step (or the empty step itself) are
    computed exactly as the occupancy test computes them and checked to lie in the box; the
    midpoints of the steps between lie between them, float32 rounding being monotone, so each
    coordinate of the midpoint is monotone in the step index (a jump never crosses the switch
    from uniform to geometric steps, and none is made among geometric steps if the growth table
    is not monotone). Where the check fails, a bisection finds the last step in the box.

Where the ray leaves the box (a float64 slab test) only proposes the jump; a step near a face,
that the check cannot prove empty, is tested like any other. Tests: rays whose midpoints fall on
cell and cascade faces, and millions of samples of random scenes, all bit for bit.

Without `sigma_fn` (every occupied sample kept) two parallel passes over rays (`numba.prange`)
do the whole march: the first counts each ray's samples, an exclusive prefix sum gives each
ray's offset, the second repeats the walk and writes t_starts, t_ends and ray_indices there
(the Triton backend's structure). Both run the one walking kernel, `_walk_rays`.

Early stop (with `sigma_fn`, `_march_early_stop`). Each round, `_walk_rays` walks every live ray
from where it stopped to its next K occupied candidates and `_pack` packs them ray by ray (K =
FIRST_ROUND_CANDIDATES in the first round and at least as many after, more when few rays are
live, up to CANDIDATE_BUDGET candidates in all: `_candidates_per_ray`); `sigma_fn` is called
once on all of them, the only Python work of a round besides slicing; `_early_stop` adds each
candidate's optical depth sigma * (t_end - t_start) (the float32 product, as the reference
computes it) to its ray's running depth in float64, in sample order, keeps the candidate when the
float32 rounding of the depth in front of it passes torch's test exp(-depth) >= early_stop_eps
(`_survival_threshold`; -log(eps) where that is not a plain threshold), stops the ray at its
first candidate that fails or once its depth fails, and compacts the kept samples and the live
rays. The kept samples of all rounds are put in ray order at the end (`_scatter`, no sort), and
their payload rows gathered with one index_select.

Dtypes: the arithmetic is float32 (other float dtypes are cast, as the Triton backend does; "auto"
picks this backend only for float32 rays). Inputs must be CPU tensors; they reach the kernels as
zero-copy numpy views.

Length: this module is over the ~450-line guide because its kernels share one float32 walk (the
step lattice, the cascade test and the skip-safety margins) whose exactness arguments above cover
all of them; reading one kernel without the others invites a drift between them. The empty-block
pyramid (`_build_mips`, `_grid_mips` and their cache) is the natural seam for a later split.
"""

from __future__ import annotations

import functools
import math
import weakref
from typing import Callable

import numba
import numpy as np
import torch
from torch import Tensor

from nerf.sampling.occupancy import OccupancyGrid
from nerf.sampling.packed import PackedSamples, empty_samples
from nerf.sampling.steps import MARCH_BLOCK, MAX_CANDIDATES_PER_CHUNK, step_counts

_F32 = np.float32
MARGIN = 2.0**-16  # skipped boxes shrink by this, in units of the cascade's half-size
MAX_MIPS = 5  # empty blocks of up to 2^MAX_MIPS cells per axis are skipped at once
# Rounds with few live rays gather up to this many candidates in all. 2^13, not 2^16: a training
# step's second round (about 1250 live rays on lego_200) then keeps 8 per ray instead of ~50, most
# of them past the stop (encoded points per step 56k -> 41k, steps 6.5% faster; fox views as fast,
# 2^12 and 2^11 slower there: docs/DESIGN.md).
CANDIDATE_BUDGET = 1 << 13
# A ray that meets a surface stops within a few candidates: a first round of 8 wastes fewer
# densities past the stop than 32 did (lego, 1500 steps: 0.22 -> 0.16 s per 200x200 view and 7%
# faster training steps; 16 rendered as fast, 4 slower, from more rounds).
FIRST_ROUND_CANDIDATES = 8
MAX_CANDIDATES_PER_RAY = 1024


# --- one step, one point, one cell -------------------------------------------------------------


@numba.njit(cache=True, inline="always", error_model="numpy")
def _locate(px, py, pz, cx, cy, cz, base_half, pow2, res, top):
    """`OccupancyGrid.cell_of` of one point in the reference's float32 operations: level, ix, iy, iz
    (ix = -1 when the point is in no cascade or NaN)."""
    rx, ry, rz = px - cx, py - cy, pz - cz
    max_abs = max(max(abs(rx), abs(ry)), abs(rz))
    if max_abs != max_abs:  # NaN: outside every cascade
        return 0, -1, 0, 0
    x = max_abs / base_half
    lv = 0  # x <= 1: log2(x) <= 0, the finest cascade (the clamp of 1e-12 changes nothing)
    if x > _F32(1.0):
        lv = _level(x, top)
    scale = base_half * pow2[lv]
    if not max_abs <= scale:
        return lv, -1, 0, 0
    half, one, fres = _F32(0.5), _F32(1.0), _F32(res)
    ix = min(max(np.int64((rx / scale + one) * half * fres), 0), res - 1)
    iy = min(max(np.int64((ry / scale + one) * half * fres), 0), res - 1)
    iz = min(max(np.int64((rz / scale + one) * half * fres), 0), res - 1)
    return lv, ix, iy, iz


@numba.njit(cache=True, inline="always", error_model="numpy")
def _level(x, top):
    """min(ceil(log2(x)), top) for a float32 x > 1, log2 rounded to float32 as libm's log2f.

    ceil(log2f(x)) is lv for 2^(lv-1) (1 + 2^-10) <= x <= 2^lv whenever log2f is faithful (the
    floats around log2(x) lie in (lv - 1, lv]), so log2f is called only just above a power of two,
    where its rounding decides: 16 * (1 + 2^-23) gives 4, not 5, as torch's log2 (tested)."""
    lv = 1
    power = 2.0
    x64 = np.float64(x)
    while lv < top and x64 > power:
        lv += 1
        power *= 2.0
    if x64 > power or lv > top:  # beyond the coarsest cascade (or a single cascade): clamped
        return top
    if x64 >= 0.5 * power * (1.0 + 2.0**-10):
        return lv
    level = np.ceil(np.log2(x))  # x just above 2^(lv - 1): lv - 1 or lv
    return np.int64(level) if level < _F32(top) else top


@numba.njit(cache=True, inline="always", error_model="numpy")
def _occupied(px, py, pz, binaries, cx, cy, cz, base_half, pow2, res):
    """`OccupancyGrid.is_occupied` of one point, in the reference's float32 operations."""
    lv, ix, iy, iz = _locate(px, py, pz, cx, cy, cz, base_half, pow2, res, binaries.shape[0] - 1)
    if ix < 0:
        return False
    return binaries[lv, ix * res * res + iy * res + iz]


@numba.njit(cache=True, inline="always", error_model="numpy")
def _step(i, t0, n_uniform, t_geo, step, cone_angle, growth, geometric):
    """Start and size of step i (`nerf.sampling.steps.step_positions`, float32)."""
    fi = _F32(i)
    if geometric and not fi < n_uniform:
        start = t_geo * growth[np.int64(fi - n_uniform)]
        return start, start * cone_angle
    return t0 + fi * step, step


@numba.njit(cache=True, inline="always", error_model="numpy")
def _uniform_part(t0, step, t_switch, geometric):
    """n_uniform and t_geo of a ray (0 and t0 without cone angle)."""
    if not geometric:
        return _F32(0.0), t0
    n_uniform = np.ceil(max(t_switch - t0, _F32(0.0)) / step)
    return n_uniform, t0 + n_uniform * step


@numba.njit(cache=True, inline="always", error_model="numpy")
def _inverse(d):
    """1 / d in float64, 0 for d = 0 (the ray never leaves a slab it is parallel to)."""
    return 1.0 / np.float64(d) if d != 0 else 0.0


@numba.njit(cache=True, inline="always", error_model="numpy")
def _ray(r, origins, directions, t0, t1, steps, grid):
    """The per-ray constants the walk reads (float32 as the reference, and for `_skip` the origin
    less the centre and the inverse direction in float64)."""
    step, cone_angle, t_switch, growth, geometric, monotone, inv_log_growth, inv_step = steps
    cx, cy, cz = grid[1], grid[2], grid[3]
    a, b = t0[r], t1[r]
    n_uniform, t_geo = _uniform_part(a, step, t_switch, geometric)
    ox, oy, oz = origins[r, 0], origins[r, 1], origins[r, 2]
    dx, dy, dz = directions[r, 0], directions[r, 1], directions[r, 2]
    return (ox, oy, oz, dx, dy, dz, a, b, n_uniform, t_geo,
            np.float64(ox) - np.float64(cx), np.float64(oy) - np.float64(cy), np.float64(oz) - np.float64(cz),
            _inverse(dx), _inverse(dy), _inverse(dz))


@numba.njit(cache=True, inline="always", error_model="numpy")
def _point(k, ray, steps):
    """The float32 midpoint of step k, exactly as the occupancy test computes it."""
    ox, oy, oz, dx, dy, dz, a, b, n_uniform, t_geo, rox, roy, roz, idx, idy, idz = ray
    step, cone_angle, t_switch, growth, geometric, monotone, inv_log_growth, inv_step = steps
    start, dt = _step(k, a, n_uniform, t_geo, step, cone_angle, growth, geometric)
    end = min(start + dt, b)
    mid = _F32(0.5) * (start + end)
    return ox + dx * mid, oy + dy * mid, oz + dz * mid


@numba.njit(cache=True, inline="always", error_model="numpy")
def _in_box(k, ray, steps, cx, cy, cz, box):
    """Whether step k's float32 midpoint, less the centre (exactly, in float64), lies in `box`."""
    lx, hx, ly, hy, lz, hz = box
    px, py, pz = _point(k, ray, steps)
    rx = np.float64(px) - np.float64(cx)
    ry = np.float64(py) - np.float64(cy)
    rz = np.float64(pz) - np.float64(cz)
    return lx <= rx <= hx and ly <= ry <= hy and lz <= rz <= hz


# --- empty-space skipping ----------------------------------------------------------------------


@numba.njit(cache=True, inline="always", error_model="numpy")
def _axis_exit(o, inv_d, lo, hi):
    """Where o + t / inv_d leaves [lo, hi] (float64; inf when inv_d = 0: parallel to the slab)."""
    if inv_d > 0.0:
        return (hi - o) * inv_d
    if inv_d < 0.0:
        return (lo - o) * inv_d
    return np.inf


@numba.njit(cache=True, inline="always", error_model="numpy")
def _skip(i, limit, lv, ix, iy, iz, px, py, pz, ray, steps, grid):
    """The next step to test after step i, whose float32 midpoint (px, py, pz) tested empty in
    cell (ix, iy, iz) of cascade lv: i + 1, or further when the steps in between provably test
    empty (module docstring, "Empty-space skipping")."""
    nxt = i + 1
    if nxt >= limit:
        return nxt
    ox, oy, oz, dx, dy, dz, a, b, n_uniform, t_geo, rox, roy, roz, idx, idy, idz = ray
    step, cone_angle, t_switch, growth, geometric, monotone, inv_log_growth, inv_step = steps
    binaries, cx, cy, cz, base_half, pow2, res, top, mips, mip_offsets, n_mips = grid
    rx, ry, rz = np.float64(px) - np.float64(cx), np.float64(py) - np.float64(cy), np.float64(pz) - np.float64(cz)
    # the coarsest empty block of 2^m cells per axis around the cell (the cell itself: m = 0)
    m = 0
    while m < n_mips:
        shift = m + 1
        mres = (res + (1 << shift) - 1) >> shift
        if mips[mip_offsets[lv, shift] + ((ix >> shift) * mres + (iy >> shift)) * mres + (iz >> shift)]:
            break
        m = shift
    size = 1 << m
    bx, by, bz = (ix >> m) << m, (iy >> m) << m, (iz >> m) << m
    unit = 2.0 / res
    # the block in units of the cascade's half-size, shrunk by MARGIN
    lx, hx = bx * unit - 1.0 + MARGIN, min(bx + size, res) * unit - 1.0 - MARGIN
    ly, hy = by * unit - 1.0 + MARGIN, min(by + size, res) * unit - 1.0 - MARGIN
    lz, hz = bz * unit - 1.0 + MARGIN, min(bz + size, res) * unit - 1.0 - MARGIN
    if lv > 0:  # stay outside the finer cascade's cube, on the side of the midpoint's largest offset
        ax, ay, az = abs(rx), abs(ry), abs(rz)
        if ax >= ay and ax >= az:
            if rx > 0:
                lx = max(lx, 0.5 + MARGIN)
            else:
                hx = min(hx, -0.5 - MARGIN)
        elif ay >= az:
            if ry > 0:
                ly = max(ly, 0.5 + MARGIN)
            else:
                hy = min(hy, -0.5 - MARGIN)
        else:
            if rz > 0:
                lz = max(lz, 0.5 + MARGIN)
            else:
                hz = min(hz, -0.5 - MARGIN)
    if not (lx < hx and ly < hy and lz < hz):
        return nxt
    scale = np.float64(base_half * pow2[lv])
    box = (lx * scale, hx * scale, ly * scale, hy * scale, lz * scale, hz * scale)
    # where the ray leaves the box (float64), then the first step whose midpoint is past it
    t_exit = min(min(_axis_exit(rox, idx, box[0], box[1]), _axis_exit(roy, idy, box[2], box[3])),
                 _axis_exit(roz, idz, box[4], box[5]))
    cap = limit
    if geometric and not _F32(nxt) < n_uniform:  # the steps after i are geometric
        if not monotone:
            return nxt
        ratio = t_exit / (np.float64(t_geo) * (1.0 + 0.5 * np.float64(cone_angle)))  # t_exit / mid of exponent 0
        estimate = np.float64(n_uniform) + np.ceil(np.float64(np.log(_F32(ratio))) * inv_log_growth)
    else:  # uniform steps: a jump stops at the first geometric step
        estimate = np.ceil((t_exit - np.float64(a)) * inv_step - 0.5)
        if geometric and n_uniform < _F32(cap):
            cap = np.int64(n_uniform)
    if not estimate > nxt:  # also NaN
        return nxt
    j = cap if estimate >= cap else np.int64(estimate)
    if j <= nxt:
        return nxt
    # The steps whose midpoints lie in the box are consecutive (each coordinate of the float32
    # midpoint is monotone in the step index within the uniform or the geometric part). Anchor
    # them at step i (usually in the box) or else at step i + 1, then find the last one up to
    # j - 1 (usually j - 1 itself) by bisection. One call site of _in_box keeps compiling short.
    same_part = not geometric or (_F32(i) < n_uniform) == (_F32(nxt) < n_uniform)
    anchored = same_part and box[0] <= rx <= box[1] and box[2] <= ry <= box[3] and box[4] <= rz <= box[5]
    lo_k, hi_k = i, j  # lo_k: the last step known in the box (once anchored); hi_k: one known outside, or j
    probe = j - 1 if anchored else nxt
    while True:
        inside = _in_box(probe, ray, steps, cx, cy, cz, box)
        if not anchored:
            if not inside:
                return nxt
            anchored = True
            lo_k = nxt
            probe = j - 1
            if probe == lo_k:
                return j
            continue
        if inside:
            lo_k = probe
        else:
            hi_k = probe
        if hi_k - lo_k <= 1:
            return lo_k + 1
        probe = (lo_k + hi_k) >> 1


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _build_mips(binaries, res, n_mips, mip_offsets, mips):
    """OR pyramid of each cascade: mips[mip_offsets[lv, m] + block] is whether any cell of the
    block of 2^m cells per axis is occupied (mips starts zeroed). Above the finest cascade, cells
    wholly inside the next finer cascade's cube are left out (points there are tested in the
    finer cascade)."""
    levels = binaries.shape[0]
    lo, hi = (res + 3) // 4, (3 * res) // 4  # cells k with 4k >= res and 4(k + 1) <= 3 res
    mres = (res + 1) >> 1
    for lv in range(levels):
        base = mip_offsets[lv, 1]
        for bx in numba.prange(mres):  # one thread per block row: no two write the same block
            for x in range(2 * bx, min(2 * bx + 2, res)):
                inner_x = lv > 0 and lo <= x < hi
                for y in range(res):
                    inner_xy = inner_x and lo <= y < hi
                    row = (x * res + y) * res
                    out = base + (bx * mres + (y >> 1)) * mres
                    for z in range(res):
                        if binaries[lv, row + z] and not (inner_xy and lo <= z < hi):
                            mips[out + (z >> 1)] = True
        for m in range(2, n_mips + 1):
            cres, mres_m = (res + (1 << (m - 1)) - 1) >> (m - 1), (res + (1 << m) - 1) >> m
            child, base_m = mip_offsets[lv, m - 1], mip_offsets[lv, m]
            for bx in numba.prange(mres_m):
                for x in range(2 * bx, min(2 * bx + 2, cres)):
                    for y in range(cres):
                        row = child + (x * cres + y) * cres
                        out = base_m + (bx * mres_m + (y >> 1)) * mres_m
                        for z in range(cres):
                            if mips[row + z]:
                                mips[out + (z >> 1)] = True


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _walk_rays(active, next_step, limits, k, origins, directions, t0, t1, steps, grid, write, slots, t_starts, t_ends,
               ray_ids, found, exhausted):
    """Up to k occupied samples of each ray r = active[j] from step next_step[r] on (the only
    kernel that walks, so the walk is compiled once): found[j] of them, written (with `write`) to
    slots[j], slots[j] + 1, ...; next_step[r] becomes the step after the last one walked and
    exhausted[j] whether that is the ray's limit."""
    step, cone_angle, t_switch, growth, geometric, monotone, inv_log_growth, inv_step = steps
    binaries, cx, cy, cz, base_half, pow2, res, top, mips, mip_offsets, n_mips = grid
    half = _F32(0.5)
    for j in numba.prange(active.shape[0]):
        r = active[j]
        ray = _ray(r, origins, directions, t0, t1, steps, grid)
        ox, oy, oz, dx, dy, dz, a, b, n_uniform, t_geo, rox, roy, roz, idx, idy, idz = ray
        i, limit, n = next_step[r], limits[r], 0
        slot = slots[j] if write else 0
        while n < k and i < limit:
            start, dt = _step(i, a, n_uniform, t_geo, step, cone_angle, growth, geometric)
            if not start < b:
                if monotone:  # starts never decrease: no later step starts before t1
                    i = limit
                    break
                i += 1
                continue
            end = min(start + dt, b)
            mid = half * (start + end)
            px, py, pz = ox + dx * mid, oy + dy * mid, oz + dz * mid
            lv, ix, iy, iz = _locate(px, py, pz, cx, cy, cz, base_half, pow2, res, top)
            if ix < 0:  # in no cascade
                i += 1
            elif binaries[lv, ix * res * res + iy * res + iz]:
                if write:
                    t_starts[slot + n] = start
                    t_ends[slot + n] = end
                    ray_ids[slot + n] = r
                n += 1
                i += 1
            else:
                i = _skip(i, limit, lv, ix, iy, iz, px, py, pz, ray, steps, grid)
        next_step[r] = i
        found[j] = n
        exhausted[j] = i >= limit


@numba.njit(cache=True, inline="always")
def _offsets(counts):  # [A] int64 -> [A + 1] int64: exclusive prefix sum, the total last
    out = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    for j in range(counts.shape[0]):
        out[j + 1] = out[j] + counts[j]
    return out


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _pack(buf_starts, buf_ends, buf_ids, found, k):
    """The rows of [A, k] buffers (flat) packed: t_starts, t_ends, ray_ids [P] and offsets [A + 1]."""
    n_rows = found.shape[0]
    offsets = _offsets(found)
    total = offsets[n_rows]
    t_starts = np.empty(total, dtype=np.float32)
    t_ends = np.empty(total, dtype=np.float32)
    ray_ids = np.empty(total, dtype=np.int64)
    for j in numba.prange(n_rows):
        base, src = offsets[j], j * k
        for q in range(found[j]):
            t_starts[base + q] = buf_starts[src + q]
            t_ends[base + q] = buf_ends[src + q]
            ray_ids[base + q] = buf_ids[src + q]
    return t_starts, t_ends, ray_ids, offsets


def _gather(active, k, next_step, limits, s, steps, grid):
    """Up to k occupied candidates of each active ray from its next_step on, packed ray by ray:
    t_starts, t_ends, ray_ids [P], offsets [A + 1] (ray active[j] owns offsets[j] .. offsets[j + 1])
    and exhausted [A] (the ray has no step left); next_step moves past the last step walked."""
    n_active = len(active)
    buf_starts = np.empty(n_active * k, dtype=np.float32)
    buf_ends = np.empty(n_active * k, dtype=np.float32)
    buf_ids = np.empty(n_active * k, dtype=np.int64)
    found = np.empty(n_active, dtype=np.int64)
    exhausted = np.empty(n_active, dtype=np.bool_)
    slots = np.arange(n_active, dtype=np.int64) * k
    _walk_rays(active, next_step, limits, k, s.origins, s.directions, s.t0, s.t1, steps, grid, True, slots,
               buf_starts, buf_ends, buf_ids, found, exhausted)
    return (*_pack(buf_starts, buf_ends, buf_ids, found, k), exhausted)


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _early_stop(active, offsets, t_starts, t_ends, sigmas, threshold, exhausted, depth, kept):
    """Transmittance of the gathered candidates, in sample order per ray (module docstring).

    depth[r] (float64) is ray r's optical depth so far and kept[r] its samples kept so far; both
    are updated. A candidate is kept while float32(depth in front of it) <= threshold. Returns the
    kept candidates packed ray by ray (t_starts, t_ends, ray_ids, their index among the ray's kept
    samples, their index among the candidates) and alive [A]: the ray survives and has steps left.
    """
    n_active = active.shape[0]
    n_keep = np.empty(n_active, dtype=np.int64)
    alive = np.empty(n_active, dtype=np.bool_)
    for j in numba.prange(n_active):
        r = active[j]
        d = depth[r]
        nk = 0
        dead = False
        for p in range(offsets[j], offsets[j + 1]):
            if not _F32(d) <= threshold:
                dead = True
                break
            d += np.float64(sigmas[p] * (t_ends[p] - t_starts[p]))
            nk += 1
        if not _F32(d) <= threshold:
            dead = True
        depth[r] = d
        n_keep[j] = nk
        alive[j] = not (dead or exhausted[j])
    out = _offsets(n_keep)
    total = out[n_active]
    k_starts = np.empty(total, dtype=np.float32)
    k_ends = np.empty(total, dtype=np.float32)
    k_ids = np.empty(total, dtype=np.int64)
    k_pos = np.empty(total, dtype=np.int64)
    k_src = np.empty(total, dtype=np.int64)
    for j2 in numba.prange(n_active):
        ray_id = active[j2]
        base, src, before = out[j2], offsets[j2], kept[ray_id]
        for q in range(n_keep[j2]):
            k_starts[base + q] = t_starts[src + q]
            k_ends[base + q] = t_ends[src + q]
            k_ids[base + q] = ray_id
            k_pos[base + q] = before + q
            k_src[base + q] = src + q
        kept[ray_id] = before + n_keep[j2]
    return k_starts, k_ends, k_ids, k_pos, k_src, alive


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _scatter(kept, ray_ids, pos, t_starts, t_ends):
    """The kept samples of all rounds in ray order: (t_starts, t_ends, ray_ids, source index of each)."""
    n = kept.shape[0]
    first = np.empty(n, dtype=np.int64)
    acc = 0
    for ray in range(n):
        first[ray] = acc
        acc += kept[ray]
    total = ray_ids.shape[0]
    out_starts = np.empty(total, dtype=np.float32)
    out_ends = np.empty(total, dtype=np.float32)
    out_ids = np.empty(total, dtype=np.int64)
    source = np.empty(total, dtype=np.int64)
    for q in numba.prange(total):
        dest = first[ray_ids[q]] + pos[q]
        out_starts[dest] = t_starts[q]
        out_ends[dest] = t_ends[q]
        out_ids[dest] = ray_ids[q]
        source[dest] = q
    return out_starts, out_ends, out_ids, source


# --- set-up --------------------------------------------------------------------------------------


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


_MIPS_CACHE: list = [None, None, None]  # weakref to grid.binaries, (its _version, data_ptr, res), the pyramid


def _grid_mips(binaries: Tensor, binaries_np: np.ndarray, res: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The OR pyramid of `_build_mips` (flat bool, offsets [L, n + 1], n levels) of `binaries`
    (the grid's own tensor; `binaries_np` its contiguous CPU copy or view), cached for the last
    tensor seen while its version counter says it was not written in place."""
    ref, key, cached = _MIPS_CACHE
    new_key = (binaries._version, binaries.data_ptr(), res)
    if ref is not None and ref() is binaries and key == new_key:
        return cached
    levels = binaries_np.shape[0]
    n_mips = 0
    while n_mips < MAX_MIPS and (res + (1 << n_mips) - 1) >> n_mips > 1:
        n_mips += 1
    sizes = [((res + (1 << m) - 1) >> m) ** 3 if m > 0 else 0 for m in range(n_mips + 1)]
    offsets = np.zeros((levels, n_mips + 1), dtype=np.int64)
    total = 0
    for lv in range(levels):
        for m in range(1, n_mips + 1):
            offsets[lv, m] = total
            total += sizes[m]
    mips = np.zeros(max(total, 1), dtype=np.bool_)
    if n_mips:
        _build_mips(binaries_np, res, n_mips, offsets, mips)
    cached = (mips, offsets, n_mips)
    _MIPS_CACHE[:] = [weakref.ref(binaries), new_key, cached]  # tensors are weak-referenceable
    return cached


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
        self.inv_log_growth = 1.0 / math.log1p(float(self.cone_angle)) if self.geometric else 0.0
        self.binaries = grid.binaries.detach().cpu().contiguous().numpy()
        self.center = grid.center.detach().cpu().to(torch.float32).contiguous().numpy()
        self.base_half = _F32(grid.base_half)
        self.pow2 = torch.pow(2.0, torch.arange(grid.cascades, dtype=torch.float32)).numpy()
        self.res = int(grid.resolution)
        self._binaries_tensor = grid.binaries

    def steps(self):
        return (self.step, self.cone_angle, self.t_switch, self.growth, self.geometric, self.monotone,
                self.inv_log_growth, 1.0 / float(self.step))

    def grid(self):
        mips, offsets, n_mips = _grid_mips(self._binaries_tensor, self.binaries, self.res)
        cx, cy, cz = (_F32(c) for c in self.center)
        return (self.binaries, cx, cy, cz, self.base_half, self.pow2, self.res, self.binaries.shape[0] - 1,
                mips, offsets, n_mips)


# --- the backend -------------------------------------------------------------------------------


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
    rays = np.arange(n, dtype=np.int64)
    walk = (limits_np, max_steps, s.origins, s.directions, s.t0, s.t1, s.steps(), s.grid())
    found, exhausted = np.zeros(n, dtype=np.int64), np.empty(n, dtype=np.bool_)
    no_f, no_i = np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
    _walk_rays(rays, np.zeros(n, dtype=np.int64), *walk, False, no_i, no_f, no_f, no_i, found, exhausted)  # count
    ends = np.cumsum(found)
    total = int(ends[-1])
    t_starts = np.empty(total, dtype=np.float32)
    t_ends = np.empty(total, dtype=np.float32)
    ray_indices = np.empty(total, dtype=np.int64)
    if total > 0:  # fill, from each ray's offset
        _walk_rays(rays, np.zeros(n, dtype=np.int64), *walk, True, ends - found, t_starts, t_ends, ray_indices,
                   found, exhausted)
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
        sigma_fn: None keeps every occupied sample; otherwise densities of batches of up to K
            occupied candidates per live ray, and the reference's early stop by transmittance
            (up to rounding of the optical depth sums: module docstring).
        early_stop_eps: transmittance threshold used with `sigma_fn`.

    Returns:
        PackedSamples, sorted by ray, t ascending within a ray, as the reference backend
        `nerf.sampling.march_reference.march` returns them (module docstring for what is exact).
    """
    n = origins.shape[0]
    if sigma_fn is None:
        t_starts, t_ends, ray_indices = march_numba(grid, origins, directions, t0, t1, step, cone_angle)
        if len(t_starts) == 0:
            return empty_samples(n, origins)
        return PackedSamples(t_starts, t_ends, ray_indices, n)
    return _march_early_stop(grid, origins, directions, t0, t1, step, cone_angle, sigma_fn, early_stop_eps)


def _candidates_per_ray(n_active: int, previous: int) -> int:
    """K of a round (`previous` = 0 before the first): FIRST_ROUND_CANDIDATES, then the previous
    K, or more when few rays are live (up to CANDIDATE_BUDGET in all); at most
    MAX_CANDIDATES_PER_RAY, and never more than MAX_CANDIDATES_PER_CHUNK in all (so 1 with over
    MAX_CANDIDATES_PER_CHUNK live rays). Not doubling: a ray in thin, semi-transparent matter
    (real captures) stops anywhere, and half a doubled round is wasted past its stop on average
    (fox: 15% fewer densities, frames 7-10% faster, training 3-5% faster; docs/DESIGN.md)."""
    k = FIRST_ROUND_CANDIDATES if previous == 0 else max(previous, CANDIDATE_BUDGET // n_active)
    return max(1, min(k, MAX_CANDIDATES_PER_RAY, MAX_CANDIDATES_PER_CHUNK // n_active))


def _march_early_stop(grid, origins, directions, t0, t1, step, cone_angle, sigma_fn, early_stop_eps):
    """Rounds of: K candidates per live ray (`_gather`), `sigma_fn`, transmittance and compaction
    (`_early_stop`); then the kept samples in ray order (`_scatter`)."""
    n = origins.shape[0]
    limits = _tried_steps(step_counts(t0, t1, step, cone_angle)).contiguous().numpy()
    active = np.flatnonzero(limits > 0).astype(np.int64)
    if len(active) == 0:
        return empty_samples(n, origins)
    s = _Setup(grid, origins, directions, t0, t1, step, cone_angle, int(limits.max()))
    steps, grid_args = s.steps(), s.grid()
    threshold = _survival_threshold(float(early_stop_eps))
    if threshold is None:  # torch's exp test is not a plain threshold here: its rounding aside, it is
        threshold = -math.log(early_stop_eps)
    threshold = _F32(threshold)
    next_step = np.zeros(n, dtype=np.int64)
    depth = np.zeros(n, dtype=np.float64)
    kept = np.zeros(n, dtype=np.int64)
    parts: list[tuple] = []
    payloads: list[Tensor] = []
    k = 0  # no round yet
    while len(active):
        k = _candidates_per_ray(len(active), k)
        t_starts, t_ends, ray_ids, offsets, exhausted = _gather(active, k, next_step, limits, s, steps, grid_args)
        if len(t_starts) == 0:
            break
        out = sigma_fn(torch.from_numpy(t_starts), torch.from_numpy(t_ends), torch.from_numpy(ray_ids))
        sig, extra = out if isinstance(out, tuple) else (out, None)
        sigmas = sig.detach().float().cpu().contiguous().reshape(-1).numpy()
        if len(sigmas) != len(t_starts):
            raise ValueError(f"march: sigma_fn returned {len(sigmas)} densities for {len(t_starts)} samples")
        *part, source, alive = _early_stop(active, offsets, t_starts, t_ends, sigmas, threshold, exhausted,
                                           depth, kept)
        parts.append(part)
        if extra is not None:
            payloads.append(extra.index_select(0, torch.from_numpy(source)))
        active = active[alive]
    if not parts:  # sigma_fn was never called: nothing occupied
        return empty_samples(n, origins)
    assert not payloads or len(payloads) == len(parts), "sigma_fn returned a payload for some batches only"
    if len(parts) == 1:  # one round: already in ray order
        t_starts, t_ends, ray_ids, _ = parts[0]
        payload = payloads[0] if payloads else None
    else:
        cat = [np.concatenate([p[i] for p in parts]) for i in range(4)]
        t_starts, t_ends, ray_ids, source = _scatter(kept, cat[2], cat[3], cat[0], cat[1])
        payload = torch.cat(payloads).index_select(0, torch.from_numpy(source)) if payloads else None
    return PackedSamples(torch.from_numpy(t_starts), torch.from_numpy(t_ends), torch.from_numpy(ray_ids), n, payload)


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
    monotone: the caller then uses -log(eps), which differs from torch's test only within its
    rounding. NaN depths fail both tests.
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
