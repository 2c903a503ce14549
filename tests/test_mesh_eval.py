"""Mesh evaluation: Chamfer distance, exact closest points and colour errors on analytic cases."""

import numpy as np
import pytest
import trimesh

from nerf.datasets.demo import albedo_at, ground_truth_mesh, look_at_opengl, scene_primitives
from nerf.datasets.demo_geometry import trace_rays
from nerf.datasets.demo_truth import demo_color_errors, demo_seen, demo_seen_fn, diffuse_shading
from nerf.evaluation.geometry import (chamfer_l1, chamfer_l1_seen, closest_point_on_triangles,
                                      closest_points_on_mesh, count_components, sample_surface)

N_POINTS = 100_000
SPHERE_SUBDIVISIONS = 5  # icosphere chord sag about 2e-4 of the radius
SAG_TOL = 1e-3  # relative: tessellation of the spheres plus the sampling floor of the Chamfer
FLOOR_TOL = 0.05  # relative: the sampled self-Chamfer against 0.5 sqrt(A / n) (Poisson process)
EXACT_TOL = 1e-9  # closest points against an analytic answer (float64)
UINT8_TOL = 0.5 / 255 + 1e-9  # colours stored as uint8 round by at most half a step
COLOR_GAP = 0.05  # a wrong reference is off by far more than rounding
SHADE_MEDIAN_TOL = 1e-6  # ray-traced vs reconstructed diffuse colour, typical point
SHADE_MEAN_TOL = 0.01  # mean, allowing for the few hits on edges where the face is ambiguous


def sphere(radius: float) -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=SPHERE_SUBDIVISIONS, radius=radius)


def test_concentric_spheres_chamfer_is_the_gap():
    r, d = 1.0, 0.1
    a_to_b, b_to_a, mean = chamfer_l1(sphere(r), sphere(r + d), N_POINTS, seed=1)
    # each sample's nearest neighbour on the other sphere is about d away (plus the tiny sampling
    # spacing in quadrature: sqrt(d^2 + s^2) with s ~ 0.006 adds < 0.2%)
    for value in (a_to_b, b_to_a, mean):
        assert value == pytest.approx(d, rel=0.01)


def test_self_chamfer_is_the_sampling_floor():
    mesh = sphere(0.7)
    a_to_b, b_to_a, mean = chamfer_l1(mesh, mesh, N_POINTS, seed=0)
    floor = 0.5 * np.sqrt(mesh.area / N_POINTS)
    assert mean == pytest.approx(floor, rel=FLOOR_TOL)
    assert a_to_b == pytest.approx(b_to_a, rel=FLOOR_TOL)


def test_chamfer_is_symmetric_in_its_arguments_and_seeded():
    a, b = sphere(1.0), trimesh.creation.box(extents=(2.0, 2.0, 2.0))
    assert chamfer_l1(a, b, 2000, seed=3) == chamfer_l1(a, b, 2000, seed=3)
    ab, ba, _ = chamfer_l1(a, b, N_POINTS // 5, seed=3)
    ab2, ba2, _ = chamfer_l1(b, a, N_POINTS // 5, seed=4)
    assert ab == pytest.approx(ba2, rel=0.02) and ba == pytest.approx(ab2, rel=0.02)
    assert ab != pytest.approx(ba, rel=0.1)  # a sphere inside its box: the directions differ


def test_samples_are_area_uniform_and_on_their_faces():
    # two triangles in the plane z = 0, areas 1 and 3
    vertices = np.array([[0, 0, 0], [2, 0, 0], [0, 1, 0], [10, 0, 0], [13, 0, 0], [10, 2, 0]], float)
    mesh = trimesh.Trimesh(vertices, [[0, 1, 2], [3, 4, 5]], process=False)
    points, faces = sample_surface(mesh, 40_000, np.random.default_rng(0))
    assert np.mean(faces == 1) == pytest.approx(0.75, abs=0.01)
    assert np.all(points[:, 2] == 0.0)
    first = points[faces == 0]
    assert np.all(first[:, 0] / 2 + first[:, 1] <= 1 + EXACT_TOL) and np.all(first[:, :2] >= 0)
    # uniform inside a triangle: the mean is the centroid
    np.testing.assert_allclose(first.mean(0), [2 / 3, 1 / 3, 0], atol=0.01)


def test_closest_points_on_a_box_are_the_clamped_points():
    half = np.array([0.5, 1.0, 1.5])
    box = trimesh.creation.box(extents=2 * half)
    rng = np.random.default_rng(0)
    points = rng.uniform(-4, 4, (3000, 3))
    points = points[np.any(np.abs(points) > half, axis=1)]  # outside: the answer is a clamp
    closest, faces = closest_points_on_mesh(box, points)
    np.testing.assert_allclose(closest, np.clip(points, -half, half), atol=EXACT_TOL)
    # the returned face holds the closest point
    corners = box.triangles[faces]
    on_face = closest_point_on_triangles(closest, corners[:, 0], corners[:, 1], corners[:, 2])
    np.testing.assert_allclose(on_face, closest, atol=EXACT_TOL)


def test_closest_points_on_a_fine_sphere_are_radial():
    r = 0.8
    mesh = sphere(r)
    rng = np.random.default_rng(1)
    directions = rng.normal(size=(2000, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    points = directions * rng.uniform(0.3, 1.6, (2000, 1))  # inside and outside
    closest, _ = closest_points_on_mesh(mesh, points)
    sag = r * 3e-4  # subdivision-5 icosphere: faces lie within this of the sphere
    np.testing.assert_allclose(closest, directions * r, atol=0.02 * r)  # faces are ~0.03 r wide
    assert np.all(np.abs(np.linalg.norm(closest, axis=1) - r) < sag)


def test_albedo_coloured_ground_truth_has_no_albedo_error():
    gt = ground_truth_mesh()
    vertices = gt.vertices[::5]  # every 5th vertex keeps the test fast and covers every solid
    coloured = trimesh.Trimesh(vertices, np.zeros((0, 3), int), process=False)
    coloured.visual.vertex_colors = np.round(albedo_at(vertices) * 255).astype(np.uint8)
    errors = demo_color_errors(coloured, gt)
    assert errors.albedo < UINT8_TOL and errors.n_vertices == len(vertices)
    assert errors.shaded > COLOR_GAP  # the shading darkens most of the scene

    coloured.visual.vertex_colors = np.full((len(vertices), 3), 128, np.uint8)
    assert demo_color_errors(coloured, gt).albedo > COLOR_GAP


def _patch(z: float, x0: float, x1: float, y0: float, y1: float, n: int = 12) -> np.ndarray:
    xs, ys = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n), indexing="ij")
    return np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, z)], 1)


def test_shaded_error_of_analytically_shaded_faces():
    from nerf.datasets.demo_geometry import AMBIENT, DIFFUSE, LIGHT_DIR

    # a patch of the base's top face (normal +z, clear of columns and sphere) and of its -x side
    top = _patch(-0.6, 0.2, 0.4, -0.4, -0.2)
    side = _patch(0.0, -0.72, -0.62, -0.4, 0.4)[:, [2, 1, 0]] + [-0.85, 0.0, 0.0]  # x = -0.85
    parts, colours = [], []
    for points, normal in ((top, np.array([0.0, 0.0, 1.0])), (side, np.array([-1.0, 0.0, 0.0]))):
        shade = AMBIENT + DIFFUSE * max(0.0, float(normal @ LIGHT_DIR))
        parts.append(points)
        colours.append(albedo_at(points) * shade)
    vertices = np.concatenate(parts)
    cloud = trimesh.Trimesh(vertices, np.zeros((0, 3), int), process=False)
    cloud.visual.vertex_colors = np.round(np.concatenate(colours) * 255).astype(np.uint8)
    errors = demo_color_errors(cloud)
    assert errors.shaded < UINT8_TOL
    assert errors.albedo > COLOR_GAP


def test_diffuse_shading_matches_the_ray_tracer():
    # hit points of a demo camera; reconstruct their colour from the GT mesh's nearest face
    eye = np.array([2.5, -2.0, 2.2])
    c2w = look_at_opengl(eye, np.zeros(3))
    rng = np.random.default_rng(0)
    cam = np.stack([rng.uniform(-0.4, 0.4, 4000), rng.uniform(-0.4, 0.4, 4000), -np.ones(4000)], 1)
    d = cam @ c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = np.broadcast_to(eye, d.shape)
    t, ids, rgb = trace_rays(o, d)
    specular = [i for i, p in enumerate(scene_primitives()) if p.specular > 0]
    keep = np.isfinite(t) & ~np.isin(ids, specular)
    hits = o[keep] + t[keep, None] * d[keep]
    gt = ground_truth_mesh()
    nearest, faces = closest_points_on_mesh(gt, hits)
    ours = diffuse_shading(albedo_at(nearest), gt.face_normals[faces])
    diff = np.abs(ours - rgb[keep]).max(axis=1)
    assert keep.sum() > 1000
    assert np.median(diff) < SHADE_MEDIAN_TOL and diff.mean() < SHADE_MEAN_TOL


def test_count_components():
    two = trimesh.util.concatenate([sphere(1.0), sphere(0.5).apply_translation([5.0, 0, 0])])
    assert count_components(two) == 2
    assert count_components(sphere(1.0)) == 1


def _ring_of_cameras(elevation_deg: float, n: int = 8, radius: float = 4.0) -> np.ndarray:
    z = radius * np.sin(np.radians(elevation_deg))
    ring = radius * np.cos(np.radians(elevation_deg))
    eyes = [(ring * np.cos(a), ring * np.sin(a), z) for a in np.linspace(0, 2 * np.pi, n, endpoint=False)]
    return np.stack([look_at_opengl(np.array(e), np.zeros(3)) for e in eyes])


def test_demo_seen_top_but_not_bottom_or_inside():
    base, roof = scene_primitives()[0], scene_primitives()[5]
    assert (base.name, roof.name) == ("base", "roof")
    top = roof.center[2] + roof.half_size[2]
    bottom = base.center[2] - base.half_size[2]
    points = np.array([[0.3, 0.2, top],  # roof top: seen from above
                       [0.3, 0.2, bottom],  # underside of the base: hidden from above
                       [0.3, 0.2, base.center[2]],  # inside the base slab
                       [0.3, 0.2, top - 0.01]])  # just inside the roof: within the tolerance
    seen = demo_seen(points, _ring_of_cameras(45.0), 0.85)
    assert seen.tolist() == [True, False, False, True]
    below = demo_seen(points[:2], _ring_of_cameras(-45.0), 0.85)
    assert below.tolist() == [False, True]
    narrow = demo_seen(points[:1] + [3.0, 0.0, 0.0], _ring_of_cameras(45.0), 0.01)
    assert not narrow.any()  # off every image


def test_seen_chamfer_ignores_the_hidden_bottom():
    """A copy of the ground truth whose hidden bottom is pushed 0.1 up into the base slab scores
    like the ground truth itself on seen surfaces, and worse on the plain Chamfer. (Pushed down
    instead, the dent would be seen: rays from above pass under the base's edge.)"""
    gt = ground_truth_mesh()
    moved = gt.copy()
    v = moved.vertices
    middle = (v[:, 2] < v[:, 2].min() + 1e-9) & (np.abs(v[:, :2]).max(axis=1) < 0.75)
    v[middle, 2] += 0.1
    moved.vertices = v
    cams = _ring_of_cameras(30.0, 16)
    base_seen = chamfer_l1_seen(gt, gt, demo_seen_fn(cams, 0.85), 20_000)
    moved_seen = chamfer_l1_seen(moved, gt, demo_seen_fn(cams, 0.85), 20_000)
    assert 0.1 < base_seen["gt_seen"] < 0.95
    assert moved_seen["chamfer_l1"] < base_seen["chamfer_l1"] * 1.1
    assert chamfer_l1(moved, gt, 20_000)[2] > 1.4 * chamfer_l1(gt, gt, 20_000)[2]
