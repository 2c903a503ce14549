"""Mesh export from a run directory: the trained field's density through marching cubes.

For unbounded captures the scene box also holds the background, so the default crop is the
content box [-unbounded_crop, unbounded_crop]^3 of the normalised frame (the unit box the
normalisation puts the object in); an explicit crop box replaces it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nerf.export.mesh import MeshConfig, MeshStats, extract_mesh
from nerf.export.mesh_io import save_mesh
from nerf.train.loading import TrainedRun


@dataclass(frozen=True)
class MeshJobConfig:
    run: str = "runs/demo"  # run directory to export from
    out: str = ""  # mesh file: .ply, .obj or .glb ("" = <run>/mesh.ply)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    unbounded_crop: float = 1.0  # half-size of the default crop box of unbounded scenes
    mesh: MeshConfig = field(default_factory=MeshConfig)


def density_field(run: TrainedRun):
    """The field whose density defines the surface (the fine network of a vanilla NeRF)."""
    f = run.renderer.field
    return f.fine if hasattr(f, "fine") else f


def export_mesh(run: TrainedRun, cfg: MeshJobConfig) -> tuple[Path, MeshStats, float]:
    """Extract, clean, colour and save the run's mesh; returns (path, stats, seconds)."""
    start = time.perf_counter()
    scene, renderer = run.scene, run.renderer
    mesh_cfg = cfg.mesh
    if scene.unbounded and mesh_cfg.crop_min is None:
        c = cfg.unbounded_crop
        mesh_cfg = dataclasses.replace(mesh_cfg, crop_min=(-c, -c, -c), crop_max=(c, c, c))
    field_ = density_field(run)
    grid = renderer.grid
    dev = renderer.aabb.device

    @torch.no_grad()
    def color_fn(points, directions):
        return field_(points, directions)[1]

    mesh, stats = extract_mesh(
        field_.query_density, scene.aabb, mesh_cfg, color_fn=color_fn,
        occupied_fn=grid.is_occupied if grid is not None else None,
        transform=scene.transform, device=dev,
    )
    out = Path(cfg.out) if cfg.out else run.run_dir / "mesh.ply"
    save_mesh(mesh, out)
    return out, stats, time.perf_counter() - start
