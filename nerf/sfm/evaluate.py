"""Compare recovered camera poses with reference poses, up to a similarity transform.

SfM recovers poses only up to scale, rotation and translation of the world, so poses are
compared after the least-squares similarity (Umeyama 1991, `nerf.rotations.umeyama`) that maps
recovered camera centres onto the reference centres. Errors:
    centre error    |s R c_est + t - c_ref|, reported as a fraction of the reference spread
                    (RMS distance of the reference centres from their centroid)
    rotation error  angle of R_ref^T (R R_est), in degrees (camera-to-world rotations)
Both pose sets must use the same camera axes (e.g. OpenGL c2w from two transforms.json files).
"""

import json
from pathlib import Path

import numpy as np

from nerf.errors import SceneError
from nerf.rotations import rotation_angle_deg, umeyama


def compare_poses(c2w_est: np.ndarray, c2w_ref: np.ndarray) -> dict:  # [P, 4, 4] each
    """Centre and rotation errors of estimated camera-to-world poses after similarity alignment.

    Returns:
        dict with centre_errors [P] (fraction of the reference spread), rotation_errors_deg [P],
        their medians and maxima, and the similarity (scale) used.
    """
    sim = umeyama(c2w_est[:, :3, 3], c2w_ref[:, :3, 3])
    ref_centres = c2w_ref[:, :3, 3]
    spread = float(np.sqrt(((ref_centres - ref_centres.mean(0)) ** 2).sum(1).mean()))
    centre_errors = np.linalg.norm(sim.apply(c2w_est[:, :3, 3]) - ref_centres, axis=1) / spread
    relative = np.swapaxes(c2w_ref[:, :3, :3], 1, 2) @ sim.rotation @ c2w_est[:, :3, :3]
    rotation_errors = rotation_angle_deg(relative)
    return {"centre_errors": centre_errors, "rotation_errors_deg": rotation_errors,
            "median_centre_error": float(np.median(centre_errors)), "max_centre_error": float(centre_errors.max()),
            "median_rotation_error_deg": float(np.median(rotation_errors)),
            "max_rotation_error_deg": float(rotation_errors.max()), "scale": sim.scale, "spread": spread}


def load_transforms_poses(path: str | Path) -> dict[str, np.ndarray]:
    """{image file name (no folder): c2w [4, 4]} of a transforms.json file."""
    path = Path(path)
    try:
        frames = json.loads(path.read_text())["frames"]
        return {Path(f["file_path"]).name: np.asarray(f["transform_matrix"], np.float64) for f in frames}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SceneError(f"transforms file {path}: cannot read frames and transform matrices ({err})") from err


def evaluate_scene(transforms_est: str | Path, transforms_ref: str | Path) -> dict:
    """Compare the poses of two transforms.json files, frames matched by file name.

    Returns:
        compare_poses' dict plus registered (matched frames) and reference (frames in the reference).
    """
    est, ref = load_transforms_poses(transforms_est), load_transforms_poses(transforms_ref)
    common = sorted(set(est) & set(ref))
    if len(common) < 3:
        raise SceneError(f"{transforms_est} and {transforms_ref} share only {len(common)} frame names (need 3)")
    result = compare_poses(np.stack([est[n] for n in common]), np.stack([ref[n] for n in common]))
    result.update(registered=len(common), reference=len(ref))
    return result
