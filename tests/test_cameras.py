"""Cameras: projection inverts ray generation, scaling, similarity transforms, indexing."""

import math

import pytest
import torch

from nerf.cameras import Cameras

PIXEL_TOL = 1e-3  # px, float32 round trip through rays and projection
UNIT_TOL = 1e-5  # |d| - 1 for float32 unit vectors
POS_TOL = 1e-4  # world units; float32 on coordinates of size ~10
DIR_TOL = 1e-5

# Distortions of the size real calibrations report (a wide-angle OpenCV lens, a fisheye lens).
OPENCV_DIST = [-0.28, 0.07, -0.01, 0.0, 1.0e-4, -2.0e-4]  # k1, k2, k3, k4, p1, p2
FISHEYE_DIST = [0.03, -0.01, 0.002, -0.0005, 0.0, 0.0]


def random_c2w(n: int, generator: torch.Generator) -> torch.Tensor:  # [n, 4, 4]
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    q[torch.linalg.det(q) < 0, :, 0] *= -1
    c2w = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    c2w[:, :3, :3] = q
    c2w[:, :3, 3] = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    return c2w.float()


def make_cameras(model: str, n: int = 4, seed: int = 0) -> Cameras:
    g = torch.Generator().manual_seed(seed)
    dist = {"pinhole": None, "opencv": OPENCV_DIST, "fisheye": FISHEYE_DIST}[model]
    focal = 300.0 if model == "fisheye" else 500.0
    return Cameras.create(
        random_c2w(n, g), focal, focal * 1.01, 321.3, 242.7, 640, 480,
        distortion=None if dist is None else torch.tensor(dist), model=model,
    )


def random_pixels(cams: Cameras, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ci = torch.randint(0, len(cams), (n,), generator=g)
    xy = torch.rand(n, 2, generator=g) * torch.stack([cams.width[ci], cams.height[ci]], -1).float()
    return ci, xy


@pytest.mark.parametrize("model", ["pinhole", "opencv", "fisheye"])
def test_projecting_ray_points_returns_their_pixel(model):
    cams = make_cameras(model)
    ci, xy = random_pixels(cams, 2000, seed=1)
    origins, dirs = cams.generate_rays(ci, xy)
    depths = 0.5 + 20 * torch.rand(len(ci), 1, generator=torch.Generator().manual_seed(2))
    proj, z = cams.project(origins + depths * dirs, ci)
    assert bool((z > 0).all())
    err = (proj - xy).norm(dim=-1).max().item()
    assert err < PIXEL_TOL, f"{model}: reprojection error {err:.2e} px"


def test_pinhole_projection_matches_the_formula():
    cams = make_cameras("pinhole")
    g = torch.Generator().manual_seed(3)
    cam_pts = torch.randn(50, 3, generator=g) + torch.tensor([0.0, 0.0, 5.0])
    ci = torch.randint(0, len(cams), (50,), generator=g)
    rot, t = cams.c2w[ci, :3, :3], cams.c2w[ci, :3, 3]
    world = (rot @ cam_pts.unsqueeze(-1)).squeeze(-1) + t
    xy, z = cams.project(world, ci)
    expected = torch.stack(
        [cams.fx[ci] * cam_pts[:, 0] / cam_pts[:, 2] + cams.cx[ci],
         cams.fy[ci] * cam_pts[:, 1] / cam_pts[:, 2] + cams.cy[ci]], dim=-1,
    )
    torch.testing.assert_close(xy, expected, atol=PIXEL_TOL, rtol=0)
    torch.testing.assert_close(z, cam_pts[:, 2], atol=POS_TOL, rtol=0)


def test_principal_point_ray_is_the_optical_axis():
    cams = make_cameras("opencv")
    ci = torch.arange(len(cams))
    _, dirs = cams.generate_rays(ci, torch.stack([cams.cx, cams.cy], -1))
    torch.testing.assert_close(dirs, cams.forward, atol=DIR_TOL, rtol=0)


@pytest.mark.parametrize("model", ["pinhole", "opencv", "fisheye"])
def test_ray_directions_are_unit_length(model):
    cams = make_cameras(model)
    ci, xy = random_pixels(cams, 1000, seed=4)
    _, dirs = cams.generate_rays(ci, xy)
    assert (dirs.norm(dim=-1) - 1).abs().max().item() < UNIT_TOL


@pytest.mark.parametrize("model", ["pinhole", "opencv"])
def test_scaled_halves_intrinsics_and_keeps_rays(model):
    cams = make_cameras(model)
    half = cams.scaled(0.5)
    for name in ("fx", "fy", "cx", "cy"):
        torch.testing.assert_close(getattr(half, name), getattr(cams, name) / 2)
    assert half.width.tolist() == [320] * len(cams) and half.height.tolist() == [240] * len(cams)
    # Half-res pixel (i, j) covers full-res pixels 2i..2i+1: its centre is the full-res corner 2i + 1.
    g = torch.Generator().manual_seed(5)
    ci = torch.randint(0, len(cams), (500,), generator=g)
    cols, rows = torch.randint(0, 320, (500,), generator=g), torch.randint(0, 240, (500,), generator=g)
    o_half, d_half = half.pixel_rays(ci, cols, rows)
    o_full, d_full = cams.generate_rays(ci, torch.stack([2 * cols + 1.0, 2 * rows + 1.0], -1))
    torch.testing.assert_close(o_half, o_full)
    torch.testing.assert_close(d_half, d_full, atol=DIR_TOL, rtol=0)


@pytest.mark.parametrize("model", ["pinhole", "fisheye"])
def test_transformed_moves_centres_and_turns_directions(model):
    cams = make_cameras(model)
    angle = 0.7
    rot = torch.tensor(
        [[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0], [0.0, 0.0, 1.0]]
    )
    scale, shift = 0.37, torch.tensor([0.5, -1.0, 2.0])
    transform = torch.eye(4)
    transform[:3, :3] = scale * rot
    transform[:3, 3] = shift
    moved = cams.transformed(transform)
    torch.testing.assert_close(moved.centers, scale * cams.centers @ rot.T + shift, atol=POS_TOL, rtol=0)
    ci, xy = random_pixels(cams, 500, seed=6)
    _, d = cams.generate_rays(ci, xy)
    _, d_moved = moved.generate_rays(ci, xy)
    torch.testing.assert_close(d_moved, d @ rot.T, atol=DIR_TOL, rtol=0)
    # A world point projects to the same pixel before and after moving world and cameras together.
    points = cams.centers[ci] + 3.0 * d
    xy_before, _ = cams.project(points, ci)
    xy_after, _ = moved.project(scale * points @ rot.T + shift, ci)
    torch.testing.assert_close(xy_after, xy_before, atol=PIXEL_TOL, rtol=0)


def test_getitem_selects_cameras():
    cams = make_cameras("opencv", n=5)
    one = cams[3]
    assert len(one) == 1 and torch.equal(one.c2w[0], cams.c2w[3]) and one.fx[0] == cams.fx[3]
    sub = cams[torch.tensor([4, 0])]
    assert len(sub) == 2 and torch.equal(sub.c2w, cams.c2w[[4, 0]])
    assert torch.equal(sub.distortion, cams.distortion[[4, 0]]) and sub.model == "opencv"
    sl = cams[1:3]
    assert len(sl) == 2 and torch.equal(sl.cx, cams.cx[1:3]) and torch.equal(sl.width, cams.width[1:3])
    lst = cams[[2, 2]]
    assert torch.equal(lst.height, cams.height[[2, 2]])


def test_undistortion_stops_early_at_the_fixed_iteration_result(monkeypatch):
    """Newton's early exit (UNDISTORT_TOLERANCE) returns what all UNDISTORT_ITERS steps return."""
    import nerf.cameras as cameras

    g = torch.Generator().manual_seed(4)
    xd, yd = (torch.rand(5000, generator=g) - 0.5) * 1.2, (torch.rand(5000, generator=g) - 0.5) * 0.9
    dist = torch.tensor(OPENCV_DIST).expand(5000, 6)
    steps = []
    real_max = torch.Tensor.max

    def counting_max(self, *args, **kwargs):
        steps.append(1)
        return real_max(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "max", counting_max)
    early = cameras._opencv_undistort(xd, yd, dist)
    monkeypatch.setattr(torch.Tensor, "max", real_max)
    assert 0 < len(steps) / 2 < cameras.UNDISTORT_ITERS  # two maxima per step: it did stop early
    monkeypatch.setattr(cameras, "UNDISTORT_TOLERANCE", -1.0)  # never converged: every step runs
    full = cameras._opencv_undistort(xd, yd, dist)
    assert torch.equal(early[0], full[0]) and torch.equal(early[1], full[1])
    x, y = cameras._opencv_distort(early[0].double(), early[1].double(), dist.double())
    assert float((x - xd).abs().max()) < 1e-6 and float((y - yd).abs().max()) < 1e-6
