"""`nerf-export`: a run's geometry as a mesh, a point cloud or a TSDF-fused mesh, in one crop box.

kind
    mesh        marching cubes on the density field (nerf/jobs/mesh.py, its options in `mesh`);
    pointcloud  every opaque pixel of rendered training views back-projected to its surface point
                (nerf/export/pointcloud.py), coloured by the render, with the density field's
                normal (central differences of density, turned to face the camera that saw it);
    tsdf        the same depth maps fused into a truncated signed distance volume (Open3D) and
                meshed, for geometry that is smooth where marching cubes on density is noisy.
The crop box (`crop_min`, `crop_max`, normalised frame, as for meshes; unbounded scenes default
to the content box [-unbounded_crop, unbounded_crop]^3) bounds every kind. Outputs are written in
the scene's original frame as .ply (colours + normals), .obj or .glb (nerf/export/mesh_io.py).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nerf.config import check_fields, device_problem, option
from nerf.errors import ConfigError, ExportError
from nerf.export.mesh import MeshConfig, mesh_box, to_original_frame
from nerf.export.mesh_io import MESH_FORMATS, save_mesh, save_point_cloud_ply
from nerf.export.pointcloud import fuse_depth_points, tsdf_fusion
from nerf.jobs.mesh import MeshJobConfig, export_mesh
from nerf.jobs.run import TrainedRun, training_cameras

EXPORT_KINDS = ("mesh", "pointcloud", "tsdf")
NORMAL_STEP_FRACTION = 1.0 / 1024  # central-difference step, fraction of the crop box's longest side


@dataclass(frozen=True)
class DepthExportConfig:
    __post_init__ = check_fields

    views: int = option(0, at_least=0)  # pointcloud/tsdf: training views rendered, evenly spaced (0 = all)
    min_opacity: float = option(0.5, above=0.0, at_most=1.0)  # pointcloud/tsdf: pixels below this opacity are background
    stride: int = option(1, at_least=1)  # pointcloud: keep every stride-th pixel in each image direction
    tsdf_resolution: int = option(256, at_least=8)  # tsdf: voxels along the crop box's longest side
    tsdf_trunc_voxels: float = option(4.0, at_least=1.0)  # tsdf: truncation distance, in voxels
    tsdf_min_views: int = option(1, at_least=1)  # tsdf: voxels seen by fewer depth maps are left out


@dataclass(frozen=True)
class ExportJobConfig:
    __post_init__ = check_fields

    run: str = "runs/demo"  # run directory to export from
    kind: str = option("mesh", choices=EXPORT_KINDS)  # mesh | pointcloud | tsdf
    out: str = ""  # output file: .ply, .obj or .glb ("" = <run>/<kind>.ply)
    device: str = option("auto", rule=device_problem)  # auto | cpu | cuda | cuda:N
    unbounded_crop: float = option(1.0, above=0.0)  # half-size of the default crop box of unbounded scenes
    depth: DepthExportConfig = field(default_factory=DepthExportConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)  # crop_min / crop_max apply to every kind


@dataclass(frozen=True)
class ExportResult:
    path: Path
    kind: str
    vertices: int
    faces: int  # 0 for a point cloud
    seconds: float


def crop_box(run: TrainedRun, cfg: ExportJobConfig) -> np.ndarray:  # [2, 3] float64, normalised frame
    """The scene box cut by the crop box (the content box of an unbounded scene by default)."""
    mesh_cfg = cfg.mesh
    if run.scene.unbounded and mesh_cfg.crop_min is None:
        c = cfg.unbounded_crop
        mesh_cfg = dataclasses.replace(mesh_cfg, crop_min=(-c, -c, -c), crop_max=(c, c, c))
    return mesh_box(run.scene.aabb, mesh_cfg)


@torch.no_grad()
def render_depth_maps(run: TrainedRun, views: int) -> tuple:
    """(cameras, depths [V, H, W], rgbs [V, H, W, 3], opacities [V, H, W]) of `views` evenly
    spaced training views (0 = all), normalised frame, on the CPU."""
    cams = training_cameras(run)
    if 0 < views < len(cams):
        cams = cams[torch.linspace(0, len(cams) - 1, views).round().long().tolist()]
    dev = run.renderer.aabb.device
    on_dev = cams.to(dev)
    bg = run.scene.render_background.to(dev)
    maps = [run.renderer.render_image(on_dev, i, bg, run.cfg.train.render_chunk) for i in range(len(cams))]
    stack = {k: torch.stack([m[k].cpu() for m in maps]) for k in ("depth", "rgb", "opacity")}
    return cams.to("cpu"), stack["depth"], stack["rgb"], stack["opacity"]


@torch.no_grad()
def density_normals(
    density_fn,  # positions [N, 3] -> [N]
    points: Tensor,  # [P, 3] normalised frame
    view_dirs: Tensor,  # [P, 3] directions the points were seen along
    step: float,
    chunk: int = 1 << 16,
) -> Tensor:  # [P, 3] unit
    """Outward surface normals -grad(density) / |grad(density)| by central differences, turned
    towards the viewer (n . d < 0); where the gradient vanishes, the reversed view direction."""
    out = torch.empty_like(points)
    offsets = torch.eye(3, device=points.device, dtype=points.dtype) * step
    for start in range(0, len(points), chunk):
        p = points[start : start + chunk]
        grad = torch.stack([density_fn(p + offsets[a]).reshape(-1) - density_fn(p - offsets[a]).reshape(-1)
                            for a in range(3)], dim=-1)
        n = -grad
        d = view_dirs[start : start + chunk]
        n = torch.where((n * d).sum(-1, keepdim=True) > 0, -n, n)
        norm = n.norm(dim=-1, keepdim=True)
        out[start : start + chunk] = torch.where(norm > 1e-12, n / norm.clamp_min(1e-12), -d)
    return out


def export_pointcloud(run: TrainedRun, cfg: ExportJobConfig, box: np.ndarray, out: Path) -> tuple[int, int]:
    """Back-projected opaque pixels inside `box`, with colours and normals, original frame."""
    dcfg = cfg.depth
    cams, depths, rgbs, opacities = render_depth_maps(run, dcfg.views)
    points, colors = fuse_depth_points(depths, rgbs, opacities, cams, dcfg.min_opacity, dcfg.stride)
    view_dirs = torch.cat([
        cams.image_rays(i)[1][:: dcfg.stride, :: dcfg.stride][opacities[i, :: dcfg.stride, :: dcfg.stride]
                                                              >= dcfg.min_opacity]
        for i in range(len(cams))
    ])
    lo, hi = torch.from_numpy(box).float()
    inside = ((points >= lo) & (points <= hi)).all(dim=-1)
    points, colors, view_dirs = points[inside], colors[inside], view_dirs[inside]
    if len(points) == 0:
        raise ExportError(f"{run.run_dir}: no rendered surface point lies in the crop box {box.tolist()} "
                          f"(normalised frame) with opacity >= {dcfg.min_opacity}")
    dev = run.renderer.aabb.device
    step = float((hi - lo).max()) * NORMAL_STEP_FRACTION
    normals = density_normals(run.renderer.field.query_density, points.to(dev), view_dirs.to(dev), step).cpu()
    transform = run.scene.transform.double()
    inverse = torch.linalg.inv(transform)
    original = points.double() @ inverse[:3, :3].T + inverse[:3, 3]
    rotated = normals.double() @ (transform[:3, :3] / torch.linalg.det(transform[:3, :3]) ** (1 / 3))
    save_point_cloud_ply(out, original.numpy(), colors.numpy(), rotated.numpy())
    return len(points), 0


def export_tsdf(run: TrainedRun, cfg: ExportJobConfig, box: np.ndarray, out: Path) -> tuple[int, int]:
    """Depth maps fused into a TSDF over `box` and meshed, original frame."""
    dcfg = cfg.depth
    cams, depths, rgbs, opacities = render_depth_maps(run, dcfg.views)
    voxel = float(np.max(box[1] - box[0])) / dcfg.tsdf_resolution
    depth_max = float(np.linalg.norm(run.scene.aabb[1] - run.scene.aabb[0]))
    mesh = tsdf_fusion(depths, rgbs, cams, voxel, dcfg.tsdf_trunc_voxels * voxel, depth_max, opacities,
                       dcfg.min_opacity, dcfg.tsdf_min_views)
    verts = np.asarray(mesh.vertices)
    inside = ((verts >= box[0]) & (verts <= box[1])).all(axis=1)
    keep = inside[np.asarray(mesh.faces)].all(axis=1)
    if not keep.any():
        raise ExportError(f"{run.run_dir}: the fused TSDF mesh has no face inside the crop box {box.tolist()}")
    mesh = mesh.submesh([np.flatnonzero(keep)], append=True)
    mesh = to_original_frame(mesh, run.scene.transform)
    save_mesh(mesh, out)
    return len(mesh.vertices), len(mesh.faces)


def export_geometry(run: TrainedRun, cfg: ExportJobConfig, progress: bool = False) -> ExportResult:
    """Write the run's `cfg.kind` export (see the module docstring)."""
    start = time.perf_counter()
    out = Path(cfg.out) if cfg.out else run.run_dir / f"{cfg.kind}.ply"
    if out.suffix.lower() not in MESH_FORMATS:
        raise ConfigError(f"out = {cfg.out!r}: expected a {', '.join(MESH_FORMATS)} file")
    if cfg.kind == "mesh":
        job = MeshJobConfig(run=cfg.run, out=str(out), device=cfg.device, unbounded_crop=cfg.unbounded_crop,
                            mesh=cfg.mesh)
        path, stats, _ = export_mesh(run, job, progress)
        counts = (stats.n_vertices, stats.n_faces)
    else:
        box = crop_box(run, cfg)
        counts = (export_pointcloud if cfg.kind == "pointcloud" else export_tsdf)(run, cfg, box, out)
        path = out
    return ExportResult(path, cfg.kind, *counts, time.perf_counter() - start)

