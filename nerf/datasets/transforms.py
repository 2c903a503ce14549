"""Reader for instant-ngp / nerfstudio `transforms.json` scenes.

File: one `transforms.json` with `frames` of `file_path` (relative; ".png" added when there is no
image extension) and `transform_matrix` (4x4 or 3x4 camera-to-world, OpenGL camera axes).
Intrinsics are global or per frame (a frame's key wins): `fl_x`/`fl_y` (or `camera_angle_x`/
`camera_angle_y`: f = 0.5 size / tan(0.5 angle); fl_y defaults to fl_x), `cx`/`cy` (default the
image centre), `w`/`h` (default the size of the frame's image), `k1 k2 k3 k4 p1 p2`, and
`camera_model` (PINHOLE, SIMPLE_PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV -> "opencv"/"pinhole",
OPENCV_FISHEYE -> "fisheye"; instant-ngp's `is_fisheye` also means fisheye). Without `camera_model`, non-zero
distortion means "opencv". An optional per-frame `mask_path` (bright = use the pixel) fills
Scene.masks; frames without one use every pixel.

Frames may differ in size (per-frame `w`/`h` with their own intrinsics, as nerfstudio and
instant-ngp allow; see nerf/datasets/scene.py for how they share one tensor). Each declared size
is checked against its own frame's image.

Normalisation: a file with `aabb_scale`, `scale` or `offset` follows instant-ngp
(`ngp_normalization`); any other file the generic object rule (`object_normalization`).

Frames are sorted by `file_path`. Splits: the file's own `train_filenames` / `val_filenames` /
`test_filenames` when present (a missing val list = the test list and vice versa; a missing
train list = every frame in neither); otherwise test = every 8th frame (i % 8 == 0 in sorted
order), val = test, train = the rest.

Downscaling: for a factor d, an `images_d/` folder beside `images/` (nerfstudio's layout) is
used when it holds the frame's file; otherwise images are area-resized from `file_path`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from nerf.datasets.assemble import (
    SPLIT_NAMES, frame_file, frame_matrix, holdout_splits, make_scene, read_json,
    scale_intrinsics, select_splits,
)
from nerf.datasets.blender import opengl_to_opencv
from nerf.datasets.checks import check_image_size, check_poses
from nerf.datasets.images import (
    check_downscale, image_size, image_sizes, padded_canvas, read_images, read_masks, target_size,
)
from nerf.datasets.normalize import (
    NGP_DEFAULT_OFFSET, NGP_DEFAULT_SCALE, ngp_normalization, object_normalization,
)
from nerf.datasets.scene import Scene
from nerf.errors import SceneError

FILE_NAME = "transforms.json"
CAMERA_MODELS = {
    "PINHOLE": "pinhole",
    "SIMPLE_PINHOLE": "pinhole",
    "SIMPLE_RADIAL": "opencv",
    "RADIAL": "opencv",
    "OPENCV": "opencv",
    "OPENCV_FISHEYE": "fisheye",
}
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")  # the order of Cameras.distortion
NGP_KEYS = ("aabb_scale", "scale", "offset")


def _number(meta: dict, frame: dict, key: str, label: str) -> float | None:
    value = frame.get(key, meta.get(key))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise SceneError(f"{label}: '{key}' must be a finite number, got {value!r}")
    return float(value)


def _frame_camera(
    meta: dict, frame: dict, label: str, image: Path
) -> tuple[tuple[int, int], np.ndarray, np.ndarray, str, bool]:
    """((w, h), [fx, fy, cx, cy], distortion [6], model, whether the file declares w and h);
    without a declared size, the size of the frame's full-resolution `image`."""
    w, h = _number(meta, frame, "w", label), _number(meta, frame, "h", label)
    declared = w is not None and h is not None
    if not declared:
        w, h = image_size(image, label)
    fx = _number(meta, frame, "fl_x", label)
    if fx is None:
        angle = _number(meta, frame, "camera_angle_x", label)
        if angle is None:
            raise SceneError(f"{label}: no focal length ('fl_x' or 'camera_angle_x')")
        fx = 0.5 * w / np.tan(0.5 * angle)
    fy = _number(meta, frame, "fl_y", label)
    if fy is None:
        angle = _number(meta, frame, "camera_angle_y", label)
        fy = fx if angle is None else 0.5 * h / np.tan(0.5 * angle)
    cx = _number(meta, frame, "cx", label)
    cy = _number(meta, frame, "cy", label)
    intrinsics = np.array([fx, fy, w / 2 if cx is None else cx, h / 2 if cy is None else cy])
    dist = np.array([_number(meta, frame, k, label) or 0.0 for k in DISTORTION_KEYS])
    name = frame.get("camera_model", meta.get("camera_model"))
    if name is None:
        fisheye = bool(frame.get("is_fisheye", meta.get("is_fisheye", False)))
        model = "fisheye" if fisheye else ("opencv" if np.any(dist) else "pinhole")
    elif name in CAMERA_MODELS:
        model = CAMERA_MODELS[name]
    else:
        raise SceneError(
            f"{label}: camera_model {name!r} is not supported (supported: {', '.join(CAMERA_MODELS)})"
        )
    return (int(round(w)), int(round(h))), intrinsics, dist, model, declared


def _ngp_normalization(meta: dict, json_path: Path):
    """instant-ngp's `scale`, `offset` and `aabb_scale`, validated, as a Normalization."""
    scale = meta.get("scale", NGP_DEFAULT_SCALE)
    offset = meta.get("offset", NGP_DEFAULT_OFFSET)
    aabb_scale = meta.get("aabb_scale", 1.0)
    for key, value in (("scale", scale), ("aabb_scale", aabb_scale)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < np.inf:
            raise SceneError(f"{json_path}: '{key}' must be a positive number, got {value!r}")
    numbers = isinstance(offset, (list, tuple)) and all(isinstance(v, (int, float)) for v in offset)
    if not (numbers and len(offset) == 3):
        raise SceneError(f"{json_path}: 'offset' must be a list of 3 numbers, got {offset!r}")
    return ngp_normalization(float(scale), [float(v) for v in offset], float(aabb_scale))


def _downscaled(root: Path, path: Path, downscale: float) -> Path:
    """nerfstudio's images_d/ copy of `path` when it exists, else `path`."""
    if downscale == 1 or downscale != int(downscale):
        return path
    try:
        rel = path.relative_to(root)
    except ValueError:
        return path
    if len(rel.parts) < 2 or rel.parts[0] != "images":
        return path
    alt = root.joinpath(f"images_{int(downscale)}", *rel.parts[1:])
    return alt if alt.is_file() else path


def _file_splits(meta: dict, root: Path, paths: list[Path]) -> dict[str, np.ndarray] | None:
    """Splits from `train_filenames` / `val_filenames` / `test_filenames`, or None if absent."""
    lists = {s: meta.get(f"{s}_filenames") for s in SPLIT_NAMES}
    if all(v is None for v in lists.values()):
        return None
    index = {p.resolve(): i for i, p in enumerate(paths)}
    out = {}
    for split, names in lists.items():
        if names is None:
            continue
        if not isinstance(names, list):
            raise SceneError(f"{root / FILE_NAME}: '{split}_filenames' must be a list of file names")
        ids = []
        for name in names:
            key = (root / str(name)).resolve()
            if key not in index:
                raise SceneError(
                    f"{root / FILE_NAME}: '{split}_filenames' lists {name!r}, which is no frame's file_path"
                )
            ids.append(index[key])
        out[split] = np.array(sorted(ids), dtype=np.int64)
    out.setdefault("val", out.get("test", np.zeros(0, dtype=np.int64)))
    out.setdefault("test", out["val"])
    if "train" not in out:
        held = set(out["val"].tolist()) | set(out["test"].tolist())
        out["train"] = np.array([i for i in range(len(paths)) if i not in held], dtype=np.int64)
    return out


def read_transforms(
    root: str | Path,
    downscale: float = 1,
    splits: Sequence[str] = SPLIT_NAMES,
) -> Scene:
    """Load an instant-ngp / nerfstudio transforms.json scene.

    Args:
        root: folder holding transforms.json.
        downscale: factor >= 1; images are area-downscaled (or read from images_d/).
        splits: which splits to load images for.
    Returns:
        Scene with normalised cameras (pinhole, opencv or fisheye), optional masks.
    """
    root = Path(root)
    downscale = check_downscale(downscale)
    json_path = root / FILE_NAME
    meta = read_json(json_path)
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise SceneError(f"{json_path}: missing or empty 'frames' list")

    labels = [f"{FILE_NAME} frame {i}" for i in range(len(frames))]
    paths = [frame_file(root, f, lab, default_suffix=".png") for f, lab in zip(frames, labels)]
    order = sorted(range(len(frames)), key=lambda i: str(frames[i]["file_path"]))
    frames, labels, paths = [frames[i] for i in order], [labels[i] for i in order], [paths[i] for i in order]

    poses = np.stack([frame_matrix(f, lab) for f, lab in zip(frames, labels)])
    c2w = check_poses(opengl_to_opencv(poses), labels)
    if any(k in meta for k in NGP_KEYS):
        norm = _ngp_normalization(meta, json_path)
    else:
        norm = object_normalization(c2w)

    all_splits = _file_splits(meta, root, paths) or holdout_splits(len(frames))
    keep, split_index = select_splits(all_splits, splits)
    cams = [_frame_camera(meta, frames[k], labels[k], paths[k]) for k in keep]
    models = {c[3] for c in cams}
    if len(models - {"pinhole"}) > 1:
        raise SceneError(f"{json_path}: frames mix camera models {sorted(models)}; one scene needs one")
    model = (models - {"pinhole"} or {"pinhole"}).pop()
    declared_sizes = np.array([c[0] for c in cams], dtype=np.int64)  # [K, 2] (w, h) per frame
    sizes = np.array([target_size(*size, downscale) for size in declared_sizes], dtype=np.int64)

    load_paths = [_downscaled(root, paths[k], downscale) for k in keep]
    file_labels = [labels[k] for k in keep]
    on_disk = image_sizes(load_paths, file_labels) if any(c[4] for c in cams) else []
    for j, k in enumerate(keep):
        if cams[j][4]:
            field = f"frame {order[k]} 'w', 'h'" if "w" in frames[k] or "h" in frames[k] else "'w', 'h'"
            check_image_size(tuple(declared_sizes[j]), on_disk[j], 1 if load_paths[j] == paths[k] else downscale,
                             f"{json_path} {field}", str(load_paths[j]))
    images = read_images(load_paths, file_labels, sizes=[tuple(s) for s in sizes])
    intrinsics = scale_intrinsics(np.stack([c[1] for c in cams]), declared_sizes, sizes,
                                  [f"{json_path} {lab}" for lab in file_labels])

    masks = None
    if any("mask_path" in frames[k] for k in keep):
        with_mask = [i for i, k in enumerate(keep) if "mask_path" in frames[k]]
        mask_files = [root / str(frames[keep[i]]["mask_path"]) for i in with_mask]
        canvas = padded_canvas([tuple(s) for s in sizes])
        read = read_masks(mask_files, [f"{labels[keep[i]]} mask" for i in with_mask],
                          [tuple(sizes[i]) for i in with_mask], canvas)
        masks = np.ones((len(keep), canvas[1], canvas[0]), dtype=bool)
        masks[with_mask] = read.numpy()
        masks = torch.from_numpy(masks)

    return make_scene(
        images=images,
        c2w=c2w[keep],
        intrinsics=intrinsics,
        normalization=norm,
        splits=split_index,
        distortion=np.stack([c[2] for c in cams]),
        model=model,
        sizes=sizes,
        masks=masks,
        image_paths=load_paths,
        source=root,
        format="transforms",
        labels=[labels[k] for k in keep],
        intrinsic_fields=("fl_x (or camera_angle_x)", "fl_y (or camera_angle_y)", "cx", "cy"),
        distortion_field="'k1' 'k2' 'k3' 'k4' 'p1' 'p2'",
    )
