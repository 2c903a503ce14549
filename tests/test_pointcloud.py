"""Tests of depth fusion (nerf/export/pointcloud.py) on analytically rendered planes."""

import numpy as np
import pytest
import torch
import trimesh

from nerf.cameras import Cameras
from nerf.errors import ExportError
from nerf.export.camera_paths import look_at
from nerf.export.pointcloud import fuse_depth_points, ray_distance_to_z, save_point_cloud, tsdf_fusion

W, H = 40, 30
PLANE_TOL = 1e-4  # float32 points a few units from the origin
COLOR_TOL = 1  # uint8 steps
VOXEL = 0.02  # TSDF voxel length


def plane_cameras(scale: float = 1.0) -> Cameras:
    """Cameras above the plane z = 0, one looking straight down, others oblique (size W, H x scale)."""
    eyes = [[0.0, 0.0, 3.0], [1.0, 0.5, 2.5], [-1.0, -0.5, 2.0], [0.5, -1.0, 2.5]]
    targets = [[0.0, 0.0, 0.0], [0.2, 0.1, 0.0], [-0.2, 0.0, 0.0], [0.0, -0.2, 0.0]]
    c2w = torch.stack([look_at(e, t, [0.0, 1.0, 0.0]) for e, t in zip(eyes, targets)])
    return Cameras.create(c2w, 35.0, 35.0, W / 2, H / 2, W, H).scaled(scale)


def render_plane(cameras: Cameras):
    """Ray distance to z = 0 for every pixel (analytic), a colour per pixel, full opacity."""
    depths, rgbs = [], []
    for i in range(len(cameras)):
        origins, dirs = cameras.image_rays(i)
        t = -origins[..., 2] / dirs[..., 2]
        hit = origins + t[..., None] * dirs
        depths.append(t)
        rgb = torch.stack([(hit[..., 0] + 2) / 4, (hit[..., 1] + 2) / 4, torch.full_like(t, 0.5)], -1)
        rgbs.append(rgb.clamp(0, 1))
    depths, rgbs = torch.stack(depths), torch.stack(rgbs)
    return depths, rgbs, torch.ones_like(depths)


def test_fused_points_lie_on_plane():
    cams = plane_cameras()
    depths, rgbs, opacity = render_plane(cams)
    opacity[0, :5] = 0.2  # background rows are skipped
    points, colors = fuse_depth_points(depths, rgbs, opacity, cams, min_opacity=0.5)
    assert points.shape == (len(cams) * W * H - 5 * W, 3) and colors.shape == points.shape
    assert float(points[:, 2].abs().max()) < PLANE_TOL
    # colours travel with their points: they encode the hit position
    torch.testing.assert_close(colors[:, :2], ((points[:, :2] + 2) / 4).clamp(0, 1), atol=PLANE_TOL, rtol=0)
    # the straight-down camera at height 3 sees the centre pixel's point right below it
    centre = points[: (H - 5) * W].reshape(H - 5, W, 3)[H // 2 - 5, W // 2]
    assert float(centre[:2].norm()) < 3.0 / 35.0  # within one pixel footprint


def test_stride_subsamples():
    cams = plane_cameras()
    depths, rgbs, opacity = render_plane(cams)
    points, _ = fuse_depth_points(depths, rgbs, opacity, cams, stride=3)
    per_view = len(range(0, H, 3)) * len(range(0, W, 3))
    assert len(points) == len(cams) * per_view
    assert float(points[:, 2].abs().max()) < PLANE_TOL


def test_shape_errors():
    cams = plane_cameras()
    depths, rgbs, opacity = render_plane(cams)
    with pytest.raises(ExportError, match="cameras"):
        fuse_depth_points(depths[:2], rgbs[:2], opacity[:2], cams)
    with pytest.raises(ExportError, match="depth map"):
        fuse_depth_points(depths[:, :10], rgbs[:, :10], opacity[:, :10], cams)


def test_ray_distance_to_z():
    cams = plane_cameras()[[0]]
    depths, _, _ = render_plane(cams)
    z = ray_distance_to_z(depths, cams)
    torch.testing.assert_close(z, torch.full_like(z, 3.0))  # the plane is 3 ahead in camera z


def test_save_point_cloud_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    points = torch.tensor(rng.normal(size=(50, 3)), dtype=torch.float32)
    colors = torch.tensor(rng.uniform(size=(50, 3)), dtype=torch.float32)
    path = save_point_cloud(tmp_path / "cloud.ply", points, colors)
    cloud = trimesh.load(path, process=False)
    np.testing.assert_allclose(cloud.vertices, points.numpy(), atol=PLANE_TOL)
    assert np.abs(np.asarray(cloud.colors)[:, :3] - colors.numpy() * 255).max() <= COLOR_TOL
    o3d = pytest.importorskip("open3d")
    pcd = o3d.io.read_point_cloud(str(path))
    np.testing.assert_allclose(np.asarray(pcd.points), points.numpy(), atol=PLANE_TOL)
    assert np.abs(np.asarray(pcd.colors) - colors.numpy()).max() <= COLOR_TOL / 255 + 1e-6
    with pytest.raises(ExportError, match="ply"):
        save_point_cloud(tmp_path / "cloud.xyz", points, colors)


def test_tsdf_fusion_of_plane():
    pytest.importorskip("open3d")
    cams = plane_cameras(scale=4.0)  # pixel footprint ~ voxel: Open3D reads the nearest pixel's depth
    depths, rgbs, opacity = render_plane(cams)
    mesh = tsdf_fusion(depths, rgbs, cams, voxel_length=VOXEL, sdf_trunc=4 * VOXEL, depth_max=10.0,
                       opacities=opacity)
    assert len(mesh.faces) > 100
    assert np.abs(mesh.vertices[:, 2]).max() < VOXEL  # the zero crossing is the plane
    expected = np.clip((mesh.vertices[:, :2] + 2) / 4, 0, 1) * 255
    colors = np.asarray(mesh.visual.vertex_colors)[:, :2].astype(float)
    # fused colours blend neighbouring pixels: within a pixel footprint's colour change (~1.3 steps)
    assert np.abs(colors - expected).max() < 3.0
