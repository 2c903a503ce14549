"""Scene contraction: identity in the content box, a bijection onto (-2, 2)^3, and the field."""

import pytest
import torch

from nerf.config import ModelConfig, SamplerConfig
from nerf.fields.contraction import contract, uncontract
from nerf.fields.ngp import NGPField
from nerf.render.renderer import Renderer


def _points(n: int, scale: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, generator=g) * 2 - 1) * scale


def test_identity_inside_the_content_box():
    x = _points(1000, 1.0)
    assert torch.equal(contract(x), x)


def test_far_points_land_inside_the_cube_on_their_shell():
    x = _points(1000, 1e4, seed=1)
    x = x[x.abs().amax(-1) > 1]
    y = contract(x)
    m = x.abs().amax(-1)
    assert torch.allclose(y.abs().amax(-1), 2 - 1 / m, atol=1e-6)
    # same direction from the origin
    assert torch.allclose(y / y.norm(dim=-1, keepdim=True), x / x.norm(dim=-1, keepdim=True), atol=1e-5)
    assert bool((y.abs() < 2).all())


def test_uncontract_inverts_contract():
    x = torch.cat([_points(500, 1.0), _points(500, 50.0, seed=2)])
    assert torch.allclose(uncontract(contract(x)), x, rtol=1e-4, atol=1e-5)
    y = _points(500, 1.99, seed=3)
    assert torch.allclose(contract(uncontract(y)), y, atol=1e-5)


def test_uncontract_refuses_the_boundary_at_infinity():
    with pytest.raises(ValueError, match="infinity"):
        uncontract(torch.tensor([[2.0, 0.0, 0.0]]))


def test_continuous_and_monotone_along_a_ray():
    t = torch.linspace(0.0, 20.0, 4001)
    d = torch.tensor([0.6, -0.3, 0.2])
    y = contract(t[:, None] * d)
    steps = (y[1:] - y[:-1]).norm(dim=-1)
    # contraction never stretches (its Jacobian's norm is at most 1): no jump at the box's surface
    assert float(steps.max()) <= float((t[1] - t[0]) * d.norm()) * (1 + 1e-4)
    r = y.abs().amax(-1)
    assert bool((r[1:] >= r[:-1] - 1e-7).all())  # moves outward monotonically


def test_gradient_is_finite_everywhere():
    x = torch.cat([_points(200, 3.0), torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 0.0]])]).requires_grad_()
    contract(x).sum().backward()
    assert bool(torch.isfinite(x.grad).all())


def test_contracted_field_has_density_beyond_its_box():
    torch.manual_seed(0)
    aabb = torch.tensor([[-1.0] * 3, [1.0] * 3])
    cfg = ModelConfig(hash_levels=2, hash_log2_size=10, hash_max_resolution=32, hash_backend="torch")
    far = torch.tensor([[5.0, 0.0, 0.0], [0.0, -30.0, 2.0]])
    plain = NGPField(aabb, cfg)
    contracted = NGPField(aabb, ModelConfig(**{**cfg.__dict__, "contraction": "inf"}))
    assert bool((plain.query_density(far) == 0).all())
    assert bool((contracted.query_density(far) > 0).all())
    # inside the content box the contracted field reads the grid at contract(x) = x
    inside = _points(10, 0.9)
    x, covered = contracted._unit(inside)
    assert covered is None and torch.allclose(x, (inside + 2) / 4)


def test_grid_scale_widens_the_occupancy_grid_by_cascades():
    aabb = torch.tensor([[-4.0] * 3, [4.0] * 3])
    field = NGPField(aabb, ModelConfig(hash_levels=2, hash_log2_size=10, hash_backend="torch", contraction="inf"))
    plain = Renderer(field, aabb, SamplerConfig(grid_resolution=8)).grid
    wide = Renderer(field, aabb, SamplerConfig(grid_resolution=8, grid_scale=4.0)).grid
    assert wide.cascades == plain.cascades + 2
    assert torch.allclose(wide.aabb, aabb * 4)
    assert wide.base_half == plain.base_half


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_sampler_finds_a_known_density_far_outside_the_content_box(backend):
    """A ball of known density 6 units out (in the 3rd cascade of a 16-unit grid): after the grid
    has seen it, cone-stepped rays toward it sample only around the ball, rays beside it get no
    samples, and the composited opacity and depth are the ball's."""
    from nerf.render.composite import composite
    from nerf.sampling.march import march
    from nerf.sampling.occupancy import OccupancyGrid

    center, radius, density = torch.tensor([6.0, 0.0, 0.0]), 0.5, 40.0

    def sigma(x):  # [P, 3] -> [P]
        return torch.where((x - center).norm(dim=-1) < radius, density, 0.0)

    grid = OccupancyGrid(torch.tensor([[-8.0] * 3, [8.0] * 3]), resolution=32)
    step = 2 * 3**0.5 / 256
    grid.update(lambda x: sigma(x) * step, warmup=True, generator=torch.Generator().manual_seed(0))
    origins = torch.zeros(3, 3)
    directions = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.02, 0.0], [0.0, 1.0, 0.0]])
    directions = directions / directions.norm(dim=-1, keepdim=True)
    s = march(grid, origins, directions, step, cone_angle=0.004, backend=backend)
    cell = 2 * 8.0 / 32  # the coarsest cascade's cell, the grid's resolution out there
    t_mid = 0.5 * (s.t_starts + s.t_ends)
    hit = s.ray_indices < 2
    assert int(hit.sum()) > 10 and not bool((s.ray_indices == 2).any())  # the side ray is empty
    assert bool((t_mid[hit] > 6.0 - radius - cell).all()) and bool((t_mid[hit] < 6.0 + radius + cell).all())
    positions = origins[s.ray_indices] + directions[s.ray_indices] * t_mid[:, None]
    out = composite(s.t_starts, s.t_ends, s.ray_indices, sigma(positions), torch.ones(len(s), 3), s.n_rays)
    assert float(out.opacity[0]) > 0.999 and float(out.opacity[2]) == 0.0
    depth = float(out.depth[0] / out.opacity[0])
    assert abs(depth - (6.0 - radius)) < 0.05  # the ball's near surface along the axis
