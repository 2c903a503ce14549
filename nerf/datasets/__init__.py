"""Scene readers: every on-disk format in, one normalised `Scene` out.

Formats and how `detect_format` recognises them (first match wins):
    blender     transforms_train.json                       (nerf_synthetic)
    transforms  transforms.json                             (instant-ngp, nerfstudio)
    colmap      sparse/0/ or sparse/ with cameras.bin|.txt  (preferred over llff when both exist)
    llff        poses_bounds.npy                            (forward-facing captures)
Normalisation rules per format are documented in nerf/datasets/normalize.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nerf.datasets.assemble import SPLIT_NAMES
from nerf.datasets.blender import read_blender
from nerf.datasets.colmap import MODEL_FOLDERS, find_model_folder, read_colmap
from nerf.datasets.llff import read_llff
from nerf.datasets.scene import Scene
from nerf.datasets.transforms import read_transforms
from nerf.errors import ConfigError, SceneError

READERS = {
    "blender": read_blender,
    "transforms": read_transforms,
    "colmap": read_colmap,
    "llff": read_llff,
}
FORMATS = ("auto", *READERS)

__all__ = ["FORMATS", "Scene", "detect_format", "load_scene"]


def detect_format(path: str | Path) -> str:
    """Name of the scene format in folder `path` ("blender", "transforms", "colmap" or "llff").

    Raises SceneError listing what was looked for when the folder holds no known scene.
    """
    path = Path(path)
    if not path.is_dir():
        raise SceneError(f"{path}: not a scene folder ({'a file' if path.exists() else 'does not exist'})")
    if (path / "transforms_train.json").is_file():
        return "blender"
    if (path / "transforms.json").is_file():
        return "transforms"
    if find_model_folder(path) is not None:
        return "colmap"
    if (path / "poses_bounds.npy").is_file():
        return "llff"
    models = " or ".join(f"{m}/cameras.bin|.txt" for m in MODEL_FOLDERS)
    raise SceneError(
        f"{path}: not a scene folder; looked for transforms_train.json (blender), transforms.json "
        f"(instant-ngp/nerfstudio), {models} (COLMAP) and poses_bounds.npy (LLFF)"
    )


def load_scene(
    path: str | Path,
    format: str = "auto",
    downscale: float = 1,
    splits: Sequence[str] = SPLIT_NAMES,
) -> Scene:
    """Load a posed scene from disk, normalised into its aabb.

    Args:
        path: the scene folder.
        format: "auto" (see `detect_format`) or one of "blender", "transforms", "colmap", "llff".
        downscale: factor >= 1 by which images (and intrinsics) are reduced.
        splits: the splits whose images are loaded; Scene.splits holds exactly these.
    Returns:
        Scene (images uint8 [C, H, W, 3|4], normalised Cameras, splits, aabb, transform, ...).
    """
    if format not in FORMATS:
        raise ConfigError(f"unknown scene format {format!r}; expected one of {FORMATS}")
    path = Path(path)
    if format == "auto":
        format = detect_format(path)
    elif not path.is_dir():
        raise SceneError(f"{path}: not a scene folder ({'a file' if path.exists() else 'does not exist'})")
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    return READERS[format](path, downscale=downscale, splits=splits)
