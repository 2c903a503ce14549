"""Triton ray marching: the kernels' samples against the PyTorch reference and a hand-built case.

On CPU the kernels run in Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1), so
inputs are small: a 16^3 grid with 2 cascades, ~64 rays.

Sample sets are compared with a tolerance on t, not for equality: with cone_angle > 0 the
kernel computes (1 + c)^e as exp2(e log2(1 + c)) where torch calls pow, so t differs by
rounding and a midpoint lying on a cell face may fall on the other side (see the docstring of
nerf.sampling.march_triton). A sample that only one backend emits is accepted only when the
occupancy changes within `FACE_RTOL` of its midpoint.
"""

import math

import numpy as np
import pytest
import torch

from nerf.sampling.occupancy import OccupancyGrid, march_backend

triton = pytest.importorskip("triton")
march_triton_module = pytest.importorskip("nerf.sampling.march_triton")
march_triton, pack_bitfield = march_triton_module.march_triton, march_triton_module.pack_bitfield

T_RTOL = 1e-5  # kernel vs reference t, relative (pow vs exp2-log2 rounding of geometric steps)
T_ATOL = 1e-6  # absolute floor for t near 0
FACE_RTOL = 2e-5  # a sample only one backend emits must have a cell face this close (relative t)
LOG_T_TOL = 1e-4  # early stop: transmittances this close to eps (in log) may go either way
RES = 16
STEP = 2 * math.sqrt(3) / 128
CONE_ANGLES = (0.0, 1.0 / 64)
RADIUS = 0.7


def random_grid(resolution=RES, seed=0) -> OccupancyGrid:
    grid = OccupancyGrid(torch.tensor([[-2.0, -2, -2], [2, 2, 2]]), resolution=resolution, cascades=2)
    gen = torch.Generator().manual_seed(seed)
    grid.binaries = torch.rand(grid.cascades, resolution**3, generator=gen) < 0.3
    grid._refresh_occupied_box()
    return grid


def sphere_grid() -> OccupancyGrid:
    grid = OccupancyGrid(torch.tensor([[-2.0, -2, -2], [2, 2, 2]]), resolution=RES, cascades=2)
    grid.update(lambda p: (p.norm(dim=-1) < RADIUS).float() * 10.0, warmup=True,
                generator=torch.Generator().manual_seed(0))
    return grid


def make_rays(n=64, seed=0, miss=8):
    """Rays from a sphere of radius 4 towards the centre (jittered); the last `miss` point away."""
    gen = torch.Generator().manual_seed(seed)
    origins = torch.randn(n, 3, generator=gen)
    origins = 4.0 * origins / origins.norm(dim=-1, keepdim=True)
    directions = -origins / 4.0 + 0.4 * torch.randn(n, 3, generator=gen)
    directions[n - miss:] = origins[n - miss:]
    return origins, directions / directions.norm(dim=-1, keepdim=True)


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
    assert bool((out.ray_indices[1:] >= out.ray_indices[:-1]).all()), "ray_indices not sorted"
    assert out.ray_indices.dtype == torch.int64
    for ray in range(origins.shape[0]):
        a, b = out.ray_indices == ray, ref.ray_indices == ray
        s_out, s_ref = out.t_starts[a].numpy(), ref.t_starts[b].numpy()
        e_out, e_ref = out.t_ends[a].numpy(), ref.t_ends[b].numpy()
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


def test_pack_bitfield_matches_numpy_packbits():
    for resolution in (RES, 15):  # 15^3 is not a multiple of 8: the last byte is padded
        binaries = random_grid(resolution).binaries
        expected = np.packbits(binaries.numpy(), axis=-1, bitorder="little")
        np.testing.assert_array_equal(pack_bitfield(binaries).numpy(), expected)


@pytest.mark.parametrize("cone_angle", CONE_ANGLES)
@pytest.mark.parametrize("make_grid", [random_grid, sphere_grid], ids=["random", "sphere"])
def test_kernel_matches_reference(make_grid, cone_angle):
    grid = make_grid()
    origins, directions = make_rays()
    ref = grid.march(origins, directions, STEP, cone_angle, backend="torch")
    out = grid.march(origins, directions, STEP, cone_angle, backend="triton")
    assert len(ref) > 0
    assert_same_samples(grid, origins, directions, out, ref)
    assert not bool(torch.isin(torch.arange(56, 64), out.ray_indices).any()), "rays pointing away got samples"


def test_several_blocks_odd_resolution_and_stratified():
    grid = random_grid(resolution=15, seed=3)
    n = march_triton_module.BLOCK_RAYS + 37
    origins, directions = make_rays(n, seed=1, miss=5)
    kwargs = dict(step=STEP, cone_angle=1.0 / 32, stratified=True)
    ref = grid.march(origins, directions, generator=torch.Generator().manual_seed(5), backend="torch", **kwargs)
    out = grid.march(origins, directions, generator=torch.Generator().manual_seed(5), backend="triton", **kwargs)
    assert out.n_rays == n
    assert_same_samples(grid, origins, directions, out, ref)


def test_single_cell_hand_computed():
    """One occupied cell x in [0, 1/8), ray along +x through its centre: analytic samples."""
    grid = OccupancyGrid(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), resolution=RES, cascades=1)
    binaries = torch.zeros(1, RES**3, dtype=torch.bool)
    binaries[0, 8 * RES * RES + 8 * RES + 8] = True
    grid.binaries = binaries
    origins = torch.tensor([[-2.0, 0.0625, 0.0625], [-2.0, 0.0625, 0.0625]])
    directions = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    step, t0 = 0.02, 1.803
    t_starts, t_ends, ray_indices = march_triton(
        grid, origins, directions, torch.tensor([t0, 2.5]), torch.tensor([2.4, 2.4]), step
    )
    # midpoints t0 + step (i + 1/2) inside x + 2 in [2, 2.125): i = 10 .. 15; ray 1 has t1 < t0
    expected = t0 + step * np.arange(10, 16)
    np.testing.assert_allclose(t_starts.numpy(), expected, rtol=T_RTOL)
    np.testing.assert_allclose((t_ends - t_starts).numpy(), step, rtol=1e-3)
    assert ray_indices.tolist() == [0] * len(expected)


def test_rays_that_miss_and_empty_grid():
    grid = random_grid()
    origins = torch.tensor([[3.0, 3.0, 3.0], [0.0, 5.0, 0.0]])
    directions = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert len(grid.march(origins, directions, STEP, backend="triton")) == 0
    grid.binaries = torch.zeros_like(grid.binaries)
    grid._refresh_occupied_box()
    origins, directions = make_rays()
    for cone_angle in CONE_ANGLES:
        out = grid.march(origins, directions, STEP, cone_angle, backend="triton")
        assert len(out) == 0 and out.ray_indices.dtype == torch.int64 and out.n_rays == origins.shape[0]


def exclusive_transmittance(samples, sigma_of) -> np.ndarray:  # float64, per sample
    tau = (sigma_of(samples.t_starts, samples.t_ends, samples.ray_indices).double()
           * (samples.t_ends - samples.t_starts).double()).numpy()
    ids = samples.ray_indices.numpy()
    out = np.empty_like(tau)
    for ray in np.unique(ids):
        sel = ids == ray
        out[sel] = np.exp(-(np.cumsum(tau[sel]) - tau[sel]))
    return out


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_early_stop_keeps_exactly_the_samples_in_front_of_the_surface(backend):
    grid = sphere_grid()
    origins, directions = make_rays()
    eps = 1e-2

    def sigma_of(t_starts, t_ends, ray_ids):
        mid = 0.5 * (t_starts + t_ends)
        return 10.0 * ((origins[ray_ids] + directions[ray_ids] * mid[:, None]).norm(dim=-1) < RADIUS).float()

    def sigma_fn(t_starts, t_ends, ray_ids):
        return sigma_of(t_starts, t_ends, ray_ids), torch.stack([t_starts, ray_ids.float()], dim=-1)

    candidates = grid.march(origins, directions, STEP, 1.0 / 64, backend=backend)
    kept = grid.march(origins, directions, STEP, 1.0 / 64, sigma_fn=sigma_fn, early_stop_eps=eps, backend=backend)
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
    if backend == "triton":  # the torch loop drops the payload when a block keeps no sample
        torch.testing.assert_close(kept.payload[:, 0], kept.t_starts, rtol=0, atol=0)
        torch.testing.assert_close(kept.payload[:, 1], kept.ray_indices.float(), rtol=0, atol=0)


def test_backend_choice_and_input_checks():
    cpu = torch.device("cpu")
    assert march_backend("auto", cpu) == "torch"
    assert march_backend("torch", cpu) == "torch"
    with pytest.raises(ValueError, match="unknown backend"):
        march_backend("cuda", cpu)
    grid = random_grid()
    origins, directions = make_rays(4, miss=0)
    with pytest.raises(ValueError, match="t1 must have shape"):
        march_triton(grid, origins, directions, torch.zeros(4), torch.zeros(3), STEP)
    with pytest.raises(ValueError, match="step must be positive"):
        march_triton(grid, origins, directions, torch.zeros(4), torch.ones(4), 0.0)
    with pytest.raises(ValueError, match="bitfield must be uint8"):
        march_triton(grid, origins, directions, torch.zeros(4), torch.ones(4), STEP, bitfield=grid.binaries)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cone_angle", CONE_ANGLES)
def test_kernel_matches_reference_cuda(cone_angle):
    grid = random_grid().cuda()
    origins, directions = (x.cuda() for x in make_rays(1000, miss=50))
    ref = grid.march(origins, directions, STEP, cone_angle, backend="torch")
    out = grid.march(origins, directions, STEP, cone_angle, backend="auto")
    assert march_backend("auto", origins.device) == "triton"
    grid_cpu = random_grid()
    to_cpu = lambda s: type(s)(s.t_starts.cpu(), s.t_ends.cpu(), s.ray_indices.cpu(), s.n_rays)  # noqa: E731
    assert_same_samples(grid_cpu, origins.cpu(), directions.cpu(), to_cpu(out), to_cpu(ref))
