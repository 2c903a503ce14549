"""Hash-grid backend on numba: the CPU kernels, compiled at first use (no compiler, no build step).

Same signature and result as the torch specification (`nerf.encodings.hashgrid.hash_encode`):
positions [N, 3] in [0, 1] (clamped, NaN -> 0, no gradient), table [E, F] float32 ->
features [N, L*F]; the backward returns the table gradient. `encode_position_grad` is the
positions' gradient (`nerf.encodings.hashgrid.encode_position_grad`), blocked like the forward.

Why it is faster than the torch path on a CPU: one pass per point and level computes the cell,
the 8 corner indices and weights in registers and reads or accumulates the table rows directly,
so nothing of size [N, 8] is ever written to memory. The forward runs its parallel loop over
blocks of points, each block level by level (its output rows are its own). The backward runs
its parallel loop over the *levels*: each level owns a disjoint slice of the table, so the
scatter-adds need neither atomics nor per-thread copies of the table, and one level's slice stays
in cache while a thread walks the points. Level-major order is also the torch path's order, so
the two agree to float32 rounding (the sum over the 8 corners runs in corner order here).

The index arithmetic is tiny-cuda-nn's (`nerf.encodings.hashgrid_levels`): hashed levels xor the
coordinates times the primes (1, 2654435761, 805459861) and keep the low log2 T bits; dense levels
index (i + j R + k R^2) mod size.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
import torch
from torch import Tensor

from nerf.encodings.hashgrid_levels import HASH_PRIMES, HashGridLevels

_PRIME_Y, _PRIME_Z = HASH_PRIMES[1], HASH_PRIMES[2]
# Forward: points per parallel block, at most; a block walks level by level, so one level's rows
# stay in cache while its points are read, and each thread writes only its own output rows.
# Smaller calls (the marcher's density queries hold a few thousand points) are cut into at
# least BLOCKS_PER_THREAD blocks per thread, so every core works.
BLOCK_POINTS = 4096
MIN_BLOCK_POINTS = 128
BLOCKS_PER_THREAD = 4


@numba.njit(cache=True, inline="always")
def _cell(px, py, pz, hashed, size, r):  # -> (8 rows within the level, 8 weights), corner c = x + 2y + 4z
    """The 8 corner indices and trilinear weights of the cell of p (bit 0 of a corner: x, 1: y, 2: z)."""
    ix, iy, iz = np.int64(px), np.int64(py), np.int64(pz)  # floor: p >= 0.5
    fx, fy, fz = px - np.float32(ix), py - np.float32(iy), pz - np.float32(iz)
    gx, gy, gz = np.float32(1.0) - fx, np.float32(1.0) - fy, np.float32(1.0) - fz
    if hashed:
        mask = size - 1  # hashed levels hold T = 2^k entries: masking each term equals mod after xor
        x0, x1 = ix & mask, (ix + 1) & mask
        y0, y1 = (iy * _PRIME_Y) & mask, ((iy + 1) * _PRIME_Y) & mask
        z0, z1 = (iz * _PRIME_Z) & mask, ((iz + 1) * _PRIME_Z) & mask
        rows = (x0 ^ y0 ^ z0, x1 ^ y0 ^ z0, x0 ^ y1 ^ z0, x1 ^ y1 ^ z0,
                x0 ^ y0 ^ z1, x1 ^ y0 ^ z1, x0 ^ y1 ^ z1, x1 ^ y1 ^ z1)
    else:
        base = ix + iy * r + iz * r * r
        rows = (base, base + 1, base + r, base + 1 + r,
                base + r * r, base + 1 + r * r, base + r + r * r, base + 1 + r + r * r)
        if base + 1 + r + r * r >= size:  # the upper corner wrapped around (tcnn's rule): mod
            rows = (rows[0] % size, rows[1] % size, rows[2] % size, rows[3] % size,
                    rows[4] % size, rows[5] % size, rows[6] % size, rows[7] % size)
    weights = (gx * gy * gz, fx * gy * gz, gx * fy * gz, fx * fy * gz,
               gx * gy * fz, fx * gy * fz, gx * fy * fz, fx * fy * fz)
    return rows, weights


@numba.njit(cache=True, inline="always")
def _corner_sum2(level_table, rows, w):  # -> the two features of one level, summed in corner order
    """sum_c w[c] * level_table[rows[c], f] for f = 0, 1, written out (a loop over a tuple index
    and a feature count unknown at compile time ran ~20% slower)."""
    a0 = w[0] * level_table[rows[0], 0]
    a1 = w[0] * level_table[rows[0], 1]
    a0 += w[1] * level_table[rows[1], 0]
    a1 += w[1] * level_table[rows[1], 1]
    a0 += w[2] * level_table[rows[2], 0]
    a1 += w[2] * level_table[rows[2], 1]
    a0 += w[3] * level_table[rows[3], 0]
    a1 += w[3] * level_table[rows[3], 1]
    a0 += w[4] * level_table[rows[4], 0]
    a1 += w[4] * level_table[rows[4], 1]
    a0 += w[5] * level_table[rows[5], 0]
    a1 += w[5] * level_table[rows[5], 1]
    a0 += w[6] * level_table[rows[6], 0]
    a1 += w[6] * level_table[rows[6], 1]
    a0 += w[7] * level_table[rows[7], 0]
    a1 += w[7] * level_table[rows[7], 1]
    return a0, a1


@numba.njit(parallel=True, cache=True)
def _forward_kernel(pos, table, scales, res, sizes, offsets, hashed, out, block_points):
    """pos [N, 3] f32, table [E, F] f32, level arrays [L], out [N, L*F] f32 (written)."""
    n_points, n_features = pos.shape[0], table.shape[1]
    n_blocks = (n_points + block_points - 1) // block_points
    for block in numba.prange(n_blocks):
        first, last = block * block_points, min((block + 1) * block_points, n_points)
        for level in range(scales.shape[0]):
            scale, col = scales[level], level * n_features
            level_table = table[offsets[level]:offsets[level] + sizes[level]]
            is_hashed, size, r = hashed[level], sizes[level], res[level]
            for n in range(first, last):
                rows, weights = _cell(pos[n, 0] * scale + np.float32(0.5), pos[n, 1] * scale + np.float32(0.5),
                                      pos[n, 2] * scale + np.float32(0.5), is_hashed, size, r)
                if n_features == 2:  # the default, unrolled: both features of a corner from one row
                    a0, a1 = _corner_sum2(level_table, rows, weights)
                    out[n, col] = a0
                    out[n, col + 1] = a1
                    continue
                for f in range(n_features):
                    acc = np.float32(0.0)
                    for corner in range(8):
                        acc += weights[corner] * level_table[rows[corner], f]
                    out[n, col + f] = acc


@numba.njit(parallel=True, cache=True)
def _backward_kernel(pos, v_out, scales, res, sizes, offsets, hashed, v_table):
    """pos [N, 3] f32, v_out [N, L*F] f32, level arrays [L], v_table [E, F] f32 (accumulated)."""
    n_points, n_features = pos.shape[0], v_table.shape[1]
    for level in numba.prange(scales.shape[0]):
        scale, col = scales[level], level * n_features
        level_grad = v_table[offsets[level]:offsets[level] + sizes[level]]
        is_hashed, size, r = hashed[level], sizes[level], res[level]
        for n in range(n_points):
            rows, weights = _cell(pos[n, 0] * scale + np.float32(0.5), pos[n, 1] * scale + np.float32(0.5),
                                  pos[n, 2] * scale + np.float32(0.5), is_hashed, size, r)
            if n_features == 2:  # the default, unrolled
                g0, g1 = v_out[n, col], v_out[n, col + 1]
                for corner in range(8):
                    level_grad[rows[corner], 0] += weights[corner] * g0
                    level_grad[rows[corner], 1] += weights[corner] * g1
                continue
            for f in range(n_features):
                g = v_out[n, col + f]
                for corner in range(8):
                    level_grad[rows[corner], f] += weights[corner] * g


@numba.njit(cache=True, inline="always")
def _dot(level_table, row, v_out, n, col, n_features):  # -> v_out[n, col:col+F] . level_table[row]
    acc = np.float32(0.0)
    for f in range(n_features):
        acc += v_out[n, col + f] * level_table[row, f]
    return acc


@numba.njit(parallel=True, cache=True)
def _position_grad_kernel(pos, table, v_out, scales, res, sizes, offsets, hashed, v_pos, block_points):
    """pos [N, 3] f32, table [E, F] f32, v_out [N, L*F] f32, level arrays [L], v_pos [N, 3] (zeros,
    accumulated). Blocks of points in parallel, each walked level by level like the forward."""
    n_points, n_features = pos.shape[0], table.shape[1]
    n_blocks = (n_points + block_points - 1) // block_points
    one = np.float32(1.0)
    for block in numba.prange(n_blocks):
        first, last = block * block_points, min((block + 1) * block_points, n_points)
        for level in range(scales.shape[0]):
            scale, col = scales[level], level * n_features
            level_table = table[offsets[level]:offsets[level] + sizes[level]]
            is_hashed, size, r = hashed[level], sizes[level], res[level]
            for n in range(first, last):
                px = pos[n, 0] * scale + np.float32(0.5)
                py = pos[n, 1] * scale + np.float32(0.5)
                pz = pos[n, 2] * scale + np.float32(0.5)
                rows, _ = _cell(px, py, pz, is_hashed, size, r)
                # d_c = v_out . the table row of corner c (c = x + 2y + 4z); scalars, so nothing is allocated
                if n_features == 2:  # the default, unrolled like the forward (half the time)
                    v0, v1 = v_out[n, col], v_out[n, col + 1]
                    d0 = v0 * level_table[rows[0], 0] + v1 * level_table[rows[0], 1]
                    d1 = v0 * level_table[rows[1], 0] + v1 * level_table[rows[1], 1]
                    d2 = v0 * level_table[rows[2], 0] + v1 * level_table[rows[2], 1]
                    d3 = v0 * level_table[rows[3], 0] + v1 * level_table[rows[3], 1]
                    d4 = v0 * level_table[rows[4], 0] + v1 * level_table[rows[4], 1]
                    d5 = v0 * level_table[rows[5], 0] + v1 * level_table[rows[5], 1]
                    d6 = v0 * level_table[rows[6], 0] + v1 * level_table[rows[6], 1]
                    d7 = v0 * level_table[rows[7], 0] + v1 * level_table[rows[7], 1]
                else:
                    d0, d1 = _dot(level_table, rows[0], v_out, n, col, n_features), _dot(level_table, rows[1], v_out, n, col, n_features)
                    d2, d3 = _dot(level_table, rows[2], v_out, n, col, n_features), _dot(level_table, rows[3], v_out, n, col, n_features)
                    d4, d5 = _dot(level_table, rows[4], v_out, n, col, n_features), _dot(level_table, rows[5], v_out, n, col, n_features)
                    d6, d7 = _dot(level_table, rows[6], v_out, n, col, n_features), _dot(level_table, rows[7], v_out, n, col, n_features)
                fx, fy, fz = px - np.float32(np.int64(px)), py - np.float32(np.int64(py)), pz - np.float32(np.int64(pz))
                gx, gy, gz = one - fx, one - fy, one - fz
                # d w_c / d frac_a: the other two axes' factors, + for the upper corner along a, - for the lower
                v_pos[n, 0] += scale * (gy * gz * (d1 - d0) + fy * gz * (d3 - d2) + gy * fz * (d5 - d4) + fy * fz * (d7 - d6))
                v_pos[n, 1] += scale * (gx * gz * (d2 - d0) + fx * gz * (d3 - d1) + gx * fz * (d6 - d4) + fx * fz * (d7 - d5))
                v_pos[n, 2] += scale * (gx * gy * (d4 - d0) + fx * gy * (d5 - d1) + gx * fy * (d6 - d2) + fx * fy * (d7 - d3))


def _block_points(n_points: int) -> int:
    """Points per parallel block of the forward (see BLOCK_POINTS)."""
    per_block = -(-n_points // (BLOCKS_PER_THREAD * numba.get_num_threads()))
    return int(min(BLOCK_POINTS, max(MIN_BLOCK_POINTS, per_block)))


@functools.cache
def _level_arrays(levels: HashGridLevels) -> tuple[np.ndarray, ...]:
    """The level geometry as the numpy arrays the kernels take (built once per HashGridLevels)."""
    return (
        np.asarray(levels.scales, dtype=np.float32),
        np.asarray(levels.resolutions, dtype=np.int64),
        np.asarray(levels.table_sizes, dtype=np.int64),
        np.asarray(levels.offsets[:-1], dtype=np.int64),
        np.asarray(levels.hashed, dtype=np.bool_),
    )


def _check(positions: Tensor, table: Tensor) -> None:
    if positions.device.type != "cpu" or table.device.type != "cpu":
        raise ValueError(f"hash grid (numba): CPU tensors only, got {positions.device} and {table.device}")
    if table.dtype != torch.float32:
        raise ValueError(f"hash grid (numba): the table must be float32, got {table.dtype}")


class _NumbaHashEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, positions, table, levels):
        _check(positions, table)
        positions = positions.detach().float().nan_to_num(0.0).clamp(0.0, 1.0).contiguous()
        out = torch.empty(positions.shape[0], levels.n_levels * levels.n_features, dtype=torch.float32)
        _forward_kernel(positions.numpy(), table.detach().contiguous().numpy(), *_level_arrays(levels),
                        out.numpy(), _block_points(positions.shape[0]))
        ctx.save_for_backward(positions)
        ctx.levels = levels
        return out

    @staticmethod
    def backward(ctx, v_out):
        (positions,) = ctx.saved_tensors
        if not ctx.needs_input_grad[1]:
            return None, None, None
        return None, encode_table_grad(positions, v_out, ctx.levels), None


def hash_encode(
    positions: Tensor,  # [N, 3] in [0, 1], CPU
    table: Tensor,  # [E, F] float32, CPU
    levels: HashGridLevels,
) -> Tensor:  # [N, L*F] float32
    """Encode positions with the numba kernels (see the module docstring)."""
    return _NumbaHashEncode.apply(positions, table, levels)


def encode_table_grad(
    positions: Tensor,  # [N, 3] float32 in [0, 1] (already clamped, NaN-free), CPU
    v_out: Tensor,  # [N, L*F] cotangent of the features
    levels: HashGridLevels,
) -> Tensor:  # [E, F] float32
    """The table's gradient of the encoding: the backward of `hash_encode`, also used for
    features computed earlier at the same positions (`HashGrid.forward(positions, features)`)."""
    v_table = torch.zeros(levels.n_entries, levels.n_features, dtype=torch.float32)
    _backward_kernel(positions.numpy(), v_out.float().contiguous().numpy(), *_level_arrays(levels), v_table.numpy())
    return v_table


def encode_position_grad(
    positions: Tensor,  # [N, 3] in [0, 1], CPU
    table: Tensor,  # [E, F] float32, CPU
    v_out: Tensor,  # [N, L*F] cotangent of the features
    levels: HashGridLevels,
) -> Tensor:  # [N, 3] float32
    """The positions' gradient of the encoding (`nerf.encodings.hashgrid.encode_position_grad`)."""
    _check(positions, table)
    v_pos = torch.zeros(positions.shape[0], 3, dtype=torch.float32)
    _position_grad_kernel(positions.detach().float().contiguous().numpy(), table.detach().contiguous().numpy(),
                          v_out.float().contiguous().numpy(), *_level_arrays(levels), v_pos.numpy(),
                          _block_points(positions.shape[0]))
    return v_pos
