"""Browser camera <-> Cameras: the viewer's only geometry.

viser reports a camera as an OpenCV camera-to-world rotation (quaternion w, x, y, z) and centre,
a vertical field of view in radians and the canvas aspect (width / height); the viewer's scene
is the run's normalised frame, so a pose converts to `Cameras` without any other transform.
"Resolution" is the longer side of a frame in pixels (nerfstudio's "max resolution").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from nerf.cameras import Cameras
from nerf.rotations import quat_to_rotmat, rotmat_to_quat


@dataclass(frozen=True)
class ViewPose:
    """One browser camera, in the normalised frame."""

    wxyz: tuple[float, float, float, float]  # OpenCV c2w rotation (x right, y down, z forward)
    position: tuple[float, float, float]  # camera centre
    fov: float  # vertical field of view, radians
    aspect: float  # canvas width / height

    def c2w(self) -> Tensor:  # [4, 4] float32 OpenCV
        out = torch.eye(4, dtype=torch.float64)
        out[:3, :3] = torch.as_tensor(quat_to_rotmat(np.asarray(self.wxyz, dtype=np.float64)))
        out[:3, 3] = torch.tensor(self.position, dtype=torch.float64)
        return out.float()


def pose_from_c2w(c2w, fov: float, aspect: float) -> ViewPose:  # c2w [4, 4] or [3, 4] OpenCV
    """The ViewPose of a camera-to-world matrix (rotation re-orthonormalised by the quaternion)."""
    m = np.asarray(torch.as_tensor(c2w).detach().cpu().double())
    q = np.asarray(rotmat_to_quat(m[:3, :3]), dtype=np.float64)
    return ViewPose(tuple(q.tolist()), tuple(m[:3, 3].tolist()), float(fov), float(aspect))


def frame_size(aspect: float, resolution: int) -> tuple[int, int]:
    """(width, height) of a frame of `aspect` whose longer side is `resolution` pixels."""
    if aspect >= 1.0:
        return resolution, max(1, round(resolution / aspect))
    return max(1, round(resolution * aspect)), resolution


def pose_cameras(pose: ViewPose, resolution: int) -> Cameras:
    """One pinhole camera of `pose` whose longer side is `resolution` pixels (square pixels,
    principal point at the centre)."""
    width, height = frame_size(pose.aspect, resolution)
    focal = 0.5 * height / math.tan(0.5 * pose.fov)
    return Cameras.create(pose.c2w()[None], focal, focal, width / 2.0, height / 2.0, width, height)


def vertical_fov(cameras: Cameras, index: int = 0) -> float:
    """Vertical field of view of camera `index`, radians."""
    return 2.0 * math.atan(0.5 * float(cameras.height[index]) / float(cameras.fy[index]))
