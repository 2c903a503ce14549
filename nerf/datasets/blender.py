"""Reader for Blender synthetic scenes (nerf_synthetic layout).

Layout: `transforms_{train,val,test}.json`, each with `camera_angle_x` (horizontal field of view,
radians) and `frames` of `file_path` (relative, may start with "./" and may lack ".png") and
`transform_matrix` (camera-to-world, OpenGL axes: x right, y up, looking along -z).

Intrinsics: fx = fy = 0.5 W / tan(0.5 camera_angle_x), cx = W / 2, cy = H / 2 with W, H the
size of each image as loaded (pixel centres at +0.5); images may differ in size (each is read
at its own size, divided by the downscale; see nerf/datasets/scene.py for the padding). Normalisation: `blender_normalization`
(scale 1 / 1.5, aabb [-1, 1]^3, near 2 / 1.5, far 6 / 1.5, white background).

Splits come from the three files. transforms_train.json is required; when transforms_val.json
is missing, val = the test frames, and when transforms_test.json is missing, test = the val
frames; with neither, both are empty. Frames shared by two splits are loaded once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nerf.datasets.assemble import (
    SPLIT_NAMES, frame_file, frame_matrix, make_scene, read_json, select_splits,
)
from nerf.datasets.checks import check_poses
from nerf.datasets.images import check_downscale, image_sizes, read_images, target_size
from nerf.datasets.normalize import blender_normalization
from nerf.datasets.scene import Scene
from nerf.errors import SceneError

WHITE = (1.0, 1.0, 1.0)


def opengl_to_opencv(c2w: np.ndarray) -> np.ndarray:  # [C, 4, 4] -> [C, 4, 4]
    """Camera-to-world from OpenGL camera axes (x right, y up, z back) to OpenCV (y down, z forward).

    The camera's y and z axes flip; its centre and the world frame are unchanged.
    """
    out = np.array(c2w, dtype=np.float64, copy=True)
    out[..., :3, 1:3] *= -1.0
    return out


def _split_frames(root: Path, split: str) -> tuple[Path, list[dict], float] | None:
    path = root / f"transforms_{split}.json"
    if not path.exists() and split != "train":
        return None
    meta = read_json(path)
    frames = meta.get("frames")
    if not isinstance(frames, list):
        raise SceneError(f"{path}: missing 'frames' list")
    angle = meta.get("camera_angle_x")
    if not isinstance(angle, (int, float)) or not 0 < angle < np.pi:
        raise SceneError(f"{path}: 'camera_angle_x' must be an angle in (0, pi) radians, got {angle!r}")
    return path, frames, float(angle)


def read_blender(
    root: str | Path,
    downscale: float = 1,
    splits: Sequence[str] = SPLIT_NAMES,
) -> Scene:
    """Load a Blender synthetic scene.

    Args:
        root: folder holding transforms_train.json (and optionally _val, _test).
        downscale: factor >= 1; images are area-downscaled and intrinsics follow.
        splits: which splits to load images for.
    Returns:
        Scene with RGBA (or RGB) images [C, H, W, 3|4], normalised cameras, white background.
    """
    root = Path(root)
    downscale = check_downscale(downscale)
    files = {s: _split_frames(root, s) for s in SPLIT_NAMES}
    if not files["train"][1]:
        raise SceneError(f"{files['train'][0]}: 'frames' is empty")

    paths, labels, poses, angles, all_splits = [], [], [], [], {}
    for split in SPLIT_NAMES:
        if files[split] is None:
            continue
        json_path, frames, angle = files[split]
        start = len(paths)
        for i, frame in enumerate(frames):
            label = f"{json_path.name} frame {i}"
            poses.append(frame_matrix(frame, label))
            paths.append(frame_file(root, frame, label, default_suffix=".png"))
            labels.append(label)
            angles.append(angle)
        all_splits[split] = np.arange(start, len(paths))
    empty = np.zeros(0, dtype=np.int64)
    all_splits.setdefault("val", all_splits.get("test", empty))
    all_splits.setdefault("test", all_splits["val"])

    c2w = check_poses(opengl_to_opencv(np.stack(poses)), labels)
    keep, split_index = select_splits(all_splits, splits)
    files, file_labels = [paths[k] for k in keep], [labels[k] for k in keep]
    sizes = np.array([target_size(w, h, downscale) for w, h in image_sizes(files, file_labels)])
    images = read_images(files, file_labels, sizes=[tuple(s) for s in sizes])
    w, h = sizes[:, 0].astype(np.float64), sizes[:, 1].astype(np.float64)
    focal = 0.5 * w / np.tan(0.5 * np.asarray(angles)[keep])
    intrinsics = np.stack([focal, focal, w / 2, h / 2], axis=1)
    return make_scene(
        images=images,
        c2w=c2w[keep],
        intrinsics=intrinsics,
        normalization=blender_normalization(),
        splits=split_index,
        sizes=sizes,
        background=WHITE,
        image_paths=files,
        source=root,
        format="blender",
        labels=file_labels,
        intrinsic_fields=("camera_angle_x", "camera_angle_x", "cx (image centre)", "cy (image centre)"),
    )
