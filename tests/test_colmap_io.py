"""Tests of the COLMAP sparse-model reader and writer (nerf/datasets/colmap_io.py)."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from nerf.datasets.colmap_io import (
    CAMERA_MODEL_BY_NAME,
    ColmapCamera,
    ColmapImage,
    ColmapModel,
    ColmapPoint3D,
    read_model,
    write_model,
)
from nerf.errors import SceneError
from nerf.rotations import quat_to_rotmat, rotmat_to_quat

DATA = Path(__file__).parents[1].parent / "shared" / "data"
SAMPLE = DATA / "colmap_sample" / "sparse" / "0"
needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"COLMAP sample model not found at {SAMPLE}")

ROT_TOL = 1e-12  # float64 rotations built from a few products of unit quantities


@pytest.fixture(scope="module")
def sample_model() -> ColmapModel:
    return read_model(SAMPLE)


@needs_sample
def test_read_sample_counts(sample_model):
    assert len(sample_model.cameras) == 77
    assert {c.model for c in sample_model.cameras.values()} == {"SIMPLE_PINHOLE"}
    assert len(sample_model.images) == 77
    assert len(sample_model.points3d) == 9262
    for image in sample_model.images.values():
        assert image.xys.shape == (len(image.point3d_ids), 2)
        observed = image.point3d_ids[image.point3d_ids >= 0]
        assert all(int(i) in sample_model.points3d for i in observed)


@needs_sample
def test_sample_matches_pycolmap(sample_model):
    """pycolmap's own C++ reader is an independent reference for the poses and intrinsics."""
    pycolmap = pytest.importorskip("pycolmap")
    rec = pycolmap.Reconstruction(str(SAMPLE))
    for image_id, image in sample_model.images.items():
        ref = rec.images[image_id]
        pose = ref.cam_from_world()
        assert ref.name == image.name
        np.testing.assert_array_equal(pose.translation, image.tvec)
        np.testing.assert_allclose(pose.rotation.matrix(), image.rotmat(), atol=ROT_TOL)
    for camera_id, camera in sample_model.cameras.items():
        np.testing.assert_array_equal(rec.cameras[camera_id].params, camera.params)
        assert rec.cameras[camera_id].model.name == camera.model


@needs_sample
@pytest.mark.parametrize("binary", [False, True])
def test_round_trip(sample_model, tmp_path, binary):
    write_model(sample_model, tmp_path, binary=binary)
    ext = ".bin" if binary else ".txt"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{s}{ext}" for s in ("cameras", "images", "points3D"))
    again = read_model(tmp_path)
    assert again.cameras == sample_model.cameras
    assert again.images == sample_model.images
    assert again.points3d == sample_model.points3d


@needs_sample
def test_binary_rewrite_is_byte_identical(sample_model, tmp_path):
    write_model(sample_model, tmp_path, binary=True)
    for name in ("cameras.bin", "images.bin", "points3D.bin"):
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name


def _tiny_model() -> ColmapModel:
    camera = ColmapCamera(3, "OPENCV", 640, 480, np.array([500.0, 501.0, 320.0, 240.0, 0.1, -0.02, 1e-3, -2e-3]))
    fisheye = ColmapCamera(4, "OPENCV_FISHEYE", 320, 240, np.array([200.0, 200.0, 160.0, 120.0, 0.01, 0.02, 0.03, 0.04]))
    image = ColmapImage(
        image_id=7,
        qvec=rotmat_to_quat(quat_to_rotmat(np.array([0.9, 0.1, -0.3, 0.2]))),
        tvec=np.array([0.5, -1.25, 3.0]),
        camera_id=3,
        name="dir with space/img 01.png",
        xys=np.array([[10.5, 20.25], [1.0 / 3.0, 2.0 / 3.0]]),
        point3d_ids=np.array([-1, 11], dtype=np.int64),
    )
    empty = ColmapImage(8, np.array([1.0, 0, 0, 0]), np.zeros(3), 4, "b.png", np.zeros((0, 2)), np.zeros(0, np.int64))
    point = ColmapPoint3D(11, np.array([0.1, 0.2, 0.3]), np.array([255, 0, 7], np.uint8), 0.75, np.array([7]), np.array([1]))
    return ColmapModel({3: camera, 4: fisheye}, {7: image, 8: empty}, {11: point})


@pytest.mark.parametrize("binary", [False, True])
def test_round_trip_distortion_models_and_empty_images(tmp_path, binary):
    model = _tiny_model()
    write_model(model, tmp_path, binary=binary)
    again = read_model(tmp_path)
    assert again.cameras == model.cameras and again.images == model.images and again.points3d == model.points3d


def test_binary_preferred_when_both_present(tmp_path):
    model = _tiny_model()
    write_model(model, tmp_path, binary=False)
    write_model(ColmapModel(model.cameras, {}, {}), tmp_path, binary=True)
    assert read_model(tmp_path).images == {}


@pytest.mark.parametrize("name", ["cameras.bin", "images.bin", "points3D.bin"])
def test_truncated_binary_raises_scene_error(tmp_path, name):
    write_model(_tiny_model(), tmp_path, binary=True)
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) - 5])
    with pytest.raises(SceneError, match=rf"{name}.*truncated"):
        read_model(tmp_path)


@needs_sample
def test_truncated_sample_images_bin(tmp_path):
    for name in ("cameras.bin", "points3D.bin"):
        shutil.copy(SAMPLE / name, tmp_path / name)
    data = (SAMPLE / "images.bin").read_bytes()
    (tmp_path / "images.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(SceneError, match=r"images\.bin.*truncated"):
        read_model(tmp_path)


def test_malformed_text_raises_scene_error(tmp_path):
    write_model(_tiny_model(), tmp_path, binary=False)
    lines = (tmp_path / "images.txt").read_text().splitlines()
    (tmp_path / "images.txt").write_text("\n".join(lines[:-1]) + "\n")  # drop the last points line
    with pytest.raises(SceneError, match=r"images\.txt.*no 2D point line"):
        read_model(tmp_path)
    write_model(_tiny_model(), tmp_path, binary=False)
    (tmp_path / "cameras.txt").write_text("3 NOT_A_MODEL 640 480 1 2 3\n")
    with pytest.raises(SceneError, match=r"cameras\.txt line 1: unknown camera model"):
        read_model(tmp_path)
    (tmp_path / "cameras.txt").write_text("3 PINHOLE 640 480 1 2 3\n")
    with pytest.raises(SceneError, match=r"cameras\.txt line 1: .*needs 7 values"):
        read_model(tmp_path)


def test_missing_folder_raises_scene_error(tmp_path):
    with pytest.raises(SceneError, match="expected cameras, images and points3D"):
        read_model(tmp_path / "nope")


def test_unknown_camera_model_id_in_binary(tmp_path):
    write_model(_tiny_model(), tmp_path, binary=True)
    data = bytearray((tmp_path / "cameras.bin").read_bytes())
    data[12:16] = (99).to_bytes(4, "little")  # model id of the first camera (after count u64 and id u32)
    (tmp_path / "cameras.bin").write_bytes(bytes(data))
    with pytest.raises(SceneError, match="unknown camera model id 99"):
        read_model(tmp_path)


def test_camera_model_table():
    expected = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 4, "RADIAL": 5, "OPENCV": 8,
                "OPENCV_FISHEYE": 8, "FULL_OPENCV": 12, "FOV": 5, "THIN_PRISM_FISHEYE": 12}
    for name, count in expected.items():
        assert CAMERA_MODEL_BY_NAME[name].num_params == count


