"""Reader for LLFF forward-facing scenes (`poses_bounds.npy` + images folders).

`poses_bounds.npy` is float [N, 17]: per image a 3x5 matrix (row-major) then (near, far).
The 3x5 matrix is [R | t | hwf]: camera-to-world rotation columns in LLFF's order
[down, right, backwards], the camera centre t, and the image's full-resolution (H, W, focal);
images may differ in size (each row is its own image's; see nerf/datasets/scene.py).
Bounds are camera-z depths of the scene's points (LLFF takes the 0.1 / 99.9 percentiles).

Images are the files of one folder sorted by name (LLFF's own order, that of `imgs2poses`).
For a downscale d the folder `images_k/` with the largest k <= d is read (`images_d/` itself
when present; `images/` counts as k = 1) and, when k < d, area-resized to round(W / d) x
round(H / d): the fewest pixels to decode. There is no upsampling: a d below every folder
present is a SceneError (fern ships images_4 and images_8 only, so it needs d >= 4). Each file's
size is checked against its row's (H, W) / k. Intrinsics are focal and the image centre, scaled
per axis by each image's loaded size over its (W, H).

Splits: test = every 8th image (i % 8 == 0, the reference's llffhold = 8), val = test,
train = the rest. Normalisation: `forward_facing_normalization` (see normalize.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nerf.datasets.assemble import SPLIT_NAMES, holdout_splits, make_scene, scale_intrinsics, select_splits
from nerf.datasets.checks import check_image_size, check_poses
from nerf.datasets.images import (
    check_downscale, downscaled_folders, image_sizes, list_images, read_images, target_size,
)
from nerf.datasets.normalize import forward_facing_normalization
from nerf.datasets.scene import Scene
from nerf.errors import SceneError

FILE_NAME = "poses_bounds.npy"


def llff_to_opencv(poses: np.ndarray) -> np.ndarray:  # [N, 3, 4] -> [N, 4, 4]
    """Camera-to-world from LLFF's [down, right, backwards] rotation columns to OpenCV's
    [right, down, forward]; the centre column is unchanged."""
    poses = np.asarray(poses, dtype=np.float64)
    out = np.tile(np.eye(4), (poses.shape[0], 1, 1))
    out[:, :3, 0] = poses[:, :, 1]
    out[:, :3, 1] = poses[:, :, 0]
    out[:, :3, 2] = -poses[:, :, 2]
    out[:, :3, 3] = poses[:, :, 3]
    return out


def read_poses_bounds(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse poses_bounds.npy into (c2w [N, 4, 4] OpenCV, hwf [N, 3], bounds [N, 2])."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SceneError(f"{path}: cannot read as a .npy array: {exc}") from exc
    if data.ndim != 2 or data.shape[1] != 17 or data.shape[0] == 0:
        raise SceneError(f"{path}: expected shape [N, 17] (3x5 pose + near, far per image), got {data.shape}")
    data = data.astype(np.float64)
    poses = data[:, :15].reshape(-1, 3, 5)
    hwf, bounds = poses[:, :, 4], data[:, 15:17]
    labels = [f"{path.name} row {i}" for i in range(len(data))]
    c2w = check_poses(llff_to_opencv(poses[:, :, :4]), labels)
    for i, label in enumerate(labels):
        if not (np.all(np.isfinite(hwf[i])) and np.all(hwf[i] > 0)):
            raise SceneError(f"{label}: height, width, focal must be positive numbers, got {hwf[i].tolist()}")
        near, far = bounds[i]
        if not (np.isfinite(near) and np.isfinite(far) and 0 < near < far):
            raise SceneError(f"{label}: bounds must satisfy 0 < near < far, got near {near}, far {far}")
    return c2w, hwf, bounds


def _image_folder(root: Path, downscale: float) -> tuple[Path, int]:
    """(folder, its factor k) to read for `downscale`; see the module docstring."""
    folders = downscaled_folders(root, "images")
    usable = [k for k in folders if k <= downscale]
    if not usable:
        present = ", ".join(p.name for p in folders.values()) or "none"
        raise SceneError(
            f"{root}: downscale {downscale:g} needs images/ or images_k/ with k <= {downscale:g} "
            f"(folders present: {present}); pass a larger downscale"
        )
    k = max(usable)
    return folders[k], k


def read_llff(
    root: str | Path,
    downscale: float = 1,
    splits: Sequence[str] = SPLIT_NAMES,
) -> Scene:
    """Load an LLFF forward-facing scene.

    Args:
        root: folder holding poses_bounds.npy and images/ and/or images_d/ folders.
        downscale: factor >= 1 relative to the full resolution recorded in poses_bounds.npy.
        splits: which splits to load images for.
    Returns:
        Scene with pinhole cameras, forward-facing normalisation, near/far from the bounds.
    """
    root = Path(root)
    downscale = check_downscale(downscale)
    c2w, hwf, bounds = read_poses_bounds(root / FILE_NAME)
    full_sizes = np.round(hwf[:, [1, 0]]).astype(np.int64)  # [N, 2] (W, H) per image
    n = len(c2w)

    folder, k = _image_folder(root, downscale)
    files = list_images(folder)
    if len(files) != n:
        raise SceneError(
            f"{folder}: found {len(files)} images but {root / FILE_NAME} has {n} poses"
        )
    keep, split_index = select_splits(holdout_splits(n), splits)
    labels = [f"{folder.name} image {i} (pose row {i})" for i in keep]
    on_disk = image_sizes([files[i] for i in keep], labels)
    for i, disk in zip(keep, on_disk):
        check_image_size(tuple(full_sizes[i]), disk, k, f"{root / FILE_NAME} row {i} hwf", str(files[i]))
    # folder images_d is read as it is; a folder of a smaller factor is resized to W / d x H / d
    sizes = np.array(on_disk if k == downscale else [target_size(*full_sizes[i], downscale) for i in keep])
    images = read_images([files[i] for i in keep], labels, sizes=[tuple(s) for s in sizes])

    width, height = full_sizes[:, 0].astype(np.float64), full_sizes[:, 1].astype(np.float64)
    full = np.stack([hwf[:, 2], hwf[:, 2], width / 2, height / 2], axis=1)
    intrinsics = scale_intrinsics(full[keep], full_sizes[keep], sizes, [str(files[i]) for i in keep])
    norm = forward_facing_normalization(c2w, bounds, np.concatenate([full, full_sizes], axis=1))
    return make_scene(
        images=images,
        c2w=c2w[keep],
        intrinsics=intrinsics,
        normalization=norm,
        splits=split_index,
        sizes=sizes,
        image_paths=[files[i] for i in keep],
        source=root,
        format="llff",
        labels=[f"{FILE_NAME} row {i}" for i in keep],
        intrinsic_fields=("focal (hwf)", "focal (hwf)", "cx (image centre)", "cy (image centre)"),
    )
