"""Keyframes -> a nerfstudio camera_path.json that `render.py --path FILE` renders.

The viewer keeps keyframes as OpenCV camera-to-world matrices in the normalised frame. The file
holds nerfstudio's layout (`camera_path` entries of `camera_to_world`, 16 floats row-major in
OpenGL axes, and `fov`, vertical degrees; `render_width`, `render_height`, `fps`, `seconds`,
`keyframes`) in the run's dataparser frame, as nerfstudio's viewer writes its paths: our
normalised frame, which <run>/dataparser_transforms.json describes and `render.py --path FILE`
reads (`nerf.jobs.render.nerfstudio_path`).
The path between keyframes is `interpolate_path` (Catmull-Rom centres, squad rotations), the
same one `render.py --path interpolate` uses, with round(fps * seconds) frames.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from nerf.atomic import write_text_atomic
from nerf.cameras import Cameras
from nerf.errors import ExportError
from nerf.export.camera_paths import interpolate_path


@dataclass(frozen=True)
class PathSettings:
    fps: float = 30.0  # frames per second of the video
    seconds: float = 4.0  # length of the video
    fov_deg: float = 50.0  # vertical field of view of every frame, degrees
    width: int = 800  # rendered frame width, pixels
    height: int = 800  # rendered frame height, pixels

    @property
    def n_frames(self) -> int:
        return max(2, round(self.fps * self.seconds))

    def check(self) -> None:
        if not self.fps > 0 or not self.seconds > 0:
            raise ExportError(f"camera path: fps ({self.fps}) and seconds ({self.seconds}) must be positive")
        if not 0 < self.fov_deg < 180:
            raise ExportError(f"camera path: field of view {self.fov_deg} must be in (0, 180) degrees")
        if self.width < 1 or self.height < 1:
            raise ExportError(f"camera path: render size {self.width}x{self.height} must be positive")


def keyframe_cameras(keyframes: list[Tensor], settings: PathSettings) -> Cameras:  # keyframes: [4, 4] each
    """The keyframes as pinhole cameras of the path's size and field of view."""
    settings.check()
    if len(keyframes) < 2:
        raise ExportError(f"camera path: needs at least 2 keyframes, has {len(keyframes)}")
    focal = 0.5 * settings.height / math.tan(math.radians(settings.fov_deg) / 2)
    c2w = torch.stack([k.float().cpu() for k in keyframes])
    return Cameras.create(c2w, focal, focal, settings.width / 2.0, settings.height / 2.0,
                          settings.width, settings.height)


def path_cameras(keyframes: list[Tensor], settings: PathSettings) -> Cameras:
    """The n_frames cameras of the path through the keyframes (normalised frame)."""
    return interpolate_path(keyframe_cameras(keyframes, settings), settings.n_frames)


def _opengl_rows(c2w: Tensor) -> list[float]:  # [4, 4] OpenCV -> 16 floats OpenGL, row-major
    m = c2w.double().clone()
    m[:3, 1:3] *= -1.0
    return [float(v) for v in m.reshape(-1)]


def nerfstudio_camera_path(
    keyframes: list[Tensor],  # [4, 4] OpenCV c2w each, normalised frame
    settings: PathSettings,
) -> dict:
    """The camera_path.json content (a dict) of the path through `keyframes`, normalised frame."""
    frames = path_cameras(keyframes, settings)
    keys = keyframe_cameras(keyframes, settings)
    aspect = settings.width / settings.height
    return {
        "camera_type": "perspective",
        "render_width": settings.width,
        "render_height": settings.height,
        "fps": settings.fps,
        "seconds": settings.seconds,
        "default_fov": settings.fov_deg,
        "is_cycle": False,
        "smoothness_value": 0.5,
        "crop": None,
        "keyframes": [
            {"matrix": _opengl_rows(c2w), "fov": settings.fov_deg, "aspect": aspect,
             "override_transition_enabled": False, "override_transition_sec": None}
            for c2w in keys.c2w
        ],
        "camera_path": [
            {"camera_to_world": _opengl_rows(c2w), "fov": settings.fov_deg, "aspect": aspect}
            for c2w in frames.c2w
        ],
    }


def write_camera_path(path: str | Path, content: dict) -> Path:
    """Write the JSON atomically (a reader never sees half a file); ExportError on failure."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(content, indent=1) + "\n")
    except OSError as exc:
        raise ExportError(f"{path}: cannot write the camera path ({exc.strerror})") from exc
    return path


def render_command(run_dir: str | Path, path: str | Path) -> str:
    """The command that renders the saved path to a video."""
    return (f"python render.py --run {shlex.quote(str(run_dir))} --path {shlex.quote(str(path))} "
            f"--test false --outputs rgb")
