"""The mesh benchmark of a run: extract (and time) its mesh, count it, and on the demo scene
score it against the ground truth (full and seen Chamfer-L1, colour errors).

Metrics and their vocabulary: nerf.evaluation.geometry (Chamfer, closest points) and
nerf.datasets.demo_truth (what the demo's cameras see, the colours its photos show).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nerf.config import load_config_file
from nerf.datasets.demo_mesh import ground_truth_mesh
from nerf.datasets.demo_truth import demo_color_errors, demo_seen_fn, demo_training_cameras, is_demo_scene
from nerf.errors import CheckpointError
from nerf.evaluation.geometry import chamfer_l1_seen, count_components
from nerf.export.mesh import MeshConfig, density_lattice, mesh_box
from nerf.export.mesh_io import load_mesh
from nerf.jobs.mesh import MeshJobConfig, export_mesh
from nerf.jobs.run import TrainedRun, load_trained_run

WARMUP_RESOLUTION = 32  # lattice evaluated once before a timed one (kernel set-up, caches)


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
    mesh_cfg = cfg.extract
    if run.scene.unbounded and mesh_cfg.crop_min is None:  # the crop export_mesh applies
        c = cfg.unbounded_crop
        mesh_cfg = dataclasses.replace(mesh_cfg, crop_min=(-c, -c, -c), crop_max=(c, c, c))
    box = torch.as_tensor(mesh_box(run.scene.aabb, mesh_cfg), dtype=torch.float32)
    field_, grid = run.renderer.field, run.renderer.grid
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
    run_dir = Path(cfg.run)
    if not (run_dir / "config.txt").is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no config.txt)")
    run_cfg = load_config_file(run_dir / "config.txt")
    mesh_path = Path(cfg.mesh) if cfg.mesh else run_dir / "mesh.ply"
    result: dict = {"run": str(run_dir), "mesh": str(mesh_path)}
    extract = cfg.reextract or not mesh_path.is_file()
    run = None
    if extract or cfg.time_resolution:
        run = load_trained_run(run_dir, cfg.device)
    if extract:
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
        gt = ground_truth_mesh()
        diagonal = float(np.linalg.norm(np.ptp(np.asarray(gt.bounds), axis=0)))
        c2w, angle_x = demo_training_cameras(run_cfg.data.data)
        seen = chamfer_l1_seen(mesh, gt, demo_seen_fn(c2w, angle_x), cfg.points, cfg.seed)
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
