"""Scene readers: pose conventions on tiny synthetic scenes, then the real scenes in shared/data."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from synthetic_scenes import (
    TARGET, write_blender, write_colmap, write_image, write_llff, write_transforms,
)

from nerf.datasets import detect_format, load_scene
from nerf.datasets.normalize import FAR_PERCENTILE, OBJECT_CAMERA_DISTANCE, object_normalization
from nerf.rotations import closest_point_to_axes

DATA = Path(__file__).parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real scenes not found at {DATA}")

PIXEL_TOL = 1e-3  # px; float32 cameras
POSE_TOL = 1e-5  # original-frame positions / directions from float32 normalised cameras
CROSS_FORMAT_RTOL = 1e-4  # brief: colmap vs llff of one COLMAP model


def original_frame(scene):
    """Camera centres [C, 3] and forward directions [C, 3] mapped back to the file's frame."""
    inv = torch.linalg.inv(scene.transform.double())
    centres = scene.cameras.centers.double() @ inv[:3, :3].T + inv[:3, 3]
    forward = scene.cameras.forward.double() @ inv[:3, :3].T
    return centres.numpy(), (forward / forward.norm(dim=1, keepdim=True)).numpy()


def to_scene(scene, points):  # [P, 3] original -> normalised, float32
    t = scene.transform.double()
    return (torch.as_tensor(points, dtype=torch.float64) @ t[:3, :3].T + t[:3, 3]).float()


def project_opengl(c2w, f, cx, cy, point):
    """Pinhole projection with an OpenGL camera (y up, looking along -z), written out by hand."""
    p = c2w[:3, :3].T @ (point - c2w[:3, 3])
    return np.array([cx + f[0] * p[0] / -p[2], cy - f[1] * p[1] / -p[2]])


def check_projects(scene, points, expected):
    """Project original-frame points [C, 3] into every camera and compare with `expected` [C, 2]."""
    xy, depth = scene.cameras.project(to_scene(scene, points), torch.arange(len(scene.cameras)))
    assert bool((depth > 0).all())
    np.testing.assert_allclose(xy.numpy(), expected, atol=PIXEL_TOL, rtol=0)


# --- synthetic scenes: analytic pose conventions ------------------------------------------


def test_blender_reader(tmp_path):
    angle, size = 0.8, (8, 6)
    poses = write_blender(tmp_path, counts=(3, 2, 2), size=size, angle=angle)
    scene = load_scene(tmp_path)
    assert scene.format == "blender" and scene.images.shape == (7, 6, 8, 4)
    assert {k: v.tolist() for k, v in scene.splits.items()} == {"train": [0, 1, 2], "val": [3, 4], "test": [5, 6]}
    f = 0.5 * size[0] / math.tan(0.5 * angle)
    assert torch.allclose(scene.cameras.fx, torch.tensor(f)) and torch.allclose(scene.cameras.fy, torch.tensor(f))
    assert scene.cameras.cx.tolist() == [4.0] * 7 and scene.cameras.cy.tolist() == [3.0] * 7
    assert torch.allclose(scene.transform, torch.diag(torch.tensor([1 / 1.5, 1 / 1.5, 1 / 1.5, 1.0])))
    assert scene.aabb.tolist() == [[-1.0] * 3, [1.0] * 3] and not scene.unbounded
    assert scene.near == pytest.approx(2 / 1.5) and scene.far == pytest.approx(6 / 1.5)
    assert scene.background.tolist() == [1.0, 1.0, 1.0]
    # every camera looks at TARGET: it lands on the principal point; another point by hand
    check_projects(scene, np.tile(TARGET, (7, 1)), np.tile([4.0, 3.0], (7, 1)))
    point = TARGET + np.array([0.2, -0.1, 0.15])
    check_projects(scene, np.tile(point, (7, 1)), np.stack([project_opengl(p, (f, f), 4, 3, point) for p in poses]))


def test_blender_split_fallbacks(tmp_path):
    write_blender(tmp_path / "a", counts=(3, 2, None))
    scene = load_scene(tmp_path / "a")
    assert scene.splits["test"].tolist() == scene.splits["val"].tolist() == [3, 4] and len(scene.cameras) == 5
    only_test = load_scene(tmp_path / "a", splits=("test",))
    assert len(only_test.cameras) == 2 and list(only_test.splits) == ["test"]
    assert torch.allclose(only_test.cameras.c2w, scene.cameras.c2w[3:])
    write_blender(tmp_path / "b", counts=(3, None, None), channels=3)
    scene = load_scene(tmp_path / "b")
    assert len(scene.splits["val"]) == len(scene.splits["test"]) == 0 and len(scene.splits["train"]) == 3
    assert scene.images.shape[-1] == 3 and scene.background is None


def test_blender_downscale_averages_pixels(tmp_path):
    write_blender(tmp_path, counts=(1, None, None), size=(8, 6), channels=3)
    full = load_scene(tmp_path).images[0].double()
    half = load_scene(tmp_path, downscale=2)
    assert half.images.shape == (1, 3, 4, 3) and half.cameras.fx[0] == pytest.approx(
        0.5 * 4 / math.tan(0.4)
    )
    box_mean = full.reshape(3, 2, 4, 2, 3).mean(dim=(1, 3))
    assert (half.images[0].double() - box_mean).abs().max() <= 1.0  # uint8 rounding


def test_transforms_ngp_reader(tmp_path):
    meta = {"aabb_scale": 4, "scale": 0.5, "offset": [0.1, 0.2, 0.3]}
    poses = write_transforms(tmp_path, n=10, meta=meta)
    scene = load_scene(tmp_path)
    assert scene.format == "transforms" and scene.unbounded
    expected = torch.eye(4)
    expected[:3, 3] = torch.tensor([2 * 0.1 - 1, 2 * 0.2 - 1, 2 * 0.3 - 1])
    assert torch.allclose(scene.transform, expected)  # 2 * (p * 0.5 + offset - 0.5)
    assert scene.aabb.tolist() == [[-4.0] * 3, [4.0] * 3]
    assert {k: v.tolist() for k, v in scene.splits.items()} == {
        "train": [1, 2, 3, 4, 5, 6, 7, 9], "val": [0, 8], "test": [0, 8],
    }
    check_projects(scene, np.tile(TARGET, (10, 1)), np.tile([4.2, 2.9], (10, 1)))
    point = TARGET + np.array([-0.1, 0.3, 0.2])
    check_projects(scene, np.tile(point, (10, 1)), np.stack([project_opengl(p, (7, 7.5), 4.2, 2.9, point) for p in poses]))


def test_transforms_ngp_defaults(tmp_path):
    write_transforms(tmp_path, n=3, meta={"aabb_scale": 1})
    scene = load_scene(tmp_path)
    assert torch.allclose(scene.transform[:3, :3], 0.66 * torch.eye(3)) and not scene.unbounded
    assert torch.allclose(scene.transform[:3, 3], torch.zeros(3))  # offset 0.5 -> centre


def test_transforms_object_rule(tmp_path):
    write_transforms(tmp_path, n=10)
    scene = load_scene(tmp_path)
    assert scene.unbounded and scene.aabb.tolist() == [[-4.0] * 3, [4.0] * 3]
    centre = to_scene(scene, TARGET[None])[0]
    assert centre.abs().max() < POSE_TOL  # all axes meet at TARGET
    assert scene.cameras.centers.norm(dim=1).mean() == pytest.approx(OBJECT_CAMERA_DISTANCE, rel=1e-5)
    up = -scene.cameras.c2w[:, :3, 1].mean(dim=0)
    assert torch.allclose(up / up.norm(), torch.tensor([0.0, 0.0, 1.0]), atol=POSE_TOL)


def test_transforms_sorting_split_lists_downscale_and_masks(tmp_path):
    write_transforms(tmp_path, n=6, size=(8, 6))
    data = json.loads((tmp_path / "transforms.json").read_text())
    data["frames"] = data["frames"][::-1]
    data["train_filenames"] = ["images/001.png", "images/002.png", "images/004.png"]
    data["test_filenames"] = ["./images/005.png"]
    data["frames"][0]["mask_path"] = "masks/005.png"  # frame of images/005.png
    mask = np.zeros((6, 8), dtype=np.uint8)
    mask[:, 4:] = 255
    (tmp_path / "masks").mkdir()
    Image.fromarray(mask).save(tmp_path / "masks" / "005.png")
    (tmp_path / "transforms.json").write_text(json.dumps(data))
    scene = load_scene(tmp_path, downscale=2)
    assert [Path(p).name for p in scene.image_paths] == [f"{i:03d}.png" for i in (1, 2, 4, 5)]
    assert scene.splits["train"].tolist() == [0, 1, 2] and scene.splits["test"].tolist() == [3]
    assert scene.splits["val"].tolist() == [3]
    assert scene.images.shape == (4, 3, 4, 3)
    np.testing.assert_allclose(scene.cameras.fx.numpy(), 3.5)
    np.testing.assert_allclose(scene.cameras.fy.numpy(), 3.75)
    np.testing.assert_allclose(scene.cameras.cx.numpy(), 2.1, rtol=1e-6)
    np.testing.assert_allclose(scene.cameras.cy.numpy(), 1.45, rtol=1e-6)
    assert scene.masks.shape == (4, 3, 4) and bool(scene.masks[:3].all())
    assert scene.masks[3, :, 2:].all() and not scene.masks[3, :, :2].any()


def test_transforms_distortion_models(tmp_path):
    write_transforms(tmp_path / "a", n=3, meta={"k1": 0.1, "k2": -0.02, "p1": 0.001, "p2": 0.002})
    scene = load_scene(tmp_path / "a")
    assert scene.cameras.model == "opencv"
    assert scene.cameras.distortion[0].tolist() == pytest.approx([0.1, -0.02, 0, 0, 0.001, 0.002])
    write_transforms(tmp_path / "b", n=3, meta={"camera_model": "OPENCV_FISHEYE", "k1": 0.05, "k4": 0.01})
    scene = load_scene(tmp_path / "b")
    assert scene.cameras.model == "fisheye" and scene.cameras.distortion[0].tolist() == pytest.approx([0.05, 0, 0, 0.01, 0, 0])


def test_llff_reader(tmp_path):
    c2w, bounds = write_llff(tmp_path, n=9, full_size=(64, 48), focal=50.0, folders=(4,))
    scene = load_scene(tmp_path, downscale=4)
    assert scene.format == "llff" and scene.images.shape == (9, 12, 16, 3) and scene.unbounded
    np.testing.assert_allclose(scene.cameras.fx.numpy(), 12.5)
    np.testing.assert_allclose(scene.cameras.cx.numpy(), 8.0)
    np.testing.assert_allclose(scene.cameras.cy.numpy(), 6.0)
    centres, forward = original_frame(scene)
    np.testing.assert_allclose(centres, c2w[:, :3, 3], atol=POSE_TOL)
    np.testing.assert_allclose(forward, c2w[:, :3, 2], atol=POSE_TOL)
    assert scene.splits["test"].tolist() == [0, 8] and scene.splits["train"].tolist() == list(range(1, 8))
    scale = float(torch.linalg.det(scene.transform[:3, :3].double()) ** (1 / 3))
    assert scale * np.percentile(bounds[:, 1], FAR_PERCENTILE) == pytest.approx(2.0)
    assert scene.near == pytest.approx(scale * bounds[:, 0].min())
    inside = (scene.cameras.centers >= scene.aabb[0] - POSE_TOL) & (scene.cameras.centers <= scene.aabb[1] + POSE_TOL)
    assert bool(inside.all())
    eighth = load_scene(tmp_path, downscale=8)  # no images_8: resized from images_4
    assert eighth.images.shape == (9, 6, 8, 3)
    np.testing.assert_allclose(eighth.cameras.fx.numpy(), 6.25)


@pytest.mark.parametrize("binary", [True, False])
def test_colmap_reader(tmp_path, binary):
    names = ["b.png", "a.png", "10.png", "2.png", "c.png"]
    c2w = write_colmap(tmp_path, n=5, names=names, binary=binary)
    scene = load_scene(tmp_path)
    assert scene.format == "colmap"
    assert [Path(p).name for p in scene.image_paths] == ["10.png", "2.png", "a.png", "b.png", "c.png"]
    centres, forward = original_frame(scene)
    np.testing.assert_allclose(centres, c2w[:, :3, 3], atol=POSE_TOL)
    np.testing.assert_allclose(forward, c2w[:, :3, 2], atol=POSE_TOL)
    check_projects(scene, np.tile(TARGET, (5, 1)), np.tile([4.2, 2.9], (5, 1)))
    assert scene.cameras.fy.tolist() == pytest.approx([7.5] * 5)


def test_colmap_camera_models_and_downscale(tmp_path):
    write_colmap(tmp_path / "a", n=3, model="OPENCV", params=(7, 7.5, 4.2, 2.9, 0.1, -0.02, 0.001, 0.002))
    scene = load_scene(tmp_path / "a", downscale=2)
    assert scene.cameras.model == "opencv" and scene.images.shape == (3, 3, 4, 3)
    assert scene.cameras.distortion[0].tolist() == pytest.approx([0.1, -0.02, 0, 0, 0.001, 0.002])
    assert scene.cameras.fx.tolist() == pytest.approx([3.5] * 3) and scene.cameras.cx.tolist() == pytest.approx([2.1] * 3)
    write_colmap(tmp_path / "b", n=3, model="SIMPLE_RADIAL", params=(7, 4.2, 2.9, 0.05))
    scene = load_scene(tmp_path / "b")
    assert scene.cameras.model == "opencv" and scene.cameras.distortion[0, 0].item() == pytest.approx(0.05)
    write_colmap(tmp_path / "c", n=3, model="OPENCV_FISHEYE", params=(7, 7, 4, 3, 0.01, 0.02, 0.03, 0.04))
    scene = load_scene(tmp_path / "c")
    assert scene.cameras.model == "fisheye" and scene.cameras.distortion[0].tolist() == pytest.approx([0.01, 0.02, 0.03, 0.04, 0, 0])


def test_detection_prefers_colmap_over_llff(tmp_path):
    write_colmap(tmp_path, n=9, size=(16, 12))
    write_llff(tmp_path, n=9, full_size=(16, 12), folders=())
    assert detect_format(tmp_path) == "colmap"
    for i in range(9):  # LLFF reads images/ sorted by name, as COLMAP's names are
        write_image(tmp_path / "images" / f"{i:03d}.png", 16, 12)
    assert load_scene(tmp_path, format="llff").format == "llff"


def test_parallel_optical_axes_fall_back_to_the_centroid():
    centres = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    forwards = np.tile([0.0, 0.0, 1.0], (4, 1))
    assert closest_point_to_axes(centres, forwards) is None
    c2w = np.tile(np.eye(4), (4, 1, 1))
    c2w[:, :3, 3] = centres
    norm = object_normalization(c2w, align_up=False)
    np.testing.assert_allclose(norm.transform[:3, 3], -norm.transform[:3, :3] @ centres.mean(axis=0))
    moved = centres @ norm.transform[:3, :3].T + norm.transform[:3, 3]
    assert np.linalg.norm(moved, axis=1).mean() == pytest.approx(OBJECT_CAMERA_DISTANCE)


# --- real scenes ---------------------------------------------------------------------------


def assert_cameras_see(scene, point):
    """`point` [3] (normalised frame) projects inside every image with positive depth."""
    cams = scene.cameras
    xy, depth = cams.project(point.expand(len(cams), 3), torch.arange(len(cams)))
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < cams.width) & (xy[:, 1] >= 0) & (xy[:, 1] < cams.height)
    assert bool((depth > 0).all()) and bool(inside.all()), f"cameras {torch.nonzero(~inside).tolist()} miss it"


def look_at_point(scene):
    return torch.zeros(3) if scene.unbounded else scene.aabb.mean(dim=0)


@pytest.fixture(scope="module")
def lego_train():
    return load_scene(DATA / "nerf_synthetic" / "lego", splits=("train",))


@pytest.fixture(scope="module")
def lego_half():
    return load_scene(DATA / "nerf_synthetic" / "lego", downscale=2, splits=("val", "test"))


@needs_data
def test_lego(lego_train, lego_half):
    meta = json.loads((DATA / "nerf_synthetic" / "lego" / "transforms_train.json").read_text())
    f = 0.5 * 800 / math.tan(0.5 * meta["camera_angle_x"])
    assert lego_train.images.shape == (100, 800, 800, 4) and len(lego_train.splits["train"]) == 100
    assert lego_train.cameras.fx[0].item() == pytest.approx(f, rel=1e-6)
    assert lego_train.cameras.cx[0].item() == 400.0
    assert len(lego_half.splits["val"]) == 25 and len(lego_half.splits["test"]) == 100
    assert lego_half.images.shape[1:] == (400, 400, 4)
    assert lego_half.cameras.fx[0].item() == pytest.approx(f / 2, rel=1e-6)
    first = np.array(meta["frames"][0]["transform_matrix"])
    centres, _ = original_frame(lego_train)
    np.testing.assert_allclose(centres[0], first[:3, 3], atol=POSE_TOL * 10)
    assert_cameras_see(lego_train, look_at_point(lego_train))
    assert_cameras_see(lego_half, look_at_point(lego_half))


@needs_data
def test_fox():
    meta = json.loads((DATA / "fox" / "transforms.json").read_text())
    scene = load_scene(DATA / "fox")
    assert scene.images.shape == (67, 1920, 1080, 3)
    cams = scene.cameras
    assert cams.model == "opencv" and scene.unbounded
    for key, value in (("fx", "fl_x"), ("fy", "fl_y"), ("cx", "cx"), ("cy", "cy")):
        assert getattr(cams, key)[0].item() == pytest.approx(meta[value], rel=1e-6)
    assert cams.distortion[0].tolist() == pytest.approx([meta["k1"], meta["k2"], 0, 0, meta["p1"], meta["p2"]], rel=1e-6)
    assert scene.aabb.tolist() == [[-meta["aabb_scale"]] * 3, [meta["aabb_scale"]] * 3]
    assert_cameras_see(scene, look_at_point(scene))


@needs_data
@pytest.mark.parametrize("downscale, size", [(4, (1008, 756)), (8, (504, 378))])
def test_fern(downscale, size):
    data = np.load(DATA / "llff" / "fern" / "poses_bounds.npy")
    height, width, focal = data[0, :15].reshape(3, 5)[:, 4]
    scene = load_scene(DATA / "llff" / "fern", downscale=downscale)
    assert scene.images.shape == (20, size[1], size[0], 3)
    assert scene.cameras.fx[0].item() == pytest.approx(focal * size[0] / width, rel=1e-6)
    assert scene.cameras.fy[0].item() == pytest.approx(focal * size[1] / height, rel=1e-6)
    assert len(scene.splits["test"]) == 3 and len(scene.splits["train"]) == 17
    assert_cameras_see(scene, look_at_point(scene))


@pytest.fixture(scope="module")
def sample_colmap():
    return load_scene(DATA / "colmap_sample")


@needs_data
def test_colmap_sample(sample_colmap):
    from nerf.datasets.colmap_io import read_model

    model = read_model(DATA / "colmap_sample" / "sparse" / "0")
    scene = sample_colmap
    assert scene.format == "colmap" and scene.images.shape == (77, 600, 800, 3)
    by_name = {im.name: model.cameras[im.camera_id] for im in model.images.values()}
    for i in (0, 40, 76):
        params = by_name[Path(scene.image_paths[i]).name].params  # SIMPLE_PINHOLE f, cx, cy
        assert [scene.cameras.fx[i].item(), scene.cameras.cx[i].item(), scene.cameras.cy[i].item()] == pytest.approx(params, rel=1e-6)
    assert_cameras_see(scene, look_at_point(scene))
    small = load_scene(DATA / "colmap_sample", downscale=4, splits=("test",))
    assert small.images.shape[1:] == (150, 200, 3) and len(small.splits["test"]) == 10
    assert small.cameras.fx[0].item() == pytest.approx(scene.cameras.fx[0].item() / 4, rel=1e-6)


@needs_data
def test_colmap_and_llff_agree(sample_colmap):
    as_llff = load_scene(DATA / "colmap_sample", format="llff", downscale=4)
    assert [Path(p).name for p in as_llff.image_paths] == [Path(p).name for p in sample_colmap.image_paths]
    c_colmap, f_colmap = original_frame(sample_colmap)
    c_llff, f_llff = original_frame(as_llff)
    extent = np.linalg.norm(c_colmap - c_colmap.mean(axis=0), axis=1).max()
    assert np.abs(c_llff - c_colmap).max() <= CROSS_FORMAT_RTOL * extent
    assert np.abs(f_llff - f_colmap).max() <= CROSS_FORMAT_RTOL
