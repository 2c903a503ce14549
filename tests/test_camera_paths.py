"""Tests of camera paths (nerf/export/camera_paths.py) against geometric ground truth."""

import json
import math

import numpy as np
import pytest
import torch

from nerf.cameras import Cameras
from nerf.errors import ExportError
from nerf.export.camera_paths import (
    interpolate_path,
    load_nerfstudio_camera_path,
    look_at,
    orbit_path,
    spiral_path,
)

AIM_TOL = 1e-4  # radians between a camera's forward axis and the direction to its target
POSE_TOL = 1e-5  # float32 poses built in float64
W, H = 64, 48


def angle_to_target(cameras: Cameras, target) -> torch.Tensor:  # [C] radians
    """Angle between each camera's +z axis and the direction to `target` (atan2: exact near 0)."""
    fwd = cameras.forward.double()
    to_target = torch.as_tensor(target, dtype=torch.float64) - cameras.centers.double()
    cross = torch.linalg.cross(fwd, to_target).norm(dim=-1)
    return torch.atan2(cross, (fwd * to_target).sum(-1))


def assert_rotations(c2w: torch.Tensor) -> None:
    rot = c2w[:, :3, :3].double()
    eye = torch.eye(3, dtype=torch.float64).expand_as(rot)
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, eye, atol=POSE_TOL, rtol=0)
    ones = torch.ones(len(rot), dtype=torch.float64)
    torch.testing.assert_close(torch.linalg.det(rot), ones, atol=POSE_TOL, rtol=0)


def rodrigues(axis, angle) -> torch.Tensor:  # [3, 3] rotation about a unit axis
    k = torch.as_tensor(axis, dtype=torch.float64)
    k = k / k.norm()
    kx = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


def test_look_at_opencv_axes():
    eye, target, up = [1.0, 2.0, 3.0], [0.0, 0.5, -1.0], [0.0, 0.0, 1.0]
    c2w = look_at(eye, target, up)
    assert c2w.shape == (4, 4)
    assert_rotations(c2w[None])
    cam = Cameras.create(c2w[None], 50.0, 50.0, W / 2, H / 2, W, H)
    assert float(angle_to_target(cam, target)[0]) < AIM_TOL
    torch.testing.assert_close(cam.centers[0], torch.tensor(eye))
    assert float(c2w[:3, 1] @ torch.tensor(up)) < 0  # image y (down) points against world up
    # a point above the target projects above the image centre (smaller row)
    xy, depth = cam.project(torch.tensor([target]) + torch.tensor([[0.0, 0.0, 0.3]]), torch.tensor([0]))
    assert float(xy[0, 1]) < H / 2 and float(depth[0]) > 0
    with pytest.raises(ExportError, match="parallel"):
        look_at([0, 0, 0], [0, 0, 1], [0, 0, 1])


def test_orbit_aims_at_center_and_closes():
    center, up, radius, elevation, n = [0.2, -0.1, 0.3], [0.0, 0.3, 1.0], 2.5, 25.0, 36
    cams = orbit_path(center, up, radius, elevation, n, W, H, fov_deg=40.0)
    assert len(cams) == n and int(cams.width[0]) == W and int(cams.height[0]) == H
    assert float(angle_to_target(cams, center).max()) < AIM_TOL
    assert_rotations(cams.c2w)
    c = torch.tensor(center, dtype=torch.float64)
    u = torch.tensor(up, dtype=torch.float64) / torch.tensor(up, dtype=torch.float64).norm()
    offsets = cams.centers.double() - c
    ones = torch.ones(n, dtype=torch.float64)
    torch.testing.assert_close(offsets.norm(dim=-1), radius * ones, atol=POSE_TOL, rtol=0)
    sin_el = (offsets @ u) / radius
    torch.testing.assert_close(sin_el, math.sin(math.radians(elevation)) * ones, atol=POSE_TOL, rtol=0)
    # one step = rotation by 2 pi / n about the up axis; stepping the last frame gives frame 0
    step = rodrigues(u, 2 * math.pi / n)
    pose = cams.c2w.double()
    nxt = torch.cat([pose[1:], pose[:1]])  # frame k+1, with frame n == frame 0
    torch.testing.assert_close(step @ offsets.T, (nxt[:, :3, 3] - c).T, atol=POSE_TOL, rtol=0)
    torch.testing.assert_close(step @ pose[:, :3, :3], nxt[:, :3, :3], atol=POSE_TOL, rtol=0)
    # vertical field of view: the image's top edge sees 20 degrees above the optical axis
    assert float(cams.fy[0]) == pytest.approx((H / 2) / math.tan(math.radians(20.0)), rel=1e-6)


def test_orbit_start_direction():
    cams = orbit_path([0, 0, 0], [0, 0, 1], 2.0, 0.0, 8, W, H, 50.0, start_direction=[0.0, -1.0, 0.5])
    torch.testing.assert_close(cams.centers[0], torch.tensor([0.0, -2.0, 0.0]), atol=POSE_TOL, rtol=0)


def forward_facing_cameras(target=(0.1, -0.2, 0.0), distance=4.0) -> Cameras:
    """A 3x3 grid of cameras on a plane, all aimed at `target`."""
    eyes = [[x, y, -distance] for x in (-0.6, 0.0, 0.6) for y in (-0.4, 0.0, 0.4)]
    c2w = torch.stack([look_at(e, target, [0.0, -1.0, 0.0]) for e in eyes])
    return Cameras.create(c2w, 60.0, 60.0, W / 2, H / 2, W, H)


def test_spiral_aims_at_focus_point():
    target = (0.1, -0.2, 0.0)
    cams = forward_facing_cameras(target)
    path = spiral_path(cams, n_frames=40, n_rotations=2)
    assert len(path) == 40
    assert float(angle_to_target(path, target).max()) < AIM_TOL  # focus = where the axes meet
    assert_rotations(path.c2w)
    torch.testing.assert_close(path.fx, cams.fx[:1].expand(40))
    offsets = path.centers - cams.centers.mean(0)
    assert float(offsets.norm(dim=-1).max()) < 1.0  # stays near the captured cameras
    assert float(offsets.norm(dim=-1).min()) > 0.0


def test_spiral_focus_from_bounds_and_parallel_error():
    eyes = torch.tensor([[x, y, 0.0] for x in (-0.5, 0.5) for y in (-0.3, 0.3)])
    c2w = torch.eye(4).repeat(4, 1, 1)
    c2w[:, :3, 3] = eyes  # identical orientations: optical axes never meet
    cams = Cameras.create(c2w, 60.0, 60.0, W / 2, H / 2, W, H)
    with pytest.raises(ExportError, match="focus_distance"):
        spiral_path(cams, 10)
    near, far = 2.0, 10.0
    path = spiral_path(cams, 10, near=near, far=far)
    focus = 1.0 / (0.25 / near + 0.75 / far)
    assert float(angle_to_target(path, [0.0, 0.0, focus]).max()) < AIM_TOL
    path = spiral_path(cams, 10, focus_distance=3.0)
    assert float(angle_to_target(path, [0.0, 0.0, 3.0]).max()) < AIM_TOL


def test_interpolate_passes_through_knots():
    keys = orbit_path([0, 0, 0], [0, 0, 1], 3.0, 20.0, 12, W, H, 45.0)[[0, 2, 5, 7, 9]]
    per_segment = 6
    n = per_segment * (len(keys) - 1) + 1
    path = interpolate_path(keys, n)
    assert len(path) == n
    torch.testing.assert_close(path.c2w[::per_segment], keys.c2w, atol=POSE_TOL, rtol=0)
    assert_rotations(path.c2w)
    # smooth: neighbouring frames differ little compared with the spacing of the keys
    steps = (path.centers[1:] - path.centers[:-1]).norm(dim=-1)
    assert float(steps.max()) < 2.0 * float(steps.mean())


def test_interpolate_rescales_intrinsics():
    c2w = torch.stack([look_at([x, 0, -3], [0, 0, 0], [0, -1, 0]) for x in (0.0, 1.0)])
    keys = Cameras.create(c2w, torch.tensor([50.0, 100.0]), torch.tensor([50.0, 100.0]),
                          torch.tensor([32.0, 64.0]), torch.tensor([24.0, 48.0]),
                          torch.tensor([64, 128]), torch.tensor([48, 96]))
    path = interpolate_path(keys, 3)
    assert bool((path.width == 64).all()) and bool((path.height == 48).all())
    torch.testing.assert_close(path.fx, torch.full((3,), 50.0))  # same field of view at both keys
    with pytest.raises(ExportError, match="at least 2"):
        interpolate_path(keys[[0]], 5)


def opencv_to_opengl(c2w: torch.Tensor) -> torch.Tensor:
    out = c2w.clone()
    out[..., :3, 1:3] *= -1
    return out


def write_camera_path(path, c2w_opencv, fov=50.0, **extra):
    data = {
        "camera_type": "perspective", "render_height": H, "render_width": W, "fps": 30, "seconds": 2,
        "camera_path": [
            {"camera_to_world": opencv_to_opengl(m).reshape(-1).tolist(), "fov": fov, "aspect": W / H}
            for m in c2w_opencv
        ],
        "keyframes": [],
    }
    data.update(extra)
    path.write_text(json.dumps(data))
    return path


def test_load_nerfstudio_camera_path(tmp_path):
    target = [0.0, 0.0, 0.0]
    c2w = torch.stack([look_at([3.0, 0.0, z], target, [0.0, 0.0, 1.0]) for z in (0.5, 1.0, 1.5)])
    file = write_camera_path(tmp_path / "camera_path.json", c2w)
    scale, shift = 0.5, torch.tensor([0.1, 0.2, -0.3])
    transform = torch.eye(4)
    transform[:3, :3] = scale * rodrigues([0.0, 0.0, 1.0], 0.7).float()
    transform[:3, 3] = shift
    path = load_nerfstudio_camera_path(file)
    assert path.fps == 30.0 and len(path.cameras) == 3 and path.crop is None
    torch.testing.assert_close(path.cameras.c2w, c2w)
    cams = path.transformed(transform).cameras
    mapped_target = transform[:3, :3] @ torch.tensor(target) + shift
    assert float(angle_to_target(cams, mapped_target).max()) < AIM_TOL
    expected_centers = c2w[:, :3, 3] @ transform[:3, :3].T + shift
    torch.testing.assert_close(cams.centers, expected_centers, atol=POSE_TOL, rtol=0)
    assert_rotations(cams.c2w)
    # vertical fov 50 degrees: a point 25 degrees above the axis lands on the top image edge
    assert float(cams.fy[0]) == pytest.approx((H / 2) / math.tan(math.radians(25.0)), rel=1e-6)
    assert float(cams.cx[0]) == W / 2 and float(cams.cy[0]) == H / 2


def test_nerfstudio_path_resized_keeps_the_vertical_field_of_view(tmp_path):
    c2w = torch.stack([look_at([3.0, 0.0, 1.0], [0, 0, 0], [0, 0, 1])] * 2)
    path = load_nerfstudio_camera_path(write_camera_path(tmp_path / "p.json", c2w, fov=40.0))
    for width, height, expect in ((2 * W, 0, (2 * W, 2 * H)), (0, H // 2, (W // 2, H // 2)), (W, 3 * H, (W, 3 * H))):
        cams = path.resized(width, height).cameras
        assert (int(cams.width[0]), int(cams.height[0])) == expect
        top = math.degrees(2 * math.atan(0.5 * expect[1] / float(cams.fy[0])))
        assert top == pytest.approx(40.0, rel=1e-6) and float(cams.fx[0]) == float(cams.fy[0])
        assert (float(cams.cx[0]), float(cams.cy[0])) == (expect[0] / 2, expect[1] / 2)


def test_nerfstudio_crop_is_read(tmp_path):
    c2w = torch.stack([look_at([3.0, 0.0, 1.0], [0, 0, 0], [0, 0, 1])])
    crop = {"crop_center": [0.1, 0.2, 0.3], "crop_scale": [1.0, 2.0, 4.0], "crop_rot": [0.0, 0.0, math.pi / 2],
            "crop_bg_color": {"r": 255, "g": 0, "b": 51}}
    path = load_nerfstudio_camera_path(write_camera_path(tmp_path / "p.json", c2w, crop=crop))
    torch.testing.assert_close(path.crop_background, torch.tensor([1.0, 0.0, 0.2]))
    # yaw 90 degrees: the box's x side (length 1) lies along world y, its y side (2) along world x
    inside = torch.tensor([[0.1 + 0.9, 0.2 + 0.45, 0.3 + 1.9]], dtype=torch.float64)
    outside = torch.tensor([[0.1, 0.2 + 0.55, 0.3], [0.1 + 1.1, 0.2, 0.3], [0.1, 0.2, 0.3 + 2.1]], dtype=torch.float64)
    assert path.crop.contains(inside).all() and not path.crop.contains(outside).any()
    moved = path.transformed(torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
    assert moved.crop.contains(2 * inside).all() and not moved.crop.contains(2 * outside).any()


def test_nerfstudio_fps_from_seconds(tmp_path):
    c2w = torch.stack([look_at([3.0, 0.0, 1.0], [0, 0, 0], [0, 0, 1])] * 4)
    file = write_camera_path(tmp_path / "p.json", c2w, fps=None, seconds=2.0)
    assert load_nerfstudio_camera_path(file).fps == pytest.approx(2.0)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"camera_path": []}, "non-empty"),
        ({"camera_type": "equirectangular"}, "not supported"),
        ({"render_width": None}, "integers"),
        ({"camera_path": [{"camera_to_world": [1.0] * 9, "fov": 50}]}, "16 finite numbers"),
        ({"camera_path": [{"fov": 50}]}, "camera_to_world"),
        ({"camera_path": [{"camera_to_world": np.eye(4).reshape(-1).tolist(), "fov": 200}]}, "field of view"),
        ({"camera_path": [{"camera_to_world": (2 * np.eye(4)).reshape(-1).tolist(), "fov": 50}]},
         r"camera_path\[0\]: camera_to_world bottom row"),
        ({"camera_path": [{"camera_to_world": np.diag([2.0, 1, 1, 1]).reshape(-1).tolist(), "fov": 50}]},
         r"camera_path\[0\]: camera_to_world is not a rotation"),
        ({"crop": {"crop_center": [0, 0, 0], "crop_scale": [1, -1, 1]}}, "crop_scale positive"),
        ({"crop": {"crop_center": [0, 0]}}, "'crop' has no 'crop_scale'"),
        ({"fps": None, "seconds": None}, "fps"),
    ],
)
def test_nerfstudio_bad_fields(tmp_path, change, message):
    c2w = torch.stack([look_at([3.0, 0.0, 1.0], [0, 0, 0], [0, 0, 1])])
    file = write_camera_path(tmp_path / "bad.json", c2w, **change)
    with pytest.raises(ExportError, match=message) as err:
        load_nerfstudio_camera_path(file)
    assert "bad.json" in str(err.value)


def test_nerfstudio_bad_json(tmp_path):
    file = tmp_path / "broken.json"
    file.write_text('{"camera_path": [')
    with pytest.raises(ExportError, match="broken.json.*not valid JSON"):
        load_nerfstudio_camera_path(file)
    with pytest.raises(ExportError, match="not found"):
        load_nerfstudio_camera_path(tmp_path / "missing.json")


def test_orbit_elevation_below_the_horizon_is_used_not_replaced_by_the_mean(tiny_run):
    """Only exactly -1 means "the training cameras' mean"; -30 orbits 30 degrees below."""
    from nerf.config import RenderConfig
    from nerf.jobs.render import camera_path
    from nerf.jobs.run import load_trained_run
    from nerf.rotations import mean_up

    run = load_trained_run(tiny_run, "cpu")
    train = run.scene.cameras[run.scene.splits["train"]]
    up = torch.as_tensor(mean_up(train.c2w), dtype=torch.float32)
    up = up / up.norm()
    center = (run.scene.aabb[0] + run.scene.aabb[1]) / 2
    for elevation in (-30.0, 30.0):
        cams = camera_path(run, RenderConfig(run=str(tiny_run), elevation=elevation, frames=4)).cameras
        rel = cams.centers - center
        sines = (rel / rel.norm(dim=-1, keepdim=True)) @ up
        torch.testing.assert_close(sines, torch.full((4,), math.sin(math.radians(elevation))), atol=1e-4, rtol=0)
