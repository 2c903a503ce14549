"""Rotations and alignments: the one home of the package's pose math.

Conventions:
    quaternions  (w, x, y, z), scalar first (COLMAP's `qvec` order), unit, returned with w >= 0.
                 scipy's `Rotation` does the conversions; its quaternions are scalar last, so
                 they are reordered here (`scalar_first=` needs scipy >= 1.14; setup.py asks for 1.9).
    rotations    [..., 3, 3] matrices acting on column vectors, x' = R @ x.
    cameras      camera-to-world matrices [..., 4, 4]; OpenCV axes (x right, y down, z forward)
                 unless a function says OpenGL (x right, y up, z backwards), see nerf/conventions.py.

Arrays: every function accepts numpy arrays (or sequences) and torch tensors and computes in
float64 numpy. A torch tensor in gives a float64 torch tensor out, on the device of the input;
anything else gives a float64 numpy array. torch is never imported here: a tensor can only be
passed once the caller has imported torch.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

PARALLEL_EPS = 1e-6  # look_at: |forward x up| below this, forward and up are parallel (no unique roll)
ANTIPARALLEL_EPS = 1e-12  # rotation_between: a . b below -1 + this is a half turn
UP_MIN_NORM = 1e-9  # up_alignment: a mean up vector shorter than this has no direction


def _is_tensor(x) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _to_numpy(x) -> np.ndarray:
    """`x` (array, sequence or torch tensor) as a float64 numpy array (shares memory when it can)."""
    if _is_tensor(x):
        return x.detach().to("cpu", sys.modules["torch"].float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _norm(v: np.ndarray) -> np.ndarray:  # v [..., 3] -> [..., 1]
    """Euclidean lengths of the rows of `v`, rounded as np.linalg.norm rounds a single vector."""
    return np.sqrt(v[..., None, :] @ v[..., :, None])[..., 0]


def _like(out: np.ndarray, *refs):
    """`out` as a float64 torch tensor on the device of the first tensor in `refs`, else unchanged."""
    for ref in refs:
        if _is_tensor(ref):
            return sys.modules["torch"].from_numpy(np.ascontiguousarray(out)).to(ref.device)
    return out


# --------------------------------------------------------------------------------------------
# Quaternions


def quat_to_rotmat(quat):  # quat [..., 4] (w, x, y, z) -> [..., 3, 3] float64
    """Rotation matrices of quaternions (w, x, y, z); each quaternion is normalised first.

    Raises ValueError for a quaternion that is not a finite non-zero 4-vector.
    """
    q = _to_numpy(quat)
    norm = np.linalg.norm(q, axis=-1) if q.ndim and q.shape[-1] == 4 else None
    if norm is None or not np.all(np.isfinite(norm)) or np.any(norm == 0.0):
        raise ValueError(f"quaternions must be finite non-zero 4-vectors (w, x, y, z), got {quat!r}")
    flat = q.reshape(-1, 4)[:, [1, 2, 3, 0]]  # scipy's order: scalar last
    rot = Rotation.from_quat(flat).as_matrix()
    return _like(rot.reshape(q.shape[:-1] + (3, 3)), quat)


def rotmat_to_quat(rotmat):  # rotmat [..., 3, 3] -> [..., 4] (w, x, y, z) float64, w >= 0
    """Unit quaternions (w, x, y, z) with w >= 0 of rotation matrices.

    Conversion by scipy's `Rotation.from_matrix`: a matrix that is not quite orthogonal (float32
    poses, parsed files) gets the quaternion of a rotation next to it (with scipy 1.17 its nearest
    rotation: scipy orthogonalises first).
    """
    r = _to_numpy(rotmat)
    if r.ndim < 2 or r.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must be [..., 3, 3], got shape {r.shape}")
    q = Rotation.from_matrix(r.reshape(-1, 3, 3)).as_quat()[:, [3, 0, 1, 2]]  # scalar first
    q = np.where(q[:, :1] < 0, -q, q)
    return _like(q.reshape(r.shape[:-2] + (4,)), rotmat)


def rotation_angle_deg(rotations: np.ndarray) -> np.ndarray:  # rotations [P, 3, 3] -> [P]
    """Angle of each rotation matrix, in degrees: atan2 of its sine (the antisymmetric part) and
    cosine (the trace); arccos of the trace alone loses small angles to rounding (float32 poses:
    1e-7 in the trace reads as 0.03 degrees)."""
    rotations = _to_numpy(rotations)
    cos = (np.trace(rotations, axis1=-2, axis2=-1) - 1.0) / 2.0
    anti = rotations - np.swapaxes(rotations, -1, -2)
    sin = np.linalg.norm(np.stack([anti[..., 2, 1], anti[..., 0, 2], anti[..., 1, 0]], axis=-1), axis=-1) / 2.0
    return np.degrees(np.arctan2(sin, cos))


# --------------------------------------------------------------------------------------------
# Directions and cameras


def rotation_between(a, b) -> np.ndarray:  # a [3], b [3] -> [3, 3]
    """The smallest rotation taking direction `a` to direction `b` (neither need be unit).

    When a and b are opposite, any half turn about an axis perpendicular to `a` is smallest; the
    axis taken is a x (1, 0, 0), or a x (0, 1, 0) when a is along x.
    """
    a, b = _to_numpy(a), _to_numpy(b)
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(a @ b)
    if c < -1 + ANTIPARALLEL_EPS:
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)  # Rodrigues with sin = |v|, 1 - cos = |v|^2 / (1 + c)


def mean_up(c2w) -> np.ndarray:  # c2w [C, 3|4, 3|4] OpenCV camera-to-world -> [3] float64
    """The cameras' mean up vector (OpenCV -y, the image's up), not normalised."""
    return -_to_numpy(c2w)[:, :3, 1].mean(axis=0)


def up_alignment(c2w) -> np.ndarray:  # c2w [C, 3|4, 3|4] OpenCV camera-to-world -> [3, 3]
    """Rotation taking the cameras' mean up vector (OpenCV -y, the image's up) to +z.

    The identity when the mean up vector vanishes (cameras rolled every way).
    """
    up = mean_up(c2w)
    if np.linalg.norm(up) < UP_MIN_NORM:
        return np.eye(3)
    return rotation_between(up, np.array([0.0, 0.0, 1.0]))


def look_at(
    eye,  # [..., 3] camera centres
    target,  # [..., 3] points on the optical axes
    up,  # [3] or [..., 3] world direction that appears upwards in the image
    opengl: bool = False,
):  # -> [..., 4, 4] float64 camera-to-world
    """Camera-to-world matrices of cameras at `eye` looking at `target`, `up` upwards in the image.

    OpenCV axes (x right, y down = against `up`, z forward towards the target), or OpenGL axes
    (x right, y up, z backwards) when `opengl`. Both are right-handed.
    Raises ValueError when a viewing direction is parallel to `up` (the roll is undefined).
    """
    eye_np, target_np, up_np = _to_numpy(eye), _to_numpy(target), _to_numpy(up)
    z = target_np - eye_np
    z = z / _norm(z)
    x = np.cross(z, np.broadcast_to(up_np, z.shape))
    norm = _norm(x)
    if np.any(norm < PARALLEL_EPS):
        raise ValueError("look_at: the viewing direction is parallel to the up vector; choose another up")
    x = x / norm
    y = np.cross(z, x)
    if opengl:
        y, z = -y, -z
    c2w = np.zeros(z.shape[:-1] + (4, 4))
    c2w[..., :3, 0], c2w[..., :3, 1], c2w[..., :3, 2] = x, y, z
    c2w[..., :3, 3], c2w[..., 3, 3] = np.broadcast_to(eye_np, z.shape), 1.0
    return _like(c2w, eye, target, up)


def closest_point_to_axes(
    origins,  # [C, 3] points on the lines (camera centres)
    directions,  # [C, 3] line directions (optical axes), normalised here
    min_eigenvalue: float = 0.0,
    max_condition: float = math.inf,
):  # -> [3] float64, or None when the lines (nearly) share one direction
    """Least-squares point closest to the lines origins + t directions; None if ill-posed.

    Minimises sum_i |(I - d_i d_i^T)(p - o_i)|^2, whose normal equations are
    (mean_i P_i) p = mean_i P_i o_i with the projectors P_i = I - d_i d_i^T. The eigenvalues of
    mean_i P_i lie in [0, 1] and sum to 2; it is ill-posed (None) when its smallest eigenvalue is
    zero or below `min_eigenvalue`, or its condition number exceeds `max_condition`.
    """
    o, d = _to_numpy(origins), _to_numpy(directions)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    proj = np.eye(3)[None] - d[:, :, None] * d[:, None, :]  # [C, 3, 3]
    a = proj.mean(axis=0)
    eigenvalues = np.linalg.eigvalsh(a)  # ascending
    if eigenvalues[0] <= 0.0 or eigenvalues[0] < min_eigenvalue or eigenvalues[-1] / eigenvalues[0] > max_condition:
        return None
    point = np.linalg.solve(a, (proj @ o[:, :, None]).mean(axis=0)[:, 0])
    return _like(point, origins, directions)


# --------------------------------------------------------------------------------------------
# Similarity alignment


@dataclass(frozen=True)
class Similarity:
    """x -> scale * rotation @ x + translation."""

    scale: float
    rotation: np.ndarray  # [3, 3]
    translation: np.ndarray  # [3]

    def apply(self, points: np.ndarray) -> np.ndarray:  # points [P, 3] -> [P, 3]
        """Map points by the similarity."""
        return self.scale * points @ self.rotation.T + self.translation


def umeyama(src: np.ndarray, dst: np.ndarray) -> Similarity:  # src [P, 3], dst [P, 3]
    """Least-squares similarity with dst ~ s R src + t (Umeyama 1991, with reflection guard).

    Args:
        src: [P, 3] points to map, P >= 3 and not collinear.
        dst: [P, 3] target points.
    Returns:
        The similarity minimising sum |s R src_i + t - dst_i|^2.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) < 3:
        raise ValueError(f"umeyama needs two [P, 3] arrays with P >= 3, got {src.shape} and {dst.shape}")
    mu_src, mu_dst = src.mean(0), dst.mean(0)
    xs, xd = src - mu_src, dst - mu_dst
    u, d, vt = np.linalg.svd(xd.T @ xs / len(src))
    sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign) / (xs**2).sum(1).mean())
    return Similarity(scale, rotation, mu_dst - scale * rotation @ mu_src)
