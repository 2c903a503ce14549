"""COLMAP model -> instant-ngp / nerfstudio scene files (transforms.json and sparse/0).

Frames and axes: COLMAP poses are world-to-camera in OpenCV axes (x right, y down, z forward).
`transform_matrix` is camera-to-world in OpenGL axes (x right, y up, z backwards), the
instant-ngp/nerfstudio convention. The world is COLMAP's, rotated (when `orient_up`) so that the
cameras' mean up vector is +z; that rotation is stored as "applied_transform" [3, 4] (COLMAP world
-> transforms world, nerfstudio's key). No scale or shift is applied: the loaders normalise.
Frames are sorted by image name; with one camera its intrinsics sit at the top level, with
several each frame carries its own.

Intrinsics: COLMAP's principal point already puts pixel centres at +0.5, like the library, so
images resized by (sx, sy) have fx, cx multiplied by sx and fy, cy by sy, with no half-pixel
shift. Distortion terms act on normalised coordinates and do not change.
"""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from nerf.datasets.colmap_io import ColmapCamera, ColmapImage, ColmapModel, write_model
from nerf.errors import SceneError
from nerf.rotations import quat_to_rotmat, up_alignment

# COLMAP models that transforms.json can express, with the names of their distortion params.
_SINGLE_FOCAL = {"SIMPLE_PINHOLE": (), "SIMPLE_RADIAL": ("k1",), "RADIAL": ("k1", "k2"),
                 "SIMPLE_RADIAL_FISHEYE": ("k1",), "RADIAL_FISHEYE": ("k1", "k2"), "SIMPLE_FISHEYE": ()}
_TWO_FOCAL = {"PINHOLE": (), "OPENCV": ("k1", "k2", "p1", "p2"), "OPENCV_FISHEYE": ("k1", "k2", "k3", "k4"),
              "FULL_OPENCV": ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"), "FISHEYE": ()}
TRANSFORMS_CAMERA_MODELS = tuple(_SINGLE_FOCAL) + tuple(_TWO_FOCAL)



def transforms_intrinsics(camera: ColmapCamera) -> dict:
    """instant-ngp/nerfstudio intrinsics (fl_x, fl_y, cx, cy, w, h, camera_model, k*, p*) of a camera."""
    params = [float(p) for p in camera.params]
    if camera.model in _SINGLE_FOCAL:
        (focal, cx, cy), extra, names = params[:3], params[3:], _SINGLE_FOCAL[camera.model]
        fl_x = fl_y = focal
    elif camera.model in _TWO_FOCAL:
        (fl_x, fl_y, cx, cy), extra, names = params[:4], params[4:], _TWO_FOCAL[camera.model]
    else:
        raise SceneError(f"camera {camera.camera_id}: COLMAP model {camera.model} cannot be written to "
                         f"transforms.json (supported: {', '.join(TRANSFORMS_CAMERA_MODELS)}); rerun with undistortion")
    dist = dict(zip(names, extra))
    if any(dist.get(k, 0.0) != 0.0 for k in ("k4", "k5", "k6")) and camera.model == "FULL_OPENCV":
        raise SceneError(f"camera {camera.camera_id}: FULL_OPENCV rational terms k4..k6 have no "
                         "transforms.json field; rerun with undistortion or the OPENCV model")
    fisheye = "FISHEYE" in camera.model
    out = {"camera_model": "OPENCV_FISHEYE" if fisheye else "OPENCV", "fl_x": fl_x, "fl_y": fl_y, "cx": cx,
           "cy": cy, "w": camera.width, "h": camera.height,
           "camera_angle_x": 2.0 * math.atan(camera.width / (2.0 * fl_x)),
           "camera_angle_y": 2.0 * math.atan(camera.height / (2.0 * fl_y))}
    for key in ("k1", "k2", "k3", "k4") if fisheye else ("k1", "k2", "p1", "p2", "k3"):
        out[key] = dist.get(key, 0.0)
    return out


def colmap_to_opengl_c2w(image: ColmapImage, world_rotation: np.ndarray) -> np.ndarray:  # -> [4, 4]
    """OpenGL camera-to-world of a COLMAP image, in the world rotated by `world_rotation` [3, 3]."""
    rot = quat_to_rotmat(image.qvec)
    c2w = np.eye(4)
    c2w[:3, :3] = world_rotation @ rot.T
    c2w[:3, 3] = world_rotation @ (-rot.T @ image.tvec)
    return c2w @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV (y down, z forward) -> OpenGL axes


def write_scene(model: ColmapModel, out_dir: Path, orient_up: bool = True) -> dict:
    """Write transforms.json and sparse/0 for `model`, whose images are already in out_dir/images.

    Args:
        model: registered images, their cameras and the points.
        out_dir: the scene folder.
        orient_up: rotate the world so that the cameras' mean up vector is +z.
    Returns:
        The transforms.json content.
    """
    images = sorted(model.images.values(), key=lambda image: image.name)
    intrinsics = {cid: transforms_intrinsics(model.cameras[cid]) for cid in {im.camera_id for im in images}}
    # COLMAP's world-to-camera rotations transposed are the cameras' camera-to-world rotations
    c2w_rotations = np.swapaxes(quat_to_rotmat(np.stack([image.qvec for image in images])), 1, 2)
    rotation = up_alignment(c2w_rotations) if orient_up else np.eye(3)
    transforms = dict(next(iter(intrinsics.values()))) if len(intrinsics) == 1 else {}
    transforms["applied_transform"] = np.hstack([rotation, np.zeros((3, 1))]).tolist()
    frames = []
    for image in images:
        frame = {"file_path": f"images/{image.name}",
                 "transform_matrix": colmap_to_opengl_c2w(image, rotation).tolist(),
                 "colmap_im_id": image.image_id}
        if len(intrinsics) > 1:
            frame.update(intrinsics[image.camera_id])
        frames.append(frame)
    transforms["frames"] = frames
    (out_dir / "transforms.json").write_text(json.dumps(transforms, indent=2))
    write_model(model, out_dir / "sparse" / "0", binary=True)
    return transforms


def rescale_camera(camera: ColmapCamera, width: int, height: int) -> ColmapCamera:
    """The camera for images resized to (width, height); distortion terms are unit-free."""
    sx, sy = width / camera.width, height / camera.height
    params = np.array(camera.params, dtype=np.float64)
    if camera.model in _SINGLE_FOCAL:
        params[:3] *= [(sx + sy) / 2.0, sx, sy]
    elif camera.model in _TWO_FOCAL:
        params[:4] *= [sx, sy, sx, sy]
    else:
        transforms_intrinsics(camera)  # raises the unsupported-model error
    return dataclasses.replace(camera, width=width, height=height, params=params)
