"""The demo scene's ground truth for evaluation: which surface points its cameras see, and
the colours its photos show.

    seen             a point some training camera sees: inside its image, and no ground-truth
                     surface nearer to the camera than (distance - SEEN_TOLERANCE) along the ray
                     (exact ray tracing of the temple). The tolerance keeps mesh points lying just
                     inside a solid; a mesh surface too far inside is still caught by the other
                     direction of the Chamfer distance (nerf.evaluation.geometry.chamfer_l1_seen).
                     With a capture from above only (the demo's elevation band of sessions 1-2,
                     10-80 degrees) the bottom of the base (18% of the ground-truth area) is
                     never seen.
    colour errors    mean over vertices and channels of |vertex colour - reference| on the [0, 1]
                     scale. References at the nearest ground-truth surface point: the albedo, and
                     the diffuse shading the demo's photos show:
                         c = albedo * (AMBIENT + DIFFUSE * max(0, n . LIGHT_DIR)), clipped to [0, 1]
                     A NeRF learns shaded colour, so the second is the fair one. The specular
                     highlight of the demo's central sphere is view-dependent and left out of both.

Frames: exported meshes are written in the scene's original frame, which for the demo scene is
the frame of `ground_truth_mesh()`, so the two are compared as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from nerf.datasets.demo import GENERATOR
from nerf.datasets.demo_geometry import AMBIENT, DIFFUSE, LIGHT_DIR, albedo_at, trace_rays
from nerf.datasets.demo_mesh import ground_truth_mesh
from nerf.errors import ExportError
from nerf.evaluation.geometry import SeenFn, closest_points_on_mesh

SEEN_TOLERANCE = 0.02  # world units (0.7% of the demo's diagonal): occluders closer are ignored


@dataclass(frozen=True)
class ColorErrors:
    """Mean absolute colour errors of a mesh's vertex colours, [0, 1] scale."""

    albedo: float  # against the ground-truth albedo at the nearest surface point
    shaded: float  # against the diffusely shaded colour there (what the photos show)
    n_vertices: int


def demo_seen(
    points: np.ndarray,  # [P, 3] world frame of the demo scene
    c2w: np.ndarray,  # [C, 4, 4] camera-to-world, OpenGL axes (x right, y up, looking along -z)
    camera_angle_x: float,  # horizontal field of view, radians (square images)
    tolerance: float = SEEN_TOLERANCE,
) -> np.ndarray:  # [P] bool
    """Whether some camera sees each point of the demo scene (see "seen Chamfer" above).

    Each camera traces the exact ground-truth temple from its centre towards the points inside
    its image; a point is seen when the first hit is no nearer than its distance - tolerance.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    half_tan = np.tan(0.5 * camera_angle_x)
    seen = np.zeros(len(points), dtype=bool)
    for cam in np.asarray(c2w, dtype=np.float64):
        todo = np.flatnonzero(~seen)
        eye = cam[:3, 3]
        offset = points[todo] - eye
        dist = np.linalg.norm(offset, axis=1)
        local = offset @ cam[:3, :3]  # camera axes
        depth = -local[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            in_image = (depth > 0) & (np.abs(local[:, :2]).max(axis=1) <= half_tan * depth)
        todo, offset, dist = todo[in_image], offset[in_image], dist[in_image]
        t_hit, _, _ = trace_rays(np.broadcast_to(eye, offset.shape), offset / dist[:, None])
        seen[todo[t_hit >= dist - tolerance]] = True
    return seen


def demo_seen_fn(
    c2w: np.ndarray,  # [C, 4, 4] training cameras, OpenGL axes
    camera_angle_x: float,
) -> SeenFn:
    """points [P, 3] -> [P] bool: `demo_seen` with these cameras, for chamfer_l1_seen."""
    return lambda points: demo_seen(points, c2w, camera_angle_x)


def diffuse_shading(
    albedo: np.ndarray,  # [P, 3] in [0, 1]
    normals: np.ndarray,  # [P, 3] unit, outward
) -> np.ndarray:  # [P, 3]
    """The demo scene's diffuse colour: albedo * (AMBIENT + DIFFUSE * max(0, n . l)), clipped."""
    lambert = np.maximum(np.asarray(normals, dtype=np.float64) @ LIGHT_DIR, 0.0)
    return np.clip(np.asarray(albedo) * (AMBIENT + DIFFUSE * lambert)[:, None], 0.0, 1.0)


def demo_color_errors(mesh: trimesh.Trimesh, gt_mesh: trimesh.Trimesh | None = None) -> ColorErrors:
    """Vertex-colour errors of a mesh of the demo scene (see the module docstring).

    Args:
        mesh: a mesh with vertex colours, in the demo's frame.
        gt_mesh: the ground-truth mesh (default `ground_truth_mesh()`); its face normals give
            the shading normal at the nearest point.

    Returns:
        ColorErrors (albedo and shaded mean absolute errors on the [0, 1] scale).
    """
    if mesh.visual.kind != "vertex":
        raise ExportError("demo_color_errors: the mesh has no vertex colours")
    gt = ground_truth_mesh() if gt_mesh is None else gt_mesh
    colors = np.asarray(mesh.visual.vertex_colors, dtype=np.float64)[:, :3] / 255.0
    nearest, faces = closest_points_on_mesh(gt, np.asarray(mesh.vertices))
    albedo = albedo_at(nearest)
    shaded = diffuse_shading(albedo, np.asarray(gt.face_normals)[faces])
    return ColorErrors(
        albedo=float(np.abs(colors - albedo).mean()),
        shaded=float(np.abs(colors - shaded).mean()),
        n_vertices=len(colors),
    )


def demo_training_cameras(path: str | Path) -> tuple[np.ndarray, float]:
    """A demo scene folder's training cameras: (c2w [C, 4, 4] OpenGL, camera_angle_x)."""
    file = Path(path) / "transforms_train.json"
    try:
        meta = json.loads(file.read_text())
        c2w = np.array([f["transform_matrix"] for f in meta["frames"]], dtype=np.float64)
        angle_x = float(meta["camera_angle_x"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{file}: cannot read the demo's training cameras ({exc})") from exc
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
        raise ExportError(f"{file}: transform matrices must be 4x4, got {c2w.shape[1:]}")
    return c2w, angle_x


def is_demo_scene(path: str | Path) -> bool:
    """Whether folder `path` holds the built-in demo scene (its scene.json names the generator)."""
    try:
        meta = json.loads((Path(path) / "scene.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("generator") == GENERATOR
