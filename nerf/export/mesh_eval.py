"""How good is an exported mesh: Chamfer distance and colour error against a ground truth.

Vocabulary
    surface samples  points drawn uniformly by area on a triangle mesh (a face with probability
                     proportional to its area, then a uniform point inside it).
    Chamfer-L1       the mean Euclidean distance from the samples of one mesh to their nearest
                     sample of the other, in both directions; the reported Chamfer is the mean of
                     the two. Sample-to-sample distances carry a floor from the sampling itself:
                     for n uniform samples on area A the expected nearest-neighbour distance of a
                     point on the same surface is 0.5 * sqrt(A / n) (planar Poisson process).
    seen Chamfer     the same, counting only the samples of each surface that some training
                     camera sees: inside its image, and no ground-truth surface nearer to the
                     camera than (distance - SEEN_TOLERANCE) along the ray. Both nearest-sample
                     searches still run against all samples of the other surface. This is the
                     DTU / Tanks-and-Temples practice of scoring observed geometry only: the
                     insides of the solids are never in view, nor, with a capture from above only
                     (the demo's elevation band of sessions 1-2, 10-80 degrees), the bottom of the
                     base (18% of the ground-truth area), and any mesh there is a guess. The tolerance keeps mesh points lying just inside a
                     solid; a mesh surface too far inside is still caught by the other direction.
    nearest surface  the exact closest point on the ground-truth triangles (not a sample).
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

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree

from nerf.errors import CheckpointError, ExportError
from nerf.export.mesh import MeshConfig

if TYPE_CHECKING:
    from nerf.train.loading import TrainedRun

CLOSEST_CHUNK = 1 << 15  # query points per batch of the closest-point search at FIRST_CANDIDATES
FIRST_CANDIDATES = 32  # faces tried first per query point (nearest by centroid)
MAX_CANDIDATES = 2048  # candidate cap; beyond it the distance is within the largest face radius
SEEN_TOLERANCE = 0.02  # world units (0.7% of the demo's diagonal): occluders closer are ignored
WARMUP_RESOLUTION = 32  # lattice evaluated once before a timed one (kernel set-up, caches)


@dataclass(frozen=True)
class ColorErrors:
    """Mean absolute colour errors of a mesh's vertex colours, [0, 1] scale."""

    albedo: float  # against the ground-truth albedo at the nearest surface point
    shaded: float  # against the diffusely shaded colour there (what the photos show)
    n_vertices: int


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
    from nerf.datasets.demo_geometry import trace_rays

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


def chamfer_l1_seen(
    mesh: trimesh.Trimesh,
    gt: trimesh.Trimesh,
    c2w: np.ndarray,  # [C, 4, 4] training cameras, OpenGL axes
    camera_angle_x: float,
    n_points: int = 100_000,
    seed: int = 0,
) -> dict:
    """The seen Chamfer-L1 of a demo-scene mesh (module docstring), from n_points samples each,
    and from the same samples the full Chamfer-L1 (equal to chamfer_l1(mesh, gt, n_points, seed)).

    Returns:
        {"mesh_to_gt", "gt_to_mesh", "chamfer_l1": their mean, "mesh_seen", "gt_seen": the
         fractions of each surface's samples that were counted, "full": chamfer_l1's triple}.
    """
    points_m, points_g, d_mg, d_gm = nearest_sample_distances(mesh, gt, n_points, seed)
    seen_m, seen_g = (demo_seen(p, c2w, camera_angle_x) for p in (points_m, points_g))
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


def diffuse_shading(
    albedo: np.ndarray,  # [P, 3] in [0, 1]
    normals: np.ndarray,  # [P, 3] unit, outward
) -> np.ndarray:  # [P, 3]
    """The demo scene's diffuse colour: albedo * (AMBIENT + DIFFUSE * max(0, n . l)), clipped."""
    from nerf.datasets.demo_geometry import AMBIENT, DIFFUSE, LIGHT_DIR

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
    from nerf.datasets.demo import albedo_at, ground_truth_mesh

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


def count_components(mesh: trimesh.Trimesh) -> int:
    """Edge-connected components of the mesh's faces."""
    if len(mesh.faces) == 0:
        return 0
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    return int(labels.max()) + 1


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
    from nerf.datasets.demo import GENERATOR

    try:
        meta = json.loads((Path(path) / "scene.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("generator") == GENERATOR


@dataclass(frozen=True)
class MeshEvalConfig:
    run: str = "runs/demo"  # run directory whose mesh is evaluated
    mesh: str = ""  # mesh file (.ply, .obj, .glb; "" = <run>/mesh.ply); extracted there when missing
    reextract: bool = False  # extract (and time) a fresh mesh even when the mesh file exists
    device: str = "auto"  # auto | cpu | cuda | cuda:N (extraction and lattice timing)
    unbounded_crop: float = 1.0  # half-size of the default crop box of unbounded scenes
    points: int = 100000  # area-uniform surface samples per mesh for the Chamfer distance
    seed: int = 0  # seed of the surface sampling
    time_resolution: int = 0  # also time one density-lattice evaluation at this resolution (0 = off)
    extract: MeshConfig = field(default_factory=MeshConfig)


def time_density_lattice(run: TrainedRun, resolution: int, cfg: MeshEvalConfig) -> float:
    """Seconds to evaluate the run's density on a resolution^3 lattice, as mesh export does.

    The lattice spans the same box as export_mesh (the scene box, or the crop box) and skips
    cells the occupancy grid marks empty; one small lattice runs first so that one-time set-up
    (kernel compilation, allocator growth) is not timed.

    Args:
        run: the trained run (its renderer's device is used).
        resolution: lattice points per axis.
        cfg: chunk size, crop box and memory budget (cfg.extract), unbounded crop.

    Returns:
        Wall-clock seconds of the timed evaluation.
    """
    from nerf.export.mesh import density_lattice, mesh_box
    from nerf.export.mesh_job import density_field

    mesh_cfg = cfg.extract
    if run.scene.unbounded and mesh_cfg.crop_min is None:  # the crop export_mesh applies
        c = cfg.unbounded_crop
        mesh_cfg = dataclasses.replace(mesh_cfg, crop_min=(-c, -c, -c), crop_max=(c, c, c))
    box = torch.as_tensor(mesh_box(run.scene.aabb, mesh_cfg), dtype=torch.float32)
    field_, grid = density_field(run), run.renderer.grid
    occupied = grid.is_occupied if grid is not None else None
    dev = run.renderer.aabb.device

    def evaluate(res: int) -> None:
        density_lattice(field_.query_density, box, res, mesh_cfg.chunk, occupied, dev,
                        mesh_cfg.max_lattice_bytes)

    evaluate(WARMUP_RESOLUTION)
    start = time.perf_counter()
    evaluate(resolution)  # returns a CPU tensor, so device work has finished when it returns
    return time.perf_counter() - start


def evaluate_run_mesh(cfg: MeshEvalConfig) -> dict:
    """Evaluate (extracting first when needed) the mesh of a run directory.

    Every run: vertex, face and component counts and watertightness; after an extraction its
    seconds, iso level and components removed. Demo-scene runs add Chamfer-L1 against
    `ground_truth_mesh()` (absolute and as a fraction of its bounding-box diagonal) and the
    colour errors. With `time_resolution`, the seconds of one lattice evaluation at it.

    Returns:
        A flat dict of the results (JSON-serialisable).
    """
    from nerf.config import load_config_file
    from nerf.export.mesh_io import load_mesh

    run_dir = Path(cfg.run)
    if not (run_dir / "config.txt").is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no config.txt)")
    run_cfg = load_config_file(run_dir / "config.txt")
    mesh_path = Path(cfg.mesh) if cfg.mesh else run_dir / "mesh.ply"
    result: dict = {"run": str(run_dir), "mesh": str(mesh_path)}
    extract = cfg.reextract or not mesh_path.is_file()
    run = None
    if extract or cfg.time_resolution:
        from nerf.train.loading import load_trained_run

        run = load_trained_run(run_dir, cfg.device)
    if extract:
        from nerf.export.mesh_job import MeshJobConfig, export_mesh

        job = MeshJobConfig(run=str(run_dir), out=str(mesh_path), device=cfg.device,
                            unbounded_crop=cfg.unbounded_crop, mesh=cfg.extract)
        _, stats, seconds = export_mesh(run, job)
        result.update(resolution=cfg.extract.resolution, extract_seconds=round(seconds, 2),
                      iso_level=stats.iso_level, cavity_voxels=stats.cavity_voxels,
                      unseen_voxels=stats.unseen_voxels,
                      components_removed=stats.components_removed)
    mesh = load_mesh(mesh_path)
    result.update(vertices=len(mesh.vertices), faces=len(mesh.faces),
                  components=count_components(mesh), watertight=bool(mesh.is_watertight))
    demo = is_demo_scene(run_cfg.data.data)
    result["ground_truth"] = "demo mesh_gt" if demo else f"none ({run_cfg.data.data} is not the demo scene)"
    if len(mesh.faces) and demo:
        from nerf.datasets.demo import ground_truth_mesh

        gt = ground_truth_mesh()
        diagonal = float(np.linalg.norm(np.ptp(np.asarray(gt.bounds), axis=0)))
        c2w, angle_x = demo_training_cameras(run_cfg.data.data)
        seen = chamfer_l1_seen(mesh, gt, c2w, angle_x, cfg.points, cfg.seed)
        a_to_b, b_to_a, mean = seen["full"]
        result.update(chamfer_l1=mean, chamfer_mesh_to_gt=a_to_b, chamfer_gt_to_mesh=b_to_a,
                      chamfer_l1_fraction=mean / diagonal, gt_diagonal=diagonal)
        result.update(seen_chamfer_l1=seen["chamfer_l1"], seen_mesh_to_gt=seen["mesh_to_gt"],
                      seen_gt_to_mesh=seen["gt_to_mesh"],
                      seen_chamfer_l1_fraction=seen["chamfer_l1"] / diagonal,
                      seen_fraction_mesh=seen["mesh_seen"], seen_fraction_gt=seen["gt_seen"])
        if mesh.visual.kind == "vertex":
            errors = demo_color_errors(mesh, gt)
            result.update(color_error_albedo=errors.albedo, color_error_shaded=errors.shaded)
    if cfg.time_resolution:
        result[f"lattice_{cfg.time_resolution}_seconds"] = round(
            time_density_lattice(run, cfg.time_resolution, cfg), 2)
    return result


def format_table(result: dict) -> str:
    """The results as an aligned two-column text table."""
    width = max(len(k) for k in result)
    lines = []
    for key, value in result.items():
        text = f"{value:.5g}" if isinstance(value, float) else str(value)
        lines.append(f"{key:<{width}}  {text}")
    return "\n".join(lines)
