"""The demo scene through our Blender reader: ground-truth depth along our rays lands on the mesh.

This ties three conventions together: the demo writer's OpenGL poses and +0.5 pixel centres,
our `opengl_to_opencv` and intrinsics, and the Scene normalisation (t scales by the transform's
scale s, and points map back with its inverse).
"""

import json

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from nerf.datasets import load_scene
from nerf.datasets.demo import DemoSceneConfig, make_demo_scene, scene_aabb

SURFACE_TOL = 1e-3  # of the scene size (aabb diagonal); the mesh's chord sag is ~2e-4 r or less
MAX_POINTS = 3000  # proximity queries are the slow part
CANDIDATE_FACES = 16  # nearest face centroids searched per point


def _segment_distance(p, a, b):  # [M, 3] each -> [M]
    ab = b - a
    t = np.clip(np.einsum("ij,ij->i", p - a, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-30), 0, 1)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


def point_triangle_distance(p, a, b, c):  # [M, 3] each -> [M]
    """Exact distance from points to triangles: to the plane when the foot is inside, else to an edge."""
    n = np.cross(b - a, c - a)
    n_norm = np.linalg.norm(n, axis=1, keepdims=True)
    n_hat = n / np.maximum(n_norm, 1e-30)
    height = np.einsum("ij,ij->i", p - a, n_hat)
    foot = p - height[:, None] * n_hat
    v0, v1, v2 = b - a, c - a, foot - a
    d00, d01, d11 = (np.einsum("ij,ij->i", x, y) for x, y in ((v0, v0), (v0, v1), (v1, v1)))
    d20, d21 = np.einsum("ij,ij->i", v2, v0), np.einsum("ij,ij->i", v2, v1)
    denom = np.maximum(d00 * d11 - d01 * d01, 1e-30)
    v = (d11 * d20 - d01 * d21) / denom
    w = (d00 * d21 - d01 * d20) / denom
    inside = (v >= 0) & (w >= 0) & (v + w <= 1) & (n_norm[:, 0] > 1e-15)
    edges = np.minimum(np.minimum(_segment_distance(p, a, b), _segment_distance(p, b, c)), _segment_distance(p, c, a))
    return np.where(inside, np.abs(height), edges)


def distance_to_mesh(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:  # [P, 3] -> [P]
    """Distance to the nearest of each point's CANDIDATE_FACES nearest faces (by centroid).

    Searching a subset can only over-estimate the true distance, so a pass is conclusive.
    """
    tri = mesh.triangles  # [F, 3, 3]
    _, idx = cKDTree(tri.mean(axis=1)).query(points, k=CANDIDATE_FACES)  # [P, K]
    rep = np.repeat(points, CANDIDATE_FACES, axis=0)
    flat = idx.reshape(-1)
    d = point_triangle_distance(rep, tri[flat, 0], tri[flat, 1], tri[flat, 2])
    return d.reshape(len(points), CANDIDATE_FACES).min(axis=1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    cfg = DemoSceneConfig(resolution=40, n_train=3, n_val=1, n_test=2, supersample=1)
    root = make_demo_scene(tmp_path_factory.mktemp("demo") / "scene", cfg)
    return root, load_scene(root)


def frame_depths(root):
    """GT depth maps [H, W] in the scene's camera order (train, val, test frames)."""
    depths = []
    for split in ("train", "val", "test"):
        for frame in json.loads((root / f"transforms_{split}.json").read_text())["frames"]:
            depths.append(np.load(root / frame["depth_path"]))
    return depths


def test_gt_depth_along_our_rays_lands_on_the_mesh(demo):
    root, scene = demo
    depths = frame_depths(root)
    assert len(depths) == len(scene.cameras) == 6
    scale = float(torch.linalg.det(scene.transform[:3, :3].double()) ** (1 / 3))
    inverse = torch.linalg.inv(scene.transform.double())
    points = []
    for i, depth in enumerate(depths):
        assert depth.shape == (scene.height, scene.width)
        rows, cols = np.nonzero(np.isfinite(depth))
        assert 0 < len(rows) < depth.size  # the temple is in view, and so is background
        ci = torch.full((len(rows),), i)
        origins, dirs = scene.cameras.pixel_rays(ci, torch.from_numpy(cols), torch.from_numpy(rows))
        t = torch.from_numpy(depth[rows, cols]).double() * scale  # original units -> normalised
        normalised = origins.double() + t[:, None] * dirs.double()
        points.append((normalised @ inverse[:3, :3].T + inverse[:3, 3]).numpy())
    points = np.concatenate(points)
    points = points[np.random.default_rng(0).permutation(len(points))[:MAX_POINTS]]

    mesh = trimesh.load(root / "mesh_gt.ply", force="mesh")
    size = float(np.linalg.norm(np.diff(scene_aabb(), axis=0)))
    distance = distance_to_mesh(mesh, points)
    assert distance.max() < SURFACE_TOL * size, f"worst point is {distance.max() / size:.2e} of the scene size off"


def test_point_triangle_distance_against_known_cases():
    a, b, c = (np.array([[0.0, 0.0, 0.0]]), np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
    cases = {(0.2, 0.2, 0.5): 0.5, (2.0, 0.0, 0.0): 1.0, (-1.0, -1.0, 0.0): np.sqrt(2.0), (1.0, 1.0, 0.0): np.sqrt(0.5)}
    for point, expected in cases.items():
        assert point_triangle_distance(np.array([point]), a, b, c)[0] == pytest.approx(expected)


def test_demo_scene_is_inside_the_normalised_box(demo):
    _, scene = demo
    corners = torch.from_numpy(scene_aabb()).float()
    moved = corners @ scene.transform[:3, :3].T + scene.transform[:3, 3]
    assert bool((moved >= scene.aabb[0]).all() and (moved <= scene.aabb[1]).all())
    assert scene.images.shape[-1] == 4 and scene.background.tolist() == [1.0, 1.0, 1.0]
