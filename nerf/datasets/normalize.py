"""Normalising a scene: one similarity from the file's world frame into the box `aabb`.

Every reader returns `Scene.transform` (4x4, original -> normalised, x' = s R x + t) and stores
its cameras already normalised. The rule depends on what the format tells us:

blender (nerf_synthetic)
    The objects live in [-1.5, 1.5]^3 and the cameras on a sphere of radius 4.03. We only scale:
    s = 1 / 1.5, no rotation or translation, so aabb = [-1, 1]^3. The renders were made with
    near 2 and far 6, which become 2 / 1.5 and 6 / 1.5. Bounded (unbounded = False).

instant-ngp transforms (a file with `aabb_scale`, `scale` or `offset`)
    instant-ngp puts a point p of the file into its unit cube at p * scale + offset (defaults
    0.33 and [0.5, 0.5, 0.5]) and then cycles the axes; we keep the file's axes and map the unit
    cube onto [-1, 1]^3: x' = 2 (p * scale + offset - 0.5), i.e. s = 2 scale, t = 2 offset - 1.
    instant-ngp's box of `aabb_scale` k (default 1) becomes aabb = k [-1, 1]^3; unbounded when
    k > 1. Near and far are not given.

generic object rule (nerfstudio transforms without those keys, COLMAP)
    1. centre c = the least-squares point closest to every camera's optical axis; when the axes
       are (nearly) parallel (smallest eigenvalue of the normal matrix below 1e-3) or the point is
       behind most cameras, the mean camera centre instead;
    2. rotation R (optional, on by default) takes the mean camera up vector (OpenCV -y) to +z;
    3. scale s makes the mean camera distance to c equal to 2.64 (instant-ngp's colmap2nerf
       distance 4 times its 0.33 scale, in our [-1, 1] units of the unit cube).
    x' = s R (x - c); aabb = 4 [-1, 1]^3 (instant-ngp's usual aabb_scale for real captures);
    unbounded = True. Near and far are not given.

forward-facing rule (LLFF)
    1. centre c = mean camera centre + mean forward direction * median over cameras of
       (near + far) / 2 (the middle of the depth range, in front of the rig);
    2. rotation R takes the mean camera up vector (OpenCV -y) to +z;
    3. scale s = 2 / (90th percentile of the far bounds), so typical far content lies about
       2 units from the cameras.
    aabb = the bounding box, in the normalised frame, of the camera centres and of every
    camera's frustum corners at its near and far depths. near = s * min(near bounds) (a ray
    reaches depth z no sooner than distance z); far = the largest distance from a camera to its
    own far frustum corners. unbounded = True.

Which rule a COLMAP model gets is read from its camera layout (`camera_layout`): forward-facing
when every camera looks within about 25 degrees of the mean viewing direction (the mean of the
unit forward vectors is longer than FORWARD_FACING_MIN_ALIGNMENT; an orbit, even a half one,
falls well below), with near/far bounds from the depths of each image's own sparse points
(LLFF's imgs2poses: the 0.1 and 99.9 percentiles); the object rule otherwise.

The poses these rules receive are rigid (validated by `nerf.datasets.checks.check_poses`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nerf.rotations import closest_point_to_axes, up_alignment

BLENDER_HALF_EXTENT = 1.5  # nerf_synthetic objects fit in [-1.5, 1.5]^3
BLENDER_NEAR, BLENDER_FAR = 2.0, 6.0  # the render bounds of nerf_synthetic, original units
NGP_DEFAULT_SCALE = 0.33
NGP_DEFAULT_OFFSET = (0.5, 0.5, 0.5)
OBJECT_CAMERA_DISTANCE = 2.64  # 4.0 (colmap2nerf) * 0.33 (ngp scale) * 2 (unit cube -> [-1, 1])
OBJECT_AABB_HALF_EXTENT = 4.0
FORWARD_FACING_FAR = 2.0
FAR_PERCENTILE = 90.0
FORWARD_FACING_MIN_ALIGNMENT = 0.9  # |mean unit forward vector| above this: forward-facing
AXES_MIN_EIGENVALUE = 1e-3  # of mean(I - d d^T); below it the optical axes are near-parallel


@dataclass(frozen=True)
class Normalization:
    """The similarity into the normalised frame and what it implies for the scene box."""

    transform: np.ndarray  # [4, 4] float64, original -> normalised
    aabb: np.ndarray  # [2, 3] float64 (min, max), normalised frame
    unbounded: bool
    near: float | None = None  # normalised units
    far: float | None = None


def similarity(
    scale: float,
    rotation: np.ndarray | None = None,  # [3, 3]
    center: np.ndarray | None = None,  # [3]
) -> np.ndarray:  # [4, 4] float64
    """The similarity x' = scale * R (x - center) as a 4x4 matrix."""
    rot = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    c = np.zeros(3) if center is None else np.asarray(center, dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = scale * rot
    out[:3, 3] = -scale * rot @ c
    return out


def apply_to_poses(
    transform: np.ndarray,  # [4, 4] similarity
    c2w: np.ndarray,  # [C, 4, 4] rigid camera-to-world
) -> np.ndarray:  # [C, 4, 4] rigid camera-to-world in the new frame
    """Move rigid cameras by a similarity (their rotation is turned, not scaled)."""
    linear = transform[:3, :3]
    rot = linear / np.cbrt(np.linalg.det(linear))
    out = np.array(c2w, dtype=np.float64, copy=True)
    out[:, :3, :3] = rot @ c2w[:, :3, :3]
    out[:, :3, 3] = c2w[:, :3, 3] @ linear.T + transform[:3, 3]
    return out


def camera_layout(c2w: np.ndarray) -> str:  # c2w [C, 4, 4] -> "forward" | "360"
    """"forward" when the cameras all look roughly one way (LLFF-style), else "360"."""
    forwards = c2w[:, :3, 2] / np.linalg.norm(c2w[:, :3, 2], axis=1, keepdims=True)
    return "forward" if np.linalg.norm(forwards.mean(axis=0)) > FORWARD_FACING_MIN_ALIGNMENT else "360"


def _in_front_of_most(
    point: np.ndarray,  # [3]
    centers: np.ndarray,  # [C, 3]
    forwards: np.ndarray,  # [C, 3]
) -> bool:
    """Whether `point` lies ahead of (positive along the optical axis of) more than half the cameras."""
    return bool((np.einsum("ij,ij->i", point - centers, forwards) > 0).mean() > 0.5)


def blender_normalization() -> Normalization:
    """nerf_synthetic: scale [-1.5, 1.5]^3 to [-1, 1]^3, near/far 2 and 6 scaled alike."""
    s = 1.0 / BLENDER_HALF_EXTENT
    return Normalization(
        transform=similarity(s),
        aabb=np.array([[-1.0] * 3, [1.0] * 3]),
        unbounded=False,
        near=BLENDER_NEAR * s,
        far=BLENDER_FAR * s,
    )


def ngp_normalization(
    scale: float = NGP_DEFAULT_SCALE,
    offset: Sequence[float] = NGP_DEFAULT_OFFSET,
    aabb_scale: float = 1.0,
) -> Normalization:
    """instant-ngp's unit cube (p * scale + offset) mapped onto [-1, 1]^3; aabb = aabb_scale box."""
    transform = np.eye(4)
    transform[:3, :3] *= 2.0 * scale
    transform[:3, 3] = 2.0 * np.asarray(offset, dtype=np.float64) - 1.0
    return Normalization(
        transform=transform,
        aabb=aabb_scale * np.array([[-1.0] * 3, [1.0] * 3]),
        unbounded=aabb_scale > 1,
    )


def object_normalization(c2w: np.ndarray, align_up: bool = True) -> Normalization:  # c2w [C, 4, 4]
    """The generic object rule (see the module docstring) for rigid OpenCV poses."""
    centers, forwards = c2w[:, :3, 3], c2w[:, :3, 2]
    center = closest_point_to_axes(centers, forwards, min_eigenvalue=AXES_MIN_EIGENVALUE)
    if center is None or not _in_front_of_most(center, centers, forwards):
        center = centers.mean(axis=0)
    rot = up_alignment(c2w) if align_up else np.eye(3)
    mean_dist = np.linalg.norm(centers - center, axis=1).mean()
    scale = OBJECT_CAMERA_DISTANCE / mean_dist if mean_dist > 0 else 1.0
    return Normalization(
        transform=similarity(scale, rot, center),
        aabb=OBJECT_AABB_HALF_EXTENT * np.array([[-1.0] * 3, [1.0] * 3]),
        unbounded=True,
    )


def frustum_corners(
    c2w: np.ndarray,  # [C, 4, 4]
    intrinsics: np.ndarray,  # [C, 6] fx, fy, cx, cy, width, height (pinhole)
    depths: np.ndarray,  # [C] camera-z depth of the corners
) -> np.ndarray:  # [C, 4, 3] world points
    """The four image-corner points of each camera at camera-space depth `depths`."""
    fx, fy, cx, cy, w, h = intrinsics.T
    u = np.stack([np.zeros_like(w), w, np.zeros_like(w), w], axis=1)  # [C, 4]
    v = np.stack([np.zeros_like(h), np.zeros_like(h), h, h], axis=1)
    cam = np.stack([(u - cx[:, None]) / fx[:, None], (v - cy[:, None]) / fy[:, None], np.ones_like(u)], -1)
    cam = cam * depths[:, None, None]
    return np.einsum("cij,ckj->cki", c2w[:, :3, :3], cam) + c2w[:, None, :3, 3]


def forward_facing_normalization(
    c2w: np.ndarray,  # [C, 4, 4] rigid OpenCV poses
    bounds: np.ndarray,  # [C, 2] near, far camera-z depths
    intrinsics: np.ndarray,  # [C, 6] fx, fy, cx, cy, width, height
) -> Normalization:
    """The forward-facing rule (see the module docstring) for LLFF captures."""
    centers, forwards = c2w[:, :3, 3], c2w[:, :3, 2]
    mean_forward = forwards.mean(axis=0)
    mean_forward /= np.linalg.norm(mean_forward)
    focus = np.median(bounds.mean(axis=1))
    center = centers.mean(axis=0) + mean_forward * focus
    scale = FORWARD_FACING_FAR / np.percentile(bounds[:, 1], FAR_PERCENTILE)
    transform = similarity(scale, up_alignment(c2w), center)
    moved = apply_to_poses(transform, c2w)
    scaled_bounds = bounds * scale
    near_pts = frustum_corners(moved, intrinsics, scaled_bounds[:, 0])
    far_pts = frustum_corners(moved, intrinsics, scaled_bounds[:, 1])
    pts = np.concatenate([moved[:, :3, 3], near_pts.reshape(-1, 3), far_pts.reshape(-1, 3)])
    far = np.linalg.norm(far_pts - moved[:, None, :3, 3], axis=-1).max()
    return Normalization(
        transform=transform,
        aabb=np.stack([pts.min(axis=0), pts.max(axis=0)]),
        unbounded=True,
        near=float(scaled_bounds[:, 0].min()),
        far=float(far),
    )
