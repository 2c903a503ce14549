"""nerfstudio interoperability: dataparser_transforms.json and camera_path.json on a COLMAP run.

The tiny demo scene is rewritten as a COLMAP model whose world frame is the demo's moved by a
known similarity, a tiny run is trained on it, and a camera_path.json is written by hand from
nerfstudio's schema (OpenGL camera_to_world in the dataparser frame, vertical fov in degrees).
"""

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from synthetic_scenes import matrix_to_quaternion
from tiny import tiny_config

from nerf.datasets import load_scene
from nerf.datasets.colmap_io import ColmapCamera, ColmapImage, ColmapModel, write_model
from nerf.errors import ExportError
from nerf.export.nerfstudio import (
    FILE_NAME, from_dataparser_transforms, read_dataparser_transforms, to_dataparser_transforms,
)
from nerf.rotations import quat_to_rotmat

PIXEL_TOL = 2  # uint8 levels: the same rays, rendered through two float32 pose chains


def similarity(scale, axis, angle, shift) -> torch.Tensor:  # [4, 4] float64
    axis = torch.tensor(axis, dtype=torch.float64)
    axis = axis / axis.norm()
    k = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = torch.eye(3, dtype=torch.float64) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k
    out = torch.eye(4, dtype=torch.float64)
    out[:3, :3], out[:3, 3] = scale * rot, torch.tensor(shift, dtype=torch.float64)
    return out


def test_dataparser_transforms_round_trip():
    m = similarity(0.37, (1.0, -2.0, 0.5), 1.1, (0.3, -4.0, 2.0))
    data = to_dataparser_transforms(m)
    assert np.asarray(data["transform"]).shape == (3, 4) and data["scale"] == pytest.approx(0.37)
    point = torch.tensor([1.5, -0.25, 3.0], dtype=torch.float64)
    top = torch.tensor(data["transform"], dtype=torch.float64)
    # nerfstudio's reading: x' = scale * (T[:, :3] x + T[:, 3])
    torch.testing.assert_close(data["scale"] * (top[:, :3] @ point + top[:, 3]), m[:3, :3] @ point + m[:3, 3])
    torch.testing.assert_close(from_dataparser_transforms(data, "x"), m)


@pytest.mark.parametrize("data, message", [
    ({"scale": 1.0}, "missing 'transform'"),
    ({"transform": [[1, 0, 0, 0]], "scale": 1.0}, "3x4"),
    ({"transform": np.eye(4)[:3].tolist(), "scale": -2.0}, "'scale' must be a positive"),
    ({"transform": (2 * np.eye(4))[:3].tolist(), "scale": 1.0}, "not a rotation"),
])
def test_bad_dataparser_transforms(tmp_path, data, message):
    path = tmp_path / FILE_NAME
    path.write_text(json.dumps(data))
    with pytest.raises(ExportError, match=message) as info:
        read_dataparser_transforms(path)
    assert FILE_NAME in str(info.value)


@pytest.fixture(scope="module")
def colmap_run(tiny_scene, tmp_path_factory):
    """(scene folder, run folder, world transform G): the tiny scene as a COLMAP model in the
    demo frame moved by G, and a tiny run trained on it."""
    from nerf.jobs.train import run_training_job

    root = tmp_path_factory.mktemp("colmap_tiny") / "scene"
    world = similarity(2.5, (0.2, 1.0, -0.4), 0.8, (1.0, -3.0, 0.5))
    cams = tiny_scene.cameras.transformed((world @ torch.linalg.inv(tiny_scene.transform.double())).float())
    c2w = cams.c2w.double().numpy()
    w, h = tiny_scene.width, tiny_scene.height
    params = np.array([float(cams.fx[0]), float(cams.fy[0]), float(cams.cx[0]), float(cams.cy[0])])
    images = {}
    for i in range(len(cams)):
        name = f"{i:03d}.png"
        rot = c2w[i, :3, :3].T
        images[i + 1] = ColmapImage(i + 1, matrix_to_quaternion(rot), -rot @ c2w[i, :3, 3], 1, name,
                                    np.zeros((0, 2)), np.zeros(0, dtype=np.int64))
        rgb = (tiny_scene.image_float(i, torch.ones(3)).numpy() * 255).round().astype(np.uint8)
        (root / "images").mkdir(parents=True, exist_ok=True)
        iio.imwrite(root / "images" / name, rgb)
    write_model(ColmapModel({1: ColmapCamera(1, "PINHOLE", w, h, params)}, images, {}), root / "sparse" / "0")
    run_dir = run_training_job(tiny_config(tmp_path_factory.mktemp("colmap_runs"), root, steps=10),
                               quiet=True)["run_dir"]
    return root, run_dir, images


def test_run_writes_dataparser_transforms_of_its_frame(colmap_run):
    root, run_dir, images = colmap_run
    transform = read_dataparser_transforms(run_dir / FILE_NAME)
    scene = load_scene(root)
    rot = torch.stack([torch.as_tensor(quat_to_rotmat(images[k].qvec)) for k in sorted(images)])
    tvec = torch.stack([torch.as_tensor(images[k].tvec) for k in sorted(images)])
    centers = -(rot.transpose(1, 2) @ tvec[:, :, None])[:, :, 0]  # COLMAP world frame
    moved = centers @ transform[:3, :3].T + transform[:3, 3]
    torch.testing.assert_close(moved.float(), scene.cameras.centers, atol=1e-4, rtol=0)


def write_nerfstudio_path(path, run_dir, images, ids, size, focal, **extra):
    """camera_path.json of the COLMAP images `ids`, by nerfstudio's schema: each pose mapped into
    the dataparser frame with the run's dataparser_transforms.json, in OpenGL camera axes, and
    the vertical field of view of a `focal`-pixel lens on a `size` (w, h) image."""
    data = json.loads((run_dir / FILE_NAME).read_text())
    top, scale = np.asarray(data["transform"]), data["scale"]
    w, h = size
    fov = math.degrees(2 * math.atan(0.5 * h / focal))
    frames = []
    for k in ids:
        im = images[k + 1]
        rot = quat_to_rotmat(im.qvec).T  # camera-to-world rotation, OpenCV axes
        c2w = np.eye(4)
        c2w[:3, :3] = top[:, :3] @ rot * np.array([1.0, -1.0, -1.0])  # OpenCV -> OpenGL camera axes
        c2w[:3, 3] = scale * (top[:, :3] @ (-rot @ im.tvec) + top[:, 3])
        frames.append({"camera_to_world": c2w.reshape(-1).tolist(), "fov": fov, "aspect": w / h})
    meta = {"camera_type": "perspective", "render_width": w, "render_height": h, "seconds": len(ids),
            "camera_path": frames, "keyframes": []}
    meta.update(extra)
    path.write_text(json.dumps(meta))
    return path


def render_cli(argv):
    from test_cli import load_cli

    load_cli("render.py").main(argv)


def frames_of(folder):
    return [iio.imread(p) for p in sorted(folder.glob("frame_*.png"))]


def test_camera_path_renders_the_same_frames_as_the_cameras(colmap_run, tmp_path, capsys):
    root, run_dir, images = colmap_run
    scene = load_scene(root)
    test_ids = scene.splits["test"].tolist()
    path = write_nerfstudio_path(tmp_path / "camera_path.json", run_dir, images, test_ids,
                                 (scene.width, scene.height), float(scene.cameras.fy[0]))
    render_cli(["--run", str(run_dir), "--path", str(path), "--out", str(tmp_path / "r"),
                "--frame_format", "png", "--outputs", "rgb,opacity"])
    frames = frames_of(tmp_path / "r" / "rgb_camera_path")
    assert len(frames) == len(test_ids)
    assert frames_of(tmp_path / "r" / "opacity_camera_path")[0].max() > 128  # the frames show matter
    for frame, view in zip(frames, test_ids):
        direct = iio.imread(tmp_path / "r" / "test" / f"test_{view:04d}.png")
        assert frame.shape == direct.shape
        assert int(np.abs(frame.astype(int) - direct.astype(int)).max()) <= PIXEL_TOL
    assert "warning" not in capsys.readouterr().err


def test_camera_path_size_downscale_and_crop(colmap_run, tmp_path, capsys):
    root, run_dir, images = colmap_run
    scene = load_scene(root, splits=("test",))
    size, focal = (scene.width, scene.height), float(scene.cameras.fy[0])
    plain = write_nerfstudio_path(tmp_path / "plain.json", run_dir, images, [0], size, focal)
    base = ["--run", str(run_dir), "--test", "false", "--frame_format", "png", "--outputs", "rgb"]
    render_cli(base + ["--path", str(plain), "--width", "48", "--height", "16", "--downscale", "2",
                       "--out", str(tmp_path / "sized")])
    assert frames_of(tmp_path / "sized" / "rgb_camera_path")[0].shape == (8, 24, 3)
    # a crop box far from everything: nothing but its background colour, and a warning
    away = {"crop_center": [50.0, 50.0, 50.0], "crop_scale": [0.1, 0.1, 0.1], "crop_bg_color": {"r": 255, "g": 0, "b": 0}}
    empty = write_nerfstudio_path(tmp_path / "empty.json", run_dir, images, [0, 8], size, focal, crop=away)
    render_cli(base + ["--path", str(empty), "--out", str(tmp_path / "empty")])
    for frame in frames_of(tmp_path / "empty" / "rgb_camera_path"):
        assert (frame.reshape(-1, 3) == [255, 0, 0]).all()
    assert "warning: every frame of the path" in capsys.readouterr().err
    # a crop box holding the scene box renders what no crop renders
    whole = {"crop_center": [0.0, 0.0, 0.0], "crop_scale": [20.0, 20.0, 20.0], "crop_bg_color": {"r": 0, "g": 0, "b": 0}}
    kept = write_nerfstudio_path(tmp_path / "kept.json", run_dir, images, [0], size, focal, crop=whole)
    render_cli(base + ["--path", str(kept), "--out", str(tmp_path / "kept")])
    render_cli(base + ["--path", str(plain), "--out", str(tmp_path / "plain")])
    np.testing.assert_array_equal(frames_of(tmp_path / "kept" / "rgb_camera_path")[0],
                                  frames_of(tmp_path / "plain" / "rgb_camera_path")[0])


def test_camera_path_in_another_runs_frame(colmap_run, tmp_path):
    """--path_frame: a path written in another dataparser frame (a nerfstudio run on the same
    data) is mapped through that frame's file to ours."""
    root, run_dir, images = colmap_run
    scene = load_scene(root, splits=("test",))
    size, focal = (scene.width, scene.height), float(scene.cameras.fy[0])
    ours = write_nerfstudio_path(tmp_path / "ours.json", run_dir, images, [0], size, focal)
    other = tmp_path / "other"
    other.mkdir()
    theirs = similarity(0.2, (1.0, 0.0, 1.0), -0.6, (0.4, 0.1, -0.2))
    (other / FILE_NAME).write_text(json.dumps(to_dataparser_transforms(theirs)))
    moved = write_nerfstudio_path(tmp_path / "theirs.json", other, images, [0], size, focal)
    base = ["--run", str(run_dir), "--test", "false", "--frame_format", "png", "--outputs", "rgb"]
    render_cli(base + ["--path", str(ours), "--out", str(tmp_path / "a")])
    render_cli(base + ["--path", str(moved), "--path_frame", str(other / FILE_NAME), "--out", str(tmp_path / "b")])
    a, b = frames_of(tmp_path / "a" / "rgb_camera_path")[0], frames_of(tmp_path / "b" / "rgb_camera_path")[0]
    assert int(np.abs(a.astype(int) - b.astype(int)).max()) <= PIXEL_TOL
