"""COLMAP sparse-model data: the camera model table and the camera, image, point and model types.

Vocabulary (COLMAP's own, kept as is):
    camera   intrinsics shared by images: model name, width, height, params (model order).
    image    a registered photo: `qvec` (w, x, y, z) and `tvec` give the world-to-camera pose
             x_cam = R(qvec) @ x_world + tvec in COLMAP's OpenCV axes (x right, y down, z forward);
             `xys [P, 2]` are its 2D keypoints and `point3d_ids [P]` their 3D points (-1: none).
    point3D  a triangulated point: xyz, rgb (uint8), mean reprojection error, track of
             (image_id, point2D_idx) pairs.

Files are read and written by nerf/datasets/colmap_io.py (binary: colmap_binary.py, text:
colmap_text.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nerf.errors import SceneError
from nerf.rotations import quat_to_rotmat


@dataclass(frozen=True)
class CameraModelSpec:
    """One COLMAP camera model: its id in binary files, its name and its parameter count."""

    model_id: int
    name: str
    num_params: int


# COLMAP's camera models (src/colmap/sensor/models.h), in id order.
CAMERA_MODELS: tuple[CameraModelSpec, ...] = (
    CameraModelSpec(0, "SIMPLE_PINHOLE", 3),  # f, cx, cy
    CameraModelSpec(1, "PINHOLE", 4),  # fx, fy, cx, cy
    CameraModelSpec(2, "SIMPLE_RADIAL", 4),  # f, cx, cy, k
    CameraModelSpec(3, "RADIAL", 5),  # f, cx, cy, k1, k2
    CameraModelSpec(4, "OPENCV", 8),  # fx, fy, cx, cy, k1, k2, p1, p2
    CameraModelSpec(5, "OPENCV_FISHEYE", 8),  # fx, fy, cx, cy, k1, k2, k3, k4
    CameraModelSpec(6, "FULL_OPENCV", 12),  # fx, fy, cx, cy, k1, k2, p1, p2, k3, k4, k5, k6
    CameraModelSpec(7, "FOV", 5),  # fx, fy, cx, cy, omega
    CameraModelSpec(8, "SIMPLE_RADIAL_FISHEYE", 4),  # f, cx, cy, k
    CameraModelSpec(9, "RADIAL_FISHEYE", 5),  # f, cx, cy, k1, k2
    CameraModelSpec(10, "THIN_PRISM_FISHEYE", 12),  # fx, fy, cx, cy, k1, k2, p1, p2, k3, k4, sx1, sy1
    CameraModelSpec(11, "RAD_TAN_THIN_PRISM_FISHEYE", 16),  # fx, fy, cx, cy, k0..k5, p0, p1, s0..s3
    CameraModelSpec(12, "SIMPLE_DIVISION", 4),  # f, cx, cy, k
    CameraModelSpec(13, "DIVISION", 5),  # fx, fy, cx, cy, k
    CameraModelSpec(14, "SIMPLE_FISHEYE", 3),  # f, cx, cy
    CameraModelSpec(15, "FISHEYE", 4),  # fx, fy, cx, cy
    CameraModelSpec(16, "EUCM", 6),  # fx, fy, cx, cy, alpha, beta
    CameraModelSpec(17, "EQUIRECTANGULAR", 2),  # w, h
)
CAMERA_MODEL_BY_ID = {spec.model_id: spec for spec in CAMERA_MODELS}
CAMERA_MODEL_BY_NAME = {spec.name: spec for spec in CAMERA_MODELS}

# COLMAP stores "no 3D point" as the largest uint64; read as int64 it is -1.
INVALID_POINT3D_ID = -1


@dataclass(frozen=True, eq=False)
class ColmapCamera:
    """Intrinsics of one COLMAP camera; `params` are in the order of `model`'s definition."""

    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # [num_params] float64

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ColmapCamera):
            return NotImplemented
        return (
            (self.camera_id, self.model, self.width, self.height)
            == (other.camera_id, other.model, other.width, other.height)
            and np.array_equal(self.params, other.params)
        )


@dataclass(frozen=True, eq=False)
class ColmapImage:
    """One registered image: world-to-camera pose, camera id, file name and 2D observations."""

    image_id: int
    qvec: np.ndarray  # [4] float64 (w, x, y, z), rotation world -> camera
    tvec: np.ndarray  # [3] float64, translation world -> camera
    camera_id: int
    name: str
    xys: np.ndarray  # [P, 2] float64 pixel coordinates (COLMAP: pixel centres at +0.5)
    point3d_ids: np.ndarray  # [P] int64, -1 where the keypoint has no 3D point

    def rotmat(self) -> np.ndarray:  # [3, 3]
        """World-to-camera rotation matrix of this image."""
        return quat_to_rotmat(self.qvec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ColmapImage):
            return NotImplemented
        return (
            (self.image_id, self.camera_id, self.name) == (other.image_id, other.camera_id, other.name)
            and np.array_equal(self.qvec, other.qvec)
            and np.array_equal(self.tvec, other.tvec)
            and np.array_equal(self.xys, other.xys)
            and np.array_equal(self.point3d_ids, other.point3d_ids)
        )


@dataclass(frozen=True, eq=False)
class ColmapPoint3D:
    """One triangulated point and the observations (track) that support it."""

    point3d_id: int
    xyz: np.ndarray  # [3] float64
    rgb: np.ndarray  # [3] uint8
    error: float
    image_ids: np.ndarray  # [T] int64, the track's images
    point2d_idxs: np.ndarray  # [T] int64, index into that image's xys

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ColmapPoint3D):
            return NotImplemented
        return (
            self.point3d_id == other.point3d_id
            and self.error == other.error
            and np.array_equal(self.xyz, other.xyz)
            and np.array_equal(self.rgb, other.rgb)
            and np.array_equal(self.image_ids, other.image_ids)
            and np.array_equal(self.point2d_idxs, other.point2d_idxs)
        )


@dataclass
class ColmapModel:
    """A sparse model: dictionaries keyed by COLMAP's ids."""

    cameras: dict[int, ColmapCamera] = field(default_factory=dict)
    images: dict[int, ColmapImage] = field(default_factory=dict)
    points3d: dict[int, ColmapPoint3D] = field(default_factory=dict)


def camera_spec(camera: ColmapCamera) -> CameraModelSpec:
    """The model table entry of `camera`; SceneError for an unknown model or a wrong parameter count."""
    spec = CAMERA_MODEL_BY_NAME.get(camera.model)
    if spec is None:
        raise SceneError(f"camera {camera.camera_id}: unknown COLMAP camera model {camera.model!r}")
    if len(camera.params) != spec.num_params:
        raise SceneError(
            f"camera {camera.camera_id}: model {spec.name} needs {spec.num_params} parameters, "
            f"got {len(camera.params)}"
        )
    return spec
