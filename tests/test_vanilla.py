"""Tests of the original NeRF path: the PE MLP field (nerf/fields/vanilla.py) and its coarse + fine
renderer (nerf/render/vanilla.py), against analytic slabs and a tiny learnable scene."""

import math

import pytest
import torch
from torch import nn

from nerf.errors import ConfigError
from nerf.fields.vanilla import VanillaField, VanillaNeRF
from nerf.render.vanilla import render_image_vanilla, render_rays_vanilla

EXACT_TOL = dict(rtol=1e-5, atol=1e-5)  # float32 sums of exponentials over <= 200 samples
UNIT_BOX = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
TRAIN_LOSS_FACTOR = 10.0  # the tiny model must cut its full-image MSE at least tenfold


class SlabField(nn.Module):
    """Constant density `sigma` where z0 <= z <= z1 (z = third world axis), zero elsewhere."""

    def __init__(self, sigma: float, z0: float, z1: float, colour=(0.2, 0.5, 0.9)):
        super().__init__()
        self.sigma, self.z0, self.z1 = sigma, z0, z1
        self.colour = torch.tensor(colour)

    def query_density(self, positions):  # [S, 3] -> [S]
        z = positions[:, 2]
        inside = (z >= self.z0) & (z <= self.z1)
        return torch.where(inside, torch.full_like(z, self.sigma), torch.zeros_like(z))

    def forward(self, positions, directions):  # [S, 3], [S, 3] -> [S], [S, 3]
        return self.query_density(positions), self.colour.expand(positions.shape[0], 3)


class SlabPair(nn.Module):
    def __init__(self, field: nn.Module):
        super().__init__()
        self.coarse = field
        self.fine = field


def _slab_rays(n: int = 24, seed: int = 0):
    """Rays from the plane z = 0 heading up (+z) at angles up to ~45 degrees."""
    g = torch.Generator().manual_seed(seed)
    origins = torch.cat([torch.rand(n, 2, generator=g) * 2 - 1, torch.zeros(n, 1)], dim=-1)
    directions = torch.cat([torch.rand(n, 2, generator=g) - 0.5, torch.ones(n, 1)], dim=-1)
    return origins, directions / directions.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("perturb", [False, True])
def test_slab_filling_the_ray_gives_exact_opacity(perturb):
    """Intervals tile [near, far], so a constant density gives 1 - exp(-sigma (far - near))."""
    sigma, near, far = 0.7, 0.5, 3.0
    origins, directions = _slab_rays()
    model = SlabPair(SlabField(sigma, -math.inf, math.inf))
    bg = torch.tensor([1.0, 0.0, 0.0])
    g = torch.Generator().manual_seed(1)
    out = render_rays_vanilla(model, origins, directions, near, far, 16, 32, bg, perturb, g)
    expected = torch.full((24,), 1 - math.exp(-sigma * (far - near)))
    for res in (out.coarse, out.fine):
        torch.testing.assert_close(res.opacity, expected, **EXACT_TOL)
        rgb = expected[:, None] * model.fine.colour + (1 - expected[:, None]) * bg
        torch.testing.assert_close(res.rgb, rgb, **EXACT_TOL)
    assert out.coarse.weights.shape == (24 * 16,)
    assert out.fine.weights.shape == (24 * 48,)
    assert out.n_samples == 24 * (2 * 16 + 32)


@pytest.mark.parametrize("n_coarse", [16, 64, 256])
def test_slab_inside_the_ray_converges_at_the_sample_spacing(n_coarse):
    """A slab boundary is misplaced by at most half a gap between neighbouring samples, so
    |opacity - (1 - exp(-sigma L))| <= sigma * gap; the fine samples only add positions, so
    their gaps are no larger than the coarse spacing (far - near) / K."""
    sigma, z0, z1, near, far = 1.5, 0.83, 1.91, 0.0, 4.0
    origins, directions = _slab_rays()
    model = SlabPair(SlabField(sigma, z0, z1))
    out = render_rays_vanilla(model, origins, directions, near, far, n_coarse, 64, perturb=False)
    length = (z1 - z0) / directions[:, 2]  # every ray crosses the whole slab before far
    expected = 1 - torch.exp(-sigma * length)
    bound = sigma * (far - near) / n_coarse
    for res in (out.coarse, out.fine):
        assert float((res.opacity - expected).abs().max()) <= bound


def test_opaque_wall_depth_within_the_sampling_error():
    """Expected depth of a dense wall at z0 along +z is z0 + 1/sigma. The wall's front is placed
    within half a coarse gap (a sample owns the half-gap before it). Coarse intervals inside the
    wall are a full gap long, adding up to another half gap; the fine pass packs the wall's
    first coarse interval with 128 samples, so its own discretisation error is negligible."""
    sigma, z0, near, far, k = 50.0, 1.37, 0.0, 4.0, 32
    origins = torch.zeros(4, 3)
    directions = torch.tensor([[0.0, 0.0, 1.0]]).expand(4, 3)
    model = SlabPair(SlabField(sigma, z0, math.inf))
    out = render_rays_vanilla(model, origins, directions, near, far, k, 128, perturb=False)
    gap = (far - near) / k
    for res, tol in ((out.coarse, gap), (out.fine, 0.6 * gap)):
        torch.testing.assert_close(res.opacity, torch.ones(4), **EXACT_TOL)
        assert float((res.depth - (z0 + 1 / sigma)).abs().max()) <= tol


def test_no_fine_samples_rerenders_coarse_positions_with_fine_field():
    origins, directions = _slab_rays(6)
    model = SlabPair(SlabField(0.9, 0.4, 1.2))
    out = render_rays_vanilla(model, origins, directions, 0.0, 2.0, 16, 0, perturb=False)
    torch.testing.assert_close(out.fine.rgb, out.coarse.rgb)


def test_render_image_matches_rays_and_is_chunk_invariant():
    torch.manual_seed(0)
    model = VanillaNeRF(UNIT_BOX, pos_frequencies=3, dir_frequencies=2, width=16, depth=3, skip_layers=(1,)).eval()
    origins = torch.randn(5, 4, 3) * 0.2 - torch.tensor([0.0, 0.0, 2.5])
    directions = nn.functional.normalize(torch.randn(5, 4, 3) * 0.2 + torch.tensor([0.0, 0.0, 1.0]), dim=-1)
    near, far = torch.full((5, 4), 1.0), 4.0
    bg = torch.tensor([0.3, 0.3, 0.3])
    whole = render_image_vanilla(model, origins, directions, near, far, chunk=1000, n_coarse=8, n_fine=8, background=bg)
    pieces = render_image_vanilla(model, origins, directions, near, far, chunk=7, n_coarse=8, n_fine=8, background=bg)
    rays = render_rays_vanilla(
        model, origins.reshape(-1, 3), directions.reshape(-1, 3), near.reshape(-1), far, 8, 8, bg, perturb=False,
    ).fine
    assert whole.rgb.shape == (5, 4, 3) and whole.depth.shape == (5, 4) and whole.opacity.shape == (5, 4)
    torch.testing.assert_close(pieces.rgb, whole.rgb)
    torch.testing.assert_close(pieces.depth, whole.depth)
    torch.testing.assert_close(whole.rgb.reshape(-1, 3), rays.rgb)
    torch.testing.assert_close(whole.opacity.reshape(-1), rays.opacity)
    assert not whole.rgb.requires_grad


def test_field_layout_matches_the_paper():
    """8 x 256 trunk, gamma(x) concatenated to the output of layer 4 (0-based), 256 feature, 128 colour layer."""
    field = VanillaField(UNIT_BOX)
    pos_dim, dir_dim = 3 * (1 + 2 * 10), 3 * (1 + 2 * 4)
    assert field.pos_encoding.out_dim == pos_dim and field.dir_encoding.out_dim == dir_dim
    in_features = [layer.in_features for layer in field.trunk]
    assert in_features == [pos_dim] + [256] * 4 + [256 + pos_dim] + [256] * 2  # layer 5 (0-based) gets it
    assert field.color_hidden.in_features == 256 + dir_dim and field.color_hidden.out_features == 128
    linear = lambda i, o: i * o + o  # noqa: E731
    expected = (
        linear(pos_dim, 256) + 6 * linear(256, 256) + linear(256 + pos_dim, 256)
        + linear(256, 1) + linear(256, 256) + linear(256 + dir_dim, 128) + linear(128, 3)
    )
    assert sum(p.numel() for p in field.parameters()) == expected


def test_field_outputs_and_density_query_agree():
    torch.manual_seed(1)
    field = VanillaField(UNIT_BOX, width=32, depth=4, skip_layers=(2,))
    positions = torch.rand(50, 3) * 2 - 1
    directions = nn.functional.normalize(torch.randn(50, 3), dim=-1)
    sigmas, rgbs = field(positions, directions)
    assert sigmas.shape == (50,) and rgbs.shape == (50, 3)
    assert bool((sigmas >= 0).all()) and bool((rgbs > 0).all()) and bool((rgbs < 1).all())
    torch.testing.assert_close(field.query_density(positions), sigmas)


def test_field_is_invariant_to_where_the_box_sits():
    """Inputs are mapped from the aabb to [-1, 1]^3, so a shifted box with shifted points agrees."""
    torch.manual_seed(2)
    shift, scale = torch.tensor([3.0, -1.0, 0.5]), 2.5
    a = VanillaField(UNIT_BOX, width=32, depth=3, skip_layers=(1,))
    b = VanillaField(UNIT_BOX * scale + shift, width=32, depth=3, skip_layers=(1,))
    b.load_state_dict(a.state_dict() | {"aabb": b.aabb})
    positions = torch.rand(20, 3) * 2 - 1
    directions = nn.functional.normalize(torch.randn(20, 3), dim=-1)
    for x, y in zip(a(positions, directions), b(positions * scale + shift, directions)):
        torch.testing.assert_close(x, y, **EXACT_TOL)


def test_density_noise_only_in_training_and_softplus_option():
    torch.manual_seed(3)
    field = VanillaField(
        UNIT_BOX, width=16, depth=2, skip_layers=(), density_activation="softplus", density_noise_std=1.0
    )
    positions = torch.rand(30, 3)
    field.eval()
    clean = field.query_density(positions)
    torch.testing.assert_close(field.query_density(positions), clean)
    assert bool((clean > 0).all())  # softplus is positive everywhere
    field.train()
    assert not torch.allclose(field.query_density(positions), clean)


def test_bad_options_raise_config_errors():
    with pytest.raises(ConfigError, match="density_activation"):
        VanillaField(UNIT_BOX, density_activation="exp")
    with pytest.raises(ConfigError, match="skip_layers"):
        VanillaField(UNIT_BOX, depth=4, skip_layers=(3,))
    with pytest.raises(ConfigError, match="aabb"):
        VanillaField(torch.zeros(2, 3))


def test_vanilla_nerf_answers_with_its_fine_field():
    torch.manual_seed(4)
    model = VanillaNeRF(UNIT_BOX, width=16, depth=2, skip_layers=())
    positions = torch.rand(10, 3)
    directions = nn.functional.normalize(torch.randn(10, 3), dim=-1)
    torch.testing.assert_close(model.query_density(positions), model.fine.query_density(positions))
    torch.testing.assert_close(model(positions, directions)[1], model.fine(positions, directions)[1])


@pytest.fixture
def one_thread():
    """Tiny matrices gain nothing from intra-op threads, and on a shared 2-core machine the
    OpenMP barriers of a second thread slow each step down by an order of magnitude."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _tiny_model(seed: int) -> VanillaNeRF:
    torch.manual_seed(seed)
    return VanillaNeRF(UNIT_BOX, pos_frequencies=6, dir_frequencies=2, width=64, depth=4, skip_layers=(2,))


def test_gradients_reach_both_networks_and_not_through_resampling(one_thread):
    model = _tiny_model(5)
    origins = torch.tensor([[0.0, 0.0, -3.0]]).expand(16, 3)
    directions = nn.functional.normalize(torch.randn(16, 3) * 0.2 + torch.tensor([0.0, 0.0, 1.0]), dim=-1)
    target = torch.rand(16, 3)
    out = render_rays_vanilla(model, origins, directions, 1.5, 4.5, 16, 16, None, True, torch.Generator().manual_seed(6))
    (((out.coarse.rgb - target) ** 2).mean() + ((out.fine.rgb - target) ** 2).mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
    for net in (model.coarse, model.fine):
        assert float(net.trunk[0].weight.grad.abs().sum()) > 0
        assert float(net.color_head.weight.grad.abs().sum()) > 0

    # The fine loss alone must not reach the coarse network: importance sampling has no gradient.
    model.zero_grad(set_to_none=True)
    out = render_rays_vanilla(model, origins, directions, 1.5, 4.5, 16, 16, None, True, torch.Generator().manual_seed(6))
    ((out.fine.rgb - target) ** 2).mean().backward()
    assert all(p.grad is None for p in model.coarse.parameters())
    assert float(model.fine.trunk[0].weight.grad.abs().sum()) > 0


def _orbit_rays(eye, res: int, fov: float):
    """Pinhole rays (pixel centres at +0.5) of a camera at `eye` looking at the origin, z up."""
    eye = torch.tensor(eye)
    forward = -eye / eye.norm()
    right = torch.linalg.cross(forward, torch.tensor([0.0, 0.0, 1.0]))
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    focal = 0.5 * res / math.tan(0.5 * fov)
    coords = (torch.arange(res) + 0.5 - 0.5 * res) / focal
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    d = forward + x[..., None] * right + y[..., None] * down
    return eye.expand(res * res, 3), (d / d.norm(dim=-1, keepdim=True)).reshape(-1, 3)


def test_tiny_nerf_learns_a_few_pixel_scene(one_thread):
    """Three 8 x 8 views of an orange ball (radius 0.6) on white, rendered analytically."""
    rays = [_orbit_rays(eye, 8, math.radians(40)) for eye in ((3.0, 0.0, 0.5), (0.0, 3.0, -0.5), (-2.0, -2.0, 1.0))]
    origins = torch.cat([r[0] for r in rays])
    directions = torch.cat([r[1] for r in rays])
    b = (origins * directions).sum(-1)
    hit = b * b - ((origins * origins).sum(-1) - 0.6**2) > 0  # ray-sphere discriminant
    white, orange = torch.ones(3), torch.tensor([0.9, 0.3, 0.1])
    target = torch.where(hit[:, None], orange, white)
    model = _tiny_model(7)
    near, far, k, m = 1.5, 4.5, 16, 16

    def image_loss() -> float:
        with torch.no_grad():
            out = render_rays_vanilla(model, origins, directions, near, far, k, m, white, perturb=False)
        return float(((out.fine.rgb - target) ** 2).mean())

    start = image_loss()
    g = torch.Generator().manual_seed(8)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(100):
        idx = torch.randint(0, origins.shape[0], (64,), generator=g)
        out = render_rays_vanilla(model, origins[idx], directions[idx], near, far, k, m, white, True, g)
        loss = ((out.coarse.rgb - target[idx]) ** 2).mean() + ((out.fine.rgb - target[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert image_loss() < start / TRAIN_LOSS_FACTOR
