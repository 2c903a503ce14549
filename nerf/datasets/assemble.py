"""Steps shared by the readers: JSON files, split rules, split selection, building the Scene.

Sizes are per image throughout (`sizes [C, 2]` (width, height) as loaded): images of different
sizes arrive zero-padded in one tensor (nerf/datasets/images.py), and `make_scene` gives each
camera its own size and masks the padding out of training.

Readers normalise with *all* poses of a file (so a scene loaded with splits=("test",) lives in
the same frame as one loaded with every split), then read only the images of the requested
splits; `select_splits` gives the frames to read and the splits re-indexed into them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nerf.cameras import Cameras
from nerf.datasets.checks import check_intrinsics
from nerf.datasets.images import IMAGE_SUFFIXES
from nerf.datasets.normalize import Normalization, apply_to_poses
from nerf.datasets.scene import Scene
from nerf.errors import ConfigError, SceneError

SPLIT_NAMES = ("train", "val", "test")
HOLDOUT_EVERY = 8  # LLFF / mip-NeRF reference: every 8th image (i % 8 == 0) is held out


def read_json(path: Path) -> dict:
    """Parse a JSON object file; a missing file or bad syntax is a SceneError naming it."""
    if not path.is_file():
        raise SceneError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SceneError(f"{path}: cannot read the file: {exc}") from exc
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise SceneError(f"{path}: malformed JSON at {where}: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise SceneError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    return data


def holdout_splits(n: int, every: int = HOLDOUT_EVERY) -> dict[str, np.ndarray]:
    """test = frames i with i % every == 0, val = test, train = the rest."""
    idx = np.arange(n)
    test = idx[idx % every == 0]
    return {"train": idx[idx % every != 0], "val": test, "test": test}


def select_splits(
    all_splits: dict[str, np.ndarray],  # name -> frame indices into every frame of the file
    requested: Sequence[str],
) -> tuple[np.ndarray, dict[str, Tensor]]:  # frames to load [K], splits indexing those K frames
    """Frames needed for the requested splits, and those splits re-indexed into them."""
    if isinstance(requested, str):
        requested = (requested,)
    unknown = [s for s in requested if s not in SPLIT_NAMES]
    if unknown or not requested:
        raise ConfigError(f"splits must be a non-empty subset of {SPLIT_NAMES}, got {tuple(requested)}")
    keep = np.unique(np.concatenate([np.asarray(all_splits[s], dtype=np.int64) for s in requested]))
    if keep.size == 0:
        raise SceneError(f"the requested splits {tuple(requested)} contain no images")
    position = {int(f): i for i, f in enumerate(keep)}
    splits = {
        s: torch.tensor([position[int(f)] for f in all_splits[s]], dtype=torch.int64) for s in requested
    }
    return keep, splits


def make_scene(
    *,
    images: Tensor,  # [C, H, W, 3|4] uint8, image i in [i, :h_i, :w_i]
    c2w: np.ndarray,  # [C, 4, 4] rigid OpenCV poses, original frame
    intrinsics: np.ndarray,  # [C, 4] fx, fy, cx, cy for the images as loaded
    normalization: Normalization,
    splits: dict[str, Tensor],
    distortion: np.ndarray | None = None,  # [C, 6] (k1, k2, k3, k4, p1, p2)
    model: str = "pinhole",
    background: Sequence[float] | None = None,
    sizes: np.ndarray | None = None,  # [C, 2] (w_i, h_i) as loaded; None = every image [H, W]
    masks: Tensor | None = None,  # [C, H, W] bool
    image_paths: Sequence[Path] = (),
    source: Path | None = None,
    format: str = "",
    labels: Sequence[str] = (),
    intrinsic_fields: Sequence[str] = ("fx", "fy", "cx", "cy"),
    distortion_field: str = "distortion",
) -> Scene:
    """Check the intrinsics, normalise the cameras and bundle everything into a Scene.

    `labels` (one per camera, default its image path) and `intrinsic_fields` (the file's names
    of fx, fy, cx, cy) name a bad camera in the error (see nerf.datasets.checks). When `sizes`
    differ, `masks` (all True when None) is made False outside each image's own size.
    """
    h, w = images.shape[1:3]
    sizes = np.tile([w, h], (len(c2w), 1)) if sizes is None else np.asarray(sizes, dtype=np.int64)
    labels = list(labels) or [str(p) for p in image_paths] or [f"camera {i}" for i in range(len(c2w))]
    check_intrinsics(intrinsics, sizes, labels, intrinsic_fields, distortion, distortion_field)
    if np.any(sizes != [w, h]):
        masks = _without_padding(masks, sizes, (w, h))
    moved = apply_to_poses(normalization.transform, c2w)
    if distortion is not None and not np.any(distortion):
        distortion = None
    cameras = Cameras.create(
        torch.from_numpy(moved).float(),
        torch.from_numpy(intrinsics[:, 0]).float(),
        torch.from_numpy(intrinsics[:, 1]).float(),
        torch.from_numpy(intrinsics[:, 2]).float(),
        torch.from_numpy(intrinsics[:, 3]).float(),
        torch.from_numpy(sizes[:, 0]), torch.from_numpy(sizes[:, 1]),
        distortion=None if distortion is None else torch.from_numpy(distortion).float(),
        model=model if distortion is not None or model == "fisheye" else "pinhole",
    )
    if background is not None and images.shape[-1] == 4:
        background = torch.tensor(background, dtype=torch.float32)
    else:
        background = None
    return Scene(
        images=images,
        cameras=cameras,
        splits=splits,
        aabb=torch.from_numpy(normalization.aabb).float(),
        transform=torch.from_numpy(normalization.transform).float(),
        background=background,
        near=normalization.near,
        far=normalization.far,
        unbounded=normalization.unbounded,
        masks=masks,
        image_paths=[str(p) for p in image_paths],
        source=source,
        format=format,
    )


def _without_padding(
    masks: Tensor | None,  # [C, H, W] bool, or None (every pixel used)
    sizes: np.ndarray,  # [C, 2] (w_i, h_i)
    canvas: tuple[int, int],  # (W, H)
) -> Tensor:  # [C, H, W] bool, False outside [:h_i, :w_i]
    """Masks that also exclude each image's zero padding."""
    w, h = canvas
    size = torch.from_numpy(sizes)
    inside = (torch.arange(h)[None, :, None] < size[:, 1, None, None]) & (
        torch.arange(w)[None, None, :] < size[:, 0, None, None])
    return inside if masks is None else masks & inside


def scale_intrinsics(
    intrinsics: np.ndarray,  # [C, 4] fx, fy, cx, cy at each image's `original` size
    original: np.ndarray,  # [C, 2] (width, height) the intrinsics refer to, or one (w, h) for all
    actual: np.ndarray,  # [C, 2] (width, height) of the images as loaded, or one (w, h) for all
    where: Sequence[str],  # C strings naming each image, e.g. its file
) -> np.ndarray:  # [C, 4]
    """Intrinsics for images resized from `original` to `actual` (pixel centres at +0.5), per image.

    The two axes may be rounded differently (e.g. 3024 / 8 = 378 but 4032 / 8 = 504), so each
    axis gets its own factor; a size whose aspect ratio differs by more than a pixel is an error.
    """
    original = np.broadcast_to(np.asarray(original, dtype=np.float64), (len(intrinsics), 2))
    actual = np.broadcast_to(np.asarray(actual, dtype=np.float64), (len(intrinsics), 2))
    sx, sy = actual[:, 0] / original[:, 0], actual[:, 1] / original[:, 1]
    bad = (np.abs(original[:, 1] * sx - actual[:, 1]) > 1.0) | (np.abs(original[:, 0] * sy - actual[:, 0]) > 1.0)
    if bad.any():
        i = int(np.argmax(bad))
        raise SceneError(
            f"{where[i]}: the image is {actual[i, 0]:g}x{actual[i, 1]:g}, which is not a resized "
            f"{original[i, 0]:g}x{original[i, 1]:g} (the size its intrinsics refer to)"
        )
    return intrinsics * np.stack([sx, sy, sx, sy], axis=1)


def frame_matrix(frame: dict, label: str, key: str = "transform_matrix") -> np.ndarray:  # [4, 4]
    """A frame's 4x4 (or 3x4) pose matrix as float64 [4, 4], with errors naming the frame."""
    if not isinstance(frame, dict) or key not in frame:
        raise SceneError(f"{label}: missing '{key}'")
    try:
        m = np.asarray(frame[key], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SceneError(f"{label}: '{key}' is not a numeric matrix: {exc}") from exc
    if m.shape == (3, 4):
        m = np.concatenate([m, [[0.0, 0.0, 0.0, 1.0]]])
    if m.shape != (4, 4):
        raise SceneError(f"{label}: '{key}' must be 4x4 (or 3x4), got shape {m.shape}")
    return m


def frame_file(root: Path, frame: dict, label: str, default_suffix: str | None = None) -> Path:
    """The image file of a frame: `file_path` relative to `root`, "./" allowed.

    With `default_suffix` (Blender: ".png"), a path without an image extension gets it.
    """
    value = frame.get("file_path") if isinstance(frame, dict) else None
    if not isinstance(value, str) or not value:
        raise SceneError(f"{label}: missing or empty 'file_path'")
    path = root / value
    if default_suffix is not None and path.suffix.lower() not in IMAGE_SUFFIXES:
        path = path.with_name(path.name + default_suffix)
    return path  # pathlib already drops "./" components
