"""Tests of seen-empty space from depth maps (nerf/export/visibility.py).

One pinhole camera at the origin looks along +z at the plane z = PLANE; its depth map is the
exact ray distance to that plane, so which points it saw empty is known in closed form.
"""

import math

import pytest
import torch

from nerf.cameras import Cameras
from nerf.export.visibility import OPAQUE, free_distances, seen_empty

W = H = 16
FOCAL = 16.0
PLANE = 2.0


def camera() -> Cameras:
    return Cameras.create(torch.eye(4)[None], FOCAL, FOCAL, W / 2, H / 2, W, H)


def plane_maps() -> tuple[torch.Tensor, torch.Tensor]:  # depth [1, H, W], opacity [1, H, W]
    """Ray distance to z = PLANE through every pixel centre, and full opacity."""
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    direction_norm = torch.sqrt(((u - W / 2) / FOCAL) ** 2 + ((v - H / 2) / FOCAL) ** 2 + 1.0)
    return (PLANE * direction_norm)[None], torch.ones(1, H, W)


def test_points_in_front_of_the_surface_are_seen_and_behind_are_not():
    depth, opacity = plane_maps()
    free = free_distances(depth, opacity)
    points = torch.tensor([
        [0.0, 0.0, 1.0],  # in front, centre of the image
        [0.3, -0.2, 1.5],  # in front, off-centre
        [0.0, 0.0, 2.5],  # behind the plane
        [0.0, 0.0, PLANE - 0.05],  # in front, but within the margin
        [5.0, 0.0, 1.0],  # outside the image
        [0.0, 0.0, -1.0],  # behind the camera
    ])
    seen = seen_empty(points, camera(), free, margin=0.1)
    assert seen.tolist() == [True, True, False, False, False, False]
    assert bool(seen_empty(points[3:4], camera(), free, margin=0.0))


def test_background_pixels_see_empty_space_along_the_whole_ray():
    depth, opacity = plane_maps()
    opacity[0, :, : W // 2] = 0.0  # the left half renders background (x < 0 in the image)
    free = free_distances(depth, opacity)
    far_left, far_right = torch.tensor([[-0.5, 0.0, 4.0]]), torch.tensor([[0.5, 0.0, 4.0]])
    assert bool(seen_empty(far_left, camera(), free, margin=0.1))
    assert not bool(seen_empty(far_right, camera(), free, margin=0.1))


def test_free_distances_are_surface_distances_or_far():
    depth = torch.full((1, 7, 7), 3.0)
    opacity = torch.ones(1, 7, 7)
    opacity[0, 0, 0] = OPAQUE  # not above OPAQUE: background
    free = free_distances(depth, opacity)
    assert math.isinf(float(free[0, 0, 0]))
    free[0, 0, 0] = 3.0
    assert torch.equal(free, depth)
    with pytest.raises(ValueError, match="must both be"):
        free_distances(depth, opacity[0])


def test_maps_must_match_the_cameras():
    depth, opacity = plane_maps()
    free = free_distances(depth, opacity)
    with pytest.raises(ValueError, match="2 cameras for 1"):
        seen_empty(torch.zeros(1, 3), Cameras.create(torch.eye(4).expand(2, 4, 4), FOCAL, FOCAL,
                                                     W / 2, H / 2, W, H), free, 0.1)
    with pytest.raises(ValueError, match="smaller than"):
        seen_empty(torch.zeros(1, 3), camera(), free[:, :8, :8], 0.1)
