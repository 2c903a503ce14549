"""Mesh clean-up after marching cubes: small components removed, decimation, smoothing.

Decimation (quadric error, Garland and Heckbert) and Taubin smoothing use open3d, an optional
dependency (`pip install -e ".[mesh]"`); component removal needs only trimesh.
"""

from __future__ import annotations

import numpy as np
import trimesh

from nerf.errors import ExportError

OPEN3D_HINT = "the 'mesh' extra (pip install open3d)"


def remove_components(
    mesh: trimesh.Trimesh, min_faces: int, keep_largest: int
) -> tuple[int, int, trimesh.Trimesh]:
    """Drop edge-connected components with fewer than `min_faces` faces, then keep the largest N.

    Returns:
        (components before, components removed, cleaned mesh).
    """
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    sizes = np.bincount(labels)
    keep = sizes >= min_faces
    if keep_largest and keep.sum() > keep_largest:
        order = np.argsort(-np.where(keep, sizes, -1), kind="stable")
        keep = np.zeros_like(keep)
        keep[order[:keep_largest]] = True
    if not keep.any():
        raise ExportError(
            f"mesh: every component has fewer than min_component_faces={min_faces} faces "
            f"(the largest has {int(sizes.max())}); lower min_component_faces"
        )
    if keep.all():
        return len(sizes), 0, mesh
    cleaned = mesh.copy()
    cleaned.update_faces(keep[labels])
    cleaned.remove_unreferenced_vertices()
    return len(sizes), int((~keep).sum()), cleaned


def _require_open3d():
    try:
        import open3d
    except ImportError as exc:
        raise ExportError(f"mesh decimation and smoothing need open3d, {OPEN3D_HINT}") from exc
    return open3d


def _to_open3d(mesh: trimesh.Trimesh, o3d):
    return o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.asarray(mesh.vertices, dtype=np.float64)),
        o3d.utility.Vector3iVector(np.asarray(mesh.faces, dtype=np.int32)),
    )


def _from_open3d(o3d_mesh) -> trimesh.Trimesh:
    mesh = trimesh.Trimesh(np.asarray(o3d_mesh.vertices), np.asarray(o3d_mesh.triangles), process=False)
    mesh.remove_unreferenced_vertices()
    return mesh


def decimate(mesh: trimesh.Trimesh, target_faces: int) -> trimesh.Trimesh:
    """Quadric-error decimation (Garland and Heckbert) to about `target_faces` faces, via open3d."""
    o3d = _require_open3d()
    simplified = _to_open3d(mesh, o3d).simplify_quadric_decimation(target_number_of_triangles=target_faces)
    return _from_open3d(simplified)


def smooth_taubin(mesh: trimesh.Trimesh, iterations: int) -> trimesh.Trimesh:
    """Taubin lambda/mu smoothing (removes bumps without the shrinking of Laplacian smoothing)."""
    o3d = _require_open3d()
    return _from_open3d(_to_open3d(mesh, o3d).filter_smooth_taubin(number_of_iterations=iterations))
