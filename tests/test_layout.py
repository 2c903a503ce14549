"""The camera layout picks the normalisation of a COLMAP capture: forward-facing (LLFF-style,
depth bounds from the sparse points) or the object rule of a 360-degree capture."""

import numpy as np
import pytest

from nerf.datasets import load_scene
from nerf.datasets.colmap_io import ColmapCamera, ColmapImage, ColmapModel, ColmapPoint3D, write_model
from nerf.datasets.normalize import camera_layout
from synthetic_scenes import look_at_opencv, matrix_to_quaternion, ring_eyes, write_image

SIZE = (8, 6)
NEAR, FAR = 3.0, 12.0  # depth range of the synthetic points in front of the rig


def _forward_rig(n: int = 9) -> np.ndarray:  # [n, 4, 4] cameras on a 3x3 grid, all looking +y
    eyes = [np.array([x, 0.0, z]) for x in (-0.5, 0.0, 0.5) for z in (-0.3, 0.0, 0.3)][:n]
    return np.stack([look_at_opencv(e, e + np.array([0.1 * e[0], 1.0, 0.0])) for e in eyes])


def _write(root, c2w: np.ndarray, n_points: int = 300, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    # points spread across the view at depths NEAR..FAR ahead of the rig (+y)
    pts = np.stack([rng.uniform(-2, 2, n_points), rng.uniform(NEAR, FAR, n_points), rng.uniform(-1.5, 1.5, n_points)], 1)
    points = {i + 1: ColmapPoint3D(i + 1, p, np.zeros(3, np.uint8), 0.5, np.arange(1, len(c2w) + 1),
                                   np.zeros(len(c2w), np.int64)) for i, p in enumerate(pts)}
    images = {}
    for i, pose in enumerate(c2w):
        rot = pose[:3, :3].T
        images[i + 1] = ColmapImage(i + 1, matrix_to_quaternion(rot), -rot @ pose[:3, 3], 1, f"{i:03d}.png",
                                    np.zeros((n_points, 2)), np.arange(1, n_points + 1, dtype=np.int64))
        write_image(root / "images" / f"{i:03d}.png", *SIZE, seed=i)
    cameras = {1: ColmapCamera(1, "PINHOLE", SIZE[0], SIZE[1], np.array([7.0, 7.0, 4.0, 3.0]))}
    write_model(ColmapModel(cameras, images, points), root / "sparse" / "0")


def test_layout_of_a_rig_and_of_an_orbit():
    assert camera_layout(_forward_rig()) == "forward"
    orbit = np.stack([look_at_opencv(e) for e in ring_eyes(12)])
    assert camera_layout(orbit) == "360"
    half = np.stack([look_at_opencv(e) for e in ring_eyes(24)[:12]])  # a half orbit is still 360
    assert camera_layout(half) == "360"


def test_forward_facing_colmap_capture_gets_depth_bounds(tmp_path):
    _write(tmp_path, _forward_rig())
    scene = load_scene(tmp_path)
    assert scene.near is not None and scene.far is not None  # the forward-facing rule's bounds
    scale = float(np.linalg.det(scene.transform[:3, :3].double().numpy()) ** (1 / 3))
    # the rule scales the 90th percentile far bound to 2 units; near is the smallest near bound
    assert scene.near == pytest.approx(NEAR * scale, rel=0.15)
    assert scene.far > 1.9


def test_orbit_colmap_capture_keeps_the_object_rule(tmp_path):
    _write(tmp_path, np.stack([look_at_opencv(e) for e in ring_eyes(9)]))
    scene = load_scene(tmp_path)
    assert scene.near is None and scene.unbounded
    assert scene.aabb.abs().max() == pytest.approx(4.0)
