"""COLMAP model -> instant-ngp / nerfstudio scene files (transforms.json, sparse_pc.ply, sparse/0).

Frames and axes: COLMAP poses are world-to-camera in OpenCV axes (x right, y down, z forward).
`transform_matrix` is camera-to-world in OpenGL axes (x right, y up, z backwards), the
instant-ngp/nerfstudio convention. The world follows instant-ngp's colmap2nerf: the cameras'
mean up vector is +z (when `orient_up`), the origin is the point the cameras look at, and the
mean camera distance to it is 4 (our object rule's 2.64 over 0.66). The centre and up rotation
are the ones our loader's object rule computes (nerf/datasets/normalize.py), so with instant-ngp's default
scale 0.33 and offset 0.5 the file lands exactly in our normalised frame (`aabb_scale` 4 =
the object rule's box): the scene loads the same from transforms.json as from sparse/0.

"applied_transform" (nerfstudio's key) is the 3x4 similarity [s R | t] from COLMAP's world to
the file's world; nerfstudio composes it into its dataparser transform. `sparse_pc.ply` holds
COLMAP's 3D points in the file's world with their colours ("ply_file_path", as nerfstudio's
ns-process-data writes it). Frames are sorted by image name; with one camera its intrinsics sit
at the top level, with several each frame carries its own.

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
from nerf.datasets.normalize import (
    NGP_DEFAULT_SCALE, OBJECT_AABB_HALF_EXTENT, apply_to_poses, object_normalization,
)
from nerf.errors import SceneError
from nerf.rotations import quat_to_rotmat

PLY_NAME = "sparse_pc.ply"
NGP_UNIT = 2.0 * NGP_DEFAULT_SCALE  # our normalised units per file unit under instant-ngp's defaults
NGP_AABB_SCALE = int(OBJECT_AABB_HALF_EXTENT)  # 4: the box our object rule gives real captures

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


def colmap_to_opencv_c2w(image: ColmapImage) -> np.ndarray:  # -> [4, 4]
    """OpenCV camera-to-world of a COLMAP image, in COLMAP's world."""
    rot = quat_to_rotmat(image.qvec)
    c2w = np.eye(4)
    c2w[:3, :3] = rot.T
    c2w[:3, 3] = -rot.T @ image.tvec
    return c2w


def ngp_world(c2w: np.ndarray, orient_up: bool = True) -> np.ndarray:  # c2w [C, 4, 4] OpenCV -> [4, 4]
    """The similarity from COLMAP's world to instant-ngp's colmap2nerf world (see module doc)."""
    to_normalised = object_normalization(c2w, align_up=orient_up).transform
    return np.diag([1.0 / NGP_UNIT, 1.0 / NGP_UNIT, 1.0 / NGP_UNIT, 1.0]) @ to_normalised


def write_points_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:  # [P, 3] float, [P, 3] uint8
    """A binary little-endian PLY point cloud (x, y, z float, red, green, blue uchar)."""
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(xyz)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    rows = np.empty(len(xyz), dtype=[("p", "<f4", 3), ("c", "u1", 3)])
    rows["p"], rows["c"] = xyz, rgb
    path.write_bytes(header.encode() + rows.tobytes())


def write_scene(model: ColmapModel, out_dir: Path, orient_up: bool = True) -> dict:
    """Write transforms.json, sparse_pc.ply and sparse/0 for `model`, whose images are already in
    out_dir/images.

    Args:
        model: registered images, their cameras and the points.
        out_dir: the scene folder.
        orient_up: rotate the world so that the cameras' mean up vector is +z.
    Returns:
        The transforms.json content.
    """
    images = sorted(model.images.values(), key=lambda image: image.name)
    intrinsics = {cid: transforms_intrinsics(model.cameras[cid]) for cid in {im.camera_id for im in images}}
    c2w = np.stack([colmap_to_opencv_c2w(image) for image in images])
    world = ngp_world(c2w, orient_up)
    moved = apply_to_poses(world, c2w) @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV -> OpenGL axes
    transforms = dict(next(iter(intrinsics.values()))) if len(intrinsics) == 1 else {}
    transforms["aabb_scale"] = NGP_AABB_SCALE
    transforms["applied_transform"] = world[:3].tolist()
    frames = []
    for image, pose in zip(images, moved):
        frame = {"file_path": f"images/{image.name}", "transform_matrix": pose.tolist(),
                 "colmap_im_id": image.image_id}
        if len(intrinsics) > 1:
            frame.update(intrinsics[image.camera_id])
        frames.append(frame)
    transforms["frames"] = frames
    points = sorted(model.points3d.values(), key=lambda p: p.point3d_id)
    if points:
        xyz = np.stack([p.xyz for p in points]) @ world[:3, :3].T + world[:3, 3]
        write_points_ply(out_dir / PLY_NAME, xyz, np.stack([p.rgb for p in points]).astype(np.uint8))
        transforms["ply_file_path"] = PLY_NAME
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
