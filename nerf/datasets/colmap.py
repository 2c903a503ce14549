"""Reader for COLMAP scenes: a sparse model (`sparse/0/` or `sparse/`) plus `images/`.

Poses: COLMAP stores world-to-camera x_cam = R x + t in OpenCV axes, so c2w = [R^T | -R^T t]
(`colmap_to_opencv`); no axis change. Images are sorted by name lexicographically (the order
of LLFF's `imgs2poses`, so frame i here is row i of a poses_bounds.npy made from the model).

Camera models: SIMPLE_PINHOLE (f, cx, cy), PINHOLE (fx, fy, cx, cy), SIMPLE_RADIAL (f, cx, cy, k),
RADIAL (f, cx, cy, k1, k2), OPENCV (fx, fy, cx, cy, k1, k2, p1, p2) and OPENCV_FISHEYE (fx, fy,
cx, cy, k1, k2, k3, k4); any other model is a SceneError. COLMAP puts pixel centres at +0.5, as
we do, so cx, cy are used unchanged. Fisheye cannot share a scene with the other models.

Each image has its camera's size (WIDTH, HEIGHT); cameras may differ in size (COLMAP's
undistorter crops each image differently, portrait and landscape shots mix; see
nerf/datasets/scene.py for how they share one tensor). Every image file is checked against its
own camera's size. Image folder for a downscale d: `images_d/` when present (each file read at
its own size, which must be its camera's size / d up to rounding), otherwise `images/`
area-resized to round(w / d) x round(h / d) of each camera's size. Intrinsics are scaled per
axis by each image's loaded size over its camera's size.

Splits: test = every 8th image (i % 8 == 0), val = test, train = the rest. Normalisation: by the
camera layout (`camera_layout`, see normalize.py): the forward-facing rule with depth bounds from
each image's sparse points when the cameras all look one way, the generic object rule otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nerf.datasets.assemble import SPLIT_NAMES, holdout_splits, make_scene, scale_intrinsics, select_splits
from nerf.datasets.checks import check_image_size, check_poses, check_quaternions
from nerf.datasets.colmap_io import ColmapCamera, ColmapModel, read_model
from nerf.datasets.images import check_downscale, downscaled_folders, image_sizes, read_images, target_size
from nerf.datasets.normalize import (
    Normalization, camera_layout, forward_facing_normalization, object_normalization,
)
from nerf.datasets.scene import Scene
from nerf.errors import SceneError
from nerf.rotations import quat_to_rotmat

MODEL_FOLDERS = ("sparse/0", "sparse")
MIN_BOUND_POINTS = 10  # sparse points an image must see for its depth bounds
SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE")


def find_model_folder(root: Path) -> Path | None:
    """The first of sparse/0, sparse holding cameras.bin or cameras.txt (None if neither)."""
    for name in MODEL_FOLDERS:
        folder = root / name
        if (folder / "cameras.bin").is_file() or (folder / "cameras.txt").is_file():
            return folder
    return None


def colmap_to_opencv(
    rotations: np.ndarray,  # [C, 3, 3] world-to-camera
    translations: np.ndarray,  # [C, 3] world-to-camera
) -> np.ndarray:  # [C, 4, 4] camera-to-world, OpenCV axes
    """Invert COLMAP's world-to-camera poses; COLMAP's camera axes are OpenCV's already."""
    rt = np.transpose(rotations, (0, 2, 1))
    out = np.tile(np.eye(4), (len(rotations), 1, 1))
    out[:, :3, :3] = rt
    out[:, :3, 3] = -(rt @ translations[:, :, None])[:, :, 0]
    return out


def camera_intrinsics(camera: ColmapCamera, where: str) -> tuple[np.ndarray, np.ndarray, str]:
    """([fx, fy, cx, cy], distortion [6] (k1, k2, k3, k4, p1, p2), model) of a COLMAP camera."""
    p = np.asarray(camera.params, dtype=np.float64)
    dist = np.zeros(6)
    if camera.model == "SIMPLE_PINHOLE":
        return np.array([p[0], p[0], p[1], p[2]]), dist, "pinhole"
    if camera.model == "PINHOLE":
        return p[:4].copy(), dist, "pinhole"
    if camera.model == "SIMPLE_RADIAL":
        dist[0] = p[3]
        return np.array([p[0], p[0], p[1], p[2]]), dist, "opencv"
    if camera.model == "RADIAL":
        dist[:2] = p[3:5]
        return np.array([p[0], p[0], p[1], p[2]]), dist, "opencv"
    if camera.model == "OPENCV":
        dist[[0, 1, 4, 5]] = p[4:8]
        return p[:4].copy(), dist, "opencv"
    if camera.model == "OPENCV_FISHEYE":
        dist[:4] = p[4:8]
        return p[:4].copy(), dist, "fisheye"
    raise SceneError(
        f"{where}: camera {camera.camera_id} uses COLMAP model {camera.model}, which is not supported "
        f"(supported: {', '.join(SUPPORTED_MODELS)}); undistort the images first (colmap image_undistorter)"
    )


def read_colmap(
    root: str | Path,
    downscale: float = 1,
    splits: Sequence[str] = SPLIT_NAMES,
) -> Scene:
    """Load a COLMAP scene.

    Args:
        root: folder holding sparse/0/ (or sparse/) and images/ (and optionally images_d/).
        downscale: factor >= 1; images_d/ is used when present, otherwise images are resized.
        splits: which splits to load images for.
    Returns:
        Scene with normalised cameras (pinhole, opencv or fisheye).
    """
    root = Path(root)
    downscale = check_downscale(downscale)
    folder = find_model_folder(root)
    if folder is None:
        looked = ", ".join(MODEL_FOLDERS)
        raise SceneError(f"{root}: no COLMAP model (looked for cameras.bin or cameras.txt in {looked})")
    model = read_model(folder)
    ext = ".bin" if (folder / "cameras.bin").is_file() else ".txt"
    cameras_file, images_file = folder / f"cameras{ext}", folder / f"images{ext}"
    if not model.images:
        raise SceneError(f"{folder}: the COLMAP model has no registered images")

    records = sorted(model.images.values(), key=lambda im: im.name)
    labels = [f"{images_file} image {im.image_id} ({im.name})" for im in records]
    quats = np.stack([np.asarray(im.qvec, dtype=np.float64) for im in records])
    check_quaternions(quats, labels)
    rotations = quat_to_rotmat(quats)
    translations = np.stack([np.asarray(im.tvec, dtype=np.float64) for im in records])
    c2w = check_poses(colmap_to_opencv(rotations, translations), labels, field="pose (QW QX QY QZ TX TY TZ)")
    parsed = [camera_intrinsics(model.cameras[im.camera_id], str(cameras_file)) for im in records]
    norm = _normalization(model, records, c2w, parsed)

    models = {m for *_, m in parsed}
    if "fisheye" in models and len(models) > 1:
        raise SceneError(f"{cameras_file}: fisheye and perspective cameras cannot share one scene")
    cam_model = "fisheye" if "fisheye" in models else ("opencv" if "opencv" in models else "pinhole")
    cam_sizes = np.array([(model.cameras[im.camera_id].width, model.cameras[im.camera_id].height)
                          for im in records], dtype=np.int64)  # [N, 2] (w, h) per image

    folders = downscaled_folders(root, "images")
    d_folder = folders.get(int(downscale)) if downscale == int(downscale) and downscale > 1 else None
    if d_folder is None and 1 not in folders:
        raise SceneError(f"{root}: no images/ folder beside {folder}")
    use = d_folder if d_folder is not None else folders[1]
    keep, split_index = select_splits(holdout_splits(len(records)), splits)
    files = [use / records[i].name for i in keep]
    file_labels = [labels[i] for i in keep]
    factor = downscale if d_folder is not None else 1
    on_disk = image_sizes(files, file_labels)
    for i, path, disk in zip(keep, files, on_disk):
        check_image_size(tuple(cam_sizes[i]), disk, factor,
                         f"{cameras_file} camera {records[i].camera_id} WIDTH, HEIGHT", str(path))
    # a pre-downscaled folder is read as it is (its rounding may differ); images/ is resized
    sizes = np.array(on_disk if d_folder is not None else [target_size(*cam_sizes[i], downscale) for i in keep])
    images = read_images(files, file_labels, sizes=[tuple(s) for s in sizes])
    intrinsics = scale_intrinsics(np.stack([parsed[i][0] for i in keep]), cam_sizes[keep], sizes,
                                  [str(f) for f in files])
    return make_scene(
        images=images,
        c2w=c2w[keep],
        intrinsics=intrinsics,
        normalization=norm,
        splits=split_index,
        distortion=np.stack([parsed[i][1] for i in keep]),
        model=cam_model,
        sizes=sizes,
        image_paths=files,
        source=root,
        format="colmap",
        labels=[f"{cameras_file} camera {records[i].camera_id} ({model.cameras[records[i].camera_id].model})"
                for i in keep],
        intrinsic_fields=("PARAMS fx (or f)", "PARAMS fy (or f)", "PARAMS cx", "PARAMS cy"),
        distortion_field="PARAMS (distortion)",
    )


def point_depth_bounds(
    model: ColmapModel,
    records: list,  # [C] ColmapImage in the order of c2w
    c2w: np.ndarray,  # [C, 4, 4] OpenCV camera-to-world
) -> np.ndarray | None:  # [C, 2] near, far camera-z depths, or None without enough points
    """Each image's depth range from the sparse points it observes (LLFF's imgs2poses: the 0.1
    and 99.9 percentiles of their camera-z depths); None when an image sees fewer than
    MIN_BOUND_POINTS points in front of it."""
    bounds = np.empty((len(records), 2))
    for i, im in enumerate(records):
        ids = [int(p) for p in im.point3d_ids if p >= 0 and int(p) in model.points3d]
        if len(ids) < MIN_BOUND_POINTS:
            return None
        xyz = np.stack([model.points3d[p].xyz for p in ids])
        z = (xyz - c2w[i, :3, 3]) @ c2w[i, :3, 2]
        z = z[z > 0]
        if len(z) < MIN_BOUND_POINTS:
            return None
        bounds[i] = np.percentile(z, 0.1), np.percentile(z, 99.9)
    return bounds


def _normalization(model: ColmapModel, records: list, c2w: np.ndarray, parsed: list) -> Normalization:
    """The forward-facing rule for a forward-facing layout whose images see enough sparse
    points, the object rule otherwise (nerf.datasets.normalize)."""
    if camera_layout(c2w) == "forward":
        bounds = point_depth_bounds(model, records, c2w)
        if bounds is not None:
            sizes = np.array([[model.cameras[im.camera_id].width, model.cameras[im.camera_id].height]
                              for im in records], dtype=np.float64)
            intrinsics = np.concatenate([np.stack([p[0] for p in parsed]), sizes], axis=1)  # [C, 6]
            return forward_facing_normalization(c2w, bounds, intrinsics)
    return object_normalization(c2w)
