"""Tests of stratified samples, their intervals, packing and ray/box clipping (nerf/sampling/stratified.py)."""

import math

import pytest
import torch

from nerf.sampling.stratified import ray_aabb_intersect, sample_edges, stratified_samples, to_packed

EXACT_TOL = dict(rtol=1e-6, atol=1e-6)  # float32 arithmetic on distances of order 1-10
STAT_SIGMAS = 5.0  # statistical checks allow 5 standard errors (false alarm ~1e-6)
SLAB_EPS = 1e-4  # step off the box faces when probing inside/outside along a ray


@pytest.fixture
def bounds():
    near = torch.tensor([0.0, 0.5, 2.0, 1.0])
    far = torch.tensor([1.0, 4.0, 2.5, 1.0])  # last ray is empty: near == far
    return near, far


@pytest.mark.parametrize("perturb", [False, True])
@pytest.mark.parametrize("lindisp", [False, True])
def test_samples_inside_bounds_and_sorted(bounds, perturb, lindisp):
    near, far = bounds
    if lindisp:
        near = near + 0.1
        far = far + 0.1
    t = stratified_samples(near, far, 33, perturb, torch.Generator().manual_seed(0), lindisp=lindisp)
    assert t.shape == (4, 33)
    assert bool((t >= near[:, None]).all()) and bool((t <= far[:, None]).all())
    assert bool((t[:, 1:] >= t[:, :-1]).all())


def test_deterministic_samples_are_bin_midpoints(bounds):
    near, far = bounds
    k = 16
    t = stratified_samples(near, far, k, perturb=False)
    centres = (torch.arange(k) + 0.5) / k
    torch.testing.assert_close(t, near[:, None] + (far - near)[:, None] * centres, **EXACT_TOL)


def test_deterministic_lindisp_samples_are_disparity_midpoints():
    near, far = torch.tensor([0.5, 2.0]), torch.tensor([10.0, 3.0])
    k = 8
    t = stratified_samples(near, far, k, perturb=False, lindisp=True)
    s = (torch.arange(k) + 0.5) / k
    disparity = (1 - s) / near[:, None] + s / far[:, None]
    torch.testing.assert_close(1.0 / t, disparity, **EXACT_TOL)


def test_perturbed_sample_stays_in_its_bin_and_is_uniform():
    n, k = 4000, 8
    near, far = torch.full((n,), 1.0), torch.full((n,), 3.0)
    t = stratified_samples(near, far, k, perturb=True, generator=torch.Generator().manual_seed(1))
    frac = (t - near[:, None]) / (far - near)[:, None] * k - torch.arange(k)  # position inside bin
    assert bool((frac >= -1e-5).all()) and bool((frac <= 1 + 1e-5).all())
    # U[0, 1) has mean 1/2 and variance 1/12.
    stderr = math.sqrt(1 / 12 / frac.numel())
    assert abs(float(frac.mean()) - 0.5) < STAT_SIGMAS * stderr


def test_generator_makes_samples_reproducible(bounds):
    near, far = bounds
    a = stratified_samples(near, far, 5, True, torch.Generator().manual_seed(3))
    b = stratified_samples(near, far, 5, True, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_lindisp_needs_positive_near():
    with pytest.raises(ValueError, match="near > 0"):
        stratified_samples(torch.zeros(2), torch.ones(2), 4, False, lindisp=True)


def test_edges_tile_near_to_far_and_pack(bounds):
    near, far = bounds
    t = stratified_samples(near, far, 6, True, torch.Generator().manual_seed(2))
    edges = sample_edges(t, near, far)
    assert edges.shape == (4, 7)
    torch.testing.assert_close(edges[:, 0], near)
    torch.testing.assert_close(edges[:, -1], far)
    # Every sample lies inside the interval it owns.
    assert bool((edges[:, :-1] <= t).all()) and bool((t <= edges[:, 1:]).all())
    t_starts, t_ends, ray_indices = to_packed(edges)
    assert t_starts.shape == t_ends.shape == ray_indices.shape == (24,)
    assert ray_indices.dtype == torch.int64
    assert torch.equal(ray_indices, torch.arange(4).repeat_interleave(6))
    lengths = torch.zeros(4).index_add(0, ray_indices, t_ends - t_starts)
    torch.testing.assert_close(lengths, far - near, **EXACT_TOL)


UNIT_BOX = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


@pytest.mark.parametrize(
    "origin, direction, expected",
    [
        ((-3.0, 0.0, 0.0), (1.0, 0.0, 0.0), (2.0, 4.0)),  # axis-aligned, through the middle
        ((0.0, 0.0, 5.0), (0.0, 0.0, -1.0), (4.0, 6.0)),  # negative direction
        ((0.5, -3.0, 0.2), (0.0, 1.0, 0.0), (2.0, 4.0)),  # two zero components
        ((0.5, -3.0, 0.2), (-0.0, 1.0, -0.0), (2.0, 4.0)),  # negative zeros
        ((1.0, -3.0, -1.0), (0.0, 1.0, 0.0), (2.0, 4.0)),  # zero components with origin on faces
        ((0.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 1.0)),  # origin inside
        ((0.2, 0.3, -0.4), (1 / math.sqrt(3),) * 3, (0.0, 0.7 * math.sqrt(3))),  # inside, diagonal, exits through y = 1
        ((-3.0, -3.0, -3.0), (1 / math.sqrt(3),) * 3, (2 * math.sqrt(3), 4 * math.sqrt(3))),  # corner to corner
    ],
)
def test_ray_aabb_intersect_hits(origin, direction, expected):
    t_near, t_far, hit = ray_aabb_intersect(torch.tensor([origin]), torch.tensor([direction]), UNIT_BOX)
    assert bool(hit[0])
    torch.testing.assert_close(t_near, torch.tensor([expected[0]]), **EXACT_TOL)
    torch.testing.assert_close(t_far, torch.tensor([expected[1]]), **EXACT_TOL)


@pytest.mark.parametrize(
    "origin, direction",
    [
        ((-3.0, 2.0, 0.0), (1.0, 0.0, 0.0)),  # passes above the box
        ((2.0, -3.0, 0.0), (0.0, 1.0, 0.0)),  # zero component, origin outside that slab
        ((3.0, 0.0, 0.0), (1.0, 0.0, 0.0)),  # box behind the origin
        ((1.0, 0.0, 0.0), (1.0, 0.0, 0.0)),  # leaves from a face: zero-length segment
        ((-3.0, -1.0, 0.0), (1.0, 1.0, 0.0)),  # touches only the edge x = -1, y = 1
        ((-3.0, 0.0, 0.0), (0.6, 0.8, 0.0)),  # oblique, misses
    ],
)
def test_ray_aabb_intersect_misses(origin, direction):
    t_near, t_far, hit = ray_aabb_intersect(torch.tensor([origin]), torch.tensor([direction]), UNIT_BOX)
    assert not bool(hit[0])
    assert float(t_near[0]) == 0.0 and float(t_far[0]) == 0.0


def _inside(points, aabb, eps):
    return ((points >= aabb[0] - eps) & (points <= aabb[1] + eps)).all(dim=-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ray_aabb_intersect_matches_point_probes(dtype):
    """Random rays against a non-cubic box, checked by probing points along each ray."""
    g = torch.Generator().manual_seed(4)
    aabb = torch.tensor([[-1.0, -0.5, 0.0], [2.0, 0.5, 3.0]], dtype=dtype)
    n = 1000
    origins = torch.rand(n, 3, generator=g, dtype=dtype) * 8 - 3
    directions = torch.randn(n, 3, generator=g, dtype=dtype)
    directions[::7, 0] = 0.0  # plenty of zero components
    directions[::11, 1:] = 0.0
    directions = directions / directions.norm(dim=-1, keepdim=True)
    t_near, t_far, hit = ray_aabb_intersect(origins, directions, aabb)

    # Hits: just inside at both ends, just outside beyond them (where in front of the origin).
    o, d = origins[hit], directions[hit]
    tn, tf = t_near[hit, None], t_far[hit, None]
    assert bool((tf > tn).all()) and bool((tn >= 0).all())
    width = (tf - tn).clamp(max=2 * SLAB_EPS)
    assert bool(_inside(o + d * (tn + width / 2), aabb, 0).all())
    assert bool(_inside(o + d * (tf - width / 2), aabb, 0).all())
    assert not bool(_inside(o + d * (tf + SLAB_EPS), aabb, 0).any())
    before = tn[:, 0] > SLAB_EPS
    assert not bool(_inside((o + d * (tn - SLAB_EPS))[before], aabb, 0).any())

    # Misses: no point of the ray in front of the origin is strictly inside the box.
    ts = torch.linspace(0, 20, 2001, dtype=dtype)
    points = origins[~hit, None, :] + directions[~hit, None, :] * ts[:, None]
    strictly_inside = ((points > aabb[0] + SLAB_EPS) & (points < aabb[1] - SLAB_EPS)).all(dim=-1)
    assert not bool(strictly_inside.any())
    assert int(hit.sum()) > 50 and int((~hit).sum()) > 50  # both cases exercised


def test_ray_aabb_intersect_rejects_bad_shapes():
    with pytest.raises(ValueError, match="aabb"):
        ray_aabb_intersect(torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="origins and directions"):
        ray_aabb_intersect(torch.zeros(2, 3), torch.ones(3, 3), UNIT_BOX)
