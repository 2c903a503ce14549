"""How fast the viewer's frames are on a run: the issue's laptop targets (first frame at 256 px
within 1 s, at least 2 frames/s at 128 px while the camera moves), measured on the frame path
the viewer uses (render_frame, then JPEG as sent to the browser), without a browser."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import imageio.v3 as iio
import numpy as np
import torch

from nerf.config import check_fields, device_problem, option
from nerf.export.camera_paths import orbit_path
from nerf.jobs.run import TrainedRun, training_cameras
from nerf.rotations import mean_up
from nerf.viewer.camera import pose_cameras, pose_from_c2w, vertical_fov
from nerf.viewer.view_render import render_frame


@dataclass(frozen=True)
class ViewerBenchConfig:
    __post_init__ = check_fields

    run: str = "runs/demo"  # run directory to time
    device: str = option("auto", rule=device_problem)  # auto | cpu | cuda | cuda:N
    aspect: float = option(1.7778, above=0.0)  # canvas width / height (16:9, a laptop browser window)
    moving_frames: int = option(60, at_least=1)  # frames along an orbit for the moving rate


def orbit_poses(run: TrainedRun, n: int, aspect: float, elevation_deg: float = 30.0):
    """n browser poses around the scene at the training cameras' mean distance."""
    scene = run.scene
    train = training_cameras(run)
    center = (scene.aabb[0] + scene.aabb[1]) / 2
    up = torch.as_tensor(mean_up(train.c2w), dtype=torch.float64)
    radius = float((train.centers - center).norm(dim=-1).mean())
    fov = vertical_fov(train)
    cams = orbit_path(center, up, radius, elevation_deg, n, 64, 64, math.degrees(fov))
    return [pose_from_c2w(c, fov, aspect) for c in cams.c2w]


def timed_frame(run: TrainedRun, pose, resolution: int, jpeg_quality: int = 85) -> float:
    """Seconds to render one frame of `pose` and encode it as the viewer does."""
    dev = run.renderer.aabb.device
    start = time.perf_counter()
    frame = render_frame(run.renderer, pose_cameras(pose, resolution).to(dev),
                         run.scene.render_background.to(dev), "rgb", run.cfg.train.render_chunk)
    iio.imwrite("<bytes>", frame.image, extension=".jpeg", quality=jpeg_quality)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure_viewer_frames(run: TrainedRun, aspect: float = 16 / 9, first_resolution: int = 256,
                          moving_resolution: int = 128, moving_frames: int = 60) -> dict:
    """First frame (the first of the process, then new poses) and frames/s along an orbit."""
    poses = orbit_poses(run, moving_frames + 8, aspect)
    first = timed_frame(run, poses[-1], first_resolution)  # the process's first frame (kernels load)
    fresh = [timed_frame(run, p, first_resolution) for p in poses[-8:-1]]
    start = time.perf_counter()
    for pose in poses[:moving_frames]:
        timed_frame(run, pose, moving_resolution)
    moving_seconds = time.perf_counter() - start
    return {
        "aspect": round(aspect, 4),
        "first_frame_px": first_resolution,
        "first_frame_seconds": round(first, 3),
        "new_pose_frame_seconds_median": round(statistics.median(fresh), 3),
        "new_pose_frame_seconds_max": round(max(fresh), 3),
        "moving_px": moving_resolution,
        "moving_frames": moving_frames,
        "moving_frames_per_second": round(moving_frames / moving_seconds, 2),
        "step": run.step,
    }
