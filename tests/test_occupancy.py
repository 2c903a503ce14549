"""Occupancy grid: marks a known sphere's cells, marches only through them, stops early."""

import math

import numpy as np
import pytest
import torch

from nerf.cameras import Cameras
from nerf.sampling.march import march
from nerf.sampling.occupancy import OccupancyGrid, pack_bitfield
from nerf.sampling.steps import step_counts, step_positions

RADIUS = 0.5
STEP = 2 * math.sqrt(3) / 256


def sphere_occ(points):  # optical thickness per step: dense inside the sphere, empty outside
    return (points.norm(dim=-1) < RADIUS).float() * 100.0 * STEP


@pytest.fixture
def grid():
    aabb = torch.tensor([[-1.0, -1, -1], [1, 1, 1]])
    g = OccupancyGrid(aabb, resolution=32)
    g.update(sphere_occ, warmup=True, generator=torch.Generator().manual_seed(0))
    return g


def test_grid_marks_sphere_cells(grid):
    level = 0
    ids = torch.arange(32**3)
    centers = grid._cell_centers(level, ids)
    cell_half_diag = math.sqrt(3) * (1.0 / 32)
    r = centers.norm(dim=-1)
    inside = r < RADIUS - cell_half_diag
    outside = r > RADIUS + cell_half_diag
    assert bool(grid.binaries[level, ids[inside]].all())
    assert not bool(grid.binaries[level, ids[outside]].any())
    assert torch.allclose(grid.occupied_box.abs(), torch.full((2, 3), RADIUS), atol=2.0 / 32 + 1e-6)


def test_march_emits_samples_only_in_occupied_cells(grid):
    origins = torch.tensor([[-3.0, 0.0, 0.0], [-3.0, 0.9, 0.0], [0.0, 0.0, 0.0]])
    dirs = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0.0, 0, 1]])
    s = march(grid, origins, dirs, STEP)
    assert (s.ray_indices == 1).sum() == 0  # misses the sphere
    pos = s.positions(origins, dirs)
    assert bool((pos.norm(dim=-1) < RADIUS + math.sqrt(3) * 2 / 32).all())
    through_center = s.t_starts[s.ray_indices == 0]
    # the ray through the centre crosses the whole diameter: about 2R / step samples
    assert abs(len(through_center) - 2 * RADIUS / STEP) <= 2 * (2 / 32) / STEP + 2
    assert bool((s.ray_indices[1:] >= s.ray_indices[:-1]).all())
    assert bool((s.t_ends > s.t_starts).all())


def test_early_stop_drops_samples_behind_opaque_surface(grid):
    origins = torch.tensor([[-3.0, 0.0, 0.0]])
    dirs = torch.tensor([[1.0, 0, 0]])

    def sigma_fn(t0, t1, ray_ids):
        mid = 0.5 * (t0 + t1)
        return (origins[ray_ids] + dirs[ray_ids] * mid[:, None]).norm(dim=-1).lt(RADIUS).float() * 1e4

    full = march(grid, origins, dirs, STEP)
    pruned = march(grid, origins, dirs, STEP, sigma_fn=sigma_fn, early_stop_eps=1e-4)
    assert 0 < len(pruned) < len(full) // 4
    # the kept samples are the first ones along the ray
    assert torch.equal(pruned.t_starts, full.t_starts[: len(pruned)])


def test_invisible_cells_never_occupied():
    aabb = torch.tensor([[-1.0, -1, -1], [1, 1, 1]])
    g = OccupancyGrid(aabb, resolution=16)
    # one camera at x = -3 looking along +x with a narrow field of view: sees only a thin cone
    c2w = torch.eye(4)
    c2w[:3, :3] = torch.tensor([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]])  # camera z -> world x
    c2w[:3, 3] = torch.tensor([-3.0, 0, 0])
    cams = Cameras.create(c2w[None], 400.0, 400.0, 16.0, 16.0, 32, 32)
    g.mark_invisible_cells(cams)
    g.update(lambda p: torch.ones(len(p)), warmup=True)
    centers = g._cell_centers(0, torch.arange(16**3))
    occupied = g.binaries[0]
    off_axis = centers[:, 1:].abs().max(dim=-1).values > 0.5
    assert not bool(occupied[off_axis].any())
    assert bool(occupied[~off_axis].any())


@pytest.mark.parametrize("cone", [0.0, 1 / 64])
def test_step_layout_covers_the_interval(cone):
    t0 = torch.tensor([0.5, 2.0, 0.0])
    t1 = torch.tensor([3.0, 7.0, 0.0])
    counts = step_counts(t0, t1, 0.05, cone)
    starts, dts = step_positions(t0, int(counts.max()), 0.05, cone)
    for i in range(3):
        k = int(counts[i])
        if k == 0:
            continue
        s, d = starts[i, :k], dts[i, :k]
        assert torch.allclose(s[1:], (s + d)[:-1], atol=1e-5)  # contiguous
        assert float(s[-1]) < float(t1[i]) <= float(s[-1] + d[-1]) + 1e-5  # reaches t1
        assert bool((d >= 0.05 - 1e-6).all())


def test_bitfield_matches_numpy_packbits():
    for resolution in (16, 15):  # 15^3 is not a multiple of 8: the last byte is padded
        grid = OccupancyGrid(torch.tensor([[-2.0, -2, -2], [2, 2, 2]]), resolution=resolution, cascades=2)
        grid.binaries = torch.rand(grid.cascades, resolution**3, generator=torch.Generator().manual_seed(0)) < 0.3
        expected = np.packbits(grid.binaries.numpy(), axis=-1, bitorder="little")
        np.testing.assert_array_equal(grid.bitfield().numpy(), expected)
        np.testing.assert_array_equal(pack_bitfield(grid.binaries).numpy(), expected)
