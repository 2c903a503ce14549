"""How close two surfaces are: surface sampling, Chamfer distances, exact closest points.

Vocabulary
    surface samples  points drawn uniformly by area on a triangle mesh (a face with probability
                     proportional to its area, then a uniform point inside it).
    Chamfer-L1       the mean Euclidean distance from the samples of one mesh to their nearest
                     sample of the other, in both directions; the reported Chamfer is the mean of
                     the two. Sample-to-sample distances carry a floor from the sampling itself:
                     for n uniform samples on area A the expected nearest-neighbour distance of a
                     point on the same surface is 0.5 * sqrt(A / n) (planar Poisson process).
    seen Chamfer     the same, counting only the samples of each surface that a `seen` predicate
                     accepts (for the demo scene: some training camera sees them, see
                     nerf.datasets.demo_truth). Both nearest-sample searches still run against all
                     samples of the other surface. This is the DTU / Tanks-and-Temples practice
                     of scoring observed geometry only: the insides of solids are never in view,
                     and any mesh there is a guess.
    nearest surface  the exact closest point on a mesh's triangles (not a sample).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from nerf.errors import ExportError

CLOSEST_CHUNK = 1 << 15  # query points per batch of the closest-point search at FIRST_CANDIDATES
FIRST_CANDIDATES = 32  # faces tried first per query point (nearest by centroid)
MAX_CANDIDATES = 2048  # candidate cap; beyond it the distance is within the largest face radius

SeenFn = Callable[[np.ndarray], np.ndarray]  # points [P, 3] -> [P] bool: is the point observed


def sample_surface(
    mesh: trimesh.Trimesh, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:  # points [n, 3] float64, face ids [n] int64
    """Draw `n` points uniformly by area on the mesh's triangles.

    Args:
        mesh: a triangle mesh with at least one face of positive area.
        n: number of points.
        rng: the random generator (its stream advances).

    Returns:
        (points [n, 3], the face each point lies on [n]).
    """
    tri = np.asarray(mesh.triangles, dtype=np.float64)  # [F, 3, 3]
    areas = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    total = float(areas.sum())
    if len(tri) == 0 or not total > 0:
        raise ExportError("sample_surface: the mesh has no face of positive area")
    cdf = np.cumsum(areas) / total
    faces = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(tri) - 1)
    u, v = rng.random(n), rng.random(n)
    outside = u + v > 1.0  # fold the far half of the unit square back into the triangle
    u[outside], v[outside] = 1.0 - u[outside], 1.0 - v[outside]
    t = tri[faces]
    points = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    return points, faces


def chamfer_l1(
    mesh_a: trimesh.Trimesh, mesh_b: trimesh.Trimesh, n_points: int = 100_000, seed: int = 0
) -> tuple[float, float, float]:
    """Chamfer-L1 distance between two surfaces from `n_points` area-uniform samples on each.

    Args:
        mesh_a, mesh_b: triangle meshes in the same frame.
        n_points: samples per mesh (independent draws, so a mesh against itself gives the
            sampling floor 0.5 * sqrt(area / n_points), not 0).
        seed: seed of the sampling.

    Returns:
        (mean distance a -> b, mean distance b -> a, their mean), in the meshes' units.
    """
    _, _, d_ab, d_ba = nearest_sample_distances(mesh_a, mesh_b, n_points, seed)
    a_to_b, b_to_a = float(d_ab.mean()), float(d_ba.mean())
    return a_to_b, b_to_a, 0.5 * (a_to_b + b_to_a)


def nearest_sample_distances(
    mesh_a: trimesh.Trimesh, mesh_b: trimesh.Trimesh, n_points: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`n_points` area-uniform samples on each mesh (a's first, from one seeded stream) and each
    sample's distance to the nearest sample of the other mesh.

    Returns:
        (points_a [n, 3], points_b [n, 3], distances a -> b [n], distances b -> a [n]).
    """
    if n_points < 1:
        raise ExportError(f"chamfer_l1: n_points must be >= 1, got {n_points}")
    rng = np.random.default_rng(seed)
    points_a, _ = sample_surface(mesh_a, n_points, rng)
    points_b, _ = sample_surface(mesh_b, n_points, rng)
    return points_a, points_b, cKDTree(points_b).query(points_a)[0], cKDTree(points_a).query(points_b)[0]


def chamfer_l1_seen(
    mesh: trimesh.Trimesh,
    gt: trimesh.Trimesh,
    seen: SeenFn,
    n_points: int = 100_000,
    seed: int = 0,
) -> dict:
    """The seen Chamfer-L1 of a mesh against a ground truth (module docstring), from n_points
    samples each, and from the same samples the full Chamfer-L1 (equal to
    chamfer_l1(mesh, gt, n_points, seed)).

    Args:
        mesh, gt: triangle meshes in the same frame.
        seen: which sample points count (e.g. nerf.datasets.demo_truth.demo_seen_fn).
        n_points, seed: as for chamfer_l1.

    Returns:
        {"mesh_to_gt", "gt_to_mesh", "chamfer_l1": their mean, "mesh_seen", "gt_seen": the
         fractions of each surface's samples that were counted, "full": chamfer_l1's triple}.
    """
    points_m, points_g, d_mg, d_gm = nearest_sample_distances(mesh, gt, n_points, seed)
    seen_m, seen_g = (np.asarray(seen(p), dtype=bool) for p in (points_m, points_g))
    if not seen_m.any() or not seen_g.any():
        raise ExportError("chamfer_l1_seen: no camera sees any sample of the mesh or the ground truth")
    m_to_g, g_to_m = float(d_mg[seen_m].mean()), float(d_gm[seen_g].mean())
    full_m, full_g = float(d_mg.mean()), float(d_gm.mean())
    return {"mesh_to_gt": m_to_g, "gt_to_mesh": g_to_m, "chamfer_l1": 0.5 * (m_to_g + g_to_m),
            "mesh_seen": float(seen_m.mean()), "gt_seen": float(seen_g.mean()),
            "full": (full_m, full_g, 0.5 * (full_m + full_g))}


def closest_point_on_triangles(
    p: np.ndarray,  # [M, 3] query points
    a: np.ndarray,  # [M, 3] first corners
    b: np.ndarray,  # [M, 3] second corners
    c: np.ndarray,  # [M, 3] third corners
) -> np.ndarray:  # [M, 3]
    """Closest point of each triangle (a, b, c) to p, by the Voronoi region of p.

    The regions are tested in order (corners, edges, interior) as in Ericson, Real-Time
    Collision Detection, 5.1.5; degenerate triangles fall into a corner or edge region.
    """
    ab, ac, ap, bp, cp = b - a, c - a, p - a, p - b, p - c

    def dot(x, y):
        return np.einsum("ij,ij->i", x, y)

    d1, d2, d3, d4, d5, d6 = dot(ab, ap), dot(ac, ap), dot(ab, bp), dot(ac, bp), dot(ab, cp), dot(ac, cp)
    vc, vb, va = d1 * d4 - d3 * d2, d5 * d2 - d1 * d6, d3 * d6 - d5 * d4
    with np.errstate(divide="ignore", invalid="ignore"):
        on_ab = a + (d1 / (d1 - d3))[:, None] * ab
        on_ac = a + (d2 / (d2 - d6))[:, None] * ac
        on_bc = b + ((d4 - d3) / ((d4 - d3) + (d5 - d6)))[:, None] * (c - b)
        denom = va + vb + vc
        inside = a + (vb / denom)[:, None] * ab + (vc / denom)[:, None] * ac
    regions = [  # in Ericson's order; the first region that holds wins
        ((d1 <= 0) & (d2 <= 0), a),
        ((d3 >= 0) & (d4 <= d3), b),
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), on_ab),
        ((d6 >= 0) & (d5 <= d6), c),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), on_ac),
        ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), on_bc),
    ]
    out = inside
    for region, point in reversed(regions):
        out = np.where(region[:, None], point, out)
    return out


def closest_points_on_mesh(
    mesh: trimesh.Trimesh, points: np.ndarray  # [P, 3]
) -> tuple[np.ndarray, np.ndarray]:  # closest points [P, 3], face ids [P]
    """The closest point on the mesh's surface to each query point, and the face it lies on.

    Candidate faces are the nearest by centroid. A result is certain once the farthest
    candidate centroid is at least (best distance + R) away, R = the largest centroid-to-corner
    radius of any face: a face not tried cannot then be closer. Uncertain points retry with 4x
    the candidates up to MAX_CANDIDATES; past that (points far from a finely tessellated surface)
    the distance found is within R of the exact one.

    Args:
        mesh: the triangle mesh.
        points: [P, 3] query points.

    Returns:
        (closest points [P, 3] float64, their faces [P] int64).
    """
    tri = np.asarray(mesh.triangles, dtype=np.float64)  # [F, 3, 3]
    if len(tri) == 0:
        raise ExportError("closest_points_on_mesh: the mesh has no faces")
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    centroids = tri.mean(axis=1)
    radius = float(np.linalg.norm(tri - centroids[:, None], axis=2).max())
    tree = cKDTree(centroids)
    closest, faces = np.empty_like(points), np.zeros(len(points), dtype=np.int64)
    todo, k = np.arange(len(points)), min(FIRST_CANDIDATES, len(tri))
    while len(todo):
        undecided = []
        rows_per_batch = max(1, CLOSEST_CHUNK * FIRST_CANDIDATES // k)  # bounds memory as k grows
        for start in range(0, len(todo), rows_per_batch):
            idx = todo[start : start + rows_per_batch]
            cdist, cand = tree.query(points[idx], k=k)
            cdist, cand = cdist.reshape(len(idx), k), cand.reshape(len(idx), k)
            q = np.repeat(points[idx], k, axis=0)
            t = tri[cand.reshape(-1)]
            near = closest_point_on_triangles(q, t[:, 0], t[:, 1], t[:, 2]).reshape(len(idx), k, 3)
            dist = np.linalg.norm(near - points[idx, None], axis=2)
            best = dist.argmin(axis=1)
            rows = np.arange(len(idx))
            closest[idx], faces[idx] = near[rows, best], cand[rows, best]
            certain = cdist[:, -1] >= dist[rows, best] + radius
            undecided.append(idx[~certain])
        if k >= min(len(tri), MAX_CANDIDATES):
            break
        todo, k = np.concatenate(undecided), min(4 * k, len(tri), MAX_CANDIDATES)
    return closest, faces


def count_components(mesh: trimesh.Trimesh) -> int:
    """Edge-connected components of the mesh's faces."""
    if len(mesh.faces) == 0:
        return 0
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    return int(labels.max()) + 1


