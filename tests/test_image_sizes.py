"""Scenes whose images differ in size: each loader keeps every camera's own size, training never
draws a padding pixel, evaluation renders and scores each view at its own size."""

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image
from synthetic_scenes import (
    MIXED_SIZES, TARGET, mixed_intrinsics, write_blender, write_colmap_sizes, write_image, write_llff,
    write_transforms_sizes,
)
from tiny import tiny_config

from nerf.datasets import load_scene
from nerf.evaluation.image import psnr
from nerf.evaluation.views import score_views
from nerf.errors import SceneError
from nerf.train.trainer import Trainer

PIXEL_TOL = 1e-3  # px; float32 cameras
TRAIN_STEPS = 3


def check_cameras(scene, sizes):
    """Each camera has its image's size and `mixed_intrinsics`, and sees TARGET at (cx, cy)."""
    assert scene.sizes_differ
    assert (scene.width, scene.height) == (max(w for w, _ in sizes), max(h for _, h in sizes))
    t = scene.transform.double()
    target = (torch.as_tensor(TARGET) @ t[:3, :3].T + t[:3, 3]).float()
    for i, (w, h) in enumerate(sizes):
        assert scene.image_size(i) == (w, h)
        fx, fy, cx, cy = mixed_intrinsics(w, h)
        got = [float(v[i]) for v in (scene.cameras.fx, scene.cameras.fy, scene.cameras.cx, scene.cameras.cy)]
        np.testing.assert_allclose(got, [fx, fy, cx, cy], rtol=1e-6)
        xy, depth = scene.cameras.project(target[None], torch.tensor([i]))
        assert float(depth[0]) > 0
        np.testing.assert_allclose(xy[0].numpy(), [cx, cy], atol=PIXEL_TOL)


def check_images(scene, files, user_masked=()):
    """image_float is each file's pixels at its own size; the padding is zero and masked out
    (the masks are exactly the image's area, except for the frames in `user_masked`)."""
    for i, path in enumerate(files):
        w, h = scene.image_size(i)
        photo = np.asarray(Image.open(path).convert("RGB"))
        assert scene.image_float(i).shape == (h, w, 3)
        np.testing.assert_array_equal((scene.image_float(i) * 255).round().byte().numpy(), photo)
        assert not scene.images[i, h:].any() and not scene.images[i, :, w:].any()
        inside = torch.zeros(scene.height, scene.width, dtype=torch.bool)
        inside[:h, :w] = True
        assert not scene.masks[i][~inside].any()
        assert i in user_masked or torch.equal(scene.masks[i], inside)


def train_and_score(tmp_path, scene, scene_path):
    """A few training steps on the mixed scene, then a test view rendered and scored at its size."""
    trainer = Trainer(tiny_config(tmp_path, scene_path, steps=TRAIN_STEPS), scene, run_dir=None, quiet=True)
    for _ in range(TRAIN_STEPS):
        assert math.isfinite(trainer.train_step().loss)
    view = int(scene.splits["test"][0])
    assert scene.image_size(view) != (scene.width, scene.height)  # a view smaller than the padding
    [record] = score_views(trainer.renderer, scene, trainer.cameras, [view], 4096, tmp_path / "renders")
    render = iio.imread(tmp_path / "renders" / f"test_{view:04d}.png")
    w, h = scene.image_size(view)
    assert render.shape[:2] == (h, w)
    expected = psnr(torch.from_numpy(render).float() / 255, scene.image_float(view, scene.render_background))
    assert record["psnr"] == pytest.approx(expected, abs=0.05)  # the PNG is the render rounded to 8 bits
    assert math.isfinite(trainer.evaluate("test")["psnr"])


@pytest.mark.parametrize("binary", [True, False])
def test_colmap_cameras_of_three_sizes_load(tmp_path, binary):
    sizes = write_colmap_sizes(tmp_path, binary=binary)
    scene = load_scene(tmp_path)
    assert scene.format == "colmap" and len({*sizes}) == len(MIXED_SIZES)
    check_cameras(scene, sizes)
    check_images(scene, scene.image_paths)
    assert "mixed sizes up to 40x40" in scene.summary()


def test_colmap_cameras_of_three_sizes_train_and_evaluate(tmp_path):
    write_colmap_sizes(tmp_path / "scene")
    train_and_score(tmp_path, load_scene(tmp_path / "scene"), tmp_path / "scene")


def test_colmap_downscale_resizes_each_image_to_its_own_camera(tmp_path):
    write_colmap_sizes(tmp_path)
    scene = load_scene(tmp_path, downscale=2)
    for i in range(len(scene.cameras)):
        w, h = MIXED_SIZES[i % len(MIXED_SIZES)]
        assert scene.image_size(i) == (w // 2, h // 2)
        assert float(scene.cameras.cx[i]) == pytest.approx(mixed_intrinsics(w, h)[2] / 2, rel=1e-6)


def test_transforms_frames_of_their_own_size_train_and_evaluate(tmp_path):
    sizes = write_transforms_sizes(tmp_path / "scene")
    meta = json.loads((tmp_path / "scene" / "transforms.json").read_text())
    mask = np.zeros((sizes[1][1], sizes[1][0]), dtype=np.uint8)  # frame 1 (30x40): use its left half
    mask[:, : sizes[1][0] // 2] = 255
    Image.fromarray(mask).save(tmp_path / "scene" / "mask_001.png")
    meta["frames"][1]["mask_path"] = "mask_001.png"
    (tmp_path / "scene" / "transforms.json").write_text(json.dumps(meta))
    scene = load_scene(tmp_path / "scene")
    assert scene.format == "transforms"
    check_cameras(scene, sizes)
    left_half = torch.zeros(scene.height, scene.width, dtype=torch.bool)
    left_half[: sizes[1][1], : sizes[1][0] // 2] = True
    assert torch.equal(scene.masks[1], left_half)  # the user's mask, and no padding
    check_images(scene, scene.image_paths, user_masked=(1,))
    train_and_score(tmp_path, scene, tmp_path / "scene")


def test_blender_files_of_different_sizes(tmp_path):
    angle = 0.8
    write_blender(tmp_path, counts=(2, 1, 1), size=(8, 6), angle=angle)
    write_image(tmp_path / "train" / "r_1.png", 6, 8, channels=4)  # a portrait file
    scene = load_scene(tmp_path)
    assert [scene.image_size(i) for i in range(4)] == [(8, 6), (6, 8), (8, 6), (8, 6)]
    assert float(scene.cameras.fx[1]) == pytest.approx(0.5 * 6 / math.tan(0.5 * angle), rel=1e-6)
    assert float(scene.cameras.cy[1]) == pytest.approx(4.0)
    assert scene.image_float(1).shape == (8, 6, 3)


def test_llff_rows_of_different_sizes(tmp_path):
    write_llff(tmp_path, n=9, full_size=(64, 48), focal=50.0, folders=(4,))
    data = np.load(tmp_path / "poses_bounds.npy")
    data[3, [4, 9]] = [64, 48]  # row 3: H, W swapped (a portrait image)
    np.save(tmp_path / "poses_bounds.npy", data)
    write_image(tmp_path / "images_4" / "image003.png", 12, 16, seed=3)
    scene = load_scene(tmp_path, downscale=4)
    row3 = 3  # every split loaded: camera i is row i
    assert scene.image_size(row3) == (12, 16) and scene.image_size(0) == (16, 12)
    assert float(scene.cameras.fx[row3]) == pytest.approx(50.0 / 4, rel=1e-6)
    assert float(scene.cameras.cx[row3]) == pytest.approx(6.0) and float(scene.cameras.cy[row3]) == pytest.approx(8.0)


def test_sampling_never_draws_a_padding_pixel(tmp_path):
    write_colmap_sizes(tmp_path / "scene")
    scene = load_scene(tmp_path / "scene")
    inside = torch.zeros(scene.images.shape[:3], dtype=torch.bool)
    for i in range(len(scene.cameras)):
        w, h = scene.image_size(i)
        inside[i, :h, :w] = True
    scene.images[inside] = 100  # every photo pixel; the padding becomes a sentinel colour
    scene.images[~inside] = 255
    trainer = Trainer(tiny_config(tmp_path, tmp_path / "scene"), scene, run_dir=None, quiet=True)
    drawn = torch.cat([trainer.sample_batch()[2] for _ in range(20)])
    assert len(drawn) > 1000
    assert torch.all(drawn == 100 / 255)


def test_an_image_of_the_wrong_size_names_the_file_and_both_sizes(tmp_path):
    write_colmap_sizes(tmp_path)
    write_image(tmp_path / "images" / "004.png", 40, 30, seed=4)  # image 4 uses camera 2 (30x40)
    with pytest.raises(SceneError) as info:
        load_scene(tmp_path)
    message = str(info.value)
    assert "camera 2 WIDTH, HEIGHT: declares images of 30x40" in message
    assert f"{tmp_path / 'images' / '004.png'} is 40x30" in message


def test_a_frame_of_the_wrong_size_names_the_frame_the_file_and_both_sizes(tmp_path):
    write_transforms_sizes(tmp_path)
    write_image(tmp_path / "images" / "005.png", 40, 30, seed=5)  # frame 5 declares 36x24
    with pytest.raises(SceneError) as info:
        load_scene(tmp_path)
    message = str(info.value)
    assert "transforms.json frame 5 'w', 'h': declares images of 36x24" in message
    assert f"{tmp_path / 'images' / '005.png'} is 40x30" in message


def test_a_run_on_mixed_sizes_renders_paths_and_sr_pairs_per_camera(tmp_path):
    from nerf.config import RenderConfig
    from nerf.jobs.render import camera_path, training_pairs
    from nerf.jobs.run import load_trained_run
    from nerf.jobs.sr_bench import SRBenchConfig, render_test_inputs
    from nerf.jobs.train import run_training_job

    write_colmap_sizes(tmp_path / "scene")
    run_dir = run_training_job(tiny_config(tmp_path, tmp_path / "scene", steps=TRAIN_STEPS), quiet=True)["run_dir"]
    run = load_trained_run(run_dir, "cpu")
    scene = run.scene
    first = scene.image_size(int(scene.splits["train"][0]))
    assert first != (scene.width, scene.height)
    plan = camera_path(run, RenderConfig(run=str(run_dir), path="orbit", frames=2))
    assert (int(plan.cameras.width[0]), int(plan.cameras.height[0])) == first  # not the padded size
    lr_imgs, hr_imgs = training_pairs(run, 2, progress=False)
    for i, lr, hr in zip(scene.splits["train"].tolist(), lr_imgs, hr_imgs):
        w, h = scene.image_size(i)
        assert lr.shape[:2] == (h // 2, w // 2) and hr.shape[:2] == (h, w)
    with pytest.raises(SceneError, match="the SR benchmark needs images of one size.*mixed sizes up to 40x40"):
        render_test_inputs(run, SRBenchConfig(run=str(run_dir), scale=2))


def test_mesh_surface_rays_stay_inside_each_views_own_size():
    from nerf.cameras import Cameras
    from nerf.jobs.mesh import random_pixels

    sizes = torch.tensor(MIXED_SIZES)
    cams = Cameras.create(torch.eye(4).expand(3, 4, 4), 30.0, 30.0, 15.0, 15.0, sizes[:, 0], sizes[:, 1])
    views, cols, rows = random_pixels(cams, 20000, torch.Generator().manual_seed(0))
    assert bool((cols < sizes[views, 0]).all() and (rows < sizes[views, 1]).all())
    for v, (w, h) in enumerate(MIXED_SIZES):  # and every view's whole extent is drawn from
        mine = views == v
        assert int(cols[mine].max()) == w - 1 and int(rows[mine].max()) == h - 1
