"""Broken scenes on disk: each is a SceneError that names the file and the problem."""

import json

import numpy as np
import pytest
from synthetic_scenes import write_blender, write_colmap, write_image, write_llff, write_transforms

from nerf.datasets import load_scene
from nerf.datasets.colmap_io import ColmapCamera, ColmapImage, read_model, write_model
from nerf.errors import ConfigError, SceneError


def edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_path_that_does_not_exist(tmp_path):
    with pytest.raises(SceneError, match="does not exist"):
        load_scene(tmp_path / "nowhere")


def test_path_that_is_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SceneError, match="notes.txt.*a file"):
        load_scene(tmp_path / "notes.txt")


def test_empty_folder_lists_what_was_looked_for(tmp_path):
    with pytest.raises(SceneError) as info:
        load_scene(tmp_path)
    message = str(info.value)
    for looked_for in ("transforms_train.json", "transforms.json", "sparse/0/cameras.bin", "poses_bounds.npy"):
        assert looked_for in message


def test_forced_format_with_its_file_missing(tmp_path):
    with pytest.raises(SceneError, match=r"transforms\.json: file not found"):
        load_scene(tmp_path, format="transforms")
    with pytest.raises(SceneError, match=r"transforms_train\.json: file not found"):
        load_scene(tmp_path, format="blender")
    with pytest.raises(SceneError, match=r"poses_bounds\.npy"):
        load_scene(tmp_path, format="llff")


def test_unknown_format_and_split_names_are_config_errors(tmp_path):
    write_blender(tmp_path)
    with pytest.raises(ConfigError, match="'nerfstudio'"):
        load_scene(tmp_path, format="nerfstudio")
    with pytest.raises(ConfigError, match="splits"):
        load_scene(tmp_path, splits=("training",))


def test_malformed_json(tmp_path):
    write_blender(tmp_path)
    (tmp_path / "transforms_val.json").write_text('{"camera_angle_x": 0.8, "frames": [}')
    with pytest.raises(SceneError, match=r"transforms_val\.json: malformed JSON at line 1"):
        load_scene(tmp_path)


def test_json_missing_keys(tmp_path):
    write_blender(tmp_path)
    edit_json(tmp_path / "transforms_train.json", lambda d: d.pop("camera_angle_x"))
    with pytest.raises(SceneError, match=r"transforms_train\.json: 'camera_angle_x'"):
        load_scene(tmp_path)
    write_blender(tmp_path)
    edit_json(tmp_path / "transforms_test.json", lambda d: d["frames"][1].pop("transform_matrix"))
    with pytest.raises(SceneError, match=r"transforms_test\.json frame 1: missing 'transform_matrix'"):
        load_scene(tmp_path)
    write_blender(tmp_path)
    edit_json(tmp_path / "transforms_train.json", lambda d: d["frames"][0].update(transform_matrix=[[1, 0], [0, 1]]))
    with pytest.raises(SceneError, match=r"transforms_train\.json frame 0: 'transform_matrix' must be 4x4"):
        load_scene(tmp_path)


def test_missing_frame_image_names_frame_path_and_folder(tmp_path):
    write_blender(tmp_path)
    (tmp_path / "train" / "r_1.png").unlink()
    with pytest.raises(SceneError) as info:
        load_scene(tmp_path)
    message = str(info.value)
    assert "transforms_train.json frame 1" in message
    assert "'r_1.png' not found" in message
    assert f"looked in {tmp_path / 'train'}" in message


def test_missing_image_folder(tmp_path):
    write_transforms(tmp_path, n=3)
    for p in (tmp_path / "images").iterdir():
        p.unlink()
    (tmp_path / "images").rmdir()
    with pytest.raises(SceneError, match=r"transforms\.json frame 0: file '000\.png' not found.*does not exist"):
        load_scene(tmp_path)


def test_images_of_mixed_sizes_where_one_size_is_required(tmp_path):
    from nerf.datasets.images import read_images

    write_blender(tmp_path, size=(8, 6))
    write_image(tmp_path / "val" / "r_1.png", 10, 6, channels=4)
    files = [tmp_path / "val" / "r_0.png", tmp_path / "val" / "r_1.png"]
    with pytest.raises(SceneError) as info:
        read_images(files, ["transforms_val.json frame 0", "transforms_val.json frame 1"], size=(4, 3))
    message = str(info.value)
    assert "r_1.png is 10x6" in message and "is 8x6" in message and "transforms_val.json frame 1" in message


@pytest.mark.parametrize(
    "matrix, problem",
    [
        ([[1, 0, 0, 0], [0, 1, 0, float("nan")], [0, 0, 1, 4], [0, 0, 0, 1]], "NaN or inf"),
        ([[1, 0, 0, 0], [0, 1, 0, float("inf")], [0, 0, 1, 4], [0, 0, 0, 1]], "NaN or inf"),
        ([[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1]], r"not a rotation \(\|R\^T R - I\| = 3"),
        ([[1, 0.3, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1]], r"not a rotation \(\|R\^T R - I\|"),
        ([[-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1]], "det"),
        ([[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1]], "det"),
        ([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 1, 1]], "bottom row"),
    ],
)
def test_bad_poses(tmp_path, matrix, problem):
    write_transforms(tmp_path, n=4)
    edit_json(tmp_path / "transforms.json", lambda d: d["frames"][2].update(transform_matrix=matrix))
    with pytest.raises(SceneError, match=rf"transforms\.json frame 2: .*{problem}"):
        load_scene(tmp_path)


def test_scaled_rotation_is_refused_and_a_rounded_one_accepted(tmp_path):
    poses = write_transforms(tmp_path, n=4)
    scaled = poses[2].copy()
    scaled[:3, :3] *= 3.0  # det 27: a scale hidden in the pose, not a camera orientation
    edit_json(tmp_path / "transforms.json", lambda d: d["frames"][2].update(transform_matrix=scaled.tolist()))
    with pytest.raises(SceneError, match=r"transforms\.json frame 2: camera pose is not a rotation.*det 27"):
        load_scene(tmp_path)
    rounded = np.round(poses[2], 3)  # a file printed with 3 decimals is still a rotation
    edit_json(tmp_path / "transforms.json", lambda d: d["frames"][2].update(transform_matrix=rounded.tolist()))
    rot = load_scene(tmp_path).cameras.c2w[:, :3, :3].double()
    assert np.allclose((rot.transpose(1, 2) @ rot).numpy(), np.eye(3), atol=1e-6)


def test_truncated_image(tmp_path):
    write_blender(tmp_path, size=(64, 48))
    path = tmp_path / "test" / "r_0.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SceneError, match=r"transforms_test\.json frame 0: cannot decode image .*r_0\.png"):
        load_scene(tmp_path)


def test_file_that_is_not_an_image(tmp_path):
    write_blender(tmp_path)
    (tmp_path / "train" / "r_2.png").write_text("not a png")
    with pytest.raises(SceneError, match=r"transforms_train\.json frame 2: cannot read image .*r_2\.png"):
        load_scene(tmp_path)


@pytest.mark.parametrize("shape", [(9, 15), (9, 17, 1), (0, 17)])
def test_poses_bounds_of_the_wrong_shape(tmp_path, shape):
    write_llff(tmp_path)
    np.save(tmp_path / "poses_bounds.npy", np.zeros(shape))
    with pytest.raises(SceneError, match=rf"poses_bounds\.npy: expected shape \[N, 17\].*{shape}"):
        load_scene(tmp_path, downscale=4)


def test_poses_bounds_not_a_npy_file(tmp_path):
    write_llff(tmp_path)
    (tmp_path / "poses_bounds.npy").write_bytes(b"garbage")
    with pytest.raises(SceneError, match=r"poses_bounds\.npy: cannot read"):
        load_scene(tmp_path, downscale=4)


def test_llff_bad_bounds(tmp_path):
    write_llff(tmp_path)
    data = np.load(tmp_path / "poses_bounds.npy")
    data[3, 15:] = [5.0, 1.0]
    np.save(tmp_path / "poses_bounds.npy", data)
    with pytest.raises(SceneError, match=r"poses_bounds\.npy row 3: bounds must satisfy 0 < near < far"):
        load_scene(tmp_path, downscale=4)


def test_llff_image_count_differs_from_poses(tmp_path):
    write_llff(tmp_path, n=9)
    (tmp_path / "images_4" / "image004.png").unlink()
    with pytest.raises(SceneError, match=r"images_4: found 8 images but .*poses_bounds\.npy has 9 poses"):
        load_scene(tmp_path, downscale=4)


def test_llff_downscale_below_the_folders_present(tmp_path):
    write_llff(tmp_path, folders=(4, 8))
    with pytest.raises(SceneError, match=r"downscale 2 needs images/.*images_4, images_8"):
        load_scene(tmp_path, downscale=2)


def test_colmap_unsupported_camera_model(tmp_path):
    write_colmap(tmp_path, model="FULL_OPENCV", params=(7, 7, 4, 3, 0, 0, 0, 0, 0, 0, 0, 0))
    with pytest.raises(SceneError) as info:
        load_scene(tmp_path)
    message = str(info.value)
    assert "FULL_OPENCV" in message and "cameras.bin" in message and "not supported" in message


def test_colmap_missing_image(tmp_path):
    write_colmap(tmp_path, n=5)
    (tmp_path / "images" / "003.png").unlink()
    with pytest.raises(SceneError, match=r"images\.bin image 4 \(003\.png\): file '003\.png' not found"):
        load_scene(tmp_path)


def test_transforms_unsupported_camera_model(tmp_path):
    write_transforms(tmp_path, n=4, meta={"camera_model": "EQUIRECTANGULAR"})
    with pytest.raises(SceneError, match=r"transforms\.json frame 0: camera_model 'EQUIRECTANGULAR'"):
        load_scene(tmp_path)


def test_transforms_without_focal_length(tmp_path):
    write_transforms(tmp_path, n=4)
    edit_json(tmp_path / "transforms.json", lambda d: d.pop("fl_x"))
    with pytest.raises(SceneError, match=r"transforms\.json frame 0: no focal length"):
        load_scene(tmp_path)


def test_transforms_split_list_names_unknown_file(tmp_path):
    write_transforms(tmp_path, n=4, meta={"test_filenames": ["images/999.png"]})
    with pytest.raises(SceneError, match=r"'test_filenames' lists 'images/999\.png'"):
        load_scene(tmp_path)


def test_bad_downscale(tmp_path):
    write_blender(tmp_path)
    with pytest.raises(SceneError, match="downscale must be a number >= 1"):
        load_scene(tmp_path, downscale=0.5)


@pytest.mark.parametrize("meta, problem", [({"aabb_scale": -2}, "'aabb_scale' must be a positive number"),
                                           ({"offset": [0.5, 0.5]}, "'offset' must be a list of 3 numbers")])
def test_transforms_bad_ngp_keys(tmp_path, meta, problem):
    write_transforms(tmp_path, n=3, meta=meta)
    with pytest.raises(SceneError, match=rf"transforms\.json: {problem}"):
        load_scene(tmp_path)


# Impossible intrinsics and sizes that disagree with the images (nerf/datasets/checks.py).

@pytest.mark.parametrize(
    "where, change, problem",
    [
        ("global", {"fl_x": -7.0}, r"transforms\.json frame 0: focal length 'fl_x \(or camera_angle_x\)' must be positive, got -7"),
        ("frame", {"fl_y": 0.0}, r"transforms\.json frame 3: focal length 'fl_y \(or camera_angle_y\)' must be positive, got 0"),
        ("frame", {"cx": 100.0}, r"transforms\.json frame 3: principal point 'cx' = 100 lies far outside the image \(0\.\.8"),
        ("global", {"cy": -20.0}, r"transforms\.json frame 0: principal point 'cy' = -20 lies far outside"),
    ],
)
def test_transforms_impossible_intrinsics(tmp_path, where, change, problem):
    write_transforms(tmp_path, n=5)
    target = (lambda d: d.update(change)) if where == "global" else (lambda d: d["frames"][3].update(change))
    edit_json(tmp_path / "transforms.json", target)
    with pytest.raises(SceneError, match=problem):
        load_scene(tmp_path)


def test_transforms_negative_field_of_view(tmp_path):
    write_transforms(tmp_path, n=4)
    edit_json(tmp_path / "transforms.json", lambda d: (d.pop("fl_x"), d.update(camera_angle_x=-0.8)))
    with pytest.raises(SceneError, match=r"frame 0: focal length 'fl_x \(or camera_angle_x\)' must be positive"):
        load_scene(tmp_path)


def test_transforms_declared_size_differs_from_the_images(tmp_path):
    write_transforms(tmp_path, n=4, size=(8, 6), meta={"w": 16, "h": 12})
    with pytest.raises(SceneError) as info:
        load_scene(tmp_path)
    message = str(info.value)
    assert f"{tmp_path / 'transforms.json'} 'w', 'h': declares images of 16x12" in message
    assert "000.png is 8x6" in message


def test_transforms_declared_size_checked_against_a_downscaled_folder(tmp_path):
    write_transforms(tmp_path, n=4, size=(8, 6))
    for i in range(4):
        write_image(tmp_path / "images_2" / f"{i:03d}.png", 4, 3, seed=i)
    assert load_scene(tmp_path, downscale=2).width == 4  # 8 / 2: consistent
    for i in range(4):
        write_image(tmp_path / "images_2" / f"{i:03d}.png", 6, 3, seed=i)
    with pytest.raises(SceneError, match=r"declares images of 8x6 / 2 = 4x3, but .*images_2.*000\.png is 6x3"):
        load_scene(tmp_path, downscale=2)


@pytest.mark.parametrize(
    "params, problem",
    [
        ((0.0, 7.5, 4.2, 2.9), r"cameras\.bin camera 1 \(PINHOLE\): focal length 'PARAMS fx \(or f\)' must be positive"),
        ((7.0, 7.5, 4.2, 40.0), r"cameras\.bin camera 1 \(PINHOLE\): principal point 'PARAMS cy' = 40"),
        ((7.0, float("nan"), 4.2, 2.9), r"cameras\.bin camera 1 \(PINHOLE\): 'PARAMS fy \(or f\)' must be a finite number"),
    ],
)
def test_colmap_impossible_intrinsics(tmp_path, params, problem):
    write_colmap(tmp_path, n=4, params=params)
    with pytest.raises(SceneError, match=problem):
        load_scene(tmp_path)


def test_colmap_non_finite_distortion(tmp_path):
    write_colmap(tmp_path, n=4, model="OPENCV", params=(7, 7.5, 4.2, 2.9, 0.1, float("inf"), 0, 0))
    with pytest.raises(SceneError, match=r"camera 1 \(OPENCV\): PARAMS \(distortion\) must be finite"):
        load_scene(tmp_path)


def test_colmap_camera_size_differs_from_the_images(tmp_path):
    write_colmap(tmp_path, n=4, size=(8, 6))
    model = read_model(tmp_path / "sparse" / "0")
    cam = model.cameras[1]
    model.cameras[1] = ColmapCamera(1, cam.model, 12, 6, cam.params)
    write_model(model, tmp_path / "sparse" / "0")
    with pytest.raises(SceneError, match=r"cameras\.bin camera 1 WIDTH, HEIGHT: declares images of 12x6, but .*000\.png is 8x6"):
        load_scene(tmp_path)


@pytest.mark.parametrize("qvec, norm", [((0.5, 0.5, 0.5, 0.0), "0.866025"), ((0.0, 0.0, 0.0, 0.0), "0")])
def test_colmap_quaternion_that_is_not_a_rotation(tmp_path, qvec, norm):
    write_colmap(tmp_path, n=4)
    model = read_model(tmp_path / "sparse" / "0")
    im = model.images[3]
    model.images[3] = ColmapImage(3, np.array(qvec), im.tvec, im.camera_id, im.name, im.xys, im.point3d_ids)
    write_model(model, tmp_path / "sparse" / "0")
    with pytest.raises(SceneError, match=rf"images\.bin image 3 \(002\.png\): QW QX QY QZ = .* is not a unit quaternion \(norm {norm}\)"):
        load_scene(tmp_path)


def test_llff_declared_size_differs_from_the_images(tmp_path):
    write_llff(tmp_path, full_size=(64, 48), folders=(4,))
    for i in range(9):
        write_image(tmp_path / "images_4" / f"image{i:03d}.png", 12, 9, seed=i)  # 48x36 photos, not 64x48
    with pytest.raises(SceneError, match=r"poses_bounds\.npy row 0 hwf: declares images of 64x48 / 4 = 16x12, but .*is 12x9"):
        load_scene(tmp_path, downscale=4)
