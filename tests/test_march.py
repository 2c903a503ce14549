"""Ray marching through the dispatcher `nerf.sampling.march.march`: every backend on the same inputs.

The PyTorch reference (`march_reference`), the Triton kernels (`march_triton`; on CPU in
Triton's interpreter, which tests/conftest.py switches on) and the numba kernels (`march_numba`)
are called through the dispatcher with identical arguments, so the shared set-up (box entry,
near/far, stratified jitter) is the same and only the backends differ. Inputs are small: a 16^3
grid with 2 cascades, ~64 rays (a few thousand for numba's large random scenes).

numba repeats the reference's float32 arithmetic, so without sigma_fn its samples must be
identical, bit for bit (`assert_identical`), empty-space skipping included (rays whose midpoints
fall on cell and cascade faces, large random scenes). With sigma_fn numba sums each ray's optical
depth in float64 in sample order where the reference sums float32 blocks, so a sample whose
exclusive depth is within TIE_ULPS float32 ulps of -log(eps) may be kept by one and not the other;
everything else, payload rows included, must be bit for bit (`assert_same_early_stop`).

Triton's samples are compared with a tolerance on t: with cone_angle > 0 the kernel computes
(1 + c)^e as exp2(e log2(1 + c)) where torch calls pow, so t differs by rounding and a midpoint
lying on a cell face may fall on the other side (see the docstring of nerf.sampling.march_triton).
A sample that only one backend emits is accepted only when the occupancy changes within
`FACE_RTOL` of its midpoint.
"""

import copy
import inspect
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nerf import backends
from nerf.sampling import march_reference
from nerf.sampling.march import march, pick_backend
from nerf.sampling.occupancy import OccupancyGrid
from nerf.sampling.packed import PackedSamples

ROOT = Path(__file__).resolve().parents[1]
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
needs_triton = pytest.mark.skipif(not backends.usable("triton", DEVICE), reason=f"triton cannot run on {DEVICE} here")
needs_numba = pytest.mark.skipif(not backends.usable("numba", DEVICE), reason=f"numba cannot run on {DEVICE} here")
BACKENDS = ["torch", pytest.param("triton", marks=needs_triton), pytest.param("numba", marks=needs_numba)]

T_RTOL = 1e-5  # kernel vs reference t, relative (pow vs exp2-log2 rounding of geometric steps)
T_ATOL = 1e-6  # absolute floor for t near 0
FACE_RTOL = 2e-5  # a sample only one backend emits must have a cell face this close (relative t)
LOG_T_TOL = 1e-4  # early stop: transmittances this close to eps (in log) may go either way
TIE_ULPS = 8  # numba's early stop: exclusive depths this close to -log(eps) (float32 ulps) may go either way
RES = 16
STEP = 2 * math.sqrt(3) / 128
CONE_ANGLES = (0.0, 1.0 / 64)
RADIUS = 0.7


def random_grid(resolution=RES, seed=0) -> OccupancyGrid:
    grid = OccupancyGrid(torch.tensor([[-2.0, -2, -2], [2, 2, 2]]), resolution=resolution, cascades=2)
    gen = torch.Generator().manual_seed(seed)
    grid.binaries = torch.rand(grid.cascades, resolution**3, generator=gen) < 0.3
    grid._refresh_occupied_box()
    return grid.to(DEVICE)


def sphere_grid() -> OccupancyGrid:
    grid = OccupancyGrid(torch.tensor([[-2.0, -2, -2], [2, 2, 2]]), resolution=RES, cascades=2)
    grid.update(lambda p: (p.norm(dim=-1) < RADIUS).float() * 10.0, warmup=True,
                generator=torch.Generator().manual_seed(0))
    return grid.to(DEVICE)


def make_rays(n=64, seed=0, miss=8):
    """Rays from a sphere of radius 4 towards the centre (jittered); the last `miss` point away."""
    gen = torch.Generator().manual_seed(seed)
    origins = torch.randn(n, 3, generator=gen)
    origins = 4.0 * origins / origins.norm(dim=-1, keepdim=True)
    directions = -origins / 4.0 + 0.4 * torch.randn(n, 3, generator=gen)
    directions[n - miss:] = origins[n - miss:]
    return origins.to(DEVICE), (directions / directions.norm(dim=-1, keepdim=True)).to(DEVICE)


def generator(seed):
    return torch.Generator(DEVICE).manual_seed(seed)


def unmatched(t_a: np.ndarray, t_b: np.ndarray) -> np.ndarray:
    """Entries of t_a with no entry of t_b within the tolerance."""
    if len(t_b) == 0:
        return t_a
    return t_a[np.abs(t_a[:, None] - t_b[None, :]).min(axis=1) > T_ATOL + T_RTOL * np.abs(t_a)]


def near_a_face(grid, origin, direction, t_mid) -> bool:
    ts = torch.tensor([t_mid * (1 - FACE_RTOL), t_mid * (1 + FACE_RTOL)], dtype=torch.float32)
    occ = grid.is_occupied(origin[None, :] + direction[None, :] * ts[:, None])
    return bool(occ[0] != occ[1])


def assert_same_samples(grid, origins, directions, out, ref):
    """Same samples up to rounding (module docstring); compared on the CPU."""
    grid, origins, directions = copy.deepcopy(grid).cpu(), origins.cpu(), directions.cpu()
    assert out.n_rays == ref.n_rays == origins.shape[0]
    assert out.ray_indices.dtype == torch.int64
    out_rays, ref_rays = out.ray_indices.cpu(), ref.ray_indices.cpu()
    assert bool((out_rays[1:] >= out_rays[:-1]).all()), "ray_indices not sorted"
    for ray in range(origins.shape[0]):
        a, b = out_rays == ray, ref_rays == ray
        s_out, s_ref = out.t_starts.cpu()[a].numpy(), ref.t_starts.cpu()[b].numpy()
        e_out, e_ref = out.t_ends.cpu()[a].numpy(), ref.t_ends.cpu()[b].numpy()
        assert bool(np.all(np.diff(s_out) > 0)), f"ray {ray}: t_starts not increasing"
        only_out, only_ref = set(unmatched(s_out, s_ref).tolist()), set(unmatched(s_ref, s_out).tolist())
        extra = [(s, e) for s, e in zip(s_out.tolist(), e_out.tolist()) if s in only_out]
        missing = [(s, e) for s, e in zip(s_ref.tolist(), e_ref.tolist()) if s in only_ref]
        for s, e in extra + missing:
            assert near_a_face(grid, origins[ray], directions[ray], 0.5 * (s + e)), (
                f"ray {ray}: sample [{s}, {e}] emitted by one backend only, away from any cell face"
            )
        if not extra and not missing:
            np.testing.assert_allclose(s_out, s_ref, rtol=T_RTOL, atol=T_ATOL)
            np.testing.assert_allclose(e_out, e_ref, rtol=T_RTOL, atol=T_ATOL)


# --- the two backends through the dispatcher ---------------------------------------------------


@pytest.mark.parametrize("module", ["nerf.sampling.march_triton", "nerf.sampling.march_numba"])
def test_backends_share_one_signature(module):
    backend = pytest.importorskip(module)
    assert inspect.signature(backend.march) == inspect.signature(march_reference.march)


@needs_triton
@pytest.mark.parametrize("cone_angle", CONE_ANGLES)
@pytest.mark.parametrize("make_grid", [random_grid, sphere_grid], ids=["random", "sphere"])
def test_triton_matches_reference(make_grid, cone_angle):
    grid = make_grid()
    origins, directions = make_rays()
    ref = march(grid, origins, directions, STEP, cone_angle, backend="torch")
    out = march(grid, origins, directions, STEP, cone_angle, backend="triton")
    assert len(ref) > 0
    assert_same_samples(grid, origins, directions, out, ref)
    assert not bool(torch.isin(torch.arange(56, 64, device=DEVICE), out.ray_indices).any()), (
        "rays pointing away got samples"
    )


@needs_triton
def test_several_blocks_odd_resolution_stratified_near_far():
    march_triton = pytest.importorskip("nerf.sampling.march_triton")
    grid = random_grid(resolution=15, seed=3)
    n = march_triton.BLOCK_RAYS + 37
    origins, directions = make_rays(n, seed=1, miss=5)
    kwargs = dict(step=STEP, cone_angle=1.0 / 32, near=2.5, far=5.0, stratified=True)
    ref = march(grid, origins, directions, generator=generator(5), backend="torch", **kwargs)
    out = march(grid, origins, directions, generator=generator(5), backend="triton", **kwargs)
    assert len(ref) > 0
    assert float(ref.t_starts.min()) >= 2.5 and float(ref.t_ends.max()) <= 5.0
    assert_same_samples(grid, origins, directions, out, ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rays_that_miss_and_empty_grid(backend):
    grid = random_grid()
    origins = torch.tensor([[3.0, 3.0, 3.0], [0.0, 5.0, 0.0]], device=DEVICE)
    directions = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=DEVICE)
    assert len(march(grid, origins, directions, STEP, backend=backend)) == 0
    grid.binaries = torch.zeros_like(grid.binaries)
    grid._refresh_occupied_box()
    origins, directions = make_rays()
    for cone_angle in CONE_ANGLES:
        out = march(grid, origins, directions, STEP, cone_angle, backend=backend)
        assert len(out) == 0 and out.ray_indices.dtype == torch.int64 and out.n_rays == origins.shape[0]


def exclusive_transmittance(samples, sigma_of) -> np.ndarray:  # float64, per sample
    tau = (sigma_of(samples.t_starts, samples.t_ends, samples.ray_indices).double()
           * (samples.t_ends - samples.t_starts).double()).cpu().numpy()
    ids = samples.ray_indices.cpu().numpy()
    out = np.empty_like(tau)
    for ray in np.unique(ids):
        sel = ids == ray
        out[sel] = np.exp(-(np.cumsum(tau[sel]) - tau[sel]))
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_early_stop_keeps_exactly_the_samples_in_front_of_the_surface(backend):
    grid = sphere_grid()
    origins, directions = make_rays()
    eps = 1e-2

    def sigma_of(t_starts, t_ends, ray_ids):
        mid = 0.5 * (t_starts + t_ends)
        return 10.0 * ((origins[ray_ids] + directions[ray_ids] * mid[:, None]).norm(dim=-1) < RADIUS).float()

    def sigma_fn(t_starts, t_ends, ray_ids):
        assert not torch.is_grad_enabled(), "sigma_fn must run without gradient"
        return sigma_of(t_starts, t_ends, ray_ids), torch.stack([t_starts, ray_ids.float()], dim=-1)

    candidates = march(grid, origins, directions, STEP, 1.0 / 64, backend=backend)
    kept = march(grid, origins, directions, STEP, 1.0 / 64, sigma_fn=sigma_fn, early_stop_eps=eps, backend=backend)
    transmittance = exclusive_transmittance(candidates, sigma_of)
    should_keep = transmittance >= eps
    sure = np.abs(np.log(transmittance) - math.log(eps)) > LOG_T_TOL
    assert (~should_keep).any(), "the test scene stops no ray early"
    key = lambda s: set(zip(s.ray_indices.tolist(), s.t_starts.tolist()))  # noqa: E731
    kept_keys, cand = key(kept), list(zip(candidates.ray_indices.tolist(), candidates.t_starts.tolist()))
    assert kept_keys <= set(cand)
    for c, keep, certain in zip(cand, should_keep, sure):
        if certain:
            assert (c in kept_keys) == bool(keep), f"sample {c}: transmittance decides {bool(keep)}"
    assert kept.payload is not None
    torch.testing.assert_close(kept.payload[:, 0], kept.t_starts, rtol=0, atol=0)
    torch.testing.assert_close(kept.payload[:, 1], kept.ray_indices.float(), rtol=0, atol=0)


@needs_triton
def test_early_stop_agrees_between_backends():
    grid = sphere_grid()
    origins, directions = make_rays()

    def sigma_fn(t_starts, t_ends, ray_ids):
        mid = 0.5 * (t_starts + t_ends)
        return 10.0 * ((origins[ray_ids] + directions[ray_ids] * mid[:, None]).norm(dim=-1) < RADIUS).float()

    kwargs = dict(step=STEP, cone_angle=0.0, sigma_fn=sigma_fn, early_stop_eps=1e-2)
    ref = march(grid, origins, directions, backend="torch", **kwargs)
    out = march(grid, origins, directions, backend="triton", **kwargs)
    assert len(ref) > 0
    assert_same_samples(grid, origins, directions, out, ref)


# --- numba: the reference's samples; with sigma_fn, up to ties at eps ----------------------------


def assert_identical(out, ref):
    """Same samples, same order, same float32 bits (and the same payload rows)."""
    assert out.n_rays == ref.n_rays
    for name in ("t_starts", "t_ends", "ray_indices"):
        a, b = getattr(out, name), getattr(ref, name)
        assert a.dtype == b.dtype and torch.equal(a, b), f"{name} differs from the reference"
    assert (out.payload is None) == (ref.payload is None)
    if ref.payload is not None:
        assert torch.equal(out.payload, ref.payload), "payload differs from the reference"


def sample_keys(samples) -> list[tuple[int, int, int]]:
    """(ray, t_start bits, t_end bits) of each sample."""
    bits = lambda t: t.cpu().numpy().view(np.int32).tolist()  # noqa: E731
    return list(zip(samples.ray_indices.tolist(), bits(samples.t_starts), bits(samples.t_ends)))


def assert_same_early_stop(out, ref, candidates, sigma_fn, eps) -> int:
    """numba's early stop against the reference's: the same kept samples, bit for bit, except
    samples whose exclusive optical depth is within TIE_ULPS float32 ulps of -log(eps).

    `candidates` are all the occupied samples (the march without sigma_fn, itself bit-identical).
    A candidate's exclusive depth is computed here exactly as both backends weigh it (sigma as
    float32 times the float32 interval) and summed in float64 over the ray's earlier candidates:
    the reference sums in float32 by blocks, numba in float64 in sample order, so the two decide
    differently only where rounding straddles the threshold. Rays with no such sample must match
    bit for bit, with the same payload rows. Returns the number of samples only one kept.
    """
    assert out.n_rays == ref.n_rays
    out_keys, ref_keys, cand_keys = sample_keys(out), sample_keys(ref), sample_keys(candidates)
    index = {k: q for q, k in enumerate(cand_keys)}
    assert set(out_keys) <= set(index) and set(ref_keys) <= set(index), "kept a sample that is no candidate"
    with torch.no_grad():
        result = sigma_fn(candidates.t_starts, candidates.t_ends, candidates.ray_indices)
    sigmas = result[0] if isinstance(result, tuple) else result
    tau = (sigmas.float() * (candidates.t_ends - candidates.t_starts)).cpu().numpy().astype(np.float64)
    ids = candidates.ray_indices.cpu().numpy()
    total = np.cumsum(tau)
    first = np.searchsorted(ids, ids, side="left")
    exclusive = total - tau - np.where(first > 0, total[first - 1], 0.0)
    threshold = -math.log(eps) if eps > 0 else math.inf
    ulp = float(np.spacing(np.float32(threshold))) if eps > 0 else 0.0
    only_one = set(out_keys) ^ set(ref_keys)
    for key in only_one:
        depth = exclusive[index[key]]
        assert abs(depth - threshold) <= TIE_ULPS * ulp, (
            f"sample {key}: kept by one backend only, exclusive depth {depth} vs -log(eps) {threshold}"
        )
    tied = torch.tensor(sorted({key[0] for key in only_one}), dtype=torch.int64)
    keep_out = ~torch.isin(out.ray_indices.cpu(), tied)
    keep_ref = ~torch.isin(ref.ray_indices.cpu(), tied)
    for name in ("t_starts", "t_ends", "ray_indices"):
        a, b = getattr(out, name).cpu()[keep_out], getattr(ref, name).cpu()[keep_ref]
        assert a.dtype == b.dtype and torch.equal(a, b), f"{name} differs from the reference"
    assert (out.payload is None) == (ref.payload is None)
    if ref.payload is not None:
        assert len(out.payload) == len(out)
        assert torch.equal(out.payload.cpu()[keep_out], ref.payload.cpu()[keep_ref]), "payload differs"
    return len(only_one)


def cascaded_grid(seed=0) -> OccupancyGrid:
    """A 16^3 grid over [-8, 8]^3: 4 cascades (half-sizes 1, 2, 4, 8), each 30% occupied."""
    grid = OccupancyGrid(torch.tensor([[-8.0, -8, -8], [8, 8, 8]]), resolution=RES)
    assert grid.cascades == 4
    gen = torch.Generator().manual_seed(seed)
    grid.binaries = torch.rand(grid.cascades, RES**3, generator=gen) < 0.3
    grid._refresh_occupied_box()
    return grid.to(DEVICE)


def blob_grid(resolution, cascades, seed=0, half=2.0, center=(0.0, 0.0, 0.0), balls=4, radius=0.2) -> OccupancyGrid:
    """Occupied balls (radii up to `radius` of the grid) and sparse single cells ("floaters") in each
    cascade: large empty regions, which numba skips in blocks of up to 2^MAX_MIPS cells."""
    c = torch.tensor(center)
    grid = OccupancyGrid(torch.stack([c - half, c + half]), resolution=resolution, cascades=cascades)
    gen = torch.Generator().manual_seed(seed)
    ijk = torch.stack(torch.meshgrid(*[torch.arange(resolution)] * 3, indexing="ij"), -1).reshape(-1, 3).float()
    binaries = torch.rand(cascades, resolution**3, generator=gen) < 0.003
    for level in range(cascades):
        for _ in range(balls):
            centre = torch.rand(3, generator=gen) * resolution
            binaries[level] |= (ijk - centre).norm(dim=-1) < torch.rand(1, generator=gen) * resolution * radius
    grid.binaries = binaries
    grid._refresh_occupied_box()
    return grid.to(DEVICE)


def dense_sphere(origins, directions, payload=True, sigma=50.0):
    """sigma_fn of an opaque sphere of radius RADIUS; the payload is (t_start, ray id, sigma)."""

    def sigma_fn(t_starts, t_ends, ray_ids):
        assert not torch.is_grad_enabled(), "sigma_fn must run without gradient"
        mid = 0.5 * (t_starts + t_ends)
        sig = sigma * ((origins[ray_ids] + directions[ray_ids] * mid[:, None]).norm(dim=-1) < RADIUS).float()
        return (sig, torch.stack([t_starts, ray_ids.float(), sig], dim=-1)) if payload else sig

    return sigma_fn


def soft_field(origins, directions, payload=True, fog=0.0):
    """sigma_fn of a soft ball (density 40 at the centre, falling to 0 at radius 1.1), a thin shell
    of density 25 at radius ~0.8 and `fog` everywhere: rays lose light over many samples, some
    stop, some pass. Only correctly rounded operations, so a sample's density does not depend on
    its batch."""

    def sigma_fn(t_starts, t_ends, ray_ids):
        mid = 0.5 * (t_starts + t_ends)
        p = origins[ray_ids] + directions[ray_ids] * mid[:, None]
        r2 = p[:, 0] * p[:, 0] + p[:, 1] * p[:, 1] + p[:, 2] * p[:, 2]
        sig = 40.0 * torch.relu(1.0 - r2 * 0.8) + 25.0 * ((r2 > 0.6) & (r2 < 0.7)).float() + fog
        return (sig, torch.stack([t_starts, ray_ids.float(), sig], dim=-1)) if payload else sig

    return sigma_fn


def march_both(grid, origins, directions, seed=0, **kwargs):
    """The reference (torch single-threaded, as numba's growth table: march_numba docstring) and numba."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # numba's OpenMP layer may reset torch's thread count: set it each time
    try:
        ref = march(grid, origins, directions, generator=generator(seed), backend="torch", **kwargs)
    finally:
        torch.set_num_threads(threads)
    out = march(grid, origins, directions, generator=generator(seed), backend="numba", **kwargs)
    return ref, out


@needs_numba
@pytest.mark.parametrize("cone_angle", CONE_ANGLES + (1.0 / 8,))
@pytest.mark.parametrize("make_grid", [random_grid, sphere_grid, cascaded_grid], ids=["random", "sphere", "cascades"])
def test_numba_equals_reference(make_grid, cone_angle):
    grid = make_grid()
    origins, directions = make_rays()
    if make_grid is cascaded_grid:
        origins = origins * 3.0  # outside the [-8, 8] box, rays cross all four cascades
    ref = march(grid, origins, directions, STEP, cone_angle, backend="torch")
    out = march(grid, origins, directions, STEP, cone_angle, backend="numba")
    assert len(ref) > 0
    assert_identical(out, ref)


@needs_numba
@pytest.mark.parametrize("cone_angle", CONE_ANGLES)
def test_numba_stratified_near_far_odd_resolution_rays_inside(cone_angle):
    grid = random_grid(resolution=15, seed=3)
    origins, directions = make_rays(200, seed=1, miss=5)
    origins[:50] = torch.rand(50, 3, generator=torch.Generator().manual_seed(2)).to(DEVICE) * 3.0 - 1.5  # inside
    for kwargs in (dict(near=2.5, far=5.0), dict(near=None, far=3.0), dict(near=0.5, far=None)):
        args = dict(step=STEP, cone_angle=cone_angle, stratified=True, **kwargs)
        ref = march(grid, origins, directions, generator=generator(5), backend="torch", **args)
        out = march(grid, origins, directions, generator=generator(5), backend="numba", **args)
        assert len(ref) > 0
        assert_identical(out, ref)


def face_rays(grid, level, first, n, gen):
    """Rays along the axes whose step midpoints fall on the faces of a cascade's cells.

    Each ray runs along +-x, +-y or +-z from outside every cascade, its other coordinates on cell
    faces, on the next finer cascade's faces or anywhere. With step = a quarter of cascade
    `level`'s cell and the returned `near`, the midpoint of step i is at offset first + i * step
    along the axis (`first` = cell face `first` of that axis), so every 4th midpoint lies on a
    cell face, where the float32 cell index rounds either way. Returns origins, directions, near,
    step.
    """
    r = grid.resolution
    scale = grid.base_half * 2**level
    cell = 2 * scale / r
    far_out = 2.5 * grid.base_half * 2 ** (grid.cascades - 1)
    axis = torch.randint(0, 3, (n,), generator=gen)
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, 1.0, -1.0)
    on_face = (torch.randint(0, r + 1, (n, 3), generator=gen).float() / r * 2 - 1) * scale
    inner = torch.where(torch.rand(n, 3, generator=gen) < 0.5, 0.5, -0.5) * scale
    anywhere = (torch.rand(n, 3, generator=gen) * 2 - 1) * scale
    pick = torch.rand(n, 3, generator=gen)
    rel = torch.where(pick < 0.5, on_face, torch.where(pick < 0.75, inner, anywhere))
    rel[torch.arange(n), axis] = -sign * far_out
    directions = torch.zeros(n, 3)
    directions[torch.arange(n), axis] = sign
    near = far_out + (first / r * 2 - 1) * scale - cell / 8  # midpoint of step 0: face `first`
    return (grid.center.cpu() + rel).to(DEVICE), directions.to(DEVICE), near, cell / 4


@needs_numba
@pytest.mark.parametrize("make_grid", [lambda: cascaded_grid(1), lambda: random_grid(15, 2), lambda: blob_grid(16, 3)],
                         ids=["cascades", "odd-resolution", "blobs"])
def test_numba_skipping_is_exact_on_cell_and_cascade_faces(make_grid):
    """Empty-space skipping never skips a step whose midpoint lies on (or within rounding of) a
    cell or cascade face: such a step is tested, and its float32 cell is the reference's."""
    grid = make_grid()
    gen = torch.Generator().manual_seed(7)
    compared = 0
    for level in range(grid.cascades):
        for first in (1, 2, grid.resolution // 4, grid.resolution // 2 - 1):
            origins, directions, near, step = face_rays(grid, level, first, 100, gen)
            for cone_angle in (0.0, 1.0 / 64):
                args = dict(step=step, cone_angle=cone_angle, near=near)
                ref = march(grid, origins, directions, backend="torch", **args)
                out = march(grid, origins, directions, backend="numba", **args)
                assert_identical(out, ref)
                compared += len(ref)
    assert compared > 3000


@needs_numba
def test_numba_equals_reference_on_large_random_scenes():
    """Thousands of rays through grids with large empty regions (deep skips), all cascades, odd
    and even resolutions, every step rule: bit for bit without sigma_fn, up to ties at eps with."""
    cases = [(blob_grid(32, 3, seed=1, balls=6, radius=0.35), 0.0),
             (blob_grid(15, 2, seed=2, center=(0.3, -0.2, 0.1), balls=6, radius=0.35), 1.0 / 256),
             (random_grid(16, seed=4), 1.0 / 8)]
    ties = 0
    for q, (grid, cone_angle) in enumerate(cases):
        top = grid.base_half * 2 ** (grid.cascades - 1)
        origins, directions = make_rays(3000, seed=q, miss=50)
        origins = origins * (0.6 * top)
        origins[:500] = grid.center + (torch.rand(500, 3, generator=torch.Generator().manual_seed(q)).to(DEVICE)
                                       * 2 - 1) * top  # inside the grid
        step = 2 * math.sqrt(3) * top / 256
        ref, out = march_both(grid, origins, directions, q, step=step, cone_angle=cone_angle, stratified=True)
        assert len(ref) > 1000
        assert_identical(out, ref)
        sigma_fn = soft_field(origins, directions, payload=q != 1, fog=10.0)
        for eps in (1e-4, 1e-2):
            kwargs = dict(step=step, cone_angle=cone_angle, stratified=True, sigma_fn=sigma_fn, early_stop_eps=eps)
            ref_es, out_es = march_both(grid, origins, directions, q, **kwargs)
            assert 0 < len(ref_es) < 0.9 * len(ref)
            ties += assert_same_early_stop(out_es, ref_es, out, sigma_fn, eps)
    assert ties <= 3  # ties at eps are rare: a few in millions of samples


@needs_numba
@pytest.mark.parametrize("payload", [True, False], ids=["payload", "sigma-only"])
@pytest.mark.parametrize("cone_angle", CONE_ANGLES)
@pytest.mark.parametrize("make_grid", [sphere_grid, random_grid], ids=["sphere", "random"])
def test_numba_early_stop_matches_reference(make_grid, cone_angle, payload):
    grid = make_grid()
    origins, directions = make_rays()
    everything = march(grid, origins, directions, STEP, cone_angle, backend="numba")
    for eps, sigma in ((0.0, 50.0), (1e-4, 3.0), (1e-2, 50.0)):
        sigma_fn = dense_sphere(origins, directions, payload, sigma)
        kwargs = dict(step=STEP, cone_angle=cone_angle, sigma_fn=sigma_fn, early_stop_eps=eps)
        ref = march(grid, origins, directions, backend="torch", **kwargs)
        out = march(grid, origins, directions, backend="numba", **kwargs)
        assert len(ref) > 0
        assert assert_same_early_stop(out, ref, everything, sigma_fn, eps) == 0
        if eps == 0.0:
            assert_identical(out, ref)
    assert len(everything) > len(out), "the test scene stops no ray early"


@needs_numba
def test_numba_early_stop_ties_at_eps_may_go_either_way():
    """Every sample carries the same optical depth, -log(eps) / 13: the 14th sample of a ray sits
    on the threshold, where the reference's float32 block sums and numba's float64 sum round
    differently (here numba keeps the 14th sample of the 7 rays that reach it, the reference
    does not). Only such samples may differ."""
    eps = 1e-2
    grid = sphere_grid()
    origins, directions = make_rays()
    unit = -math.log(eps) / 13

    def sigma_fn(t_starts, t_ends, ray_ids):
        sig = unit / (t_ends - t_starts)
        return sig, torch.stack([t_starts, ray_ids.float()], dim=-1)

    everything = march(grid, origins, directions, STEP, backend="numba")
    kwargs = dict(step=STEP, sigma_fn=sigma_fn, early_stop_eps=eps)
    ref = march(grid, origins, directions, backend="torch", **kwargs)
    out = march(grid, origins, directions, backend="numba", **kwargs)
    assert_same_early_stop(out, ref, everything, sigma_fn, eps)
    counts = torch.bincount(out.ray_indices, minlength=len(origins))
    long_rays = torch.bincount(everything.ray_indices, minlength=len(origins)) >= 14
    assert int(long_rays.sum()) >= 5 and bool((counts[long_rays] >= 13).all()) and bool((counts <= 14).all())
    torch.testing.assert_close(out.payload[:, 0], out.t_starts, rtol=0, atol=0)


@needs_numba
def test_numba_sigma_fn_sees_batches_of_candidates_in_ray_order():
    """Few calls with many samples each (up to K candidates per live ray), sorted by ray then t,
    each sample an occupied candidate; payloads of any trailing shape follow the kept samples."""
    from nerf.sampling import march_numba

    grid = sphere_grid()
    origins, directions = make_rays(200, seed=3, miss=10)
    everything = march(grid, origins, directions, STEP, backend="numba")
    candidates = set(sample_keys(everything))
    calls = []

    def sigma_fn(t_starts, t_ends, ray_ids):
        calls.append((t_starts.clone(), t_ends.clone(), ray_ids.clone()))
        sig = dense_sphere(origins, directions, payload=False, sigma=20.0)(t_starts, t_ends, ray_ids)
        return sig, torch.stack([t_starts, t_ends], dim=-1)[:, None, :].expand(-1, 3, 2)  # [P, 3, 2]

    out = march(grid, origins, directions, STEP, sigma_fn=sigma_fn, early_stop_eps=1e-4, backend="numba")
    numba_calls = calls[:]
    ref = march(grid, origins, directions, STEP, sigma_fn=sigma_fn, early_stop_eps=1e-4, backend="torch")
    assert_identical(out, ref)
    assert out.payload.shape == (len(out), 3, 2)
    assert torch.equal(out.payload[:, 1, 0], out.t_starts) and torch.equal(out.payload[:, 2, 1], out.t_ends)
    assert len(numba_calls) <= 3  # K = FIRST_ROUND_CANDIDATES per ray, then many more for the few still live
    for t_starts, t_ends, ray_ids in numba_calls:
        per_ray = torch.bincount(ray_ids)
        assert bool((ray_ids[1:] >= ray_ids[:-1]).all()), "batch not sorted by ray"
        same = ray_ids[1:] == ray_ids[:-1]
        assert bool((t_starts[1:][same] > t_starts[:-1][same]).all()), "batch not sorted by t within a ray"
        assert int(per_ray.max()) <= march_numba.MAX_CANDIDATES_PER_RAY
        assert set(sample_keys(PackedSamples(t_starts, t_ends, ray_ids, len(origins)))) <= candidates
    per_ray = torch.bincount(everything.ray_indices, minlength=len(origins))
    first_batch = int(per_ray.clamp_max(march_numba.FIRST_ROUND_CANDIDATES).sum())  # the first K of every ray
    assert len(numba_calls[0][0]) == first_batch
    assert len(torch.unique(numba_calls[0][2])) == int((per_ray > 0).sum()) >= 10  # every ray with candidates


@needs_numba
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_numba_nan_or_infinite_density_is_kept_and_stops_the_ray(bad):
    """The module docstring's edge case: the first sample with a NaN (or infinite) density is
    kept, the depth in front of it being finite; the reference drops it (its exclusive depth is a
    running sum minus the sample's own). Every later sample is dropped by both."""
    grid = sphere_grid()
    origins, directions = make_rays()

    def sigma_fn(t_starts, t_ends, ray_ids):
        mid = 0.5 * (t_starts + t_ends)
        x = origins[ray_ids, 0] + directions[ray_ids, 0] * mid
        return torch.where(x > 0.2, torch.full_like(x, bad), torch.full_like(x, 0.5))

    kwargs = dict(step=STEP, sigma_fn=sigma_fn, early_stop_eps=1e-4)
    ref = march(grid, origins, directions, backend="torch", **kwargs)
    out = march(grid, origins, directions, backend="numba", **kwargs)
    extra = set(sample_keys(out)) - set(sample_keys(ref))
    assert not set(sample_keys(ref)) - set(sample_keys(out))
    everything = march(grid, origins, directions, STEP, backend="numba")
    with torch.no_grad():
        is_bad = ~torch.isfinite(sigma_fn(everything.t_starts, everything.t_ends, everything.ray_indices))
    first_bad = {}
    for key, flag in zip(sample_keys(everything), is_bad.tolist()):
        if flag and key[0] not in first_bad:
            first_bad[key[0]] = key
    assert len(first_bad) > 3 and extra == set(first_bad.values())


@needs_numba
def test_numba_sigma_fn_must_return_one_density_per_sample():
    grid = sphere_grid()
    origins, directions = make_rays()
    with pytest.raises(ValueError, match="sigma_fn returned"):
        march(grid, origins, directions, STEP, sigma_fn=lambda s, e, r: torch.ones(len(s) + 1), backend="numba")


@needs_numba
def test_numba_skipping_follows_grid_changes():
    """The empty-block pyramid is cached per grid tensor and version: writing the grid in place or
    replacing it gives the new grid's samples."""
    grid = blob_grid(16, 2, seed=5)
    origins, directions = make_rays(300, seed=5)
    for change in range(3):
        if change == 1:
            grid.binaries[:, ::3] = ~grid.binaries[:, ::3]  # in place
        if change == 2:
            grid.binaries = torch.rand(grid.binaries.shape, generator=torch.Generator().manual_seed(9)) < 0.02
        ref = march(grid, origins, directions, STEP, backend="torch")
        out = march(grid, origins, directions, STEP, backend="numba")
        assert len(ref) > 0
        assert_identical(out, ref)


@needs_numba
def test_numba_equals_the_single_threaded_reference_on_wide_blocks():
    """2000 rays: blocks of 64000 candidates, which torch splits between threads. With one thread
    the reference's geometric factors all come from torch's vectorised pow (march_numba docstring)."""
    grid = cascaded_grid()
    origins, directions = make_rays(2000, seed=4, miss=10)
    for cone_angle in (1.0 / 256, 1.0 / 64):
        ref, out = march_both(grid, 3.0 * origins, directions, step=0.01, cone_angle=cone_angle, stratified=True)
        assert len(ref) > 0
        assert_identical(out, ref)


@needs_numba
@pytest.mark.parametrize("half", [128.0, 1.0], ids=["8-cascades", "1-cascade"])
def test_numba_occupancy_test_equals_is_occupied_at_cascade_faces(half):
    """Points on and one float32 step either side of every cascade's faces, where the reference's
    ceil(log2(.)) rounds (16 * (1 + 2^-23) is level 4 for torch, outside that cascade); with one
    cascade, the same points mostly outside it."""
    from nerf.sampling import march_numba

    grid = OccupancyGrid(torch.tensor([[-half, -half, -half], [half, half, half]]), resolution=8)
    assert grid.cascades == (8 if half > 1 else 1) and grid.base_half == 1.0
    grid.binaries = torch.rand(grid.cascades, 8**3, generator=torch.Generator().manual_seed(0)) < 0.5
    faces = torch.tensor([2.0**k for k in range(-2, 9)])
    up, down = torch.nextafter(faces, torch.tensor(math.inf)), torch.nextafter(faces, torch.tensor(0.0))
    radii = torch.cat([faces, up, down])
    gen = torch.Generator().manual_seed(1)
    points = (torch.rand(len(radii) * 6, 3, generator=gen) * 2 - 1) * radii.repeat(6)[:, None]  # inside the cube
    axis = torch.arange(len(points)) % 3
    sign = torch.where(torch.arange(len(points)) // len(radii) % 2 == 0, 1.0, -1.0)
    points[torch.arange(len(points)), axis] = sign * radii.repeat(6)  # on (or next to) a face
    points = points + grid.center
    s = march_numba._Setup(grid, points, points, points[:, 0], points[:, 0], STEP, 0.0, 1)
    expected = grid.is_occupied(points)
    got = [march_numba._occupied(*p.numpy(), s.binaries, *s.center, s.base_half, s.pow2, s.res) for p in points]
    assert got == expected.tolist()
    assert 0 < int(expected.sum()) < len(points)


@needs_numba
def test_numba_level_equals_torchs_ceil_log2():
    """The cascade of a point: numba decides by comparisons except just above a power of two,
    where it calls log2; both agree with the reference's ceil(torch.log2(x)) clamped to the
    cascades, on every float32 within 2^14 ulps of 2^0 .. 2^9 and on random x."""
    from nerf.sampling import march_numba

    near = [torch.arange(-(1 << 14), 1 << 14, dtype=torch.int32) + torch.tensor([2.0**k]).view(torch.int32)
            for k in range(0, 10)]
    x = torch.cat([torch.cat(near).view(torch.float32), torch.rand(20000) * 2.0**9 + 1.0])
    x = x[x > 1.0]
    for top in (0, 1, 3, 7):  # cascades - 1
        expected = torch.ceil(torch.log2(x)).clamp(0, top).long()
        got = torch.tensor([march_numba._level(v, top) for v in x.numpy()])
        assert torch.equal(got, expected), f"top {top}"


@needs_numba
@pytest.mark.parametrize("eps", [1e-4, 1e-2, 0.5, 1.0, 3.0])
def test_numba_transmittance_threshold_is_torchs_test(eps):
    from nerf.sampling import march_numba

    threshold = torch.tensor(march_numba._survival_threshold(eps), dtype=torch.float32)
    above = torch.nextafter(threshold, torch.tensor(math.inf))
    assert bool(torch.exp(-threshold) >= eps) and not bool(torch.exp(-above) >= eps)
    assert march_numba._survival_threshold(0.0) == math.inf


@needs_numba
def test_numba_early_stop_without_the_threshold_uses_minus_log_eps(monkeypatch):
    from nerf.sampling import march_numba

    grid = sphere_grid()
    origins, directions = make_rays()
    sigma_fn = dense_sphere(origins, directions)
    kwargs = dict(step=STEP, cone_angle=1.0 / 64, sigma_fn=sigma_fn, early_stop_eps=1e-2)
    ref = march(grid, origins, directions, backend="torch", **kwargs)
    monkeypatch.setattr(march_numba, "_survival_threshold", lambda eps: None)
    out = march(grid, origins, directions, backend="numba", **kwargs)
    everything = march(grid, origins, directions, STEP, 1.0 / 64, backend="numba")
    assert assert_same_early_stop(out, ref, everything, sigma_fn, 1e-2) == 0


@needs_numba
def test_numba_follows_the_reference_block_schedule(monkeypatch):
    """With few candidates per chunk the reference's blocks shrink with the number of live rays;
    numba tries the same steps (the block ends of the march without sigma_fn)."""
    from nerf.sampling import march_numba

    for module in (march_reference, march_numba):
        monkeypatch.setattr(module, "MAX_CANDIDATES_PER_CHUNK", 200)  # 64 rays: 3 steps per block
    grid = sphere_grid()
    origins, directions = make_rays()
    for cone_angle in CONE_ANGLES:
        everything = march(grid, origins, directions, STEP, cone_angle, backend="numba")
        assert_identical(everything, march(grid, origins, directions, STEP, cone_angle, backend="torch"))
        sigma_fn = dense_sphere(origins, directions)
        kwargs = dict(step=STEP, cone_angle=cone_angle, sigma_fn=sigma_fn, early_stop_eps=1e-2)
        out = march(grid, origins, directions, backend="numba", **kwargs)
        ref = march(grid, origins, directions, backend="torch", **kwargs)
        assert assert_same_early_stop(out, ref, everything, sigma_fn, 1e-2) == 0
    counts = torch.tensor([0, 1, 3, 4, 7, 30, 31, 100])
    tried = march_numba._tried_steps(counts)
    # the reference's loop without sigma_fn, simulated directly: 7 live rays -> 28-step blocks, ...
    expected, k, live = torch.zeros_like(counts), 0, counts > 0
    while bool(live.any()):
        k += max(1, min(march_numba.MARCH_BLOCK, 200 // int(live.sum())))
        expected[live & (counts <= k)] = k
        live &= counts > k
    assert torch.equal(tried, expected)


# --- the dispatcher's own contract -------------------------------------------------------------


def test_backend_choice():
    cpu = torch.device("cpu")
    native = "numba" if backends.usable("numba", cpu) else "torch"
    assert pick_backend("auto", cpu) == native  # never Triton's interpreter on a CPU
    assert pick_backend("auto", cpu, torch.float64) == "torch"  # numba's arithmetic is float32
    assert pick_backend("torch", cpu) == "torch"
    with pytest.raises(ValueError, match="unknown backend"):
        pick_backend("cuda", cpu)
    grid = random_grid()
    origins, directions = make_rays(4, miss=0)
    with pytest.raises(ValueError, match="march: unknown backend 'tcnn'"):
        march(grid, origins, directions, STEP, backend="tcnn")
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="march: backend 'numba' cannot run on cuda"):
            pick_backend("numba", torch.device("cuda"))


def test_triton_on_cpu_without_interpreter_is_refused(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="march: backend 'triton' cannot run on cpu.*TRITON_INTERPRET=1"):
        pick_backend("triton", torch.device("cpu"))


def test_invalid_inputs_name_the_mistake():
    grid = random_grid()
    origins, directions = make_rays(4, miss=0)
    with pytest.raises(ValueError, match="directions must have shape"):
        march(grid, origins, directions[:3], STEP)
    with pytest.raises(ValueError, match="origins must have shape"):
        march(grid, origins[:, :2], directions, STEP)
    with pytest.raises(ValueError, match="floating point"):
        march(grid, origins.long(), directions, STEP)
    with pytest.raises(ValueError, match="step must be positive"):
        march(grid, origins, directions, 0.0)


def test_same_seed_same_samples_and_no_gradient():
    grid = sphere_grid()
    origins, directions = make_rays()
    origins.requires_grad_()
    a = march(grid, origins, directions, STEP, 1.0 / 64, stratified=True, generator=generator(3))
    b = march(grid, origins, directions, STEP, 1.0 / 64, stratified=True, generator=generator(3))
    c = march(grid, origins, directions, STEP, 1.0 / 64, stratified=True, generator=generator(4))
    assert torch.equal(a.t_starts, b.t_starts) and torch.equal(a.ray_indices, b.ray_indices)
    assert len(a) != len(c) or not torch.equal(a.t_starts, c.t_starts)
    assert not a.t_starts.requires_grad


def test_importing_the_sampling_modules_does_not_import_triton():
    """Every module of nerf.sampling but the Triton backend imports, and marches on a CPU, without triton."""
    modules = sorted(
        f"nerf.sampling.{p.stem}" for p in (ROOT / "nerf" / "sampling").glob("*.py")
        if p.stem not in ("__init__", "march_triton")
    )
    assert "nerf.sampling.march" in modules and "nerf.sampling.march_reference" in modules
    script = "\n".join([
        "import importlib, sys",
        "import torch",
        f"for name in {modules!r}:",
        "    importlib.import_module(name)",
        "assert 'triton' not in sys.modules, 'importing nerf.sampling imported triton'",
        "from nerf.sampling.march import march",
        "from nerf.sampling.occupancy import OccupancyGrid",
        "grid = OccupancyGrid(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), resolution=8)",
        "rays = torch.tensor([[-3.0, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]])",
        "for backend in ('torch', 'auto'):",
        "    assert len(march(grid, *rays, 0.1, backend=backend)) > 0",
        "assert 'triton' not in sys.modules, 'marching on a CPU imported triton'",
    ])
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cone_angle", CONE_ANGLES)
def test_auto_on_cuda_uses_triton_and_matches_reference(cone_angle):
    grid = random_grid()
    gen = torch.Generator().manual_seed(0)
    origins = torch.randn(1000, 3, generator=gen)
    origins = 4.0 * origins / origins.norm(dim=-1, keepdim=True)
    directions = -origins / 4.0 + 0.4 * torch.randn(1000, 3, generator=gen)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    origins, directions = origins.cuda(), directions.cuda()
    assert pick_backend("auto", origins.device) == "triton"
    ref = march(grid, origins, directions, STEP, cone_angle, backend="torch")
    out = march(grid, origins, directions, STEP, cone_angle, backend="auto")
    assert_same_samples(grid, origins, directions, out, ref)
