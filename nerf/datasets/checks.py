"""Camera checks every reader runs: impossible or inconsistent cameras are refused on loading.

A wrong camera does not crash training; it trains a blurred or empty field and the user learns
nothing of why. So each reader passes what a file declares through these checks, and a failure
is a SceneError naming the file, the frame and the field:

- poses (`check_poses`): finite numbers, the affine bottom row [0, 0, 0, 1], and a 3x3 part that
  is a rotation: det > 0 (a mirror or a degenerate matrix is not) and |R^T R - I| <= ROTATION_TOL
  (which also bounds |det - 1|); the rotation is then re-orthonormalised (polar decomposition) so
  downstream code can rely on exact rotations;
- COLMAP quaternions (`check_quaternions`): finite and of norm 1 within ROTATION_TOL;
- intrinsics (`check_intrinsics`, run by `make_scene` for every format): finite focal lengths
  and principal points, focal lengths > 0, principal points within the camera's own image grown
  by PRINCIPAL_POINT_MARGIN of its size on each side, finite distortion coefficients;
- image sizes (`check_image_size`, per image): the size a file declares for an image
  (transforms.json `w`/`h`, its COLMAP camera's width/height, its LLFF hwf row) must be the size
  of that image on disk, up to the rounding of a pre-downscaled folder.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nerf.errors import SceneError

ROTATION_TOL = 1e-2  # max |R^T R - I| (and |q| - 1); poses printed with 4+ digits pass easily
BOTTOM_ROW_TOL = 1e-6
PRINCIPAL_POINT_MARGIN = 0.5  # cx in [-0.5 w, 1.5 w]: off-centre crops pass, swapped axes do not
DOWNSCALED_SIZE_TOL = 1.0  # pixels: a folder downscaled by d may round w / d either way


def check_poses(
    c2w: np.ndarray,  # [C, 4, 4] or [C, 3, 4]
    labels: Sequence[str],  # C strings naming each pose's origin, e.g. "transforms.json frame 3"
    field: str = "camera pose",
) -> np.ndarray:  # [C, 4, 4] float64 with exact rotations
    """Validate camera-to-world matrices and return them with orthonormal rotation parts.

    Raises SceneError naming the first bad pose (its label and `field`): NaN/inf, a bottom row
    other than [0, 0, 0, 1], det <= 0, or a 3x3 part that is not a rotation within ROTATION_TOL.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.ndim != 3 or c2w.shape[1:] not in ((4, 4), (3, 4)):
        raise SceneError(f"{labels[0] if labels else 'poses'}: expected [C, 4, 4] poses, got {c2w.shape}")
    out = np.tile(np.eye(4), (len(c2w), 1, 1))
    for i, (pose, label) in enumerate(zip(c2w, labels)):
        if not np.all(np.isfinite(pose)):
            raise SceneError(f"{label}: {field} contains NaN or inf: {pose.tolist()}")
        if pose.shape[0] == 4 and np.abs(pose[3] - [0, 0, 0, 1]).max() > BOTTOM_ROW_TOL:
            raise SceneError(f"{label}: {field} bottom row is {pose[3].tolist()}, expected [0, 0, 0, 1]")
        rot = pose[:3, :3]
        det = np.linalg.det(rot)
        if not det > 0:
            raise SceneError(
                f"{label}: {field} is not a rotation (det of its 3x3 part is {det:.6g}, must be 1; "
                "a mirrored or degenerate matrix)"
            )
        err = np.abs(rot.T @ rot - np.eye(3)).max()
        if err > ROTATION_TOL:
            raise SceneError(
                f"{label}: {field} is not a rotation (|R^T R - I| = {err:.3g} > {ROTATION_TOL}, "
                f"det {det:.6g}; a scaled or sheared 3x3 part)"
            )
        u, _, vt = np.linalg.svd(rot)
        out[i, :3, :3] = u @ vt
        out[i, :3, 3] = pose[:3, 3]
    return out


def check_quaternions(
    quats: np.ndarray,  # [C, 4] (w, x, y, z)
    labels: Sequence[str],
    field: str = "QW QX QY QZ",
) -> None:
    """Refuse quaternions that are not finite unit 4-vectors (COLMAP writes unit quaternions)."""
    for q, label in zip(np.asarray(quats, dtype=np.float64), labels):
        norm = float(np.linalg.norm(q)) if np.all(np.isfinite(q)) else float("nan")
        if not abs(norm - 1.0) <= ROTATION_TOL:
            raise SceneError(f"{label}: {field} = {q.tolist()} is not a unit quaternion (norm {norm:.6g})")


def check_intrinsics(
    intrinsics: np.ndarray,  # [C, 4] fx, fy, cx, cy, pixels of the images as loaded
    sizes: np.ndarray,  # [C, 2] (width, height) of each image as loaded
    labels: Sequence[str],  # C strings naming each camera's origin
    fields: Sequence[str] = ("fx", "fy", "cx", "cy"),  # the file's names of the four values
    distortion: np.ndarray | None = None,  # [C, 6]
    distortion_field: str = "distortion",
) -> None:
    """Refuse non-finite or non-positive focal lengths, far-off principal points, non-finite
    distortion; the message names the camera's label and the file's field name."""
    m = PRINCIPAL_POINT_MARGIN
    for c, (values, label) in enumerate(zip(np.asarray(intrinsics, dtype=np.float64), labels)):
        w, h = (int(v) for v in sizes[c])
        for value, name in zip(values, fields):
            if not np.isfinite(value):
                raise SceneError(f"{label}: '{name}' must be a finite number, got {value}")
        for value, name in zip(values[:2], fields[:2]):
            if not value > 0:
                raise SceneError(f"{label}: focal length '{name}' must be positive, got {value:g}")
        for value, name, extent in ((values[2], fields[2], w), (values[3], fields[3], h)):
            if not -m * extent <= value <= (1 + m) * extent:
                raise SceneError(
                    f"{label}: principal point '{name}' = {value:g} lies far outside the image "
                    f"(0..{extent} pixels; accepted {-m * extent:g}..{(1 + m) * extent:g})"
                )
        if distortion is not None and not np.all(np.isfinite(distortion[c])):
            raise SceneError(f"{label}: {distortion_field} must be finite, got {np.asarray(distortion[c]).tolist()}")


def check_image_size(
    declared: tuple[float, float],  # (width, height) the file states, full resolution
    decoded: tuple[int, int],  # (width, height) of the image files read
    factor: float,  # the folder's downscale relative to `declared` (1 = full-resolution files)
    where: str,  # the file and field that declare the size, e.g. "transforms.json 'w', 'h'"
    image: str,  # the image file measured
) -> None:
    """Refuse images whose size on disk is not the declared size (divided by `factor`)."""
    expected = np.asarray(declared, dtype=np.float64) / factor
    tol = 0.0 if factor == 1 else DOWNSCALED_SIZE_TOL
    if not np.all(np.abs(np.asarray(decoded, dtype=np.float64) - expected) <= tol):
        scaled = f" / {factor:g} = {expected[0]:g}x{expected[1]:g}" if factor != 1 else ""
        raise SceneError(
            f"{where}: declares images of {declared[0]:g}x{declared[1]:g}{scaled}, but {image} "
            f"is {decoded[0]}x{decoded[1]}"
        )
