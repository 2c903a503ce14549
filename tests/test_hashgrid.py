"""Tests of the multiresolution hash encoding: geometry, indexing, interpolation, backends."""

import math

import pytest
import torch

from nerf.encodings import HashGrid, available_hashgrid_backends, hash_encode, make_levels, per_level_scale
from nerf.encodings.hashgrid_levels import HASH_PRIMES
from nerf.errors import ConfigError

# Positions (i - 0.5) / s with s not a power of two are rounded to float32, so frac(p) can come
# out as 1 - 1e-7 instead of 0: the blend is then the vertex value up to ~1e-6 of the others.
VERTEX_TOL = dict(rtol=0.0, atol=1e-5)
# Edge positions and weights (quarters) are exact in binary; the blend rounds once or twice.
EDGE_TOL = dict(rtol=1e-6, atol=1e-6)
# float32 forward against float64: a sum of 8 products of O(1) values per level.
FWD_TOL = dict(rtol=1e-5, atol=1e-5)
# Table gradients sum up to a few thousand float32 products per entry (O(10) values), in
# different orders (sequential vs atomics vs float64): a few float32 ulps of the sum.
BWD_TOL = dict(rtol=1e-5, atol=2e-5)
# A float16 copy of the table has a relative rounding error of 2^-11 per entry.
HALF_FWD_TOL = dict(rtol=1e-3, atol=2e-3)


def _dense_index(v, r, size):
    return (v[0] + v[1] * r + v[2] * r * r) % size


def _hash_index(v, size):
    return (v[0] * HASH_PRIMES[0] ^ v[1] * HASH_PRIMES[1] ^ v[2] * HASH_PRIMES[2]) % size


def reference_encode(positions, table64, levels):
    """Straightforward float64 gather: one level and one corner at a time.

    The cell is chosen in float32 (p = x * s + 0.5), as the backends do; the interpolation
    and the sums are float64. Written from the formulas, independently of the backends.
    """
    x = positions.clamp(0.0, 1.0)
    outputs = []
    for level in range(levels.n_levels):
        p = x.float() * levels.scales[level] + 0.5
        cell = p.floor()
        frac = (p - cell).double()
        cell = cell.long()
        acc = torch.zeros(x.shape[0], table64.shape[1], dtype=torch.float64)
        for corner in range(8):
            bits = torch.tensor([corner & 1, (corner >> 1) & 1, (corner >> 2) & 1])
            v = (cell + bits).unbind(-1)
            w = torch.where(bits.bool(), frac, 1.0 - frac).prod(-1)
            size = levels.table_sizes[level]
            index = _hash_index(v, size) if levels.hashed[level] else _dense_index(v, levels.resolutions[level], size)
            acc = acc + w[:, None] * table64[levels.offsets[level] + index]
        outputs.append(acc)
    return torch.cat(outputs, dim=1)


def test_level_geometry_doubling_grid():
    # base 16, b = 2: s_l = 16 * 2^l - 1 = 15, 31, 63, so R_l = 16, 32, 64 vertices per axis.
    # T = 2^15 = 32^3: level 1 fits exactly (dense), level 2 (64^3) is hashed.
    levels = make_levels(3, 2, 15, 16, 64)
    assert per_level_scale(16, 64, 3) == pytest.approx(2.0)
    assert levels.scales == (15.0, 31.0, 63.0)
    assert levels.resolutions == (16, 32, 64)
    assert levels.hashed == (False, False, True)
    assert levels.table_sizes == (16**3, 32**3, 2**15)
    assert levels.offsets == (0, 16**3, 16**3 + 32**3, 16**3 + 32**3 + 2**15)


def test_level_geometry_follows_the_formulas():
    levels = make_levels(16, 2, 19, 16, 2048)
    b = math.exp((math.log(2048) - math.log(16)) / 15)
    for level in range(16):
        assert levels.scales[level] == pytest.approx(16 * b**level - 1, rel=1e-6)
        r = levels.resolutions[level]
        assert r == math.ceil(levels.scales[level]) + 1
        assert levels.hashed[level] == (r**3 > 2**19)
        assert levels.table_sizes[level] == (2**19 if levels.hashed[level] else -(-(r**3) // 8) * 8)
    # The resolution grows, so the dense levels form a prefix.
    assert list(levels.hashed) == sorted(levels.hashed)


@pytest.mark.parametrize("log2_size, hashed", [(13, False), (12, True)])
def test_vertices_return_their_table_entry_exactly(log2_size, hashed):
    # One level, base 17: s = 16 exactly, so x = (i - 0.5) / 16 lands exactly on vertex i.
    # R = 17, R^3 = 4913: dense in a 2^13 table (size 4920), hashed in a 2^12 table.
    grid = HashGrid(1, 2, log2_size, base_resolution=17, max_resolution=17, backend="torch")
    levels = grid.levels
    assert levels.hashed == (hashed,)
    with torch.no_grad():
        grid.params.copy_(torch.randn_like(grid.params))
    g = torch.Generator().manual_seed(0)
    vertices = torch.randint(1, 17, (200, 3), generator=g)
    out = grid((vertices.float() - 0.5) / 16.0)
    v = vertices.unbind(-1)
    index = _hash_index(v, levels.table_sizes[0]) if hashed else _dense_index(v, 17, levels.table_sizes[0])
    assert torch.equal(out, grid.table.detach()[index])


def test_interpolation_is_linear_along_an_edge():
    grid = HashGrid(1, 2, 12, base_resolution=17, max_resolution=17, backend="torch")
    with torch.no_grad():
        grid.params.copy_(torch.randn_like(grid.params))
    lower = torch.tensor([5, 9, 2])
    t = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    for axis in range(3):
        x = (lower.float() - 0.5).repeat(len(t), 1)
        x[:, axis] += t
        out = grid(x / 16.0)
        upper = lower.clone()
        upper[axis] += 1
        v0 = grid.table.detach()[_hash_index(lower.unbind(-1), 4096)]
        v1 = grid.table.detach()[_hash_index(upper.unbind(-1), 4096)]
        torch.testing.assert_close(out, (1 - t)[:, None] * v0 + t[:, None] * v1, **EDGE_TOL)


def test_each_level_uses_its_indexing_rule():
    # Levels with R = 16, 32 (dense) and 64 (hashed); query vertices of each level in turn.
    grid = HashGrid(3, 1, 15, base_resolution=16, max_resolution=64, backend="torch")
    levels = grid.levels
    with torch.no_grad():
        grid.params.copy_(torch.randn_like(grid.params))
    g = torch.Generator().manual_seed(1)
    for level in range(3):
        r, size = levels.resolutions[level], levels.table_sizes[level]
        vertices = torch.randint(1, r - 1, (100, 3), generator=g)
        out = grid((vertices.double() - 0.5) / levels.scales[level])[:, level]
        v = vertices.unbind(-1)
        index = _hash_index(v, size) if levels.hashed[level] else _dense_index(v, r, size)
        torch.testing.assert_close(out, grid.table.detach()[levels.offsets[level] + index, 0], **VERTEX_TOL)


def _random_case(n_features, n_points=3000, seed=0):
    g = torch.Generator().manual_seed(seed)
    levels = make_levels(8, n_features, 12, 4, 300)  # 3 dense levels, 5 hashed
    table = torch.randn(levels.n_entries, n_features, generator=g)
    x = torch.rand(n_points, 3, generator=g)
    x[:8] = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.5], [0.0, 1.0, 1.0]]).repeat(2, 1)
    return levels, table, x


def _numba_encode(positions, table, levels):
    from nerf.encodings.hashgrid_numba import hash_encode as numba_encode

    return numba_encode(positions, table, levels)


ENCODERS = [pytest.param(hash_encode, id="torch"),
            pytest.param(_numba_encode, id="numba", marks=pytest.mark.skipif(
                "numba" not in available_hashgrid_backends(), reason="numba does not import here"))]


@pytest.mark.parametrize("encode", ENCODERS)
@pytest.mark.parametrize("n_features", [1, 2, 4])
def test_backend_matches_float64_reference(encode, n_features):
    levels, table, x = _random_case(n_features)
    assert any(levels.hashed) and not all(levels.hashed)
    table = table.requires_grad_()
    table64 = table.detach().double().requires_grad_()
    out = encode(x, table, levels)
    ref = reference_encode(x, table64, levels)
    torch.testing.assert_close(out.double(), ref, **FWD_TOL)
    v = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * v).sum(), table)
    (grad_ref,) = torch.autograd.grad((ref * v.double()).sum(), table64)
    torch.testing.assert_close(grad.double(), grad_ref, **BWD_TOL)


def test_torch_backend_gradcheck_float64():
    levels = make_levels(2, 2, 6, 2, 6)  # a dense level and a hashed one, 72 entries
    assert levels.hashed == (False, True)
    table = torch.randn(levels.n_entries, 2, dtype=torch.float64, requires_grad=True)
    x = torch.rand(20, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: hash_encode(x, t, levels), (table,))


def test_hashgrid_module_contract():
    grid = HashGrid(n_levels=4, n_features=2, log2_table_size=10, base_resolution=4, max_resolution=64, backend="torch")
    assert grid.out_dim == 8
    assert grid.params.numel() == grid.levels.n_entries * 2
    assert grid.params.abs().max() <= 1e-4
    x = torch.rand(33, 3, requires_grad=True)
    out = grid(x)
    assert out.shape == (33, 8) and out.dtype == torch.float32
    out.sum().backward()
    assert x.grad is not None and grid.params.grad is not None  # positions get theirs (pose refinement)
    # Positions outside the unit cube are clamped onto it.
    outside = torch.tensor([[-0.5, 0.3, 1.5]])
    torch.testing.assert_close(grid(outside), grid(outside.clamp(0.0, 1.0)), rtol=0.0, atol=0.0)
    nan = torch.tensor([[float("nan"), 0.3, 0.2]])
    torch.testing.assert_close(grid(nan), grid(nan.nan_to_num(0.0)), rtol=0.0, atol=0.0)
    assert grid(torch.zeros(0, 3)).shape == (0, 8)
    assert grid.resolve_backend(torch.device("cpu")) == "torch"


def test_hashgrid_rejects_bad_configs_and_inputs():
    with pytest.raises(ConfigError):
        HashGrid(backend="cuda")
    with pytest.raises(ConfigError):
        HashGrid(n_features=3)
    with pytest.raises(ConfigError):
        HashGrid(base_resolution=64, max_resolution=32)
    with pytest.raises(ConfigError):
        HashGrid(backend="torch", half_table=True)
    if "tcnn" not in available_hashgrid_backends():
        with pytest.raises(ConfigError, match="tinycudann"):
            HashGrid(backend="tcnn")
    with pytest.raises(ValueError):
        HashGrid(n_levels=2, log2_table_size=8, backend="torch")(torch.zeros(4, 2))


@pytest.mark.parametrize("backend", [b for b in available_hashgrid_backends() if b != "torch"])
def test_backend_matches_torch(backend):
    # The Triton interpreter is slow: 256 points, 4 levels, T = 2^10.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if backend == "tcnn" and device.type != "cuda":
        pytest.skip("tcnn runs on CUDA only")
    torch.manual_seed(0)
    grid = HashGrid(n_levels=4, n_features=2, log2_table_size=10, base_resolution=4, max_resolution=64, backend=backend)
    ref = HashGrid(n_levels=4, n_features=2, log2_table_size=10, base_resolution=4, max_resolution=64, backend="torch")
    with torch.no_grad():
        ref.params.copy_(torch.randn_like(ref.params))
        grid.params.copy_(ref.params)
    grid, ref = grid.to(device), ref.to(device)
    x = torch.rand(256, 3, device=device)
    x[:3] = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [float("nan"), 1.5, -0.5]], device=device)
    out, out_ref = grid(x), ref(x)
    # tcnn computes in float16 by default: compare it at half precision.
    fwd_tol = HALF_FWD_TOL if backend == "tcnn" else FWD_TOL
    torch.testing.assert_close(out, out_ref, **fwd_tol)
    v = torch.randn_like(out_ref)
    (grad,) = torch.autograd.grad((out * v).sum(), grid.params)
    (grad_ref,) = torch.autograd.grad((out_ref * v).sum(), ref.params)
    torch.testing.assert_close(grad, grad_ref, **(HALF_FWD_TOL if backend == "tcnn" else BWD_TOL))


@pytest.mark.skipif("triton" not in available_hashgrid_backends(), reason="triton cannot run here")
def test_triton_half_table_reads_float16_accumulates_float32():
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from nerf.encodings import hashgrid_triton

    levels = make_levels(4, 2, 10, 4, 64)
    g = torch.Generator().manual_seed(2)
    table = torch.randn(levels.n_entries, 2, generator=g).to(device).requires_grad_()
    x = torch.rand(256, 3, generator=g).to(device)
    out = hashgrid_triton.hash_encode(x, table, levels, half_table=True)
    ref = hash_encode(x, table, levels)
    torch.testing.assert_close(out, ref, **HALF_FWD_TOL)
    # The exact float16 table gives the float32 result up to float32 rounding.
    half_ref = hash_encode(x, table.detach().half().float(), levels)
    torch.testing.assert_close(out, half_ref, **FWD_TOL)
    v = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * v).sum(), table)
    (grad_ref,) = torch.autograd.grad((ref * v).sum(), table)
    assert grad.dtype == torch.float32
    # The gradient does not depend on the table values, so the float16 copy leaves it unchanged.
    torch.testing.assert_close(grad, grad_ref, **BWD_TOL)


needs_numba = pytest.mark.skipif("numba" not in available_hashgrid_backends(), reason="numba does not import here")


@needs_numba
@pytest.mark.parametrize("n_points", [0, 1, 4096 * 2 + 17])  # none, one, several parallel blocks
def test_numba_backend_edge_sizes(n_points):
    torch.manual_seed(1)
    grid = HashGrid(n_levels=3, n_features=2, log2_table_size=9, base_resolution=4, max_resolution=40, backend="numba")
    ref = HashGrid(n_levels=3, n_features=2, log2_table_size=9, base_resolution=4, max_resolution=40, backend="torch")
    with torch.no_grad():
        ref.params.copy_(torch.randn_like(ref.params))
        grid.params.copy_(ref.params)
    x = torch.rand(n_points, 3) * 1.4 - 0.2  # some outside the cube: clamped
    out, out_ref = grid(x), ref(x)
    torch.testing.assert_close(out, out_ref, **FWD_TOL)
    v = torch.randn_like(out_ref)
    (grad,) = torch.autograd.grad((out * v).sum(), grid.params)
    (grad_ref,) = torch.autograd.grad((out_ref * v).sum(), ref.params)
    torch.testing.assert_close(grad, grad_ref, **BWD_TOL)


@needs_numba
def test_auto_picks_numba_on_a_cpu():
    assert HashGrid(n_levels=2, log2_table_size=8).resolve_backend(torch.device("cpu")) == "numba"
    float64 = HashGrid(n_levels=2, log2_table_size=8).double()  # the kernels are float32-only
    assert float64.resolve_backend(torch.device("cpu")) == "torch"


# The positions' gradient (camera pose refinement): float64 central differences of the torch
# backend agree to ~1e-8 of gradients of O(100) (the blend is linear inside a cell); numba
# against torch in float32: sums of 8 corners x L levels of O(100) terms.
POSITION_FD_TOL = dict(rtol=1e-6, atol=1e-6)
POSITION_NUMBA_TOL = dict(rtol=1e-4, atol=1e-3)


def test_position_gradient_matches_finite_differences():
    torch.manual_seed(0)
    grid = HashGrid(n_levels=4, n_features=2, log2_table_size=8, base_resolution=4, max_resolution=32,
                    backend="torch").double()
    assert any(grid.levels.hashed) and not all(grid.levels.hashed)
    with torch.no_grad():
        grid.params.uniform_(-1.0, 1.0)
    x = (0.05 + 0.9 * torch.rand(50, 3, dtype=torch.float64)).requires_grad_()
    out = grid(x)
    v = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * v).sum(), x)
    eps, fd = 1e-7, torch.zeros_like(grad)
    for axis in range(3):
        step = torch.zeros_like(x)
        step[:, axis] = eps
        with torch.no_grad():
            fd[:, axis] = ((grid(x + step) - grid(x - step)) * v).sum(1) / (2 * eps)
    torch.testing.assert_close(grad, fd, **POSITION_FD_TOL)
    assert grad.abs().max() > 1.0  # a real gradient, not zeros matching zeros


def test_position_gradient_leaves_the_table_gradient_and_stops_at_the_clamp():
    torch.manual_seed(1)
    grid = HashGrid(n_levels=3, n_features=2, log2_table_size=8, base_resolution=4, max_resolution=32, backend="torch")
    with torch.no_grad():
        grid.params.uniform_(-1.0, 1.0)
    x = torch.rand(40, 3)
    x[0] = torch.tensor([-0.2, 0.5, 0.5])
    x[1] = torch.tensor([0.5, 1.3, float("nan")])
    v = torch.randn(40, grid.out_dim)
    (table_grad,) = torch.autograd.grad((grid(x) * v).sum(), grid.params)
    xg = x.clone().requires_grad_()
    pos_grad, table_grad_with = torch.autograd.grad((grid(xg) * v).sum(), (xg, grid.params))
    torch.testing.assert_close(table_grad_with, table_grad, rtol=0.0, atol=0.0)
    assert pos_grad[0, 0] == 0 and pos_grad[1, 1] == 0 and pos_grad[1, 2] == 0  # clamped or NaN: constant
    assert pos_grad[0, 1] != 0 and pos_grad[1, 0] != 0 and torch.isfinite(pos_grad).all()


@pytest.mark.skipif("numba" not in available_hashgrid_backends(), reason="numba does not import here")
@pytest.mark.parametrize("n_features", [1, 2, 4])
def test_numba_position_gradient_matches_torch(n_features):
    from nerf.encodings.hashgrid import _encode_position_grad_torch
    from nerf.encodings.hashgrid_numba import encode_position_grad

    levels, table, x = _random_case(n_features)
    v = torch.randn(x.shape[0], levels.n_levels * n_features)
    ref = _encode_position_grad_torch(x, table, v, levels)
    torch.testing.assert_close(encode_position_grad(x, table, v, levels), ref, **POSITION_NUMBA_TOL)
    assert encode_position_grad(x[:0], table, v[:0], levels).shape == (0, 3)


# Features encoded earlier (the marcher's density queries) and handed back to the gradient pass.
@pytest.mark.parametrize("backend", [b for b in ("torch", "numba") if b in available_hashgrid_backends()])
def test_precomputed_features_get_the_encodings_gradients(backend):
    torch.manual_seed(2)
    grid = HashGrid(n_levels=4, n_features=2, log2_table_size=8, base_resolution=4, max_resolution=32, backend=backend)
    with torch.no_grad():
        grid.params.uniform_(-1.0, 1.0)
    assert grid.takes_features(torch.device("cpu"))
    x = torch.rand(300, 3)
    x[:2] = torch.tensor([[-0.2, 0.5, 1.4], [float("nan"), 0.3, 0.7]])  # clamped, NaN: as the encoding
    v = torch.randn(300, grid.out_dim)
    with torch.no_grad():
        features = grid(x)
    xg, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    reused = grid(xg, features)
    fresh = grid(xr)
    torch.testing.assert_close(reused, fresh, rtol=0.0, atol=0.0)
    pos_grad, table_grad = torch.autograd.grad((reused * v).sum(), (xg, grid.params))
    pos_ref, table_ref = torch.autograd.grad((fresh * v).sum(), (xr, grid.params))
    torch.testing.assert_close(table_grad, table_ref, rtol=0.0, atol=0.0)  # the same kernel on the same inputs
    torch.testing.assert_close(pos_grad, pos_ref, rtol=0.0, atol=0.0)
    assert table_grad.abs().sum() > 0 and pos_grad.abs().sum() > 0


def test_precomputed_features_are_checked():
    grid = HashGrid(n_levels=2, n_features=2, log2_table_size=8, base_resolution=4, max_resolution=16, backend="torch")
    x = torch.rand(5, 3)
    with pytest.raises(ValueError, match=r"\[5, 4\]"):
        grid(x, torch.zeros(5, 3))
    with pytest.raises(ValueError, match="with gradient"):
        grid(x, grid(x))  # carries the table's gradient already: it would be counted twice


@pytest.mark.skipif("triton" not in available_hashgrid_backends(), reason="triton cannot run here")
def test_triton_takes_no_precomputed_features():
    grid = HashGrid(n_levels=2, n_features=2, log2_table_size=8, base_resolution=4, max_resolution=16, backend="triton")
    assert not grid.takes_features(torch.device("cpu"))
    with pytest.raises(ValueError, match="cannot take precomputed"):
        grid(torch.rand(4, 3), torch.zeros(4, 4))
