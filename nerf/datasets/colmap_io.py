"""Read and write COLMAP sparse models (cameras, images, points3D) in binary and text form.

The data types and COLMAP's vocabulary are in colmap_model.py, the two file layouts in
colmap_binary.py and colmap_text.py; this module picks the layout and checks the model is
consistent. Every public name of those modules is importable from here.
Newer COLMAP versions also write rigs and frames; those files are not needed to pose images and
are neither read nor written here.
"""

from __future__ import annotations

from pathlib import Path

from nerf.datasets import colmap_binary, colmap_text
from nerf.datasets.colmap_model import (
    CAMERA_MODEL_BY_ID, CAMERA_MODEL_BY_NAME, CAMERA_MODELS, INVALID_POINT3D_ID, CameraModelSpec, ColmapCamera,
    ColmapImage, ColmapModel, ColmapPoint3D, camera_spec,
)
from nerf.errors import SceneError

__all__ = ["CAMERA_MODELS", "CAMERA_MODEL_BY_ID", "CAMERA_MODEL_BY_NAME", "INVALID_POINT3D_ID", "CameraModelSpec",
           "ColmapCamera", "ColmapImage", "ColmapModel", "ColmapPoint3D", "camera_spec", "detect_model_format",
           "read_model", "write_model"]


_READERS = {".bin": colmap_binary.READERS, ".txt": colmap_text.READERS}
_WRITERS = {".bin": colmap_binary.WRITERS, ".txt": colmap_text.WRITERS}
_STEMS = ("cameras", "images", "points3D")


def detect_model_format(folder: str | Path) -> str:
    """Extension (".bin" or ".txt") of the complete COLMAP model in `folder`; binary wins."""
    folder = Path(folder)
    for ext in (".bin", ".txt"):
        if all((folder / f"{stem}{ext}").is_file() for stem in _STEMS):
            return ext
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    raise SceneError(
        f"COLMAP model folder {folder}: expected cameras, images and points3D as .bin or .txt; "
        f"found {present if present else 'nothing (missing or empty folder)'}"
    )


def read_model(folder: str | Path) -> ColmapModel:
    """Read a COLMAP sparse model, detecting binary (.bin) or text (.txt) files.

    Args:
        folder: directory holding cameras, images and points3D files (e.g. `sparse/0`).
    Returns:
        The model; raises SceneError naming the file and the problem if anything is malformed.
    """
    folder = Path(folder)
    ext = detect_model_format(folder)
    read_cameras, read_images, read_points = _READERS[ext]
    model = ColmapModel(
        cameras=read_cameras(folder / f"cameras{ext}"),
        images=read_images(folder / f"images{ext}"),
        points3d=read_points(folder / f"points3D{ext}"),
    )
    for image in model.images.values():
        if image.camera_id not in model.cameras:
            raise SceneError(
                f"COLMAP model file {folder / f'images{ext}'}: image {image.image_id} ({image.name}) "
                f"refers to camera {image.camera_id}, which is not in cameras{ext}"
            )
    return model


def write_model(model: ColmapModel, folder: str | Path, binary: bool = True) -> Path:
    """Write `model` as COLMAP cameras/images/points3D files (binary .bin or text .txt).

    Args:
        model: the sparse model to write.
        folder: output directory, created if missing.
        binary: True for .bin files, False for .txt.
    Returns:
        The output folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".bin" if binary else ".txt"
    write_cameras, write_images, write_points = _WRITERS[ext]
    write_cameras(model.cameras, folder / f"cameras{ext}")
    write_images(model.images, folder / f"images{ext}")
    write_points(model.points3d, folder / f"points3D{ext}")
    return folder
