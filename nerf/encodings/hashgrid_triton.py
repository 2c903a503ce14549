"""Multiresolution hash encoding as Triton kernels (forward and backward).

Same formulas, names and signature as the torch backend `nerf.encodings.hashgrid.hash_encode`
(read `nerf.encodings.hashgrid_levels` for the level geometry). One program handles a block of
points at one level (grid = [point blocks, L]): it computes the cell and trilinear weights,
indexes the 8 corners (dense or hashed), gathers their F features and writes the blend.
The backward recomputes the corners and scatters v_out * weight into the table gradient with
float32 atomic adds; nothing but the positions is saved.

Hashing runs in int32 with wrapping products, like tcnn's uint32 arithmetic: the low
log2(T) bits, the only ones kept, are the same. With `half_table=True` the kernels read a
float16 copy of the table (half the gather traffic) and still interpolate and accumulate the
gradient in float32; the gradient is returned in float32 for the float32 table.

Positions are clamped to [0, 1] (NaN maps to 0) and receive no gradient. Under `TRITON_INTERPRET=1` the
kernels run on CPU tensors in Triton's interpreter (slow, for tests).
"""

import functools

import torch
import triton
import triton.language as tl
from torch import Tensor

from nerf.encodings.hashgrid_levels import HASH_PRIMES, HashGridLevels

# Points per program. Each program touches 8 random table rows per point; 128 points keep a
# warp group busy without large register tiles.
BLOCK_POINTS = 128
NUM_WARPS = 4

# The hash primes as wrapped int32 constants (2654435761 does not fit in an int32).
_PRIME_Y = HASH_PRIMES[1] - (1 << 32) if HASH_PRIMES[1] >= (1 << 31) else HASH_PRIMES[1]
_PRIME_Z = HASH_PRIMES[2] - (1 << 32) if HASH_PRIMES[2] >= (1 << 31) else HASH_PRIMES[2]


@triton.jit
def _cell(pos_ptr, points, mask, axis: tl.constexpr, scale):
    """Lower vertex (int32) and fractional position of each point along one axis."""
    x = tl.load(pos_ptr + points * 3 + axis, mask=mask, other=0.0)
    x = tl.where(x == x, x, 0.0)  # NaN -> 0: every index stays inside the table
    p = tl.minimum(tl.maximum(x, 0.0), 1.0) * scale + 0.5
    lower = tl.floor(p)
    return lower.to(tl.int32), p - lower


@triton.jit
def _corner(
    ix, iy, iz, fx, fy, fz, res, size, hashed, prime_y, prime_z,
    DX: tl.constexpr, DY: tl.constexpr, DZ: tl.constexpr,
):
    """Index within the level and trilinear weight of corner (DX, DY, DZ) of each cell."""
    gx, gy, gz = ix + DX, iy + DY, iz + DZ
    hashed_index = (gx ^ (gy * prime_y) ^ (gz * prime_z)) & (size - 1)
    dense_index = (gx + gy * res + gz * res * res) % size
    index = tl.where(hashed, hashed_index, dense_index)
    wx = fx * DX + (1.0 - fx) * (1 - DX)
    wy = fy * DY + (1.0 - fy) * (1 - DY)
    wz = fz * DZ + (1.0 - fz) * (1 - DZ)
    return index, wx * wy * wz


@triton.jit
def _program_cells(pos_ptr, scales_ptr, res_ptr, sizes_ptr, offsets_ptr, hashed_ptr, n_points,
                   BLOCK: tl.constexpr):
    """This program's level (grid axis 1) and points (axis 0), the level's constants, and each
    point's cell (lower vertex and fraction per axis): the shared start of both kernels."""
    level = tl.program_id(1)
    points = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = points < n_points
    scale = tl.load(scales_ptr + level)
    res = tl.load(res_ptr + level)
    size = tl.load(sizes_ptr + level)
    offset = tl.load(offsets_ptr + level)
    hashed = tl.load(hashed_ptr + level) != 0
    ix, fx = _cell(pos_ptr, points, mask, 0, scale)
    iy, fy = _cell(pos_ptr, points, mask, 1, scale)
    iz, fz = _cell(pos_ptr, points, mask, 2, scale)
    return level, points, mask, res, size, offset, hashed, ix, iy, iz, fx, fy, fz


@triton.jit
def _hash_fwd_kernel(
    pos_ptr,  # [N, 3] float32
    table_ptr,  # [E, F] float32 or float16
    out_ptr,  # [N, L*F] float32 out
    scales_ptr,  # [L] float32
    res_ptr,  # [L] int32
    sizes_ptr,  # [L] int32
    offsets_ptr,  # [L] int64
    hashed_ptr,  # [L] int32 (0 dense, 1 hashed)
    n_points,
    prime_y,
    prime_z,
    N_LEVELS: tl.constexpr,
    F: tl.constexpr,
    BLOCK: tl.constexpr,
):
    level, points, mask, res, size, offset, hashed, ix, iy, iz, fx, fy, fz = _program_cells(
        pos_ptr, scales_ptr, res_ptr, sizes_ptr, offsets_ptr, hashed_ptr, n_points, BLOCK
    )
    features = tl.arange(0, F)
    acc = tl.zeros([BLOCK, F], dtype=tl.float32)
    for corner in tl.static_range(8):
        index, w = _corner(
            ix, iy, iz, fx, fy, fz, res, size, hashed, prime_y, prime_z, corner % 2, (corner // 2) % 2, corner // 4
        )
        rows = (offset + index.to(tl.int64)) * F
        values = tl.load(table_ptr + rows[:, None] + features[None, :], mask=mask[:, None], other=0.0)
        acc += w[:, None] * values.to(tl.float32)
    out_offsets = points.to(tl.int64)[:, None] * (N_LEVELS * F) + level * F + features[None, :]
    tl.store(out_ptr + out_offsets, acc, mask=mask[:, None])


@triton.jit
def _hash_bwd_kernel(
    pos_ptr,  # [N, 3] float32
    v_out_ptr,  # [N, L*F] float32
    v_table_ptr,  # [E, F] float32 out (zero-initialised, accumulated atomically)
    scales_ptr,
    res_ptr,
    sizes_ptr,
    offsets_ptr,
    hashed_ptr,
    n_points,
    prime_y,
    prime_z,
    N_LEVELS: tl.constexpr,
    F: tl.constexpr,
    BLOCK: tl.constexpr,
):
    level, points, mask, res, size, offset, hashed, ix, iy, iz, fx, fy, fz = _program_cells(
        pos_ptr, scales_ptr, res_ptr, sizes_ptr, offsets_ptr, hashed_ptr, n_points, BLOCK
    )
    features = tl.arange(0, F)
    v_offsets = points.to(tl.int64)[:, None] * (N_LEVELS * F) + level * F + features[None, :]
    v_level = tl.load(v_out_ptr + v_offsets, mask=mask[:, None], other=0.0).to(tl.float32)
    for corner in tl.static_range(8):
        index, w = _corner(
            ix, iy, iz, fx, fy, fz, res, size, hashed, prime_y, prime_z, corner % 2, (corner // 2) % 2, corner // 4
        )
        rows = (offset + index.to(tl.int64)) * F
        tl.atomic_add(v_table_ptr + rows[:, None] + features[None, :], w[:, None] * v_level, mask=mask[:, None])


@functools.lru_cache(maxsize=16)
def _level_tensors(levels: HashGridLevels, device: str) -> tuple[Tensor, ...]:
    """Per-level constants as device tensors (built once per geometry and device)."""
    return (
        torch.tensor(levels.scales, dtype=torch.float32, device=device),
        torch.tensor(levels.resolutions, dtype=torch.int32, device=device),
        torch.tensor(levels.table_sizes, dtype=torch.int32, device=device),
        torch.tensor(levels.offsets[:-1], dtype=torch.int64, device=device),
        torch.tensor(levels.hashed, dtype=torch.int32, device=device),
    )


class _HashEncodeTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, positions, table, levels, half_table):
        positions = positions.detach().to(torch.float32).contiguous()
        read_dtype = torch.float16 if half_table else torch.float32
        table_read = table.detach().to(read_dtype).contiguous()
        n = positions.shape[0]
        out = torch.empty(n, levels.n_levels * levels.n_features, dtype=torch.float32, device=positions.device)
        constants = _level_tensors(levels, str(positions.device))
        if n > 0:
            grid = (triton.cdiv(n, BLOCK_POINTS), levels.n_levels)
            _hash_fwd_kernel[grid](
                positions, table_read, out, *constants, n, _PRIME_Y, _PRIME_Z,
                N_LEVELS=levels.n_levels, F=levels.n_features, BLOCK=BLOCK_POINTS, num_warps=NUM_WARPS,
            )
        ctx.save_for_backward(positions)
        ctx.levels = levels
        ctx.table_dtype = table.dtype
        return out

    @staticmethod
    def backward(ctx, v_out):
        (positions,) = ctx.saved_tensors
        levels = ctx.levels
        if not ctx.needs_input_grad[1]:
            return None, None, None, None
        n = positions.shape[0]
        v_table = torch.zeros(levels.n_entries, levels.n_features, dtype=torch.float32, device=positions.device)
        if n > 0:
            v_out = v_out.to(torch.float32).contiguous()
            grid = (triton.cdiv(n, BLOCK_POINTS), levels.n_levels)
            _hash_bwd_kernel[grid](
                positions, v_out, v_table, *_level_tensors(levels, str(positions.device)), n, _PRIME_Y, _PRIME_Z,
                N_LEVELS=levels.n_levels, F=levels.n_features, BLOCK=BLOCK_POINTS, num_warps=NUM_WARPS,
            )
        return None, v_table.to(ctx.table_dtype), None, None


def hash_encode(
    positions: Tensor,  # [N, 3] in [0, 1]
    table: Tensor,  # [E, F] float32
    levels: HashGridLevels,
    half_table: bool = False,
) -> Tensor:  # [N, L*F] float32
    """Encode positions with a multiresolution hash grid (Triton kernels).

    Args:
        positions: points in the unit cube; clamped to [0, 1]; no gradient flows to them.
        table: the flat feature table of all levels, on the positions' device.
        levels: level geometry from `make_levels`.
        half_table: read a float16 copy of the table (float32 interpolation and gradient).

    Returns:
        Level-major concatenated features: columns l*F .. l*F+F-1 belong to level l.
    """
    if positions.device != table.device:
        raise ValueError(f"hash_encode (triton): positions on {positions.device}, table on {table.device}")
    return _HashEncodeTriton.apply(positions, table, levels, half_table)
