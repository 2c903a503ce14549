"""Multiresolution hash encoding (instant-ngp): the `HashGrid` module and its torch backend.

A position x in [0, 1]^3 (the caller normalises world points by the scene aabb) is looked up in
L grids of growing resolution; each level interpolates the F-feature entries of the 8 vertices
of the cell around x trilinearly, and the L results are concatenated:

    out[n, l*F:(l+1)*F] = sum over corners c of w_c(frac(p)) * table[offset_l + index_l(c)]

with p = x * s_l + 0.5. The level geometry, the 0.5 offset, the dense/hashed indexing and the
flat table layout follow tiny-cuda-nn exactly (see `nerf.encodings.hashgrid_levels`), so a
parameter vector trained with one backend evaluates identically with the others. Positions are
clamped to [0, 1] (NaN maps to 0, so no index can leave the table). The backends' kernels give
the table its gradient and the positions none (a NeRF trains only the table); when the positions
require a gradient (camera pose refinement moves the rays), `HashGrid` adds the derivative of the
trilinear blend, one function for every backend (`encode_position_grad`, numba on a CPU):

    d out[n, l*F+f] / d x_a = s_l * sum over corners c of (d w_c / d frac_a) * table[.., f]

zero where x_a was clamped (outside [0, 1]), and piecewise constant in x like the blend itself.

`HashGrid.forward(positions, features)` takes back features this grid encoded earlier, without
gradient, from the same positions and table (a training step's marcher asks the densities of
the very samples it then back-propagates through): nothing is encoded again, and the backward
is the encoding's. The numba and torch backends can (`takes_features`); their table gradient is
a function of its own.

Backends, same signature `hash_encode(positions, table, levels) -> [N, L*F]`:
    "torch"  this module (the specification; runs anywhere, the CPU training path)
    "triton" `nerf.encodings.hashgrid_triton` (fused kernels; CPU tensors under TRITON_INTERPRET=1)
    "tcnn"   `nerf.encodings.hashgrid_tcnn` (tiny-cuda-nn, when installed, CUDA only)
    "numba"  `nerf.encodings.hashgrid_numba` (fused CPU kernels compiled at first use, float32)
    "auto"   tcnn, else triton on CUDA tensors; numba, else torch on CPU tensors.

The torch backend is an autograd.Function with an explicit backward. On CPU its cost is memory
traffic, so it walks level by level (one level's table stays in cache) over chunks of points,
writing into preallocated buffers: allocating large temporaries costs a page fault per 4 KiB on
every call. The table gradient is one `index_add_` per chunk with each F=2 row viewed as one
complex number, the fastest exact variant measured by tools/benchmark_hashgrid.py.
"""

import functools
import importlib

import torch
from torch import Tensor, nn

from nerf import backends
from nerf.encodings.hashgrid_levels import HASH_PRIMES, HashGridLevels, make_levels, per_level_scale
from nerf.errors import ConfigError

BACKENDS = ("torch", "triton", "tcnn", "numba", "auto")
KERNEL_BACKENDS = ("torch", "triton", "tcnn", "numba")  # what "auto" resolves to

# Points per chunk of the torch backend: its [chunk, 8] int64 buffers (1 MiB) stay in L2.
CHUNK_POINTS = 16384

# instant-ngp's initialisation of the table.
INIT_RANGE = 1e-4


def available_hashgrid_backends() -> list[str]:
    """Hash-grid backends that can run in this process (`nerf.backends.available`).

    Returns:
        ["torch"], plus "triton" when triton imports and CUDA is available or TRITON_INTERPRET=1
        is set, plus "tcnn" when tinycudann imports and CUDA is available, plus "numba" when numba
        imports (CPU tensors).
    """
    return backends.available(KERNEL_BACKENDS)


def _row_view(table: Tensor) -> Tensor:  # [E, F] -> [E] or [E, F]
    """View each table row as one element when a dtype of that size exists.

    F=2 rows become complex numbers: indexing, multiplying by a real weight and summing then
    work on one contiguous element per row, several times faster than on [E, 2] rows.
    """
    if table.shape[1] == 1:
        return table.view(-1)
    if table.shape[1] == 2 and table.dtype in (torch.float32, torch.float64):
        complex_dtype = torch.complex64 if table.dtype == torch.float32 else torch.complex128
        return table.view(complex_dtype).view(-1)
    return table


class _LevelCorners:
    """Reusable buffers holding the 8 cell corners of a chunk of points at one level.

    Layouts are corner-major with the points innermost ([2, 2, 2, C]), so every elementwise op
    runs contiguous over points and broadcasts only over outer dimensions (vectorised loops).
    """

    def __init__(self, chunk: int, dtype: torch.dtype, device: torch.device):
        def buffer(size: int, buffer_dtype: torch.dtype) -> Tensor:
            return torch.empty(size * chunk, dtype=buffer_dtype, device=device)

        self.pos, self.cell = buffer(3, dtype), buffer(3, torch.int64)
        self.axis_terms, self.axis_weights = buffer(6, torch.int64), buffer(6, dtype)
        self.pair_index, self.pair_weights = buffer(4, torch.int64), buffer(4, dtype)
        self.index, self.weights = buffer(8, torch.int64), buffer(8, dtype)

    def compute(
        self,
        xt: Tensor,  # [3, C] transposed positions in [0, 1]
        level: int,
        levels: HashGridLevels,
        multipliers: Tensor,  # [3, 1] int64: hash primes, or (1, R, R^2) for a dense level
    ) -> tuple[Tensor, Tensor]:  # index [8 * C] int64 into the level's rows, weights [8, C]
        """Table indices (within the level) and trilinear weights of the 8 corners."""
        c = xt.shape[1]
        pos, cell = self.pos[: 3 * c].view(3, c), self.cell[: 3 * c].view(3, c)
        terms, axis_w = self.axis_terms[: 6 * c].view(3, 2, c), self.axis_weights[: 6 * c].view(3, 2, c)
        pair_index, pair_w = self.pair_index[: 4 * c].view(2, 2, c), self.pair_weights[: 4 * c].view(2, 2, c)
        index, weights = self.index[: 8 * c].view(2, 2, 2, c), self.weights[: 8 * c].view(2, 2, 2, c)
        torch.mul(xt, levels.scales[level], out=pos)
        pos.add_(0.5)
        cell.copy_(pos)  # truncation is floor here: pos >= 0.5
        torch.sub(pos, cell, out=axis_w[:, 1])
        torch.neg(axis_w[:, 1], out=axis_w[:, 0])
        axis_w[:, 0].add_(1.0)
        # Per-axis terms of the lower and upper vertex; a corner combines one term per axis.
        torch.mul(cell, multipliers, out=terms[:, 0])
        torch.add(terms[:, 0], multipliers, out=terms[:, 1])
        tx, ty, tz = terms[0, :, None, None, :], terms[1, None, :, None, :], terms[2, None, None, :, :]
        if levels.hashed[level]:
            # T is a power of two: the low bits of these 64-bit products equal those of tcnn's
            # 32-bit products, and masking each term before the xor equals `% T` after it.
            terms.bitwise_and_(levels.table_sizes[level] - 1)
            torch.bitwise_xor(tx[:, :, 0], ty[:, :, 0], out=pair_index)
            torch.bitwise_xor(pair_index[:, :, None, :], tz, out=index)
        else:
            torch.add(tx[:, :, 0], ty[:, :, 0], out=pair_index)
            torch.add(pair_index[:, :, None, :], tz, out=index)
            index.remainder_(levels.table_sizes[level])
        wx, wy, wz = axis_w[0, :, None, None, :], axis_w[1, None, :, None, :], axis_w[2, None, None, :, :]
        torch.mul(wx[:, :, 0], wy[:, :, 0], out=pair_w)
        torch.mul(pair_w[:, :, None, :], wz, out=weights)
        return index.view(8 * c), weights.view(8, c)


def _multipliers(levels: HashGridLevels, level: int, device: torch.device) -> Tensor:  # [3, 1]
    r = levels.resolutions[level]
    values = HASH_PRIMES if levels.hashed[level] else (1, r, r * r)
    return torch.tensor(values, dtype=torch.int64, device=device).view(3, 1)


def _level_rows(rows: Tensor, levels: HashGridLevels, level: int) -> Tensor:  # [T_l] or [T_l, F]
    return rows[levels.offsets[level] : levels.offsets[level + 1]]


def _cells(xt: Tensor, levels: HashGridLevels, dtype: torch.dtype):  # xt [3, N]
    """Level by level, chunk by chunk of points: (level, start, end, index [8C], weights [8C],
    axis_weights [6C]) of the points' cells, in buffers reused from one chunk to the next (the walk
    the forward and both backward passes share)."""
    n = xt.shape[1]
    corners = _LevelCorners(min(CHUNK_POINTS, max(n, 1)), dtype, xt.device)
    for level in range(levels.n_levels):
        multipliers = _multipliers(levels, level, xt.device)
        for start in range(0, n, CHUNK_POINTS):
            end = min(start + CHUNK_POINTS, n)
            index, weights = corners.compute(xt[:, start:end], level, levels, multipliers)
            yield level, start, end, index, weights, corners.axis_weights[: 6 * (end - start)]


def _encode_forward(
    positions: Tensor,  # [N, 3] in [0, 1]
    table: Tensor,  # [E, F]
    levels: HashGridLevels,
) -> Tensor:  # [N, L*F]
    n, f = positions.shape[0], levels.n_features
    out = torch.empty(n, levels.n_levels, f, dtype=table.dtype, device=table.device)
    rows = _row_view(table)
    row_shape = rows.shape[1:]
    gathered = torch.empty(8 * min(CHUNK_POINTS, max(n, 1)), *row_shape, dtype=rows.dtype, device=table.device)
    for level, start, end, index, weights, _ in _cells(positions.t().contiguous(), levels, table.dtype):
        c = end - start
        level_rows = _level_rows(rows, levels, level)
        values = torch.index_select(level_rows, 0, index, out=gathered[: 8 * c]).view(8, c, *row_shape)
        blended = (values * weights.view(8, c, *([1] * len(row_shape)))).sum(0)
        out[start:end, level] = blended.view(table.dtype).view(c, f)
    return out.view(n, levels.n_levels * f)


def _encode_table_grad(
    positions: Tensor,  # [N, 3] in [0, 1]
    v_out: Tensor,  # [N, L*F]
    levels: HashGridLevels,
    dtype: torch.dtype,
) -> Tensor:  # [E, F]
    n, f = positions.shape[0], levels.n_features
    v_table = torch.zeros(levels.n_entries, f, dtype=dtype, device=v_out.device)
    v_rows = _row_view(v_table)
    row_shape = v_rows.shape[1:]
    # Level-major cotangent viewed like the table rows ([L, N] complex for F=2), so that one
    # level's slice is contiguous over points like the weights it multiplies.
    v_out_rows = v_out.to(dtype).view(n, levels.n_levels, f).transpose(0, 1).contiguous()
    v_out_rows = _row_view(v_out_rows.view(levels.n_levels * n, f)).view(levels.n_levels, n, *row_shape)
    products = torch.empty(8 * min(CHUNK_POINTS, max(n, 1)), *row_shape, dtype=v_rows.dtype, device=v_out.device)
    for level, start, end, index, weights, _ in _cells(positions.t().contiguous(), levels, dtype):
        c = end - start
        source = products[: 8 * c].view(8, c, *row_shape)
        torch.mul(v_out_rows[level, start:end], weights.view(8, c, *([1] * len(row_shape))), out=source)
        _level_rows(v_rows, levels, level).index_add_(0, index, products[: 8 * c])
    return v_table


def _encode_position_grad_torch(
    positions: Tensor,  # [N, 3] in [0, 1]
    table: Tensor,  # [E, F]
    v_out: Tensor,  # [N, L*F]
    levels: HashGridLevels,
) -> Tensor:  # [N, 3], table's dtype
    """The torch specification of `encode_position_grad` (chunked like the forward)."""
    n, f = positions.shape[0], levels.n_features
    v_pos = torch.zeros(n, 3, dtype=table.dtype, device=table.device)
    v_levels = v_out.to(table.dtype).view(n, levels.n_levels, f)
    sign = torch.tensor([-1.0, 1.0], dtype=table.dtype, device=table.device)  # d(1 - frac), d frac
    xt = positions.to(table.dtype).t().contiguous()
    for level, start, end, index, _, axis_weights in _cells(xt, levels, table.dtype):
        c = end - start
        w = axis_weights.view(3, 2, c)  # per-axis weights (1 - frac, frac)
        values = _level_rows(table, levels, level).index_select(0, index).view(2, 2, 2, c, f)  # corners (x, y, z)
        g = (values * v_levels[start:end, level]).sum(-1)  # [2, 2, 2, C]: v_out . table row
        dx = sign[:, None, None, None] * w[1, None, :, None] * w[2, None, None, :]
        dy = w[0, :, None, None] * sign[None, :, None, None] * w[2, None, None, :]
        dz = w[0, :, None, None] * w[1, None, :, None] * sign[None, None, :, None]
        scale = levels.scales[level]
        v_pos[start:end, 0] += scale * (dx * g).sum((0, 1, 2))
        v_pos[start:end, 1] += scale * (dy * g).sum((0, 1, 2))
        v_pos[start:end, 2] += scale * (dz * g).sum((0, 1, 2))
    return v_pos


def encode_position_grad(
    positions: Tensor,  # [N, 3] in [0, 1]
    table: Tensor,  # [E, F]
    v_out: Tensor,  # [N, L*F] cotangent of the features
    levels: HashGridLevels,
) -> Tensor:  # [N, 3] float32 (float64 for a float64 table)
    """Vector-Jacobian product of the encoding with respect to the positions (see the module
    docstring): the numba kernel for float32 CPU tensors when numba imports, else torch."""
    if table.device.type == "cpu" and table.dtype == torch.float32 and backends.usable("numba", table.device):
        numba_module = importlib.import_module("nerf.encodings.hashgrid_numba")
        return numba_module.encode_position_grad(positions, table, v_out, levels)
    return _encode_position_grad_torch(positions, table, v_out, levels)


class _PositionGradient(torch.autograd.Function):
    """Identity on the features whose backward also returns the positions' gradient."""

    @staticmethod
    def forward(ctx, positions, features, table, levels):
        inside = ((positions >= 0.0) & (positions <= 1.0)).to(table.dtype)  # NaN: outside
        ctx.save_for_backward(positions.detach().nan_to_num(0.0).clamp(0.0, 1.0), table.detach(), inside)
        ctx.levels = levels
        return features.view_as(features)

    @staticmethod
    def backward(ctx, v_features):
        positions, table, inside = ctx.saved_tensors
        v_pos = encode_position_grad(positions, table, v_features.contiguous(), ctx.levels) * inside
        return v_pos.to(positions.dtype), v_features, None, None


class _Precomputed(torch.autograd.Function):
    """Features encoded earlier (without gradient) from the same positions and table, given the
    table's gradient: the forward returns them as they are, the backward is the encoding's."""

    @staticmethod
    def forward(ctx, positions, table, features, table_grad):  # table_grad: (positions, v_features) -> [E, F]
        ctx.save_for_backward(positions.detach().to(table.dtype).nan_to_num(0.0).clamp(0.0, 1.0).contiguous())
        ctx.table_grad = table_grad
        return features.view_as(features)

    @staticmethod
    def backward(ctx, v_features):
        (positions,) = ctx.saved_tensors
        v_table = ctx.table_grad(positions, v_features) if ctx.needs_input_grad[1] else None
        return None, v_table, None, None


class _HashEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, positions, table, levels):
        positions = positions.detach().to(table.dtype).nan_to_num(0.0).clamp(0.0, 1.0).contiguous()
        ctx.save_for_backward(positions)
        ctx.levels = levels
        ctx.table_dtype = table.dtype
        return _encode_forward(positions, table.detach().contiguous(), levels)

    @staticmethod
    def backward(ctx, v_out):
        (positions,) = ctx.saved_tensors
        v_table = None
        if ctx.needs_input_grad[1]:
            v_table = _encode_table_grad(positions, v_out, ctx.levels, ctx.table_dtype)
        return None, v_table, None


def hash_encode(
    positions: Tensor,  # [N, 3] in [0, 1]
    table: Tensor,  # [E, F] float32 or float64
    levels: HashGridLevels,
) -> Tensor:  # [N, L*F], table's dtype
    """Encode positions with a multiresolution hash grid (torch backend, the specification).

    Args:
        positions: points in the unit cube; clamped to [0, 1]; no gradient flows to them here
            (`HashGrid` adds it when they require one).
        table: the flat feature table of all levels (`levels.offsets` delimit the levels).
        levels: level geometry from `make_levels`.

    Returns:
        Level-major concatenated features: columns l*F .. l*F+F-1 belong to level l.
    """
    return _HashEncode.apply(positions, table, levels)


class HashGrid(nn.Module):
    """instant-ngp multiresolution hash encoding of positions in [0, 1]^3.

    Args:
        n_levels: L, number of resolutions.
        n_features: F, features per level (1, 2, 4 or 8).
        log2_table_size: log2 T, the entries of one hashed level.
        base_resolution: resolution of the coarsest level.
        max_resolution: resolution of the finest level.
        backend: "torch", "triton", "tcnn" or "auto" (see the module docstring).
        half_table: Triton backend only: its kernels read a float16 copy of the table (half
            the memory traffic) and accumulate the gradient in float32 into the float32 table.

    The parameter `params` [E*F] is tcnn's flat parameter vector; `table` views it as [E, F].
    Forward: positions [N, 3] -> features [N, L*F] float32; positions that require a gradient
    receive it (`encode_position_grad`, whatever the backend).
    """

    def __init__(
        self,
        n_levels: int = 16,
        n_features: int = 2,
        log2_table_size: int = 19,
        base_resolution: int = 16,
        max_resolution: int = 2048,
        backend: str = "auto",
        half_table: bool = False,
    ):
        super().__init__()
        if backend not in BACKENDS:
            raise ConfigError(f"hash grid: unknown backend {backend!r}; choose one of {BACKENDS}")
        if backend == "tcnn":  # needs CUDA and tinycudann, whatever device the grid moves to
            backends.require("tcnn", None, "hash grid", KERNEL_BACKENDS)
        if half_table and backend in ("torch", "tcnn", "numba"):
            raise ConfigError(f"hash grid: half_table applies to the Triton backend only, not {backend!r}")
        self.levels = make_levels(n_levels, n_features, log2_table_size, base_resolution, max_resolution)
        self.log2_table_size = log2_table_size
        self.base_resolution = base_resolution
        self.per_level_scale = per_level_scale(base_resolution, max_resolution, n_levels)
        self.backend = backend
        self.half_table = half_table
        size = self.levels.n_entries * n_features
        self.params = nn.Parameter(torch.empty(size).uniform_(-INIT_RANGE, INIT_RANGE))
        self._tcnn = None

    @property
    def out_dim(self) -> int:
        return self.levels.n_levels * self.levels.n_features

    @property
    def table(self) -> Tensor:  # [E, F]
        return self.params.view(self.levels.n_entries, self.levels.n_features)

    def resolve_backend(self, device: torch.device) -> str:
        """The backend a forward on `device` uses: "auto" resolved (tcnn, else triton, for CUDA
        tensors; numba, else torch, on a CPU; torch for a float64 table), a named one checked
        (`nerf.backends.BackendError`, a ConfigError)."""
        auto = ("tcnn", "triton", "numba") if self.params.dtype == torch.float32 else ()
        return backends.resolve(self.backend, KERNEL_BACKENDS, device, "hash grid", auto=auto)

    def takes_features(self, device: torch.device) -> bool:
        """Whether `forward` on `device` can take features encoded earlier (the backends whose
        table gradient is a function of its own here: numba and torch)."""
        return self._table_grad(self.resolve_backend(device)) is not None

    def _table_grad(self, backend: str):  # -> (positions [N, 3], v_features [N, L*F]) -> [E, F], or None
        """The table gradient of `backend` as a function of its own (None: it has none here)."""
        if backend == "numba":
            numba_module = importlib.import_module("nerf.encodings.hashgrid_numba")
            return functools.partial(numba_module.encode_table_grad, levels=self.levels)
        if backend == "torch":
            return functools.partial(_encode_table_grad, levels=self.levels, dtype=self.table.dtype)
        return None

    def forward(
        self,
        positions: Tensor,  # [N, 3]
        features: Tensor | None = None,  # [N, L*F] this grid's encoding of `positions`, without gradient
    ) -> Tensor:  # [N, L*F] float32
        """The encoding of `positions`, with the table's gradient (and the positions', when they
        require one). With `features` (computed by this grid from the same positions and table,
        e.g. while marching) nothing is encoded again: they are returned with the gradient the
        encoding would give them (`takes_features` says which backends can)."""
        if positions.dim() != 2 or positions.shape[1] != 3 or not positions.is_floating_point():
            raise ValueError(f"HashGrid expects float positions [N, 3], got {tuple(positions.shape)} {positions.dtype}")
        if positions.device != self.params.device:
            raise ValueError(f"HashGrid: positions on {positions.device}, parameters on {self.params.device}")
        if features is None:
            features = self._encode(positions)
        else:
            features = self._precomputed(positions, features)
        if positions.requires_grad and torch.is_grad_enabled():
            features = _PositionGradient.apply(positions, features, self.table, self.levels)
        return features

    def _precomputed(self, positions: Tensor, features: Tensor) -> Tensor:  # [N, 3], [N, L*F] -> [N, L*F]
        if features.shape != (positions.shape[0], self.out_dim) or features.requires_grad:
            raise ValueError(f"HashGrid: precomputed features must be [{positions.shape[0]}, {self.out_dim}] "
                             f"without gradient, got {list(features.shape)}"
                             f"{' with gradient' if features.requires_grad else ''}")
        backend = self.resolve_backend(positions.device)
        table_grad = self._table_grad(backend)
        if table_grad is None:
            raise ValueError(f"HashGrid: the {backend} backend cannot take precomputed features (see takes_features)")
        return _Precomputed.apply(positions, self.table, features, table_grad)

    def _encode(self, positions: Tensor) -> Tensor:  # [N, 3] -> [N, L*F], the table's gradient only
        backend = self.resolve_backend(positions.device)
        if backend == "tcnn":
            if self._tcnn is None:
                tcnn_module = importlib.import_module("nerf.encodings.hashgrid_tcnn")
                self._tcnn = tcnn_module.TcnnHashGrid(
                    self.levels, self.log2_table_size, self.base_resolution, self.per_level_scale
                )
            return self._tcnn(positions, self.params)
        if backend == "numba":
            numba_module = importlib.import_module("nerf.encodings.hashgrid_numba")
            return numba_module.hash_encode(positions, self.table, self.levels)
        if backend == "triton":
            triton_module = importlib.import_module("nerf.encodings.hashgrid_triton")
            return triton_module.hash_encode(positions, self.table, self.levels, half_table=self.half_table)
        return hash_encode(positions, self.table, self.levels)

    def extra_repr(self) -> str:
        lv = self.levels
        return (
            f"n_levels={lv.n_levels}, n_features={lv.n_features}, log2_table_size={self.log2_table_size}, "
            f"resolutions={lv.resolutions[0]}..{lv.resolutions[-1]}, backend={self.backend!r}"
        )
